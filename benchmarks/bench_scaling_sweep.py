"""Benchmark chapter 04's scaling sweep: time per run, tokens/s and achieved GFLOP/s per shape, the whole sweep's
wall time, the science check (IsoFLOP minima inside the grid, Chinchilla fit), and the prediction run.

Usage: ``flock /tmp/course-heavy.lock nice -n 5 .venv/bin/python benchmarks/bench_scaling_sweep.py [--grid cpu]
[--workers 2] [--no-arms] [--precision-only]``. Prints a markdown block for ``benchmarks/RESULTS.md``.

Achieved GFLOP/s counts the matmul FLOPs of :func:`course_utils.scaling.compute.gpt_train_flops_per_token` (weights,
head and attention, forward and backward) over each run's wall time including its final evaluation, and is compared
with the matmul peak measured here, in the same run, with the same thread count as the runs (a 1024^3 matmul).
Arms, each measured in this run: fp32 against bf16 autocast on short runs, and one process of two threads against
two processes of one thread on the smallest budget's runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from course_utils.scaling.fit import fit_chinchilla
from course_utils.scaling.grids import PREDICTION_RUNS, SWEEP_GRIDS, grid_runs
from course_utils.scaling.isoflop import allocation_exponents, isoflop_minima
from course_utils.device import cpu_description, torch_threads
from course_utils.scaling.runs import train_scaling_run
from course_utils.scaling.sweep import local_executor, run_sweep


def matmul_gflops(dtype: torch.dtype, threads: int, n: int = 1024, reps: int = 4) -> float:
    with torch_threads(threads):
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        a @ b  # warm-up
        best = float("inf")
        for _ in range(3):  # best of 3 timings: a peak, not the average of a busy moment
            start = time.perf_counter()
            for _ in range(reps):
                a @ b
            best = min(best, time.perf_counter() - start)
        return 2 * n**3 * reps / best / 1e9


def timed_sweep(specs, workers: int | None, keep: str | None = None):
    with tempfile.TemporaryDirectory() as cache:
        cache = keep or cache  # a fresh folder, so every run is timed (nothing comes from a cache)
        start = time.perf_counter()
        if workers:
            with local_executor(workers) as pool:
                out = run_sweep(specs, train_scaling_run, cache, executor=pool, progress=False)
        else:
            out = run_sweep(specs, train_scaling_run, cache, progress=False)
        return out, time.perf_counter() - start


def per_shape_table(specs, out, peak1: float) -> list[str]:
    from course_utils.scaling.sweep import run_key

    rows = ["| shape (L, H, C) | N | batch | runs | s/run | tokens/s | GFLOP/s | % of 1-thread fp32 peak | target |",
            "|---|---|---|---|---|---|---|---|---|"]
    for shape in dict.fromkeys((s.n_layer, s.n_head, s.n_embd) for s in specs):
        res = [out.results[run_key(s)] for s in specs if (s.n_layer, s.n_head, s.n_embd) == shape
               and run_key(s) in out.results]
        secs = sum(r["seconds"] for r in res)
        gflops = sum(r["flops_counted"] for r in res) / secs / 1e9
        target = 40 if shape[2] >= 64 else 25
        batch = next(s.batch_size for s in specs if (s.n_layer, s.n_head, s.n_embd) == shape)
        rows.append(f"| {shape} | {res[0]['n_params']:,} | {batch} | {len(res)} | {secs / len(res):.1f} | "
                    f"{sum(r['tokens'] for r in res) / secs:,.0f} | {gflops:.1f} | {100 * gflops / peak1:.0f}% | "
                    f">= {target}%: {'met' if 100 * gflops / peak1 >= target else 'MISSED'} |")
    return rows


def science(out) -> tuple[list[str], dict]:
    res = list(out.results.values())
    N, D, L = (np.array([r[k] for r in res], dtype=float) for k in ("n_params", "tokens", "val_loss"))
    lines = ["| budget C (FLOPs) | runs | losses by N (small to large) | N* | interior |", "|---|---|---|---|---|"]
    minima = isoflop_minima(N, D, L)
    C = 6 * N * D
    for m in minima:
        group = sorted((n, l) for n, l, c in zip(N, L, C) if abs(c / m.compute - 1) < 0.06)
        lines.append(f"| {m.compute:.3g} | {m.n_runs} | {' / '.join(f'{l:.3f}' for _, l in group)} | "
                     f"{m.n_opt:,.0f} | {'yes' if m.interior else 'no'} |")
    fit = fit_chinchilla(N, D, L)
    interior = [m for m in minima if m.interior]
    vertex_a = (f"N* ~ C^{allocation_exponents(interior)['a']:.2f} through the interior vertices"
                if len(interior) >= 2 else "fewer than two interior vertices, no allocation exponent")
    lines.append(f"\nInterior minima: {len(interior)} of {len(minima)} budgets ({vertex_a}). Chinchilla fit on "
                 f"{len(res)} runs: " + ", ".join(f"{k} = {v:.4g}" for k, v in fit.items())
                 + f"; its a = beta / (alpha + beta) = {fit['beta'] / (fit['alpha'] + fit['beta']):.2f}")
    return lines, fit


def arms(grid_name: str, specs) -> list[str]:
    lines = []
    grid = SWEEP_GRIDS[grid_name]
    low = specs[-len(grid.shapes_at(min(grid.budgets))):]  # grid_runs lists the smallest budget's runs last
    _, two_procs = timed_sweep(low, 2)
    _, one_proc = timed_sweep([dataclasses.replace(s, threads=2) for s in low], None)
    lines.append(f"- smallest budget's {len(low)} runs: 2 processes x 1 thread {two_procs:.1f} s (incl. pool start) "
                 f"vs 1 process x 2 threads {one_proc:.1f} s: {one_proc / two_procs:.2f}x")
    for s in low[2::2]:  # a few shapes, 20 batches each
        speeds = precision_speeds(s)
        lines.append(f"- shape {(s.n_layer, s.n_head, s.n_embd)}, 20 batches, 1 thread: fp32 {speeds['fp32']:,.0f} "
                     f"tokens/s, bf16 autocast {speeds['bf16']:,.0f} tokens/s: bf16/fp32 = "
                     f"{speeds['bf16'] / speeds['fp32']:.2f}x")
    return lines


def precision_speeds(spec, repeats: int = 1) -> dict[str, float]:
    """Tokens/s of ``spec``'s shape trained for 20 batches in fp32 and in bf16 autocast, alternating, best of
    ``repeats``."""
    short = dataclasses.replace(spec, tokens=20 * spec.batch_size * spec.block_size)
    best = {"fp32": 0.0, "bf16": 0.0}
    for _ in range(repeats):
        for p in best:
            best[p] = max(best[p], train_scaling_run(dataclasses.replace(short, precision=p))["tokens_per_s"])
    return best


def precision_arms(grid_name: str, repeats: int = 2) -> list[str]:
    """fp32 against bf16 autocast on every shape of the grid, 20 batches at 1 thread, alternating arms, best of
    ``repeats``: the measurement behind :func:`course_utils.scaling.runs.default_precision`."""
    from course_utils.device import native_bf16

    lines = [f"native bf16 on this CPU: {native_bf16('cpu')}",
             "| shape (L, H, C) | batch | fp32 tokens/s | bf16 tokens/s | bf16/fp32 |", "|---|---|---|---|---|"]
    firsts = {}
    for s in grid_runs(SWEEP_GRIDS[grid_name]):
        firsts.setdefault((s.n_layer, s.n_head, s.n_embd), s)
    for shape, s in firsts.items():
        best = precision_speeds(dataclasses.replace(s, threads=1), repeats)
        lines.append(f"| {shape} | {s.batch_size} | {best['fp32']:,.0f} | {best['bf16']:,.0f} | "
                     f"{best['bf16'] / best['fp32']:.2f}x |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="cpu", choices=sorted(SWEEP_GRIDS))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-arms", action="store_true")
    parser.add_argument("--keep", help="an empty folder to keep the sweep's cached results in (default: temporary)")
    parser.add_argument("--precision-only", action="store_true",
                        help="only time fp32 against bf16 autocast on every shape of the grid (no sweep)")
    args = parser.parse_args()
    if args.precision_only:
        print(f"## Chapter 04: fp32 against bf16 autocast per shape (`benchmarks/bench_scaling_sweep.py --grid "
              f"{args.grid} --precision-only`)\n\n{datetime.date.today()}, CPU: {cpu_description()}, torch "
              f"{torch.__version__}\n")
        print("\n".join(precision_arms(args.grid)))
        return
    grid = SWEEP_GRIDS[args.grid]
    specs = grid_runs(grid)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"## Chapter 04: scaling sweep (`benchmarks/bench_scaling_sweep.py --grid {args.grid}`)\n")
    print(f"{datetime.date.today()}, CPU: {cpu_description()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads available; load average at start {load:.2f}.")
    peak = {(d, t): matmul_gflops(d, t, reps=8 if d == torch.float32 else 1)
            for d in (torch.float32, torch.bfloat16) for t in (1, 2)}
    print("Matmul peak (1024^3, GFLOP/s): " + ", ".join(f"{str(d)[6:]} x {t} thread(s) {v:.1f}"
                                                        for (d, t), v in peak.items()))
    print(f"\nGrid `{args.grid}`: shapes {grid.shapes}, budgets {grid.budgets} FLOPs, windows (shape indices per "
          f"budget) {grid.windows or 'none: every shape at every budget'}, batch sizes {grid.batch_sizes}, "
          f"block {grid.block_size}, precision {specs[0].precision}, {len(specs)} runs, {args.workers} processes x "
          f"1 thread.\n")
    if args.keep and any(Path(args.keep).glob("*.json")):
        parser.error(f"--keep {args.keep} must be empty (a cached run would not be timed)")
    out, wall = timed_sweep(specs, args.workers, args.keep)
    print("\n".join(per_shape_table(specs, out, peak[(torch.float32, 1)])))
    busy = sum(r["seconds"] for r in out.results.values())
    print(f"\nWhole sweep: {wall:.1f} s wall ({wall / 60:.1f} min, incl. pool start) for {len(specs)} runs "
          f"({busy:.1f} s of training summed over runs); failures: {len(out.failures)}.")
    lines, fit = science(out)
    print("\n" + "\n".join(lines))
    pred = PREDICTION_RUNS[args.grid]
    if pred.device == "cpu" or torch.cuda.is_available():
        result = train_scaling_run(pred)
        n, d = result["n_params"], result["tokens"]
        predicted = fit["E"] + fit["A"] / n ** fit["alpha"] + fit["B"] / d ** fit["beta"]
        print(f"\nPrediction run {(pred.n_layer, pred.n_head, pred.n_embd)}, {result['tokens']:,} tokens "
              f"({result['flops_6nd']:.3g} FLOPs, {pred.threads} threads): trained in {result['seconds']:.1f} s; "
              f"loss {result['val_loss']:.4f} vs fitted L(N, D) {predicted:.4f} "
              f"(error {100 * (predicted / result['val_loss'] - 1):+.1f}%).")
    if not args.no_arms:
        print("\nArms (same run, same machine):\n" + "\n".join(arms(args.grid, specs)))


if __name__ == "__main__":
    main()
