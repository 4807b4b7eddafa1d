"""BERT's masked-language-model (MLM) corruption, and a wrapper that trains the course GPT bidirectionally with it.

Follows Devlin et al., 2019, "BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding",
section 3.1: choose 15% of the positions; of those, replace 80% by ``[MASK]``, 10% by a random token and leave 10%
unchanged; the loss is computed only at the chosen positions. The random and unchanged cases keep the model from
learning that "only ``[MASK]`` positions matter", since at fine-tuning time no ``[MASK]`` appears.

As in BERT's original data pipeline, each row gets exactly ``round(0.15 * n)`` chosen positions (at least one) among
its ``n`` maskable positions, so no batch is ever without a target; the 80/10/10 split is drawn independently per
chosen position. Every random draw comes from the ``torch.Generator`` passed in, so a seed fixes the corruption.

Targets are the original ids at chosen positions and ``-100`` elsewhere, the ``ignore_index`` that
:class:`course_utils.model.gpt.GPT`'s cross-entropy (and Hugging Face's) already skips.

Left out: whole-word masking, span masking (SpanBERT, T5), next-sentence prediction, dynamic masking schedules.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from course_utils.train.batches import sample_batch
from course_utils.model.masks import bidirectional_mask

IGNORE_INDEX = -100
NOT_CHOSEN, MASKED, RANDOM, KEPT = 0, 1, 2, 3  # the codes returned by mlm_plan


def _check_prob(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")


def mlm_plan(shape: tuple[int, int], generator: torch.Generator, mask_prob: float = 0.15, mask_frac: float = 0.8,
             random_frac: float = 0.1, maskable: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, T)`` int8 codes saying what happens at each position: NOT_CHOSEN, MASKED, RANDOM or KEPT.

    ``maskable`` (B, T) bool marks positions that may be chosen (exclude padding and special tokens); default all.
    """
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"shape must be (B, T) with B, T >= 1, got {shape}")
    for name, value in (("mask_prob", mask_prob), ("mask_frac", mask_frac), ("random_frac", random_frac)):
        _check_prob(name, value)
    if mask_frac + random_frac > 1.0 + 1e-9:
        raise ValueError(f"mask_frac + random_frac must be <= 1 (the rest is kept), got {mask_frac + random_frac}")
    B, T = shape
    if maskable is None:
        maskable = torch.ones(B, T, dtype=torch.bool)
    if not isinstance(maskable, torch.Tensor) or maskable.dtype != torch.bool or tuple(maskable.shape) != (B, T):
        raise TypeError(f"maskable must be a boolean tensor of shape {(B, T)}")
    maskable = maskable.cpu()
    n_maskable = maskable.sum(dim=1)  # (B,)
    n_chosen = torch.where(n_maskable > 0, (mask_prob * n_maskable).round().long().clamp(min=1), 0)  # (B,)
    scores = torch.rand(B, T, generator=generator).masked_fill(~maskable, 2.0)  # (B, T); unmaskable sort last
    rank = scores.argsort(dim=1).argsort(dim=1)  # (B, T) rank of each position's score within its row
    chosen = rank < n_chosen[:, None]  # (B, T)
    u = torch.rand(B, T, generator=generator)  # (B, T) one uniform draw decides MASK / RANDOM / KEPT
    plan = torch.full((B, T), NOT_CHOSEN, dtype=torch.int8)
    plan[chosen & (u < mask_frac)] = MASKED
    plan[chosen & (u >= mask_frac) & (u < mask_frac + random_frac)] = RANDOM
    plan[chosen & (u >= mask_frac + random_frac)] = KEPT
    return plan


def mask_tokens(idx: torch.Tensor, mask_id: int, vocab_size: int, generator: torch.Generator,
                mask_prob: float = 0.15, mask_frac: float = 0.8, random_frac: float = 0.1,
                maskable: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt ``idx`` (B, T) the BERT way; return ``(inputs, targets)``, each (B, T) int64.

    Random replacements are drawn uniformly from ``[0, vocab_size)``: pass the number of ordinary tokens, so
    ``[MASK]`` (and other special ids placed after them) is never drawn. ``targets`` holds the original id at the
    chosen positions and ``-100`` elsewhere.
    """
    if not isinstance(idx, torch.Tensor) or idx.dim() != 2 or idx.is_floating_point():
        raise ValueError(f"idx must be a (B, T) integer tensor, got {getattr(idx, 'shape', type(idx).__name__)}")
    if not isinstance(vocab_size, int) or vocab_size < 1:
        raise ValueError(f"vocab_size must be a positive int (ordinary tokens to draw random ones from), "
                         f"got {vocab_size!r}")
    if not isinstance(mask_id, int) or mask_id < 0:
        raise ValueError(f"mask_id must be a non-negative int, got {mask_id!r}")
    plan = mlm_plan(tuple(idx.shape), generator, mask_prob, mask_frac, random_frac,
                    None if maskable is None else maskable.cpu()).to(idx.device)  # (B, T)
    random_ids = torch.randint(vocab_size, tuple(idx.shape), generator=generator).to(idx.device)  # (B, T)
    inputs = idx.long().clone()
    inputs[plan == MASKED] = mask_id
    inputs[plan == RANDOM] = random_ids[plan == RANDOM]
    targets = torch.where(plan != NOT_CHOSEN, idx.long(), IGNORE_INDEX)  # (B, T)
    return inputs, targets


class BidirectionalLM(nn.Module):
    """Runs a :class:`course_utils.model.gpt.GPT` with the all-True mask, so ``train()`` can train it as an encoder.

    ``forward(idx, targets)`` has the GPT's signature; the parameters are the wrapped model's.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        mask = bidirectional_mask(idx.shape[1], device=idx.device)  # (T, T)
        return self.model(idx, targets, attn_mask=mask)


def make_mlm_batch_fn(train_ids: torch.Tensor, val_ids: torch.Tensor, batch_size: int, block_size: int,
                      mask_id: int, vocab_size: int, device: torch.device | str = "cpu",
                      mask_prob: float = 0.15) -> Callable[[str, torch.Generator], tuple[torch.Tensor, torch.Tensor]]:
    """``get_batch(split, generator)`` for :func:`course_utils.train.loop.train` yielding MLM ``(inputs, targets)``.

    Windows are drawn as for next-token training, then corrupted with :func:`mask_tokens` (the same generator
    drives both, so a seed fixes the whole batch).
    """
    splits = {"train": train_ids, "val": val_ids}

    def get_batch(split: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in splits:
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        idx, _ = sample_batch(splits[split], batch_size, block_size, generator)  # (B, T)
        inputs, targets = mask_tokens(idx, mask_id, vocab_size, generator, mask_prob=mask_prob)
        return inputs.to(device), targets.to(device)

    return get_batch
