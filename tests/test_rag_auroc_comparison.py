"""Two AUROCs on the same answers: DeLong's test on a hand-computed case and against a direct O(n^2) computation of
its 2x2 covariance; the permutation test (Bandos et al., 2005) on a hand-counted case, against brute-force enumeration
of every swap pattern with scipy's ranks, its Monte Carlo estimate against the exact value, and its false-alarm rate
under the null at a small class (seeded simulation); the rule that picks one test; bad input is refused."""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.stats import rankdata

from course_utils.rag.auroc_comparison import (AurocComparison, AurocDifference, AurocPermutation,
                                               auroc_permutation_test, compare_aurocs, delong_test)
from course_utils.rag.calibration import auroc


def test_delong_by_hand():
    # positives a: .9 .8 .3, negatives .4 .2 .1: V10 = 1, 1, 2/3; V01 = 2/3, 1, 1; AUROC 8/9
    # positives b: .9 .2 .5, negatives .5 .1 .3: V10 = 1, 1/3, 5/6 (a tie counts 1/2); V01 = 1/2, 1, 2/3; AUROC 13/18
    # V10 differences 0, 2/3, -1/6: sample variance 7/36; V01 differences 1/6, 0, 1/3: 1/36
    # var(A_a - A_b) = 7/36 / 3 + 1/36 / 3 = 2/27; z = (1/6) / sqrt(2/27) = sqrt(3/8); p = erfc(z / sqrt 2)
    labels = [1, 1, 1, 0, 0, 0]
    a = [0.9, 0.8, 0.3, 0.4, 0.2, 0.1]
    b = [0.9, 0.2, 0.5, 0.5, 0.1, 0.3]
    result = delong_test(a, b, labels)
    assert isinstance(result, AurocDifference)
    assert result.difference == pytest.approx(8 / 9 - 13 / 18) == pytest.approx(auroc(a, labels) - auroc(b, labels))
    assert result.p_value == pytest.approx(math.erfc(math.sqrt(3) / 4))
    swapped = delong_test(b, a, labels)                       # symmetric: the sign flips, p stays
    assert swapped.difference == -result.difference and swapped.p_value == result.p_value


def _delong_direct(a, b, labels):
    # the paper's definitions, pair by pair: psi(X, Y) = 1 if X > Y, 1/2 if X = Y, 0 otherwise
    labels = np.asarray(labels, dtype=bool)
    v10, v01 = [], []
    for s in (np.asarray(a, float), np.asarray(b, float)):
        psi = np.array([[1.0 if x > z else 0.5 if x == z else 0.0 for z in s[~labels]] for x in s[labels]])
        v10.append(psi.mean(axis=1))                           # one per positive
        v01.append(psi.mean(axis=0))                           # one per negative
    cov = np.cov(np.array(v10)) / labels.sum() + np.cov(np.array(v01)) / (~labels).sum()   # the 2x2 S
    contrast = np.array([1.0, -1.0])
    difference = v10[0].mean() - v10[1].mean()
    return difference, math.erfc(abs(difference) / math.sqrt(contrast @ cov @ contrast) / math.sqrt(2))


def test_delong_agrees_with_a_direct_computation_of_its_covariance():
    rng = np.random.default_rng(11)
    for _ in range(30):
        n = int(rng.integers(6, 40))
        labels = rng.permutation(np.arange(n) < rng.integers(2, n - 1))        # at least two of each class
        a = np.round(labels + rng.normal(size=n), 1)                            # rounded: ties occur
        b = np.round(0.5 * labels + rng.normal(size=n), 1)
        difference, p = _delong_direct(a, b, labels)
        result = delong_test(a, b, labels)
        assert result.difference == pytest.approx(difference, abs=1e-12)
        assert result.p_value == pytest.approx(p, rel=1e-9, abs=1e-12)


