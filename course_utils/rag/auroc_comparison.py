"""Are two AUROCs on the same answers different? DeLong's test, a permutation test, and a rule choosing one.

Two signals (a hallucination detector and a trivial baseline such as the reply's length) scored by AUROC
(:func:`course_utils.rag.calibration.auroc`) on the same answers have correlated AUROCs; a test of their difference
must use that pairing.

* :func:`delong_test`: E. R. DeLong, D. M. DeLong, D. L. Clarke-Pearson, "Comparing the Areas under Two or More
  Correlated Receiver Operating Characteristic Curves: A Nonparametric Approach", Biometrics, 1988: each AUROC is the
  mean of its structural components (V10 per positive, V01 per negative, ties counting 1/2 as in ``auroc``);
  their sample covariances S10 and S01 give the 2x2 covariance S = S10 / n_pos + S01 / n_neg of the two AUROCs, and
  z = (A1 - A2) / sqrt(var(A1 - A2)), var(A1 - A2) = (1, -1) S (1, -1)^T, is compared with a standard normal
  (two-sided). The test accounts for the correlation of the two AUROCs (the same answers); its normal approximation
  is rough with a handful of answers per class.
* :func:`auroc_permutation_test`: the same question with p-values valid at any size under its null, after A. Bandos,
  H. Rockette, D. Gur, "A permutation test sensitive to differences in areas for comparing ROC curves from a paired
  design", Statistics in Medicine, 2005: each signal is replaced by its ranks over the answers (which leaves its AUROC
  unchanged and puts both on one scale), and the p-value is the share of the 2^N ways of swapping the two ranks of
  each answer whose AUROC difference is at least as large in size as the observed one (all of them up to 16 answers,
  else a seeded random sample). Its null hypothesis is that the two signals rank the answers alike (each answer's two
  ranks could be swapped), a test of equal ROC curves that reacts to a difference of areas.
  :func:`compare_aurocs` is the rule a chapter fixes in advance: DeLong's test when each class holds at least
  ``small_class`` answers, the permutation test below that.

Inputs may be lists, numpy arrays or tensors on any device. Left out: more than two signals at once (use pairs and
:func:`course_utils.evaluate.significance.holm_adjust`), confidence intervals for a difference, partial AUROCs.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from course_utils.arguments import check_int
from course_utils.device import make_generator
from course_utils.rag.calibration import _class_counts, _labels, _mid_ranks, _scores


def _paired(scores_a: object, scores_b: object, labels: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two signals' scores and the labels of the answers they both score, checked: (N,) float, (N,) float, (N,) bool."""
    a = _scores("scores_a", scores_a, unit=False)
    b = _scores("scores_b", scores_b, unit=False)
    if len(b) != len(a):
        raise ValueError(f"scores_a has {len(a)} entries and scores_b {len(b)}: both score the same answers")
    return a, b, _labels("labels", labels, len(a))


class AurocDifference(NamedTuple):
    difference: float  # AUROC of scores_a minus AUROC of scores_b, on the same answers
    p_value: float  # two-sided, DeLong's normal approximation


