"""Activation checkpointing for the course GPT: keep each block's input, recompute its inside during backward.

Backpropagation needs, for every operation, tensors from the forward pass (a matmul's input, GELU's input, the
attention weights or their log-sum-exp). Kept for all L blocks they grow as L * B * T * (c * C + attention terms).
Checkpointing a block (T. Chen et al., 2016, "Training Deep Nets with Sublinear Memory Cost"; in transformers,
Korthikanti et al., 2022, "Reducing Activation Recomputation in Large Transformer Models", call it *full*
recomputation) keeps only its input (B, T, C) and runs its forward a second time, inside backward, to rebuild the
rest: memory falls to about one block's worth plus L inputs, at the price of one more forward pass per step
(about a third more compute, since backward costs about twice a forward).

:func:`activation_checkpointing` is a context manager that wraps the chosen blocks of a GPT in
:class:`CheckpointedBlock` (``torch.utils.checkpoint.checkpoint`` with ``use_reentrant=False``, the variant PyTorch
recommends) and restores the plain blocks on exit; ``course_utils/model/gpt.py`` is not modified, the parameters
are the same tensors, and only inside the ``with`` do their names gain a level (``blocks.1.block.ln_1.weight``).
:func:`checkpoint_costs` measures what checkpointing saves (bytes autograd keeps for backward, counted by
:class:`course_utils.parallel.activations.SavedTensorMeter`; ``checkpoint`` saves each region's input through
autograd, so the meter sees it) and what it costs (seconds per forward+backward) on one batch, beside the plain
forward pass alone: its share of a plain step is what one more forward pass should cost on this machine (the
"about a third" is a FLOP count; measured time need not follow it), so only time added beyond that share is the
checkpoint machinery's own. The three arms are timed in interleaved rounds (the order reversed every other round),
and :class:`CheckpointCost` keeps every round, so that :attr:`CheckpointCost.recompute_verdict` can say, by the
ranges rule of :mod:`course_utils.evaluate.timing`, whether every checkpointed round took longer than every round's
plain step plus forward pass (the ranges do not overlap), every one less, or the ranges overlap (not separable from
the run's timing noise).
Between forward and backward only the block inputs remain; during backward one block at a time is recomputed, so
the peak adds one block's activations. Left out: selective recomputation (only the attention core), offloading
activations to host memory, and checkpointing inside a block.
"""

from __future__ import annotations

import numbers
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from course_utils.arguments import check_int
from course_utils.device import synchronize
from course_utils.evaluate.timing import ranges_overlap
from course_utils.parallel.activations import SavedTensorMeter


