"""Diversity and repetition measures for generated text, computed on token-id sequences.

* distinct-n: unique n-grams divided by all n-grams, pooled over a set of samples, a common variant of J. Li et al.,
  "A Diversity-Promoting Objective Function for Neural Conversation Models", 2016 (who divide by the number of
  generated tokens, so for n >= 2 their value stays below 1). 1 = no n-gram ever repeats, near 0 = the samples say
  the same thing over and over.
* repeated n-gram fraction of one sequence: the share of its n-grams that already occurred earlier in the same
  sequence, a direct measure of the repetition loops of greedy decoding (Holtzman et al., 2020, "The Curious Case of
  Neural Text Degeneration").

Left out: self-BLEU (Zhu et al., 2018, "Texygen"), MAUVE, embedding-based diversity.
"""

from __future__ import annotations

from typing import Sequence

import torch

from course_utils.arguments import check_int


def _as_lists(sequences) -> list[list[int]]:
    if isinstance(sequences, torch.Tensor):
        if sequences.dim() != 2:
            raise ValueError(f"a tensor of samples must be (N, T), got {tuple(sequences.shape)}")
        return sequences.tolist()
    if isinstance(sequences, (str, bytes)) or not all(isinstance(s, (list, tuple)) for s in sequences):
        raise TypeError("sequences must be an (N, T) tensor or a list of token-id lists")
    return [list(s) for s in sequences]


def _as_ids(sequence) -> list:
    """One sequence as a list; a tensor or array must be 1-D (its elements would be 0-d tensors, hashed by identity)."""
    if hasattr(sequence, "tolist"):
        if getattr(sequence, "ndim", 1) != 1:
            raise ValueError(f"a sequence must be 1-D, one token id per position, got shape {tuple(sequence.shape)}; "
                             "pass one row (for a batch, use distinct_n or loop over the rows)")
        return sequence.tolist()
    return list(sequence)


def ngrams(sequence: Sequence[int], n: int) -> list[tuple[int, ...]]:
    """All contiguous n-grams of ``sequence`` (a list, or a 1-D tensor or array) in order."""
    n = check_int(n, "n", minimum=1)
    sequence = _as_ids(sequence)
    return [tuple(sequence[i:i + n]) for i in range(len(sequence) - n + 1)]


def distinct_n(sequences, n: int) -> float:
    """Unique n-grams / total n-grams over all ``sequences`` (0 if there are no n-grams)."""
    grams = [g for s in _as_lists(sequences) for g in ngrams(s, n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repeated_ngram_fraction(sequence: Sequence[int], n: int = 4) -> float:
    """Fraction of the n-grams of one sequence that already appeared earlier in it (0 = no repeats)."""
    grams = ngrams(sequence, n)
    seen: set[tuple[int, ...]] = set()
    repeats = 0
    for g in grams:
        repeats += g in seen
        seen.add(g)
    return repeats / len(grams) if grams else 0.0
