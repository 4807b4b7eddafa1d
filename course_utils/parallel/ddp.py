"""Data parallelism with ``torch.nn.parallel.DistributedDataParallel`` (DDP), checked against one process.

Every rank holds a full copy of the model and runs forward and backward on its own 1/p of the combined batch; DDP
all-reduces (averages) the gradients during backward, so every rank applies the *same* AdamW update and the copies
never drift apart. For a loss that is a mean over equally many tokens per rank, the average of the p shard
gradients is exactly the gradient of the combined batch (the same identity as gradient accumulation,
:mod:`course_utils.parallel.accumulation`), so p ranks on B/p rows each follow single-process training on B rows up
to floating-point rounding: :func:`ddp_training_rank` returns the parameters for the caller to compare.

Communication: a ring all-reduce of S bytes sends (and receives) 2 (p - 1) / p * S bytes per rank (a reduce-scatter
then an all-gather, Patarasuk & Yuan 2009, "Bandwidth optimal all-reduce algorithms for clusters of workstations").
DDP groups gradients into buckets (``bucket_cap_mb``, 25 MiB by default) and starts each bucket's all-reduce as
soon as its gradients are ready, overlapping communication with the rest of backward (Li et
al. 2020, "PyTorch Distributed: Experiences on Accelerating Data Parallel Training").

Left out: gradient clipping and learning-rate schedules (the comparison uses a constant learning rate and no
clipping; both would work the same on every rank), ``no_sync`` for accumulation, uneven inputs (``join``).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel

from course_utils.model.gpt import GPT, GPTConfig
from course_utils.parallel.accumulation import split_micro_batches
from course_utils.parallel.launch import RankContext
from course_utils.train.batches import sample_batch
from course_utils.train.loop import TrainConfig, make_optimizer

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class DataParallelSetup:
    """One data-parallel experiment: the model, the combined batches (one per step), AdamW's settings, the seed."""

    model: GPTConfig
    batches: list[Batch]
    lr: float = 1e-3
    weight_decay: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.model.dropout != 0:
            raise ValueError(f"dropout must be 0 for an equality check (ranks draw different masks), got "
                             f"{self.model.dropout}")
        if not self.batches:
            raise ValueError("batches is empty: give one (idx, targets) batch per training step")

    @property
    def tokens_per_step(self) -> int:
        return self.batches[0][1].numel()


def make_batches(ids: torch.Tensor, steps: int, batch_size: int, block_size: int, seed: int) -> list[Batch]:
    """``steps`` combined (B, T) batches drawn from ``ids`` with one seeded CPU generator (the same on every run)."""
    generator = torch.Generator().manual_seed(seed)
    return [sample_batch(ids, batch_size, block_size, generator) for _ in range(steps)]


def shard_batch(idx: torch.Tensor, targets: torch.Tensor, rank: int, world_size: int) -> Batch:
    """Rank ``rank``'s contiguous 1/world_size of the rows of a (B, T) batch."""
    if idx.shape[0] % world_size:
        raise ValueError(f"the combined batch size {idx.shape[0]} is not divisible by world_size={world_size}: "
                         "each rank must get the same number of rows for DDP's average to equal the big batch's "
                         "gradient")
    return split_micro_batches(idx, targets, world_size)[rank]


def build_model(config: GPTConfig, seed: int, device: torch.device | str = "cpu") -> GPT:
    """The GPT initialised from ``seed`` without touching the caller's global random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT(config)
    return model.to(device)


def make_adamw(model: nn.Module, setup: DataParallelSetup) -> torch.optim.AdamW:
    """The course's AdamW (decay on matrices only), constant learning rate."""
    config = TrainConfig(max_steps=len(setup.batches), lr=setup.lr, min_lr=setup.lr, warmup_steps=0,
                         weight_decay=setup.weight_decay, grad_clip=0.0, progress=False)
    return make_optimizer(model, config)


def train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, batches: list[Batch],
                device: torch.device | str = "cpu") -> tuple[list[float], list[float]]:
    """Plain AdamW steps on ``batches``; returns the losses and the seconds of each step."""
    losses, seconds = [], []
    for idx, targets in batches:
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        _, loss = model(idx.to(device), targets.to(device))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())  # .item() waits for the device, so the step's time is complete
        seconds.append(time.perf_counter() - start)
    return losses, seconds


