"""Count-based n-gram language model over a sequence of integer ids (characters, bytes or tokens).

P(x_t | x_{t-n+1..t-1}) = (count(context, x_t) + k) / (count(context) + k V), "add-k" smoothing (Chen & Goodman,
1999, "An empirical study of smoothing techniques for language modeling"). With n = 1 it is a unigram model; with
n = 2 the bigram model of chapter 01. Contexts are hashed into a dictionary so n > 2 works without a V^n table.

Left out: backoff and interpolation (Kneser-Ney); the point here is a transparent baseline.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Sequence


@dataclass
class NGramModel:
    n: int
    vocab_size: int
    k: float = 1.0
    context_counts: Counter = field(default_factory=Counter)
    next_counts: dict = field(default_factory=lambda: defaultdict(Counter))

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"n must be an int >= 1, got {self.n!r}")
        if not isinstance(self.vocab_size, int) or self.vocab_size < 1:
            raise ValueError(f"vocab_size must be a positive int, got {self.vocab_size!r}")
        if not self.k > 0:
            raise ValueError(f"k (add-k smoothing) must be > 0 so unseen events keep probability, got {self.k}")

    def _check_ids(self, ids: Sequence[int]) -> list[int]:
        ids = list(ids)
        if len(ids) < self.n:
            raise ValueError(f"need at least n={self.n} ids, got {len(ids)}")
        bad = [i for i in set(ids) if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"ids must be in [0, {self.vocab_size}); found {sorted(bad)[:5]}")
        return ids

    def fit(self, ids: Sequence[int]) -> "NGramModel":
        ids = self._check_ids(ids)
        c = self.n - 1
        for t in range(c, len(ids)):
            ctx = tuple(ids[t - c:t])
            self.context_counts[ctx] += 1
            self.next_counts[ctx][ids[t]] += 1
        return self

    def prob(self, context: Sequence[int], token: int) -> float:
        ctx = tuple(context[len(context) - (self.n - 1):]) if self.n > 1 else ()
        if len(ctx) != self.n - 1:
            raise ValueError(f"context must hold at least n-1={self.n - 1} ids, got {len(context)}")
        num = self.next_counts.get(ctx, Counter())[token] + self.k
        den = self.context_counts.get(ctx, 0) + self.k * self.vocab_size
        return num / den

    def distribution(self, context: Sequence[int]) -> list[float]:
        """The full next-id distribution after ``context`` (sums to 1)."""
        return [self.prob(context, v) for v in range(self.vocab_size)]

    def total_nats(self, ids: Sequence[int]) -> tuple[float, int]:
        """Negative log-likelihood (nats) of ids[n-1:] given their contexts, and how many ids were scored."""
        ids = self._check_ids(ids)
        c = self.n - 1
        nll = 0.0
        for t in range(c, len(ids)):
            nll -= math.log(self.prob(ids[t - c:t], ids[t]))
        return nll, len(ids) - c

    def mean_nats(self, ids: Sequence[int]) -> float:
        nll, count = self.total_nats(ids)
        return nll / count
