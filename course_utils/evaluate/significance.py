"""Exact paired significance tests for comparing two methods on the same test items.

:func:`sign_test` is the exact two-sided sign test; on the discordant pairs of two classifiers (items exactly one of
them gets right) it is McNemar's exact test (McNemar, 1947). :func:`sign_flip_p` is the paired randomisation
(sign-flip) test on per-item differences of any size: exact by enumeration for up to 16 nonzero differences, else a
seeded Monte Carlo estimate; on right/wrong differences it reduces to :func:`sign_test`. Chapters 02, 08 and 10 use
:func:`sign_test`, chapter 10 :func:`sign_flip_p`. :func:`holm_adjust` corrects the p-values of several comparisons
for their number (S. Holm, "A Simple Sequentially Rejective Multiple Test Procedure", 1979); chapters 04, 05, 08 and
10 use it. :func:`p_text` prints a p-value so that a small one never reads as 0.00 (chapters 04, 05 and 10).
Left out: the mid-p correction, confidence intervals, tests for more than two methods.
"""

from __future__ import annotations

import math
import operator
from typing import Hashable, Mapping, TypeVar

import numpy as np
import torch

from course_utils.arguments import check_int, check_real
from course_utils.device import make_generator

K = TypeVar("K", bound=Hashable)


def sign_test(wins: int, n: int) -> float:
    """Exact two-sided sign test: the probability, under a fair coin, of a split of ``n`` at least as uneven as
    ``wins`` against ``n - wins`` (ties are dropped before). McNemar's exact test when the n are discordant pairs."""
    try:                                             # any integer type (int, numpy or 0-d tensor ints); no bools
        for v in (wins, n):
            # np.bool_: numpy 1.x's operator.index takes it as 0 or 1 (numpy 2 refuses it)
            if isinstance(v, (bool, np.bool_)) or getattr(v, "dtype", None) == torch.bool or getattr(v, "ndim", 0):
                raise TypeError
        wins, n = operator.index(wins), operator.index(n)
    except TypeError:
        raise ValueError(f"need integers 0 <= wins <= n, got wins={wins!r}, n={n!r}") from None
    if not 0 <= wins <= n:
        raise ValueError(f"need integers 0 <= wins <= n, got wins={wins!r}, n={n!r}")
    term = tail = 1                                  # tail = sum of C(n, k) for k <= min(wins, n - wins)
    for k in range(min(wins, n - wins)):             # exact integers, one multiplication per term (fast at n = 1e5)
        term = term * (n - k) // (k + 1)
        tail += term
    return min(1.0, 2 * tail / 2 ** n)


def sign_flip_p(diffs, draws: int = 100_000, seed: int = 5) -> float:
    """Two-sided p of the paired sign-flip test on per-item differences ``diffs`` (a 1-D tensor or list, any device):
    the share of sign patterns of the nonzero differences whose sum is at least as far from 0 as the real sum.
    Differences of equal size (right/wrong answers) reduce it to :func:`sign_test`; otherwise every pattern when
    there are at most 16, else ``draws`` random patterns (generator seeded with ``seed``), the real one counted once."""
    d = torch.as_tensor(diffs).detach().to("cpu", torch.float64)
    if d.dim() != 1:
        raise ValueError(f"diffs must be one difference per item (1-D), got shape {tuple(d.shape)}")
    if not torch.isfinite(d).all():
        raise ValueError(f"diffs must be finite; {int((~torch.isfinite(d)).sum())} of {len(d)} are NaN or inf (a "
                         "failed score?): fix or drop those items first")
    draws = check_int(draws, "draws", minimum=1, allowed="an int >= 1 (random sign patterns, used above 16 items)")
    d = d[d.abs() > 1e-12]                                                                  # (m,) nonzero differences
    if len(d) == 0:
        return 1.0
    if torch.allclose(d.abs(), d.abs()[0].expand_as(d)):
        return sign_test(int((d > 0).sum()), len(d))
    if len(d) <= 16:
        signs = 1 - 2 * ((torch.arange(2 ** len(d))[:, None] >> torch.arange(len(d))) & 1)   # (2^m, m) every pattern
        return ((signs.double() @ d).abs() >= d.sum().abs() - 1e-6).double().mean().item()   # ties: float32 sums
    flips = torch.randint(0, 2, (draws, len(d)), generator=make_generator(seed, "cpu")) * 2 - 1  # (draws, m)
    return (((flips.double() @ d).abs() >= d.sum().abs() - 1e-6).sum().item() + 1) / (draws + 1)


def holm_adjust(p_values: Mapping[K, float]) -> dict[K, float]:
    """Holm's step-down adjustment of ``m`` p-values (``{comparison: p}``): the j-th smallest (j = 1, ..., m) is
    multiplied by m - j + 1, then a running maximum makes the results non-decreasing in that order, capped at 1 (the
    loop below counts j from 0, so it multiplies by m - j). Rejecting every comparison
    whose adjusted p is below a level controls the chance of any false rejection at that level; at least as powerful as
    Bonferroni's m * p. Ties keep the mapping's order. Returns a dict with the same keys."""
    if not isinstance(p_values, Mapping):
        raise TypeError(f"p_values must be a mapping {{comparison: p-value}}, got {type(p_values).__name__}")
    for key, value in p_values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
                or not 0 <= float(value) <= 1:
            raise ValueError(f"p-value of {key!r} must be a number in [0, 1], got {value!r}")
    adjusted, running, m = {}, 0.0, len(p_values)
    for j, (key, value) in enumerate(sorted(p_values.items(), key=lambda kv: float(kv[1]))):
        running = max(running, min(1.0, (m - j) * float(value)))
        adjusted[key] = running
    return {key: adjusted[key] for key in p_values}


def p_text(p: float) -> str:
    """A p-value to 2 significant figures and at least 2 decimals ("0.25", "0.0011"), so that a small p never reads as
    "0.00"; "0" only for a p of exactly 0."""
    value = check_real(p, "p", minimum=0.0, maximum=1.0, allowed="a p-value in [0, 1]")
    return f"{value:.{max(2, 1 - math.floor(math.log10(value)))}f}" if value > 0 else "0"
