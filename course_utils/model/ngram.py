"""Count-based n-gram language model over a sequence of integer ids (characters, bytes or tokens).

P(x_t | x_{t-n+1..t-1}) = (count(context, x_t) + k) / (count(context) + k V), "add-k" smoothing (Chen & Goodman,
1999, "An empirical study of smoothing techniques for language modeling"). With n = 1 it is a unigram model; with
n = 2 the bigram model of chapter 01.

Counting is vectorised: each (context, next id) window is packed into one integer in base V, and ``numpy.unique``
counts them, so fitting millions of characters takes about a second for any order. Only contexts that occur are
stored (there are V^(n-1) possible ones).

Left out: backoff and interpolation (Kneser-Ney); the point here is a transparent baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np


def _pack(ids: np.ndarray, width: int, base: int) -> np.ndarray:
    """Integer code of every window of ``width`` consecutive ids: sum_j ids[t + j] * base^(width - 1 - j)."""
    codes = np.zeros(len(ids) - width + 1, dtype=np.int64)
    for j in range(width):
        codes = codes * base + ids[j:len(ids) - width + 1 + j]
    return codes


def _count(sorted_keys: np.ndarray, counts: np.ndarray, queries: np.ndarray) -> np.ndarray:
    pos = np.searchsorted(sorted_keys, queries)
    pos = np.minimum(pos, len(sorted_keys) - 1)
    return np.where(sorted_keys[pos] == queries, counts[pos], 0) if len(sorted_keys) else np.zeros_like(queries)


@dataclass
class NGramModel:
    n: int
    vocab_size: int
    k: float = 1.0
    _joint: tuple = field(default=None, repr=False)  # (sorted codes of context+next, counts)
    _context: tuple = field(default=None, repr=False)  # (sorted codes of contexts, counts)

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"n must be an int >= 1, got {self.n!r}")
        if not isinstance(self.vocab_size, int) or self.vocab_size < 1:
            raise ValueError(f"vocab_size must be a positive int, got {self.vocab_size!r}")
        if self.vocab_size ** self.n >= 2 ** 62:
            raise ValueError(f"vocab_size**n = {self.vocab_size}**{self.n} is too large to pack into int64")
        if not self.k > 0:
            raise ValueError(f"k (add-k smoothing) must be > 0 so unseen events keep probability, got {self.k}")

    def _check_ids(self, ids: Sequence[int]) -> np.ndarray:
        arr = np.asarray(ids.tolist() if hasattr(ids, "tolist") else list(ids), dtype=np.int64)
        if arr.ndim != 1 or len(arr) < self.n:
            raise ValueError(f"need a 1-D sequence of at least n={self.n} ids, got {len(arr)}")
        if arr.min() < 0 or arr.max() >= self.vocab_size:
            bad = arr[(arr < 0) | (arr >= self.vocab_size)]
            raise ValueError(f"ids must be in [0, {self.vocab_size}); found {sorted(set(bad.tolist()))[:5]}")
        return arr

    def fit(self, ids: Sequence[int]) -> "NGramModel":
        arr = self._check_ids(ids)
        self._joint = np.unique(_pack(arr, self.n, self.vocab_size), return_counts=True)
        contexts = _pack(arr[:-1], self.n - 1, self.vocab_size) if self.n > 1 else np.zeros(len(arr), np.int64)
        self._context = np.unique(contexts, return_counts=True)
        return self

    def _probs(self, context_codes: np.ndarray, next_ids: np.ndarray) -> np.ndarray:
        if self._joint is None:
            raise ValueError("fit the model before asking for probabilities")
        joint = _count(*self._joint, context_codes * self.vocab_size + next_ids)
        context = _count(*self._context, context_codes)
        return (joint + self.k) / (context + self.k * self.vocab_size)

    def prob(self, context: Sequence[int], token: int) -> float:
        """p(token | the last n-1 ids of context)."""
        context = list(context)
        if len(context) < self.n - 1:
            raise ValueError(f"context must hold at least n-1={self.n - 1} ids, got {len(context)}")
        code = 0
        for i in context[len(context) - (self.n - 1):] if self.n > 1 else []:
            code = code * self.vocab_size + int(i)
        return float(self._probs(np.array([code]), np.array([int(token)]))[0])

    def distribution(self, context: Sequence[int]) -> list[float]:
        """The full next-id distribution after ``context`` (sums to 1)."""
        return [self.prob(context, v) for v in range(self.vocab_size)]

    def total_nats(self, ids: Sequence[int]) -> tuple[float, int]:
        """Negative log-likelihood (nats) of ids[n-1:] given their contexts, and how many ids were scored."""
        arr = self._check_ids(ids)
        c = self.n - 1
        contexts = _pack(arr[:-1], c, self.vocab_size) if c > 0 else np.zeros(len(arr), np.int64)
        probs = self._probs(contexts, arr[c:])
        return float(-np.log(probs).sum()), len(arr) - c

    def mean_nats(self, ids: Sequence[int]) -> float:
        nll, count = self.total_nats(ids)
        return nll / count
