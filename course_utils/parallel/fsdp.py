"""Fully sharded data parallelism with FSDP2 (``torch.distributed.fsdp.fully_shard``), and its memory per rank.

DDP keeps a full copy of the parameters, gradients and AdamW states on every rank. FSDP (the ZeRO-3 idea of
Rajbhandari et al. 2020, "ZeRO: Memory Optimizations Toward Training Trillion Parameter Models"; PyTorch's FSDP,
Zhao et al. 2023, "PyTorch FSDP: Experiences on Scaling Fully Sharded Data Parallel") keeps only 1/p of each on a
rank: every parameter is a ``DTensor`` sharded along its first dimension. Before a block's forward (and again before
its backward) the block's full parameters are all-gathered, used, and freed; its gradients are reduce-scattered so
each rank keeps (and updates) only its shard. The optimizer therefore builds AdamW's states from the shards too.

:func:`local_state_bytes` counts, on one rank, the bytes of the tensors that rank really holds (``to_local()`` of a
DTensor: the shard) for parameters, gradients and AdamW's two moments. That is a documented CPU measurement of the
*persistent* state; it leaves out the transient all-gathered block (one block's full parameters at a time), the
padding FSDP2 adds to make shards equal, activations, and allocator overhead, which a GPU's
``torch.cuda.max_memory_allocated`` would include.

:func:`fsdp_training_rank` shards the course's GPT one ``fully_shard`` per transformer block plus one for the root
(embeddings, final LayerNorm, the tied head), trains it on the rank's shard of each batch, and returns the full
parameters (gathered) so the caller can compare them with DDP and single-process training.
Left out: mixed-precision policies, CPU offload, ``reshard_after_forward=False`` (ZeRO-2-like), checkpointing.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel

from course_utils.parallel.ddp import (DataParallelSetup, build_model, full_state, make_adamw, shard_batch,
                                       train_steps)
from course_utils.parallel.launch import RankContext


def _local_bytes(tensors) -> int:
    total = 0
    for t in tensors:
        if t is None:
            continue
        local = t.to_local() if isinstance(t, DTensor) else t
        total += local.numel() * local.element_size()
    return total


def local_state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Bytes this rank holds for ``parameters``, ``gradients`` and ``adam_moments`` (exp_avg + exp_avg_sq),
    counting a sharded DTensor by its local shard. Call after an optimizer step, before zeroing the gradients."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not optimizer.state:
        raise ValueError("the optimizer has no state yet: measure after at least one optimizer.step()")
    states = [optimizer.state[p] for p in params if p in optimizer.state]
    return {"parameters": _local_bytes(params), "gradients": _local_bytes(p.grad for p in params),
            "adam_moments": _local_bytes(s[k] for s in states for k in ("exp_avg", "exp_avg_sq") if k in s)}


def shard_gpt(model: nn.Module, device_type: str, world_size: int) -> nn.Module:
    """Apply FSDP2 to the GPT in place: each block is one unit of all-gather, the root holds the rest."""
    mesh = init_device_mesh(device_type, (world_size,))
    for block in model.blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def fsdp_training_rank(ctx: RankContext, setup: DataParallelSetup) -> dict:
    """Worker: train ``setup`` once with DDP and once with FSDP2 (same init, same shards); return both runs' final
    parameters, losses, seconds per step and the bytes this rank holds in each (for :func:`launch`)."""
    shards = [shard_batch(idx, targets, ctx.rank, ctx.world_size) for idx, targets in setup.batches]
    out = {}
    ddp_model = build_model(setup.model, setup.seed, ctx.device)
    ddp = DistributedDataParallel(ddp_model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
    optimizer = make_adamw(ddp, setup)
    losses, seconds = train_steps(ddp, optimizer, shards, ctx.device)
    out["ddp"] = {"params": full_state(ddp_model), "losses": losses, "seconds": seconds,
                  "bytes": local_state_bytes(ddp_model, optimizer)}
    del ddp, ddp_model, optimizer
    model = shard_gpt(build_model(setup.model, setup.seed, ctx.device), ctx.device.type, ctx.world_size)
    optimizer = make_adamw(model, setup)
    losses, seconds = train_steps(model, optimizer, shards, ctx.device)
    out["fsdp"] = {"params": full_state(model), "losses": losses, "seconds": seconds,
                   "bytes": local_state_bytes(model, optimizer)}
    return out