class CheckpointedBlock(nn.Module):
    """A transformer block whose forward runs under ``torch.utils.checkpoint.checkpoint``: autograd keeps only the
    block's input and recomputes everything else during backward. Same outputs and gradients as ``block``."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        if not torch.is_grad_enabled():  # evaluation: nothing is saved anyway, skip the wrapper
            return self.block(x, attn_mask)
        return checkpoint(self.block, x, attn_mask, use_reentrant=False)  # (B, T, C)


def _block_indices(model: nn.Module, blocks: Iterable[int] | None) -> list[int]:
    if not isinstance(getattr(model, "blocks", None), nn.ModuleList):
        raise TypeError("activation checkpointing expects the course GPT (a model with a .blocks ModuleList)")
    n = len(model.blocks)
    chosen = list(range(n)) if blocks is None else sorted(set(blocks))
    bad = [i for i in chosen if isinstance(i, bool) or not isinstance(i, numbers.Integral) or not 0 <= i < n]
    if bad:  # numpy ints are ints too
        raise ValueError(f"block indices must be ints in [0, {n}), got {bad}")
    chosen = [int(i) for i in chosen]
    if any(isinstance(b, CheckpointedBlock) for b in model.blocks):
        raise ValueError("this model's blocks are already checkpointed (nested activation_checkpointing)")
    return chosen


@contextmanager
def activation_checkpointing(model: nn.Module, blocks: Iterable[int] | None = None) -> Iterator[nn.Module]:
    """Inside the ``with``, the given blocks of ``model`` (default: all) are checkpointed; on exit the original
    blocks are back, so ``state_dict`` names are the usual ones outside it (inside, a wrapped block's names read
``blocks.i.block.*``; save checkpoints outside the ``with``). A backward pass may run after the ``with`` ends: the
    recomputation calls the block itself, not the wrapper list."""
    chosen = _block_indices(model, blocks)
    plain = model.blocks
    model.blocks = nn.ModuleList(CheckpointedBlock(b) if i in chosen else b for i, b in enumerate(plain))
    try:
        yield model
    finally:
        model.blocks = plain


RECOMPUTE_VERDICTS = ("more than the recomputation", "not separable", "less than the recomputation")


@dataclass(frozen=True)
class CheckpointCost:
    """Saved bytes and step times with and without checkpointing every block, for one batch shape. The times are
    kept per round (seconds, round ``i`` of every arm timed back to back); the ``*_seconds`` are their medians."""

    batch_size: int
    seq_len: int
    plain_bytes: int
    checkpointed_bytes: int
    plain_rounds: tuple[float, ...]  # seconds of forward + backward, one per round
    checkpointed_rounds: tuple[float, ...]
    forward_rounds: tuple[float, ...]  # the plain forward pass alone (with autograd recording, as recomputed)

    def __post_init__(self) -> None:
        rounds = (self.plain_rounds, self.checkpointed_rounds, self.forward_rounds)
        if not rounds[0] or any(len(r) != len(rounds[0]) for r in rounds):
            raise ValueError(f"every arm needs the same number (>= 1) of rounds, got {[len(r) for r in rounds]}")
        if not all(t > 0 for r in rounds for t in r):
            raise ValueError("round times must be positive seconds")

    @property
    def plain_seconds(self) -> float:
        """Median seconds of a plain forward + backward."""
        return statistics.median(self.plain_rounds)

    @property
    def checkpointed_seconds(self) -> float:
        """Median seconds of a checkpointed forward + backward."""
        return statistics.median(self.checkpointed_rounds)

    @property
    def forward_seconds(self) -> float:
        """Median seconds of the plain forward pass alone."""
        return statistics.median(self.forward_rounds)

    @property
    def memory_saved(self) -> float:
        """Fraction of the saved activations that checkpointing removes."""
        return 1.0 - self.checkpointed_bytes / self.plain_bytes

    @property
    def time_added(self) -> float:
        """Extra time per step as a fraction of the plain step (medians)."""
        return self.checkpointed_seconds / self.plain_seconds - 1.0

    @property
    def forward_share(self) -> float:
        """The plain forward pass's share of a plain forward+backward (medians): what recomputing it should add
        (slightly more than the blocks' recomputation, which leaves out the output layer)."""
        return self.forward_seconds / self.plain_seconds

    @property
    def expected_rounds(self) -> tuple[float, ...]:
        """Per round, a plain step plus one more forward pass: what a checkpointed step should take if the
        recomputation were all it added."""
        return tuple(p + f for p, f in zip(self.plain_rounds, self.forward_rounds))

    @property
    def slower_every_round(self) -> bool:
        """True when the checkpointed range (min to max over the rounds) lies wholly above the plain range."""
        return min(self.checkpointed_rounds) > max(self.plain_rounds)

    @property
    def recompute_verdict(self) -> str:
        """One of :data:`RECOMPUTE_VERDICTS`: the checkpointed range lies wholly above the range of
        :attr:`expected_rounds` (the checkpoint machinery costs time of its own), wholly below it (less than a whole
        forward pass was added), or the two ranges overlap (not separable from this run's timing noise)."""
        if ranges_overlap(self.checkpointed_rounds, self.expected_rounds):
            return RECOMPUTE_VERDICTS[1]
        above = min(self.checkpointed_rounds) > max(self.expected_rounds)
        return RECOMPUTE_VERDICTS[0] if above else RECOMPUTE_VERDICTS[2]


def saved_activation_bytes(model: nn.Module, idx: torch.Tensor, targets: torch.Tensor) -> int:
    """Bytes autograd keeps for backward after one forward pass with a loss (parameters excluded). Under
    checkpointing this includes each checkpointed block's input, which ``checkpoint`` saves through autograd."""
    with SavedTensorMeter(model) as meter:
        model(idx, targets)
    return meter.bytes


def _forward_backward_seconds(model: nn.Module, idx: torch.Tensor, targets: torch.Tensor) -> float:
    synchronize(idx.device)
    start = time.perf_counter()
    _, loss = model(idx, targets)
    loss.backward()
    synchronize(idx.device)
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def _forward_seconds(model: nn.Module, idx: torch.Tensor, targets: torch.Tensor) -> float:
    synchronize(idx.device)
    start = time.perf_counter()
    _, loss = model(idx, targets)  # the graph is recorded, as in the recomputation, and freed unused
    synchronize(idx.device)
    elapsed = time.perf_counter() - start
    del loss
    return elapsed


def checkpoint_costs(model: nn.Module, idx: torch.Tensor, targets: torch.Tensor, repeats: int = 3) -> CheckpointCost:
    """Measure one batch with and without checkpointing all blocks: bytes saved for backward (counted, exact) and
    ``repeats`` rounds of timing, each round one plain forward+backward, one checkpointed forward+backward and one
    plain forward pass alone, interleaved so that a slow spell of the machine hits every arm (the order reversed in
    every other round, so that no arm always runs first), after one untimed warm-up round."""
    repeats = check_int(repeats, "repeats", minimum=1)
    if idx.dim() != 2 or targets.shape != idx.shape:
        raise ValueError(f"idx and targets must both be (B, T), got {tuple(idx.shape)} and {tuple(targets.shape)}")
    plain_bytes = saved_activation_bytes(model, idx, targets)
    with activation_checkpointing(model):
        checkpointed_bytes = saved_activation_bytes(model, idx, targets)
    seconds: dict[str, list[float]] = {"plain": [], "checkpointed": [], "forward": []}
    for round_ in range(repeats + 1):  # round 0 warms up every arm
        for arm in (list(seconds) if round_ % 2 == 0 else list(reversed(seconds))):
            if arm == "checkpointed":
                with activation_checkpointing(model):
                    s = _forward_backward_seconds(model, idx, targets)
            elif arm == "plain":
                s = _forward_backward_seconds(model, idx, targets)
            else:
                s = _forward_seconds(model, idx, targets)
            if round_:
                seconds[arm].append(s)
    return CheckpointCost(idx.shape[0], idx.shape[1], plain_bytes, checkpointed_bytes,
                          *(tuple(seconds[arm]) for arm in ("plain", "checkpointed", "forward")))
