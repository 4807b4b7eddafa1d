"""Fully sharded data parallelism with FSDP2 (``torch.distributed.fsdp.fully_shard``), and its memory per rank.

DDP keeps a full copy of the parameters, gradients and AdamW states on every rank. FSDP (the ZeRO-3 idea of
Rajbhandari et al. 2020, "ZeRO: Memory Optimizations Toward Training Trillion Parameter Models"; PyTorch's FSDP,
Zhao et al. 2023, "PyTorch FSDP: Experiences on Scaling Fully Sharded Data Parallel") keeps only 1/p of each on a
rank: every parameter is a ``DTensor`` sharded along its first dimension. Before a block's forward (and again before
its backward) the block's full parameters are all-gathered, used, and freed; its gradients are reduce-scattered so
each rank keeps (and updates) only its shard. The optimizer therefore builds AdamW's states from the shards too.

:func:`course_utils.parallel.memory.measured_state_bytes` counts, on one rank, the bytes of the tensors that rank
really holds (``to_local()`` of a DTensor: the shard) for weights, gradients and AdamW's two moments. That is a count
of the *persistent* state, not a measurement of memory; it leaves out the transient all-gathered parameters (one
block's full parameters in forward, up to two in backward, where FSDP2 prefetches the next block, and the root's,
which FSDP2 keeps gathered from forward to backward), the padding FSDP2 adds to make shards equal, activations, and
allocator overhead, which a GPU's ``torch.cuda.max_memory_allocated`` would include.

:func:`fsdp_training_rank` shards the course's GPT one ``fully_shard`` per transformer block plus one for the root
(embeddings, final LayerNorm, the tied head), trains it on the rank's shard of each batch, and returns the full
parameters (gathered) so the caller can compare them with DDP and single-process training.
:func:`count_collectives` counts, on one rank, the full-size bytes of every all-gather and reduce-scatter FSDP2
starts (by wrapping ``torch.distributed``'s functions while the block runs), so one FSDP2 step's traffic can be
printed beside one DDP step's (the ZeRO paper counts 3 (p - 1) / p against 2 (p - 1) / p of the model: 1.5x).
Left out: mixed-precision policies, CPU offload, ``reshard_after_forward=False`` (ZeRO-2-like), checkpointing.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

from course_utils.parallel.ddp import (DataParallelSetup, build_model, counting_ddp, full_state, make_adamw,
                                       shard_batch, train_steps)
from course_utils.parallel.launch import RankContext
from course_utils.parallel.memory import measured_state_bytes


COUNTED_COLLECTIVES = ("all_gather_single", "reduce_scatter_single", "all_gather_into_tensor", "reduce_scatter_tensor",
                       "all_reduce")


@contextmanager
def count_collectives():
    """Count the calls and the full-size bytes (the largest tensor argument: the gathered output of an all-gather,
    the input of a reduce-scatter, the tensor of an all-reduce) of ``torch.distributed``'s collectives called from
    Python inside the block. Yields a dict ``{name: [calls, bytes]}`` filled as calls happen; restores the functions
    afterwards. (DDP's C++ reducer bypasses these functions; its traffic is counted by a communication hook.)"""
    counts: dict[str, list[int]] = {}
    originals = {name: getattr(dist, name) for name in COUNTED_COLLECTIVES if hasattr(dist, name)}

    def wrap(name, original):
        def counted(*args, **kwargs):
            sizes = [a.numel() * a.element_size() for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
            entry = counts.setdefault(name, [0, 0])
            entry[0] += 1
            entry[1] += max(sizes, default=0)
            return original(*args, **kwargs)
        return counted

    try:
        for name, original in originals.items():
            setattr(dist, name, wrap(name, original))
        yield counts
    finally:
        for name, original in originals.items():
            setattr(dist, name, original)


def ring_bytes_sent_per_rank(counts: dict[str, list[int]], world_size: int) -> float:
    """Bytes one rank sends for the counted collectives in a ring: (p - 1) / p of the full size for an all-gather or
    a reduce-scatter, 2 (p - 1) / p for an all-reduce."""
    share = (world_size - 1) / world_size
    return sum(nbytes * share * (2 if name == "all_reduce" else 1) for name, (_, nbytes) in counts.items())


def shard_gpt(model: nn.Module, device_type: str, world_size: int) -> nn.Module:
    """Apply FSDP2 to the GPT in place: each block is one unit of all-gather, the root holds the rest."""
    mesh = init_device_mesh(device_type, (world_size,))
    for block in model.blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def _train_fsdp(ctx: RankContext, setup: DataParallelSetup, shards: list) -> dict:
    model = shard_gpt(build_model(setup.model, setup.seed, ctx.device, setup.dtype), ctx.device.type, ctx.world_size)
    optimizer = make_adamw(model, setup)
    with count_collectives() as counts:
        losses, seconds = train_steps(model, optimizer, shards, ctx.device)
    per_step = {name: [calls / len(shards), nbytes / len(shards)] for name, (calls, nbytes) in counts.items()}
    return {"params": full_state(model), "losses": losses, "seconds": seconds,
            "bytes": measured_state_bytes(model, optimizer), "collectives_per_step": per_step,
            "sent_bytes_per_step": ring_bytes_sent_per_rank(per_step, ctx.world_size)}


def fsdp_training_rank(ctx: RankContext, setup: DataParallelSetup,
                       equality_setup: DataParallelSetup | None = None) -> dict:
    """Worker: train ``setup`` once with DDP and once with FSDP2 (same init, same shards); return both runs' final
    parameters, losses, seconds per step, the bytes this rank holds in each, and the collective bytes of one step
    of each (for :func:`launch`). With ``equality_setup`` (e.g. the same run in float64), FSDP2 also trains that,
    and its parameters come back as ``fsdp_equality_params``."""
    shards = [shard_batch(idx, targets, ctx.rank, ctx.world_size) for idx, targets in setup.batches]
    out = {}
    ddp_model = build_model(setup.model, setup.seed, ctx.device, setup.dtype)
    ddp, hook_state = counting_ddp(ddp_model, ctx)  # DDP's own all-reduce, counted
    optimizer = make_adamw(ddp, setup)
    losses, seconds = train_steps(ddp, optimizer, shards, ctx.device)
    per_step = {"all_reduce": [hook_state.calls / len(shards), hook_state.bytes_all_reduced / len(shards)]}
    out["ddp"] = {"params": full_state(ddp_model), "losses": losses, "seconds": seconds,
                  "bytes": measured_state_bytes(ddp_model, optimizer), "collectives_per_step": per_step,
                  "sent_bytes_per_step": ring_bytes_sent_per_rank(per_step, ctx.world_size)}
    del ddp, ddp_model, optimizer
    out["fsdp"] = _train_fsdp(ctx, setup, shards)
    if equality_setup is not None:
        check_shards = [shard_batch(i, t, ctx.rank, ctx.world_size) for i, t in equality_setup.batches]
        out["fsdp_equality_params"] = _train_fsdp(ctx, equality_setup, check_shards)["params"]
    return out