def full_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter as one full CPU tensor (gathering FSDP's shards), by name, for comparisons."""
    out = {}
    for name, p in model.named_parameters():
        tensor = p.full_tensor() if isinstance(p, DTensor) else p
        out[name.removeprefix("module.")] = tensor.detach().cpu().clone()
    return out


def max_abs_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Largest |a - b| over all parameters of two states with the same names."""
    if a.keys() != b.keys():
        raise ValueError(f"states differ in names: {sorted(a.keys() ^ b.keys())}")
    return max((a[k] - b[k]).abs().max().item() for k in a)


def train_single_process(setup: DataParallelSetup, device: torch.device | str = "cpu"
                         ) -> tuple[dict[str, torch.Tensor], list[float], list[float]]:
    """The reference: one process, the combined batches; returns (parameters, losses, seconds per step)."""
    model = build_model(setup.model, setup.seed, device)
    losses, seconds = train_steps(model, make_adamw(model, setup), setup.batches, device)
    return full_state(model), losses, seconds


def tokens_per_second(seconds: list[float], tokens_per_step: int) -> float:
    """Throughput over the steps after the first (the first pays for one-off set-up: allocations, DDP's buckets)."""
    if len(seconds) < 2:
        raise ValueError(f"need at least 2 timed steps (the first is skipped), got {len(seconds)}")
    return tokens_per_step * (len(seconds) - 1) / sum(seconds[1:])


def gradient_bytes(model: nn.Module) -> int:
    """Bytes of one full gradient: what DDP all-reduces every step (a tied weight is one tensor, counted once)."""
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def ring_allreduce_bytes_per_rank(nbytes: int, world_size: int) -> float:
    """Bytes each rank sends in a ring all-reduce of ``nbytes``: 2 (p - 1) / p * nbytes."""
    if world_size < 1 or nbytes < 0:
        raise ValueError(f"need world_size >= 1 and nbytes >= 0, got {world_size} and {nbytes}")
    return 2 * (world_size - 1) / world_size * nbytes


def time_all_reduce(nbytes: int, device: torch.device, repeats: int = 5) -> float:
    """Median seconds of ``dist.all_reduce`` of a float32 tensor of ``nbytes`` (after one warm-up call)."""
    tensor = torch.ones(max(1, nbytes // 4), device=device)
    dist.all_reduce(tensor)
    times = []
    for _ in range(repeats):
        dist.barrier()
        start = time.perf_counter()
        dist.all_reduce(tensor)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def all_reduce_timing_rank(ctx: RankContext, sizes_bytes: list[int], repeats: int = 5) -> dict[int, float]:
    """Worker: the median all-reduce time for each size in ``sizes_bytes`` (for :func:`launch`)."""
    return {n: time_all_reduce(n, ctx.device, repeats) for n in sizes_bytes}


def ddp_training_rank(ctx: RankContext, setup: DataParallelSetup, allreduce_repeats: int = 5,
                      allreduce_sizes: tuple[int, ...] = ()) -> dict:
    """Worker: DDP training of ``setup`` on this rank's shard of every batch, for :func:`launch`.

    Returns the final parameters, the losses of this rank's shards, the seconds per step, the gradient bytes, the
    measured all-reduce time of a tensor that size, DDP's bucket sizes, and the all-reduce time of each of
    ``allreduce_sizes`` (bytes), measured in the same launch to save a start-up.
    """
    model = build_model(setup.model, setup.seed, ctx.device)
    ddp = DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
    shards = [shard_batch(idx, targets, ctx.rank, ctx.world_size) for idx, targets in setup.batches]
    losses, seconds = train_steps(ddp, make_adamw(ddp, setup), shards, ctx.device)
    grad_nbytes = gradient_bytes(model)
    buckets = ddp._get_ddp_logging_data().get("bucket_sizes", "")  # private but stable: DDP's own bucket report
    return {"params": full_state(model), "losses": losses, "seconds": seconds, "grad_bytes": grad_nbytes,
            "allreduce_seconds": time_all_reduce(grad_nbytes, ctx.device, allreduce_repeats),
            "bucket_sizes": buckets,
            "allreduce_by_size": all_reduce_timing_rank(ctx, list(allreduce_sizes), allreduce_repeats)}
