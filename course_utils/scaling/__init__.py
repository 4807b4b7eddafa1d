"""Scaling laws (chapter 04): fitting loss against parameters N and training tokens D, and compute-optimal allocation.

Modules: ``compute`` (exact parameter counts from a config, 6ND, matmul FLOPs per token checked against torch's FLOP
counter), ``sweep`` (a cached, resumable grid of runs on any ``concurrent.futures.Executor``), ``fit`` (Kaplan-style
power laws and the Chinchilla parametric form with its published fitting procedure, bootstrap uncertainty,
compute-optimal N*(C) and D*(C)), ``isoflop`` (Chinchilla approach 2: the best size per budget, allocation
exponents), ``runs`` (one run of a sweep: a character GPT of a given shape on a given token budget, fp32 or bf16,
on any device), ``grids`` (the chapter's IsoFLOP grid per profile and the run it predicts before training, one copy
shared by the notebook and ``benchmarks/bench_scaling_sweep.py``). May import every layer below it.
"""
