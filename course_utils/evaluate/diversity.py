"""Diversity and repetition measures for generated text, computed on token-id sequences.

* distinct-n: unique n-grams divided by all n-grams, pooled over a set of samples, a common variant of J. Li et al.,
  "A Diversity-Promoting Objective Function for Neural Conversation Models", 2016 (who divide by the number of
  generated tokens, so for n >= 2 their value stays below 1). 1 = no n-gram ever repeats, near 0 = the samples say
  the same thing over and over.
* repeated n-gram fraction of one sequence: the share of its n-grams that already occurred earlier in the same
  sequence, a direct measure of the repetition loops of greedy decoding (Holtzman et al., 2020, "The Curious Case of
  Neural Text Degeneration").
* distinct-n at a fixed count of n-grams: pooled distinct-n falls as the number of n-grams it counts grows (more text,
  more chances for an n-gram to come again), so sample sets that stop at an end token, and so differ in total length,
  are compared on the same number of n-grams: each set's first ``n_grams`` (:func:`distinct_n_at_count`), with the
  count the smallest set allows (:func:`distinct_n_at_equal_counts`). Chapter 07 first cuts every sample to a common
  length, then scores its settings at equal counts with it (a sample shorter than the cut would leave fewer).

Left out: self-BLEU (Zhu et al., 2018, "Texygen"), MAUVE, embedding-based diversity.
"""

from __future__ import annotations

from typing import Mapping, Sequence

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


def ngram_count(sequences, n: int) -> int:
    """How many n-grams ``sequences`` hold in all: a sample of length L has max(L - n + 1, 0), none crosses samples."""
    n = check_int(n, "n", minimum=1)
    return sum(max(len(s) - n + 1, 0) for s in _as_lists(sequences))


def distinct_n_at_count(sequences, n: int, n_grams: int) -> float:
    """Unique / total over the first ``n_grams`` n-grams of ``sequences``: the samples in order, the n-grams of each
    in order, none crossing two samples, the rest of the n-grams dropped (the last sample counted may be cut inside).

    Pooled distinct-n falls as the count grows, so sample sets are compared with one ``n_grams`` for all; raises
    ValueError when ``sequences`` hold fewer n-grams than that."""
    n = check_int(n, "n", minimum=1)
    n_grams = check_int(n_grams, "n_grams", minimum=1)
    grams = [tuple(s[i:i + n]) for s in _as_lists(sequences) for i in range(len(s) - n + 1)]  # checked once, above
    if len(grams) < n_grams:
        raise ValueError(f"n_grams must be at most the number of {n}-grams the samples hold, {len(grams)}; got "
                         f"{n_grams} (distinct_n_at_equal_counts picks the largest count every arm has)")
    return len(set(grams[:n_grams])) / n_grams


def distinct_n_at_equal_counts(arms: Mapping[str, object], n: int) -> tuple[dict[str, float], int]:
    """``(values, count)``: each arm's distinct-n over its first ``count`` n-grams (:func:`distinct_n_at_count`),
    ``count`` the smallest total n-gram count of the arms (:func:`ngram_count`), so every arm is scored on as many
    n-grams. ``arms`` maps a name to that arm's samples (an (N, T) tensor or a list of token-id lists)."""
    if not isinstance(arms, Mapping):
        raise TypeError(f"arms must be a mapping of name -> samples (a dict), got {type(arms).__name__}")
    if not arms:
        raise ValueError("arms is empty: give at least one arm's samples")
    n = check_int(n, "n", minimum=1)
    counts = {name: ngram_count(samples, n) for name, samples in arms.items()}
    fewest = min(counts, key=counts.get)
    if counts[fewest] == 0:
        raise ValueError(f"the arm {fewest!r} has no {n}-grams (every sample shorter than {n}); nothing to compare")
    return {name: distinct_n_at_count(samples, n, counts[fewest]) for name, samples in arms.items()}, counts[fewest]


def repeated_ngram_fraction(sequence: Sequence[int], n: int = 4) -> float:
    """Fraction of the n-grams of one sequence that already appeared earlier in it (0 = no repeats)."""
    grams = ngrams(sequence, n)
    seen: set[tuple[int, ...]] = set()
    repeats = 0
    for g in grams:
        repeats += g in seen
        seen.add(g)
    return repeats / len(grams) if grams else 0.0
