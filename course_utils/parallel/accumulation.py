"""Gradient accumulation: the gradient of one large batch, computed a micro-batch at a time.

Gradients add: for a loss that is a mean over N counted tokens, L = (1/N) sum_i l_i, splitting the batch into
micro-batches m with N_m counted tokens each gives grad L = sum_m (N_m / N) grad L_m, where L_m is micro-batch m's
own mean loss. So backward of (N_m / N) * L_m for each micro-batch, one after another, accumulates exactly the
big batch's gradient in ``.grad`` while only one micro-batch's activations exist at a time. With equal micro-batches
and no ignored targets N_m / N = 1 / n_micro (the familiar ``loss / n_micro``); with targets set to -100 (masked
prompts in SFT, padding) the micro-batches count different numbers of tokens, ``loss / n_micro`` would weight a
token in a sparse micro-batch more than one in a dense micro-batch, and only the token-count weighting gives the
big batch's gradient. :func:`accumulate_gradients` uses the token counts, which covers both cases.

The equality is exact in real arithmetic; in floating point the sums run in another order, so float32 gradients
agree to rounding (a relative difference of order 1e-6), float64 ones to about 1e-15 (tests check both).
Left out: the optimizer step (callers step once after accumulating), DDP's ``no_sync`` (which skips the all-reduce
on all but the last micro-batch), and layers whose output depends on the whole batch (BatchNorm; the GPT has none).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from course_utils.arguments import check_int

IGNORE_INDEX = -100  # targets with this value are not counted (the GPT's cross-entropy skips them)


def split_micro_batches(idx: torch.Tensor, targets: torch.Tensor,
                        n_micro: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Split (B, T) ``idx`` and ``targets`` along the batch into ``n_micro`` equal (B / n_micro, T) pieces."""
    n_micro = check_int(n_micro, "n_micro", minimum=1)
    if idx.dim() != 2 or targets.shape != idx.shape:
        raise ValueError(f"idx and targets must both be (B, T), got {tuple(idx.shape)} and {tuple(targets.shape)}")
    batch = idx.shape[0]
    if batch % n_micro:
        raise ValueError(f"batch size {batch} is not divisible by n_micro={n_micro}; choose n_micro among the "
                         f"divisors of {batch}: {[d for d in range(1, batch + 1) if batch % d == 0]}")
    return list(zip(idx.chunk(n_micro), targets.chunk(n_micro)))


def accumulate_gradients(model: nn.Module, idx: torch.Tensor, targets: torch.Tensor, n_micro: int) -> float:
    """Add to ``.grad`` the gradient of the model's mean loss over the whole batch, one micro-batch at a time;
    return that mean loss. Micro-batch m's loss is weighted by N_m / N, its share of the counted (non -100) targets.

    Like ``loss.backward()``, it *adds* to existing ``.grad``: zero them first for a fresh step. A micro-batch with
    no counted target contributes nothing (its mean loss would be 0/0).
    """
    pieces = split_micro_batches(idx, targets, n_micro)
    total = int((targets != IGNORE_INDEX).sum())
    if total == 0:
        raise ValueError("every target is ignore_index (-100): the batch has no token to compute a loss on")
    mean_loss = 0.0
    for micro_idx, micro_targets in pieces:
        counted = int((micro_targets != IGNORE_INDEX).sum())
        if counted == 0:
            continue
        _, loss = model(micro_idx, micro_targets)  # mean over this micro-batch's counted targets
        weighted = loss * (counted / total)
        weighted.backward()
        mean_loss += weighted.item()
    return mean_loss
