"""Reference solutions for chapter 02 (attention masks). Try the exercises before reading these."""

from __future__ import annotations

import torch


def window_mask(T: int, left: int, right: int) -> torch.Tensor:
    """(T, T) boolean in the flash-attn library's ``window_size=(left, right)`` convention: query i may attend to key
    j when ``i - left <= j <= i + right`` (both ends inclusive); ``-1`` on a side means no limit on that side."""
    i = torch.arange(T)[:, None]  # (T, 1) query positions
    j = torch.arange(T)[None, :]  # (1, T) key positions
    ok_left = (j >= i - left) if left >= 0 else torch.ones(T, T, dtype=torch.bool)
    ok_right = (j <= i + right) if right >= 0 else torch.ones(T, T, dtype=torch.bool)
    return ok_left & ok_right  # (T, T)


# Exercise 1's second question: which rows of section 2's table have a (left, right) form, and why the others have none.
WINDOW_ROWS = """causal (-1, 0); bidirectional (-1, -1); causal sliding window of W keys (W - 1, 0); symmetric window
(W/2, W/2). A (left, right) window decides from the offset j - i alone, the same band in every row. Prefix-LM has
none because whether key j < P is visible depends on j's absolute position, not on j - i (a query inside the prefix
sees keys ahead of it, one after it does not); padding, and causal AND padding, have none because what is blocked
depends on which keys are pad tokens, i.e. on the data, not on positions at all."""


def document_causal_mask(doc_ids: torch.Tensor) -> torch.Tensor:
    """(T, T) boolean for several documents packed into one row: causal, and only within the same document.

    ``doc_ids`` (T,) gives each position's document number, e.g. ``[0, 0, 0, 1, 1, 2]``.
    """
    T = doc_ids.shape[0]
    same_doc = doc_ids[:, None] == doc_ids[None, :]  # (T, T)
    causal = torch.ones(T, T, dtype=torch.bool, device=doc_ids.device).tril()  # (T, T)
    return same_doc & causal


def packed_position_ids(doc_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) position ids for packed, padded rows: each document's first token is 0; padding (-1) gets 0.

    A token's position in its document is the number of keys its document-causal mask lets it see, minus one.
    """
    doc_ids = torch.as_tensor(doc_ids)
    T = doc_ids.shape[-1]
    same_doc = doc_ids[:, :, None] == doc_ids[:, None, :]  # (B, T, T)
    causal = torch.ones(T, T, dtype=torch.bool, device=doc_ids.device).tril()  # (T, T)
    positions = (same_doc & causal).sum(-1) - 1  # (B, T)
    return positions.masked_fill(doc_ids < 0, 0)


def mlm_loss(logits: torch.Tensor, ids: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``logits`` (B, T, V) against ``ids`` (B, T) over the chosen positions only.

    ``chosen`` (B, T) is boolean. Boolean indexing gathers the chosen positions of the whole batch into one
    (n_chosen, V) block, so the mean is over all of them at once, whatever the number chosen in each row.
    """
    return torch.nn.functional.cross_entropy(logits[chosen], ids[chosen])
