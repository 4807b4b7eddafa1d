"""Reference solutions to chapter 11's exercises: a ring all-reduce schedule, ZeRO's memory per rank, and a
tensor-parallel MLP by hand. The conventions are spelt out in :mod:`course_utils.exercises.ch11`. Try the exercises
before reading these.

Answers to the questions in the exercise text.
1. Each rank sends 2(p - 1) chunks of N / p bytes, 2 (p - 1) / p * N in all: N for p = 2, 1.5 N for p = 4, and
   never more than 2 N however many ranks join. So a ring all-reduce's time per rank stays nearly flat in p (it is
   bandwidth-bound), although its 2(p - 1) steps each pay a latency, which is why large rings use trees or
   hierarchies for small messages.
2. 70B parameters, 80 GB per GPU, states only. Stage 3 holds 16 x 70e9 / N_d bytes: it fits from N_d = 14 (80.0 GB at 14
   ranks, exactly at the limit, 86.2 GB at 13; Llama-2-70B's real 68.98e9 parameters need 78.8 GB at 14). In practice
   more ranks: activations, buffers and the CUDA context need room on top of the states. Stages 0, 1 and 2 never fit:
   what they do not shard is already too big, 16 x 70e9 = 1,120 GB (stage 0), the 16-bit weights and gradients 4 x
   70e9 = 280 GB (stage 1) and the 16-bit weights 2 x 70e9 = 140 GB (stage 2), whatever N_d is. That is why
   ZeRO-3/FSDP (or tensor and pipeline parallelism, which split the weights too) is needed for models whose 16-bit
   weights alone exceed a GPU.
3. GELU acts on each hidden feature alone, and column-parallel sharding gives each rank *whole* hidden features
   (complete dot products over all C inputs), so GELU of a rank's slice is exactly that slice of the full GELU. Split
   by columns of ``w_fc`` (input features), each rank would hold a partial sum of every hidden feature, and
   GELU(a + b) != GELU(a) + GELU(b): the ranks would need an all-reduce *before* the activation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ring_schedule(p: int) -> list[list[int]]:
    """Reduce-scatter: at step s rank r sends chunk (r - s) mod p, the one it accumulated at the step before, so after
    p - 1 steps rank r holds the full sum of chunk (r + 1) mod p. All-gather: at step s rank r sends chunk
    (r + 1 - s) mod p, the completed chunk it holds or has just received."""
    reduce_scatter = [[(r - s) % p for r in range(p)] for s in range(p - 1)]
    all_gather = [[(r + 1 - s) % p for r in range(p)] for s in range(p - 1)]
    return reduce_scatter + all_gather


def zero_bytes_per_rank(n_params: int, n_ranks: int, stage: int) -> float:
    """2 + 2 + 12 bytes per parameter; stage 1 shards the 12, stage 2 the 2 + 12, stage 3 all 16."""
    weights, grads, states = 2 * n_params, 2 * n_params, 12 * n_params
    if stage >= 1:
        states /= n_ranks
    if stage >= 2:
        grads /= n_ranks
    if stage >= 3:
        weights /= n_ranks
    return weights + grads + states


def tensor_parallel_mlp_partials(x: torch.Tensor, w_fc: torch.Tensor, w_proj: torch.Tensor, p: int) -> list:
    """Rank r: GELU(x W_fc[rows of r]^T) W_proj[:, columns of r]^T, a (B, T, C) partial; their sum is the MLP."""
    fc_shards = w_fc.chunk(p, dim=0)  # p x (F/p, C): column-parallel, split by output features
    proj_shards = w_proj.chunk(p, dim=1)  # p x (C, F/p): row-parallel, split by input features
    return [F.gelu(x @ a.T) @ b.T for a, b in zip(fc_shards, proj_shards)]  # p x (B, T, C)
