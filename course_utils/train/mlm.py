"""BERT's masked-language-model (MLM) corruption, and a wrapper that trains the course GPT bidirectionally with it.

Follows Devlin et al., 2019, "BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding",
section 3.1: choose 15% of the positions; of those, replace 80% by ``[MASK]``, 10% by a random token and leave 10%
unchanged; the loss is computed only at the chosen positions. The random and unchanged cases keep the model from
learning that "only ``[MASK]`` positions matter", since at fine-tuning time no ``[MASK]`` appears.

As in BERT's original data pipeline, each row gets ``round(0.15 * n)`` chosen positions (at least one) among its ``n``
maskable positions, so no batch is ever without a target (the product is taken in float32, so at an exact half it can
land just above: ``n = 190`` gives 29, where Python's ``round(28.5)`` gives 28); the 80/10/10 split is drawn
independently per chosen position. Every random draw comes from the ``torch.Generator`` passed in, so a seed fixes
the corruption, and happens on that generator's device; results are then moved to the data's device (the course's
device rule).

Targets are the original ids at chosen positions and ``-100`` elsewhere, the ``ignore_index`` that
:class:`course_utils.model.gpt.GPT`'s cross-entropy (and Hugging Face's) already skips.

Left out: whole-word masking, span masking (SpanBERT, T5), next-sentence prediction, dynamic masking schedules.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from course_utils.arguments import check_int, check_real
from course_utils.train.batches import sample_batch
from course_utils.model.masks import bidirectional_mask

IGNORE_INDEX = -100
NOT_CHOSEN, MASKED, RANDOM, KEPT = 0, 1, 2, 3  # the codes returned by mlm_plan


def mlm_plan(shape: tuple[int, int], generator: torch.Generator, mask_prob: float = 0.15, mask_frac: float = 0.8,
             random_frac: float = 0.1, maskable: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, T)`` int8 codes saying what happens at each position: NOT_CHOSEN, MASKED, RANDOM or KEPT.

    ``maskable`` (B, T) bool marks positions that may be chosen (exclude padding and special tokens); default all.
    The plan is drawn and returned **on the generator's device** (``generator.device``), whatever device
    ``maskable`` is on: a generator can only draw on its own device. :func:`mask_tokens` moves it to the data.

    Choosing exactly ``n`` positions per row: give every position a uniform random score (unmaskable ones get 2.0,
    above any score), sort each row, and choose the positions of its ``n`` smallest scores. For one row with
    scores ``[0.7, 0.1, 0.9, 0.4]`` and ``n = 2``: ``argsort`` gives the positions in score order ``[1, 3, 0, 2]``;
    scattering ``[True, True, False, False]`` (the first ``n`` ranks) back to those positions gives
    ``chosen = [False, True, False, True]``. Every set of ``n`` maskable positions is equally likely.
    """
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"shape must be (B, T) with B, T >= 1, got {shape}")
    mask_prob, mask_frac, random_frac = (
        check_real(value, name, minimum=0, maximum=1, allowed="a probability in [0, 1]")
        for name, value in (("mask_prob", mask_prob), ("mask_frac", mask_frac), ("random_frac", random_frac)))
    if mask_frac + random_frac > 1.0 + 1e-9:
        raise ValueError(f"mask_frac + random_frac must be <= 1 (the rest is kept), got {mask_frac + random_frac}")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    B, T = shape
    where = generator.device  # every draw happens here (a CPU generator draws on the CPU, a CUDA one on CUDA)
    if maskable is None:
        maskable = torch.ones(B, T, dtype=torch.bool, device=where)
    if not isinstance(maskable, torch.Tensor) or maskable.dtype != torch.bool or tuple(maskable.shape) != (B, T):
        raise TypeError(f"maskable must be a boolean tensor of shape {(B, T)}")
    maskable = maskable.to(where)
    n_maskable = maskable.sum(dim=1)  # (B,)
    n_chosen = torch.where(n_maskable > 0, (mask_prob * n_maskable).round().long().clamp(min=1), 0)  # (B,)
    scores = torch.rand(B, T, generator=generator, device=where).masked_fill(~maskable, 2.0)  # (B, T)
    order = scores.argsort(dim=1)  # (B, T) positions of each row, smallest score first
    first_n = torch.arange(T, device=where)[None, :] < n_chosen[:, None]  # (B, T) True for the first n ranks
    chosen = torch.zeros(B, T, dtype=torch.bool, device=where).scatter(1, order, first_n)  # (B, T) back to positions
    u = torch.rand(B, T, generator=generator, device=where)  # (B, T) one uniform draw decides MASK / RANDOM / KEPT
    plan = torch.full((B, T), NOT_CHOSEN, dtype=torch.int8, device=where)
    plan = plan.masked_fill(chosen & (u < mask_frac), MASKED)
    plan = plan.masked_fill(chosen & (u >= mask_frac) & (u < mask_frac + random_frac), RANDOM)
    return plan.masked_fill(chosen & (u >= mask_frac + random_frac), KEPT)  # (B, T)


def mask_tokens(idx: torch.Tensor, mask_id: int, vocab_size: int, generator: torch.Generator,
                mask_prob: float = 0.15, mask_frac: float = 0.8, random_frac: float = 0.1,
                maskable: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt ``idx`` (B, T) the BERT way; return ``(inputs, targets)``, each (B, T) int64 on ``idx``'s device.

    Random replacements are drawn uniformly from ``[0, vocab_size)``: pass the number of ordinary tokens, so
    ``[MASK]`` (and other special ids placed after them) is never drawn. ``targets`` holds the original id at the
    chosen positions and ``-100`` elsewhere.

    Device rule: the plan and the random ids are drawn where the generator is (``generator.device``) and then moved
    to ``idx.device`` on purpose, so a CPU generator works for CUDA data and a CUDA generator for CPU data, and a
    seed gives the same corruption whichever device the data is on (for a generator of the same device type).
    """
    if not isinstance(idx, torch.Tensor) or idx.dim() != 2 or idx.is_floating_point():
        raise ValueError(f"idx must be a (B, T) integer tensor, got {getattr(idx, 'shape', type(idx).__name__)}")
    vocab_size = check_int(vocab_size, "vocab_size", minimum=1,
                           allowed="a positive int (ordinary tokens to draw random ones from)")
    mask_id = check_int(mask_id, "mask_id", minimum=0, allowed="a non-negative int")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    shape = tuple(idx.shape)
    plan = mlm_plan(shape, generator, mask_prob, mask_frac, random_frac, maskable)  # (B, T) on generator.device
    random_ids = torch.randint(vocab_size, shape, generator=generator, device=generator.device)  # (B, T)
    plan, random_ids = plan.to(idx.device), random_ids.to(idx.device)  # deliberate move to the data's device
    inputs = torch.where(plan == MASKED, mask_id, idx.long())  # (B, T); torch.where, no data-dependent indexing
    inputs = torch.where(plan == RANDOM, random_ids, inputs)  # (B, T)
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