def test_delong_identical_and_strongly_different_signals():
    labels = np.arange(60) % 2 == 0
    rng = np.random.default_rng(3)
    noise = rng.normal(size=60)
    assert delong_test(noise, noise, labels) == (0.0, 1.0)                     # the same ranking: var 0, p = 1
    assert delong_test(noise, 2 * noise + 5, labels) == (0.0, 1.0)             # any increasing transform of it
    good = labels + 0.3 * rng.normal(size=60)                                   # AUROC near 1 against near 0.5
    result = delong_test(good, noise, labels)
    assert result.difference > 0.3 and result.p_value < 0.05
    # equal AUROCs from different rankings: a difference of 0 with a positive variance, p = 1
    assert delong_test([2, 1, 4, 3], [1, 2, 3, 4], [1, 1, 0, 0]) == (0.0, 1.0)
    # perfect against perfectly inverted: every V10 and V01 difference is 1, so the variance is 0 and p = 0
    assert delong_test([4, 3, 2, 1], [1, 2, 3, 4], [1, 1, 0, 0]) == (1.0, 0.0)
    # a length baseline and a product of per-token probabilities (length in disguise) rank alike: p = 1
    n_tokens = np.array([3, 4, 9, 12, 5, 20])
    assert delong_test(np.exp(-0.7 * n_tokens), -n_tokens, [1, 1, 0, 0, 1, 0]).p_value == 1.0
    # tensors on any device, numpy arrays and lists alike
    a, labels = torch.tensor([0.9, 0.8, 0.3, 0.4, 0.2, 0.1]), torch.tensor([1, 1, 1, 0, 0, 0])
    result = delong_test(a, np.array([0.9, 0.2, 0.5, 0.5, 0.1, 0.3]), labels)
    assert result.p_value == pytest.approx(math.erfc(math.sqrt(3) / 4))


def test_delong_rejects_bad_input():
    with pytest.raises(ValueError, match="at least two positives and two negatives.*1 positives and 3"):
        delong_test([1, 2, 3, 4], [4, 3, 2, 1], [1, 0, 0, 0])
    with pytest.raises(ValueError, match="scores_a has 4 entries and scores_b 3"):
        delong_test([1, 2, 3, 4], [4, 3, 2], [1, 1, 0, 0])
    with pytest.raises(ValueError, match="labels has 3 entries"):
        delong_test([1, 2, 3, 4], [4, 3, 2, 1], [1, 1, 0])
    with pytest.raises(ValueError, match="scores_b must be finite"):
        delong_test([1, 2, 3, 4], [4, 3, float("nan"), 1], [1, 1, 0, 0])
    with pytest.raises(TypeError, match="scores_a must be a list"):
        delong_test("abcd", [4, 3, 2, 1], [1, 1, 0, 0])
    with pytest.raises(ValueError, match="labels must be booleans or 0/1"):
        delong_test([1, 2, 3, 4], [4, 3, 2, 1], [1, 2, 0, 0])


def test_permutation_test_by_hand():
    # perfect against perfectly inverted on 2 + 2 answers: of the 16 swap patterns only "none" and "all" give an AUROC
    # difference of size 1 (any other mix puts a negative's rank above a positive's in one signal): p = 2 / 16
    result = auroc_permutation_test([4, 3, 2, 1], [1, 2, 3, 4], [1, 1, 0, 0])
    assert isinstance(result, AurocPermutation)
    assert result == (1.0, 0.125, 16, True)
    assert auroc_permutation_test([1, 2, 3, 4], [4, 3, 2, 1], [1, 1, 0, 0]) == (-1.0, 0.125, 16, True)
    noise = np.random.default_rng(2).normal(size=12)
    labels = np.arange(12) % 3 == 0
    assert auroc_permutation_test(noise, 3 * noise - 1, labels)[:2] == (0.0, 1.0)   # the same ranking: p = 1
    # one positive is enough: ranks (3, 1, 2) and (1, 2, 3), AUROCs 1 and 0; of the 8 patterns, swapping only the
    # positive gives AUROCs 1/4 and 3/4, only one negative 1 and 1/4 or 3/4 and 0, ...: |difference| 1 twice, p = 2 / 8
    assert auroc_permutation_test([5.0, 1, 2], [0.0, 1, 2], [1, 0, 0]) == (1.0, 0.25, 8, True)


def _brute_force(a, b, labels):
    ra, rb = rankdata(a), rankdata(b)                          # average ranks, an independent implementation
    diffs = np.array([auroc(np.where(swap, rb, ra), labels) - auroc(np.where(swap, ra, rb), labels)
                      for swap in map(np.array, itertools.product([False, True], repeat=len(a)))])
    return diffs[0], np.mean(np.abs(diffs) >= abs(diffs[0]) - 1e-12)


