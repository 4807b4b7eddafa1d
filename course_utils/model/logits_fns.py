"""Adapters that give every model one calling convention: ``logits_fn(idx) -> logits``.

The course's :class:`course_utils.model.gpt.GPT` returns ``(logits, loss)``; a Hugging Face causal LM returns an
object with ``.logits``. Scoring (:mod:`course_utils.evaluate.scoring`) needs the logits at every position; search
(:mod:`course_utils.generate.beam_search`) needs only the last position's, which a Hugging Face model can compute
alone (``logits_to_keep=1``).
"""

from __future__ import annotations

from typing import Callable

import torch

LogitsFn = Callable[[torch.Tensor], torch.Tensor]


def gpt_logits_fn(model: torch.nn.Module) -> LogitsFn:
    """``idx (B, T) -> logits (B, T, V)`` for the course's GPT."""
    return lambda idx: model(idx)[0]


def hf_logits_fn(model: torch.nn.Module) -> LogitsFn:
    """``idx (B, T) -> logits (B, T, V)`` for a Hugging Face causal LM."""
    return lambda idx: model(input_ids=idx).logits


def gpt_next_logits_fn(model: torch.nn.Module) -> LogitsFn:
    """``idx (B, T) -> last-position logits (B, V)`` for the course's GPT."""
    return lambda idx: model(idx)[0][:, -1, :]


def hf_next_logits_fn(model: torch.nn.Module) -> LogitsFn:
    """``idx (B, T) -> last-position logits (B, V)`` for a Hugging Face causal LM (computes only that position)."""
    return lambda idx: model(input_ids=idx, logits_to_keep=1).logits[:, -1, :]
