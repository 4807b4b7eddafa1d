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
al. 2020, "PyTorch Distributed: Experiences on Accelerating Data Parallel Training"). After the first iteration DDP
rebuilds its buckets in the order the gradients arrived, and caps the *first* one at 1 MiB (so that communication
starts early): :func:`ddp_bucket_bytes` reads the buckets in use, after training. The worker installs a
communication hook that does what DDP does by default (divide by p, all-reduce) and counts the bytes it
all-reduces; ``average=False`` leaves the division out, the classic mistake, for tests to show that it is caught.

The equality with one process is checked best in float64 (``DataParallelSetup.dtype``): then the order in which
the two arms add the same numbers changes only the last bits of a float64 (about 1e-16 relative), so any real
mistake stands out by many orders of magnitude; the timings stay in float32.

Left out: gradient clipping and learning-rate schedules (the comparison uses a constant learning rate and no
clipping; both would work the same on every rank), ``no_sync`` for accumulation, uneven inputs (``join``).
"""

from __future__ import annotations

import math
import numbers
import statistics
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel

from course_utils.arguments import check_int, check_real
from course_utils.device import make_generator, synchronize
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
    dtype: torch.dtype = torch.float32  # float64 for equality checks; float32 for timings

    def __post_init__(self) -> None:
        if self.model.dropout != 0:
            raise ValueError(f"dropout must be 0 for an equality check (ranks draw different masks), got "
                             f"{self.model.dropout}")
        if not self.batches:
            raise ValueError("batches is empty: give one (idx, targets) batch per training step")
        if self.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {self.dtype}")

    @property
    def tokens_per_step(self) -> int:
        return self.batches[0][1].numel()


def make_batches(ids: torch.Tensor, steps: int, batch_size: int, block_size: int, seed: int) -> list[Batch]:
    """``steps`` combined (B, T) batches drawn from ``ids`` with one seeded CPU generator (the same on every run)."""
    steps = check_int(steps, "steps", minimum=1)  # 0 and -1 gave []
    generator = make_generator(seed, "cpu")  # checks seed: 2.5 or None failed inside manual_seed
    return [sample_batch(ids, batch_size, block_size, generator) for _ in range(steps)]


def shard_batch(idx: torch.Tensor, targets: torch.Tensor, rank: int, world_size: int) -> Batch:
    """Rank ``rank``'s contiguous 1/world_size of the rows of a (B, T) batch."""
    world_size = check_int(world_size, "world_size", minimum=1)  # 0 divided by zero
    rank = check_int(rank, "rank", minimum=0, maximum=world_size - 1,
                     allowed=f"an int in [0, world_size={world_size})")  # -1: the last shard
    if idx.shape[0] % world_size:
        raise ValueError(f"the combined batch size {idx.shape[0]} is not divisible by world_size={world_size}: "
                         "each rank must get the same number of rows for DDP's average to equal the big batch's "
                         "gradient")
    return split_micro_batches(idx, targets, world_size)[rank]