def test_permutation_test_agrees_with_brute_force_enumeration():
    rng = np.random.default_rng(7)
    for _ in range(25):
        n = int(rng.integers(3, 11))
        labels = rng.permutation(np.arange(n) < rng.integers(1, n))             # at least one of each class
        a = rng.integers(0, 4, n).astype(float)                                  # many ties
        b = np.round(labels + rng.normal(size=n), 1)
        result = auroc_permutation_test(a, b, labels)
        difference, p = _brute_force(a, b, labels)
        assert result.exact and result.patterns == 2 ** n
        assert result.difference == pytest.approx(difference, abs=1e-12)
        assert result.difference == pytest.approx(auroc(a, labels) - auroc(b, labels), abs=1e-12)
        assert result.p_value == pytest.approx(p, abs=1e-12)


def test_permutation_monte_carlo_estimates_the_exact_p():
    rng = np.random.default_rng(8)
    labels = np.arange(14) < 5
    a, b = rng.normal(size=14) + 0.8 * labels, rng.normal(size=14)
    exact = auroc_permutation_test(a, b, labels)
    drawn = auroc_permutation_test(a, b, labels, exact_up_to=0, draws=20_000, seed=3)
    assert exact.exact and not drawn.exact and drawn.patterns == 20_001
    assert drawn.difference == exact.difference
    assert abs(drawn.p_value - exact.p_value) < 0.02                   # about 5 standard errors of 20,000 draws
    assert auroc_permutation_test(a, b, labels, exact_up_to=0, seed=3) == drawn     # seeded: repeatable
    assert auroc_permutation_test(torch.tensor(a), b.tolist(), torch.tensor(labels)) == exact   # any input form


def test_permutation_test_keeps_its_level_where_classes_are_small():
    # under the null (each answer's two scores drawn alike), 4 right and 20 wrong answers: at most 5% false alarms,
    # up to the simulation's noise (400 seeded sets: standard error about 1.1 points)
    rng = np.random.default_rng(12)
    labels = np.arange(24) < 4
    rejected = sum(auroc_permutation_test(labels + rng.normal(size=24), labels + rng.normal(size=24), labels,
                                          draws=2_000, seed=k).p_value < 0.05 for k in range(400))
    assert rejected / 400 <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 400)


def test_compare_aurocs_picks_delong_for_large_classes_and_the_permutation_test_below():
    rng = np.random.default_rng(4)
    labels = np.arange(40) % 2 == 0
    a, b = labels + rng.normal(size=40), rng.normal(size=40)
    large = compare_aurocs(a, b, labels)
    assert isinstance(large, AurocComparison) and large.test == "DeLong"
    assert large[:2] == delong_test(a, b, labels)
    small = compare_aurocs(a[:15], b[:15], labels[:15])                  # 8 and 7 answers per class
    assert small.test == "permutation"
    assert small[:2] == auroc_permutation_test(a[:15], b[:15], labels[:15])[:2]
    assert compare_aurocs(a, b, labels, small_class=21).test == "permutation"
    # perfect against perfectly inverted on 10 + 10 answers: DeLong's variance estimate is 0 and its p exactly 0, a
    # limit and not a probability, so the rule falls back on the permutation test (p = 2 / 20,001 of seeded patterns)
    perfect, y = np.arange(20.0), np.arange(20) >= 10
    assert delong_test(perfect, -perfect, y) == (1.0, 0.0)
    fallback = compare_aurocs(perfect, -perfect, y)
    assert fallback.test == "permutation" and fallback.difference == 1.0 and 0 < fallback.p_value < 1e-3
    with pytest.raises(ValueError, match="small_class must be an int >= 2"):
        compare_aurocs(a, b, labels, small_class=1)


def test_permutation_test_rejects_bad_input():
    with pytest.raises(ValueError, match="both classes"):
        auroc_permutation_test([1, 2, 3], [3, 2, 1], [1, 1, 1])
    with pytest.raises(ValueError, match="scores_a has 4 entries and scores_b 3"):
        auroc_permutation_test([1, 2, 3, 4], [4, 3, 2], [1, 1, 0, 0])
    with pytest.raises(ValueError, match="scores_b must be finite"):
        auroc_permutation_test([1, 2, 3, 4], [4, 3, float("nan"), 1], [1, 1, 0, 0])
    with pytest.raises(ValueError, match="exact_up_to must be an int in \\[0, 20\\]"):
        auroc_permutation_test([1, 2, 3, 4], [4, 3, 2, 1], [1, 1, 0, 0], exact_up_to=30)
    with pytest.raises(ValueError, match="draws must be an int >= 1"):
        auroc_permutation_test([1, 2, 3, 4], [4, 3, 2, 1], [1, 1, 0, 0], draws=0)
