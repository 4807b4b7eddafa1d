"""Interpolated Kneser-Ney n-gram language model over integer ids: the strong count-based baseline.

Chen & Goodman (1999, "An empirical study of smoothing techniques for language modeling") found interpolated
Kneser-Ney (Kneser & Ney, 1995) and their own modified version of it the best of the classic smoothing methods.
Two ideas beat add-k (:mod:`course_utils.model.ngram`):

* **Absolute discounting with interpolation.** Every seen (context, next) count gives up a fixed ``discount`` D; the
  mass freed, D times the number of distinct next ids seen after the context, goes to the next-shorter context's
  distribution. A long context seen a few times therefore leans on the shorter ones instead of on a uniform guess:

      p_m(w | c) = max(count(c, w) - D, 0) / count(c)  +  D * distinct(c) / count(c) * p_{m-1}(w | c')

  where c' drops the oldest id of c, and p_0(w) = 1 / V. A context never seen at order m passes p_{m-1} through.
* **Continuation counts for the shorter orders.** Below the top order, count(c, w) is replaced by the number of
  distinct ids seen just before the window (c, w): a shorter distribution is only consulted when the longer
  context was rare, so it should say how many contexts w completes, not how often w occurs.

Windows are packed into int64 codes exactly as in :mod:`course_utils.model.ngram` (whose ``_pack`` and ``_count``
this module reuses), so fitting and scoring are vectorised. ``tests/test_kneser_ney.py`` checks every next-id
distribution sums to 1 and that the vectorised probabilities equal a plain-Python version of the formula.

Left out: the modified version with three discounts per order (Chen & Goodman's best), and choosing D per order,
either tuned on held-out text (as Chen & Goodman do) or estimated from the training counts-of-counts,
D = n1 / (n1 + 2 n2) with n1 and n2 the numbers of m-grams seen exactly once and twice (Ney et al., 1994; Chen &
Goodman's "-fix" variants). Here D is one fixed number for every order, 0.75 by default (a common default).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from course_utils.arguments import check_real
from course_utils.model.ngram import NGramModel, _count, _last_ids, _pack, check_ngram_ids


@dataclass
class KneserNeyModel:
    n: int
    vocab_size: int
    discount: float = 0.75
    _orders: dict = field(default=None, repr=False)  # m -> (sorted m-gram codes, counts, context codes, totals, types)

    def __post_init__(self) -> None:
        checked = NGramModel(self.n, self.vocab_size)  # the same checks of n and vocab_size, and their messages
        self.n, self.vocab_size = checked.n, checked.vocab_size  # numpy ints as Python ints
        check_real(self.discount, "discount", minimum=0, maximum=1, low_open=True, high_open=True,
                   allowed="in (0, 1)")  # checked; kept as given

    def fit(self, ids: Sequence[int]) -> "KneserNeyModel":
        arr = check_ngram_ids(ids, self.n, self.vocab_size)
        V, orders = self.vocab_size, {}
        for m in range(self.n, 0, -1):  # top order first: the one below needs its m-grams
            if m == self.n:  # raw counts
                grams, counts = np.unique(_pack(arr, m, V), return_counts=True)
            else:  # continuation counts: distinct ids seen before each m-gram (in the (m+1)-grams)
                grams, counts = np.unique(orders[m + 1][0] % V ** m, return_counts=True)
            contexts, position = np.unique(grams // V, return_inverse=True)  # (m-1)-id contexts of the m-grams
            totals = np.bincount(position, weights=counts)  # count(c) as this order counts it
            types = np.bincount(position)  # distinct next ids after c
            orders[m] = (grams, counts.astype(np.float64), contexts, totals, types.astype(np.float64))
        self._orders = orders
        return self

    def _probs(self, windows: np.ndarray) -> np.ndarray:
        """p(last id | the n-1 before it) for each row of ``windows`` (P, n)."""
        if self._orders is None:
            raise ValueError("fit the model before asking for probabilities")
        V = self.vocab_size
        probs = np.full(len(windows), 1.0 / V)  # p_0: uniform
        for m in range(1, self.n + 1):
            grams, counts, contexts, totals, types = self._orders[m]
            context = np.zeros(len(windows), np.int64)
            for j in range(self.n - m, self.n - 1):  # the m-1 ids just before the predicted one
                context = context * V + windows[:, j]
            total = _count(contexts, totals, context)
            seen = total > 0
            joint = _count(grams, counts, context * V + windows[:, -1])
            mixed = (np.maximum(joint - self.discount, 0) + self.discount * _count(contexts, types, context) * probs)
            probs = np.where(seen, mixed / np.where(seen, total, 1), probs)
        return probs

    def distribution(self, context: Sequence[int]) -> np.ndarray:
        """The next-id distribution after the last n-1 ids of ``context`` (V,), summing to 1."""
        context = _last_ids(context, self.n - 1, self.vocab_size)  # ints in [0, V), else an error
        windows = np.array([context + [v] for v in range(self.vocab_size)], dtype=np.int64)  # (V, n)
        return self._probs(windows)

    def total_nats(self, ids: Sequence[int]) -> tuple[float, int]:
        """Negative log-likelihood (nats) of ids[n-1:] given their contexts, and how many ids were scored (the same
        positions :class:`course_utils.model.ngram.NGramModel` scores)."""
        arr = check_ngram_ids(ids, self.n, self.vocab_size)
        windows = np.lib.stride_tricks.sliding_window_view(arr, self.n)  # (len - n + 1, n)
        return float(-np.log(self._probs(windows)).sum()), len(windows)

    def mean_nats(self, ids: Sequence[int]) -> float:
        nll, count = self.total_nats(ids)
        return nll / count
