"""Count-based n-gram language model over a sequence of integer ids (characters, bytes or tokens).

P(x_t | x_{t-n+1..t-1}) = (count(context, x_t) + k) / (count(context) + k V), "add-k" smoothing (Chen & Goodman,
1999, "An empirical study of smoothing techniques for language modeling"). With n = 1 it is a unigram model; with
n = 2 the bigram model of chapter 01.

Counting is vectorised: each window of n ids is packed into one integer (below), ``numpy.unique`` counts the
integers, so fitting millions of characters takes about a second for any order. Only contexts that occur are
stored (there are V^(n-1) possible ones). ``tests/test_ngram_metrics_evaluation.py`` checks the counts against a
plain ``collections.Counter`` over tuples.

How the packing works: read a window of ids as the digits of a number in base V. In base 10 the digits (2, 1, 7)
are the number 217 = (2 * 10 + 1) * 10 + 7; with V = 65 characters the window (20, 1, 7) becomes
(20 * 65 + 1) * 65 + 7 = 84572. Each digit is < V, so different windows give different numbers (84572 // 65**2
= 20, (84572 // 65) % 65 = 1, 84572 % 65 = 7 recover the digits), and one number per window can be counted by
``numpy.unique`` as fast as any integer array. Appending one more id to a packed context is one more step of the
same rule: ``code(context + [b]) = code(context) * V + b``, which is how a (context, next id) pair is looked up.

Left out: backoff and interpolation, which :mod:`course_utils.model.kneser_ney` adds; the point here is a transparent
baseline.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from course_utils.arguments import check_int, check_real


def _pack(ids: np.ndarray, width: int, base: int) -> np.ndarray:
    """Base-``base`` code of every window of ``width`` consecutive ids (see the module docstring).

    codes[t] = ids[t] * base^(width-1) + ids[t+1] * base^(width-2) + ... + ids[t+width-1], computed for all t at
    once: start from 0 and, for each digit position j, multiply by the base and add the j-th id of every window.
    """
    n_windows = len(ids) - width + 1
    codes = np.zeros(n_windows, dtype=np.int64)  # (n_windows,)
    for j in range(width):
        codes = codes * base + ids[j:j + n_windows]  # ids[j:j + n_windows][t] is the j-th id of window t
    return codes


def _count(sorted_keys: np.ndarray, counts: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """How often each query code occurred: binary search in the sorted codes from ``numpy.unique``; 0 if absent."""
    pos = np.searchsorted(sorted_keys, queries)
    pos = np.minimum(pos, len(sorted_keys) - 1)
    return np.where(sorted_keys[pos] == queries, counts[pos], 0) if len(sorted_keys) else np.zeros_like(queries)


def check_ngram_ids(ids: Sequence[int], n: int, vocab_size: int) -> np.ndarray:
    """``ids`` as a 1-D int64 array, refused unless it holds at least ``n`` ids, each in ``[0, vocab_size)``."""
    arr = np.asarray(ids.tolist() if hasattr(ids, "tolist") else list(ids))
    if arr.ndim != 1 or len(arr) < n:
        raise ValueError(f"need a 1-D sequence of at least n={n} ids, got {len(arr)}")
    if arr.dtype.kind not in "iu":  # dtype=np.int64 used to truncate 1.5 to 1 without a word
        raise TypeError(f"ids must be integer token ids, got {arr.dtype} values such as {arr[0]!r}")
    arr = arr.astype(np.int64)
    if arr.min() < 0 or arr.max() >= vocab_size:
        bad = arr[(arr < 0) | (arr >= vocab_size)]
        raise ValueError(f"ids must be in [0, {vocab_size}); found {sorted(set(bad.tolist()))[:5]}")
    return arr


def _last_ids(ids: Sequence[int], keep: int, vocab_size: int, name: str = "context") -> list[int]:
    """The last ``keep`` entries of ``ids`` as Python ints, refused unless there are that many, each an integer (any
    type ``operator.index`` takes, not a bool) in ``[0, vocab_size)``: outside it, ``code * V + id`` would alias
    another context."""
    ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
    if not isinstance(ids, list) or len(ids) < keep:
        raise ValueError(f"{name} must hold at least n-1={keep} ids, got {len(ids) if isinstance(ids, list) else 0}")
    out = []
    for i in ids[len(ids) - keep:]:
        try:
            j = None if isinstance(i, bool) else operator.index(i)
        except TypeError:
            j = None
        if j is None or not 0 <= j < vocab_size:
            raise ValueError(f"{name}: ids must be ints in [0, {vocab_size}), the vocabulary; found {i!r}")
        out.append(j)
    return out


@dataclass
class NGramModel:
    n: int
    vocab_size: int
    k: float = 1.0
    _joint: tuple = field(default=None, repr=False)  # (sorted codes of context+next, counts)
    _context: tuple = field(default=None, repr=False)  # (sorted codes of contexts, counts)

    def __post_init__(self) -> None:
        for name, allowed in (("n", "an int >= 1"), ("vocab_size", "a positive int")):  # numpy ints too, not bools
            # a numpy int64 would overflow silently in vocab_size ** n below
            setattr(self, name, check_int(getattr(self, name), name, minimum=1, allowed=allowed))
        if self.vocab_size ** self.n >= 2 ** 62:
            raise ValueError(f"vocab_size**n = {self.vocab_size}**{self.n} is too large to pack into int64")
        check_real(self.k, "k (add-k smoothing)", minimum=0, low_open=True,  # checked; kept as given
                   allowed="a finite number > 0 so unseen events keep probability")

    def fit(self, ids: Sequence[int]) -> "NGramModel":
        arr = check_ngram_ids(ids, self.n, self.vocab_size)
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

    def _context_code(self, context: Sequence[int]) -> int:
        """The packed code of the last n-1 ids of ``context``, after checking them against the vocabulary (an id
        outside [0, V) would alias another context through code * V + id)."""
        code = 0
        for i in _last_ids(context, self.n - 1, self.vocab_size):
            code = code * self.vocab_size + i
        return code

    def prob(self, context: Sequence[int], token: int) -> float:
        """p(token | the last n-1 ids of context); those ids and ``token`` must lie in [0, vocab_size)."""
        code = self._context_code(context)
        token = _last_ids([token], 1, self.vocab_size, "token")[0]
        return float(self._probs(np.array([code]), np.array([token]))[0])

    def distribution(self, context: Sequence[int]) -> list[float]:
        """The full next-id distribution after ``context`` (sums to 1)."""
        code = self._context_code(context)
        return self._probs(np.full(self.vocab_size, code), np.arange(self.vocab_size)).tolist()

    def total_nats(self, ids: Sequence[int]) -> tuple[float, int]:
        """Negative log-likelihood (nats) of ids[n-1:] given their contexts, and how many ids were scored."""
        arr = check_ngram_ids(ids, self.n, self.vocab_size)
        c = self.n - 1
        contexts = _pack(arr[:-1], c, self.vocab_size) if c > 0 else np.zeros(len(arr), np.int64)
        probs = self._probs(contexts, arr[c:])
        return float(-np.log(probs).sum()), len(arr) - c

    def mean_nats(self, ids: Sequence[int]) -> float:
        nll, count = self.total_nats(ids)
        return nll / count
