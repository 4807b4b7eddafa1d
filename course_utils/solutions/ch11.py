"""Reference solutions to chapter 11's exercises: a ring all-reduce schedule, ZeRO's memory per rank and the smallest
number of ranks at which each stage fits, and a tensor-parallel MLP by hand. The conventions are spelt out in
:mod:`course_utils.exercises.ch11`. Try the exercises before reading these.

Answers to the questions in the exercise text.
1. (a) S (the gradient's bytes) not divisible by p: cut p chunks of ceil(S / p) or floor(S / p) bytes (or pad the
   tensor to a multiple of p). In each phase a rank sends every chunk but one (which one depends on the schedule:
   with the schedule below, rank r never sends chunk (r + 1) mod p in the reduce-scatter and (r + 2) mod p in the
   all-gather), so it sends 2S minus two chunks, between 2 (S - ceil(S / p)) and 2 (S - floor(S / p)) bytes; as all
   sends of a step happen at once, a step lasts as long as its largest chunk, so the time is that of 2 (p - 1)
   chunks of ceil(S / p) bytes, no more than the even split's plus 2 (p - 1) bytes.
   (b) Reduce to rank 0 and send the sum back: rank 0 receives (p - 1) S bytes and sends (p - 1) S, growing linearly
   with p, while the other ranks' links idle most of the time; the ring's busiest link carries 2 (p - 1) / p S < 2S
   in each direction, whatever p is. (A binary tree, reducing up and broadcasting down without pipelining, takes
   2 log2 p steps instead of 2 (p - 1), but each step moves the whole S bytes over a link instead of S / p: fewer
   latencies, more bytes per step, which is why collective libraries use trees where latency, not bandwidth,
   dominates.)
2. ``smallest_ranks_that_fit(LLAMA2_70B.n_params(), 80e9)`` is [None, None, None, 14]: stage 3 needs
   16 x 68.98e9 / N_d bytes, 84.9 GB at 13 ranks and 78.8 GB at 14. Stages 0, 1 and 2 never fit: what they do not
   shard is already more than 80 GB, 16 x 68.98e9 = 1,103.6 GB (stage 0), the 16-bit weights and gradients
   4 x 68.98e9 = 275.9 GB (stage 1) and the 16-bit weights 2 x 68.98e9 = 138.0 GB (stage 2), whatever N_d is.
   Leaving 20 GB of the 80 for activations (60e9 bytes for the states), stage 3 needs 19 ranks. In practice more:
   activations, buffers and the CUDA context need room on top of the states. That is why ZeRO-3/FSDP (or tensor and
   pipeline parallelism, which split the weights too) is needed for models whose 16-bit weights alone exceed a GPU.
3. (a) Biases: b_fc (F values) is split like the rows of ``w_fc``: rank r adds its F / p slice before GELU, with no
   communication. b_proj (C values) must be added once, to the sum: after the all-reduce (Megatron's row-parallel
   layer adds its bias after the all-reduce) or by one rank only. If every rank added it to its partial, the
   all-reduce would give y + (p - 1) b_proj. Nothing more is all-reduced: b_proj's gradient is the sum over tokens of
   the upstream gradient, which every rank holds in full, and b_fc's gradient slice is local to its rank.
   (b) Row-parallel first (``w_fc`` split by its C input columns): rank r computes, from its slice of x, a partial
   sum of *every* hidden feature, and GELU(a + b) != GELU(a) + GELU(b), so the (B, T, F) pre-activations must be
   all-reduced before GELU: F / C times the bytes of Megatron's one (B, T, C) all-reduce (4x for F = 4C). The
   column-parallel second layer then leaves each rank a slice of y's C features, so an all-gather of y follows
   (and x must be split first). Megatron's order needs one (B, T, C) all-reduce and nothing between the layers.
"""

from __future__ import annotations

import math

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


def smallest_ranks_that_fit(n_params: int, gpu_bytes: float) -> list:
    """Stage by stage, from :func:`zero_bytes_per_rank`: unsharded + sharded / N_d <= gpu_bytes gives
    N_d >= sharded / (gpu_bytes - unsharded), rounded up; None when the unsharded part alone leaves no room."""
    answer = []
    for stage in range(4):
        unsharded = zero_bytes_per_rank(n_params, math.inf, stage)  # the sharded part vanishes over infinitely many
        sharded = zero_bytes_per_rank(n_params, 1, stage) - unsharded
        if unsharded + sharded <= gpu_bytes:
            answer.append(1)
        elif unsharded >= gpu_bytes:
            answer.append(None)
        else:
            answer.append(math.ceil(sharded / (gpu_bytes - unsharded)))
    return answer


def tensor_parallel_mlp_partials(x: torch.Tensor, w_fc: torch.Tensor, w_proj: torch.Tensor, p: int) -> list:
    """Rank r: GELU(x W_fc[rows of r]^T) W_proj[:, columns of r]^T, a (B, T, C) partial; their sum is the MLP."""
    fc_shards = w_fc.chunk(p, dim=0)  # p x (F/p, C): column-parallel, split by output features
    proj_shards = w_proj.chunk(p, dim=1)  # p x (C, F/p): row-parallel, split by input features
    return [F.gelu(x @ a.T) @ b.T for a, b in zip(fc_shards, proj_shards)]  # p x (B, T, C)