def delong_test(scores_a: object, scores_b: object, labels: object) -> AurocDifference:
    """DeLong et al. (1988): the difference of two AUROCs computed on the same ``labels`` and a two-sided p-value for
    "the two signals rank the answers equally well". Needs at least two positives and two negatives (the covariances
    are sample covariances). When var(A1 - A2) is 0 (e.g. the same ranking twice) p is 1 for a difference of 0, and 0
    otherwise: the normal approximation's limit, not a probability (:func:`compare_aurocs` then uses the permutation
    test). Exact in integers up to the final square root: V10 of a positive is (2 wins + ties) / (2 n_neg)."""
    a, b, y = _paired(scores_a, scores_b, labels)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if min(n_pos, n_neg) < 2:
        raise ValueError(f"delong_test needs at least two positives and two negatives (a variance per class), got "
                         f"{n_pos} positives and {n_neg} negatives")

    def components(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # 2 n_neg V10 per positive and 2 n_pos V01 per negative, as integers: 2 x (wins) + ties
        pos, neg = np.sort(s[y]), np.sort(s[~y])
        v10 = np.searchsorted(neg, s[y], side="left") + np.searchsorted(neg, s[y], side="right")
        v01 = 2 * n_pos - np.searchsorted(pos, s[~y], side="left") - np.searchsorted(pos, s[~y], side="right")
        return v10.astype(np.int64), v01.astype(np.int64)

    (a10, a01), (b10, b01) = components(a), components(b)
    d10, d01 = (a10 - b10).tolist(), (a01 - b01).tolist()   # Python ints: the sums below are exact
    difference = sum(d10) / (2 * n_pos * n_neg)
    # the contrast (1, -1) S (1, -1)^T: the sample variance of V10_a - V10_b over n_pos, plus that of V01 over n_neg
    spread = lambda d: len(d) * sum(x * x for x in d) - sum(d) ** 2   # n (n - 1) x sample variance, an integer
    variance = (spread(d10) / (n_pos * (n_pos - 1) * (2 * n_neg) ** 2 * n_pos)
                + spread(d01) / (n_neg * (n_neg - 1) * (2 * n_pos) ** 2 * n_neg))
    if spread(d10) == 0 and spread(d01) == 0:
        return AurocDifference(difference, 1.0 if sum(d10) == 0 else 0.0)
    return AurocDifference(difference, math.erfc(abs(difference) / math.sqrt(variance) / math.sqrt(2)))


class AurocPermutation(NamedTuple):
    difference: float  # AUROC of scores_a minus AUROC of scores_b, on the same answers
    p_value: float  # two-sided: the share of swap patterns whose |difference| is at least the observed one
    patterns: int  # swap patterns counted (2^N when exact; the random draws plus the observed one otherwise)
    exact: bool  # every pattern (True) or a seeded random sample of them (False)


def auroc_permutation_test(scores_a: object, scores_b: object, labels: object, draws: int = 20_000,
                           seed: int = 0, exact_up_to: int = 16) -> AurocPermutation:
    """Bandos, Rockette and Gur (2005): the AUROC difference of two signals on the same ``labels`` and its two-sided
    p-value under "the two signals rank the answers alike" (exact under that null when every pattern is counted; a
    little more than equal AUROCs: crossing ROC curves with equal areas can still be told apart), by swapping the two
    signals' ranks answer by answer. Every one of the 2^N swap patterns when N <= ``exact_up_to``, else ``draws``
    random patterns (a CPU generator seeded with ``seed``), the observed one counted once. Needs one positive and one
    negative at least; valid at any size, where :func:`delong_test` relies on a normal approximation. Differences are
    compared as integers (2 x wins + ties), so ties between patterns are exact."""
    a, b, y = _paired(scores_a, scores_b, labels)
    _class_counts(y)
    draws = check_int(draws, "draws", minimum=1, allowed="an int >= 1 (random swap patterns, used above exact_up_to)")
    exact_up_to = check_int(exact_up_to, "exact_up_to", minimum=0, maximum=20,
                            allowed="an int in [0, 20] (2^N patterns are enumerated up to N = exact_up_to)")
    n, ranks = len(a), np.stack([_mid_ranks(a), _mid_ranks(b)])          # (2, N): twice the ranks, on one scale
    if n <= exact_up_to:
        swaps = (np.arange(2 ** n)[:, None] >> np.arange(n)) & 1         # (2^N, N) every pattern, row 0 the observed
    else:
        drawn = torch.randint(0, 2, (draws, n), generator=make_generator(seed, "cpu")).numpy()
        swaps = np.concatenate([np.zeros((1, n), dtype=drawn.dtype), drawn])       # (1 + draws, N), row 0 observed
    # 2 x wins + ties of each positive against each negative, summed: 2 U, an integer; (P, N) -> (P,)
    two_u = lambda x: (np.sign(x[:, y][:, :, None] - x[:, ~y][:, None, :]) + 1).sum(axis=(1, 2))
    chunks = np.array_split(swaps, max(1, len(swaps) * n * n // 8_000_000))    # about 8e6 comparisons at a time
    d = np.concatenate([two_u(np.where(c == 1, ranks[1], ranks[0])) - two_u(np.where(c == 1, ranks[0], ranks[1]))
                        for c in chunks])                      # (P,) 2 n_pos n_neg x (AUROC a - AUROC b) per pattern
    extreme = int((np.abs(d) >= abs(d[0])).sum())                          # the observed pattern included
    return AurocPermutation(float(d[0]) / (2 * int(y.sum()) * int((~y).sum())), extreme / len(d), len(d),
                            n <= exact_up_to)


class AurocComparison(NamedTuple):
    difference: float  # AUROC of scores_a minus AUROC of scores_b
    p_value: float  # two-sided
    test: str  # "DeLong" or "permutation"


def compare_aurocs(scores_a: object, scores_b: object, labels: object, small_class: int = 10,
                   seed: int = 0) -> AurocComparison:
    """Two AUROCs on the same answers, by a rule fixed before the data: :func:`delong_test` when both classes hold at
    least ``small_class`` answers, else :func:`auroc_permutation_test` (every swap pattern, or 20,000 seeded draws
    above 16 answers), whose p-values stay valid where DeLong's normal approximation runs small. DeLong's p of
    exactly 0 (a variance estimate of 0, or a z beyond floating point) is replaced by the permutation test's too."""
    small_class = check_int(small_class, "small_class", minimum=2,
                            allowed="an int >= 2 (DeLong needs two answers per class)")
    if min(_class_counts(labels)) >= small_class:
        delong = delong_test(scores_a, scores_b, labels)
        if delong.p_value > 0:
            return AurocComparison(*delong, "DeLong")
    result = auroc_permutation_test(scores_a, scores_b, labels, seed=seed)
    return AurocComparison(result.difference, result.p_value, "permutation")