def build_model(config: GPTConfig, seed: int, device: torch.device | str = "cpu",
                dtype: torch.dtype = torch.float32) -> GPT:
    """The GPT initialised from ``seed`` (in float32, then cast to ``dtype``: the same starting weights for every
    dtype) without touching the caller's global random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT(config)
    return model.to(device=device, dtype=dtype)


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
    model = build_model(setup.model, setup.seed, device, setup.dtype)
    losses, seconds = train_steps(model, make_adamw(model, setup), setup.batches, device)
    return full_state(model), losses, seconds


def tokens_per_second(seconds: list[float], tokens_per_step: int) -> float:
    """Throughput over the steps after the first (the first pays for one-off set-up: allocations, DDP's buckets)."""
    if len(seconds) < 2:
        raise ValueError(f"need at least 2 timed steps (the first is skipped), got {len(seconds)}")
    if not all(isinstance(s, numbers.Real) and 0 < s < math.inf for s in seconds[1:]):
        raise ValueError(f"seconds must be positive finite step times, got {list(seconds)}")
    tokens_per_step = check_int(tokens_per_step, "tokens_per_step", minimum=1)  # NaN or -1 went through
    return tokens_per_step * (len(seconds) - 1) / sum(seconds[1:])


def gradient_bytes(model: nn.Module) -> int:
    """Bytes of one full gradient: what DDP all-reduces every step (a tied weight is one tensor, counted once)."""
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def ring_allreduce_bytes_per_rank(nbytes: int, world_size: int) -> float:
    """Bytes each rank sends in a ring all-reduce of ``nbytes``: 2 (p - 1) / p * nbytes."""
    ranks = check_int(world_size, "world_size", minimum=1)  # 2.5 ranks or NaN bytes gave a number without a word
    size = check_real(nbytes, "nbytes", minimum=0)
    return 2 * (ranks - 1) / ranks * size


def time_all_reduce(nbytes: int, device: torch.device, repeats: int = 5, calls: int = 1) -> float:
    """Seconds per ``dist.all_reduce`` of a float32 tensor of ``nbytes`` (after one warm-up call): the median over
    ``repeats`` rounds, each timing ``calls`` back-to-back calls after a barrier and dividing by ``calls``.

    One call alone is at the mercy of the scheduler: when a rank is descheduled for a moment (two ranks on a shared
    2-core machine), that call waits for it, and single calls of the same size can differ by several times; the
    mean of back-to-back calls spreads such a pause over all of them."""
    repeats, calls = check_int(repeats, "repeats", minimum=1), check_int(calls, "calls", minimum=1)  # True was 1
    tensor = torch.ones(max(1, nbytes // 4), device=device)
    dist.all_reduce(tensor)
    times = []
    for _ in range(repeats):
        dist.barrier()
        start = time.perf_counter()
        for _ in range(calls):
            dist.all_reduce(tensor)
        synchronize(device)
        times.append((time.perf_counter() - start) / calls)
    return statistics.median(times)


def all_reduce_timing_rank(ctx: RankContext, sizes_bytes: list[int], repeats: int = 5,
                           calls: int = 1) -> dict[int, float]:
    """Worker: the all-reduce time (:func:`time_all_reduce`) for each size in ``sizes_bytes`` (for :func:`launch`)."""
    return {n: time_all_reduce(n, ctx.device, repeats, calls) for n in sizes_bytes}


def ddp_bucket_bytes(ddp: DistributedDataParallel) -> list[int]:
    """Bytes of each gradient bucket DDP uses now. Read it after the first step: DDP rebuilds its buckets then (the
    construction-time layout, which ``_get_ddp_logging_data()`` keeps reporting, is no longer the one in use)."""
    return [b.buffer().numel() * b.buffer().element_size() for b in ddp.reducer._get_zeros_like_grad_buckets()]


@dataclass
class _HookState:
    """State of :func:`_counting_allreduce_hook`: the group size, whether to average, the bytes all-reduced."""

    world_size: int
    average: bool
    bytes_all_reduced: int = 0
    calls: int = 0


def _counting_allreduce_hook(state, bucket):
    """DDP's default communication, written out: divide the bucket (a ``dist.GradBucket``) by p (unless
    ``state.average`` is off: the mistake of summing the ranks' gradients) and all-reduce it; count the bytes.
    Returns a ``torch.futures.Future`` of the reduced buffer. (No annotations: with postponed evaluation, DDP's check
    of a hook's signature would reject them as strings.)"""
    buffer = bucket.buffer()
    state.bytes_all_reduced += buffer.numel() * buffer.element_size()
    state.calls += 1
    if state.average:
        buffer.div_(state.world_size)
    return dist.all_reduce(buffer, async_op=True).get_future().then(lambda fut: fut.value()[0])


def counting_ddp(model: nn.Module, ctx: RankContext, average: bool = True
                 ) -> tuple[DistributedDataParallel, _HookState]:
    """``model`` wrapped in DDP on this rank's device, with :func:`_counting_allreduce_hook` installed; returns the
    wrapper and the hook's state (calls and bytes all-reduced so far)."""
    ddp = DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
    hook_state = _HookState(ctx.world_size, average)
    ddp.register_comm_hook(hook_state, _counting_allreduce_hook)
    return ddp, hook_state


def ddp_training_rank(ctx: RankContext, setup: DataParallelSetup, allreduce_repeats: int = 5,
                      allreduce_sizes: tuple[int, ...] = (), average: bool = True, allreduce_calls: int = 1) -> dict:
    """Worker: DDP training of ``setup`` on this rank's shard of every batch, for :func:`launch`.

    Returns the final parameters, the losses of this rank's shards, the seconds per step, the gradient bytes, the
    measured all-reduce time of a tensor that size, DDP's bucket sizes after training (``bucket_bytes``), the bytes
    all-reduced per step (counted by the communication hook), and the all-reduce time of each of
    ``allreduce_sizes`` (bytes), measured in the same launch to save a start-up; the times are
    :func:`time_all_reduce`'s, with ``allreduce_repeats`` rounds of ``allreduce_calls`` back-to-back calls.
    ``average=False`` sums the ranks' gradients instead of averaging them (a deliberate mistake, for tests).
    """
    model = build_model(setup.model, setup.seed, ctx.device, setup.dtype)
    ddp, hook_state = counting_ddp(model, ctx, average)
    shards = [shard_batch(idx, targets, ctx.rank, ctx.world_size) for idx, targets in setup.batches]
    losses, seconds = train_steps(ddp, make_adamw(ddp, setup), shards, ctx.device)
    grad_nbytes = gradient_bytes(model)
    return {"params": full_state(model), "losses": losses, "seconds": seconds, "grad_bytes": grad_nbytes,
            "allreduce_seconds": time_all_reduce(grad_nbytes, ctx.device, allreduce_repeats, allreduce_calls),
            "bucket_bytes": ddp_bucket_bytes(ddp),
            "allreduced_bytes_per_step": hook_state.bytes_all_reduced / len(shards),
            "allreduces_per_step": hook_state.calls / len(shards),
            "allreduce_by_size": all_reduce_timing_rank(ctx, list(allreduce_sizes), allreduce_repeats,
                                                        allreduce_calls)}
