"""Reference solutions for chapter 02 (attention masks). Try the exercises before reading these."""

from __future__ import annotations

import torch


def sliding_window_causal_mask(T: int, window: int) -> torch.Tensor:
    """(T, T) boolean: query i may attend to key j when j <= i and i - j < window (itself included)."""
    i = torch.arange(T)[:, None]  # (T, 1)
    j = torch.arange(T)[None, :]  # (1, T)
    return (j <= i) & (i - j < window)


def document_causal_mask(doc_ids: torch.Tensor) -> torch.Tensor:
    """(T, T) boolean for several documents packed into one row: causal, and only within the same document.

    ``doc_ids`` (T,) gives each position's document number, e.g. ``[0, 0, 0, 1, 1, 2]``.
    """
    T = doc_ids.shape[0]
    same_doc = doc_ids[:, None] == doc_ids[None, :]  # (T, T)
    causal = torch.ones(T, T, dtype=torch.bool).tril()  # (T, T)
    return same_doc & causal


def left_padding_position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) position ids for a left-padded batch: each row's first real token gets 0, padding gets 1."""
    positions = attention_mask.long().cumsum(dim=1) - 1  # (B, T)
    return positions.masked_fill(attention_mask == 0, 1)


def mlm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``logits`` (B, T, V) over the chosen positions only (targets != -100)."""
    chosen = targets != -100  # (B, T)
    return torch.nn.functional.cross_entropy(logits[chosen], targets[chosen])
