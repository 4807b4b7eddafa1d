"""Calibration and detection metrics: hand-computed bins, ECE, abstention points and AUROCs; AUROC against brute-force
pair counting, the trapezoid area under our ROC curve and scipy's Mann-Whitney U; the resolution of an AUROC (the most
one moved answer changes it) by brute force; bad input is refused with a message. Tests of two AUROCs against each
other are in test_rag_auroc_comparison.py."""

import math

import numpy as np
import pytest
import torch

from course_utils.device import make_generator
from course_utils.rag.calibration import (ReliabilityBins, abstain_at, abstention_curve, auroc, auroc_resolution,
                                          calibrated_ece_samples, expected_calibration_error, majority_agreement,
                                          reliability_bins, roc_curve, self_consistency)

CONF = [0.05, 0.15, 0.1, 0.95, 1.0, 0.5]
HIT = [1, 0, 1, 1, 0, 1]


def test_reliability_bins_by_hand():
    bins = reliability_bins(CONF, HIT, n_bins=10)
    assert isinstance(bins, ReliabilityBins)
    np.testing.assert_array_equal(bins.edges, np.arange(11) / 10)
    assert bins.counts.tolist() == [1, 2, 0, 0, 0, 1, 0, 0, 0, 2]  # 0.1 opens bin 1; 1.0 closes the last bin
    full = bins.counts > 0
    np.testing.assert_allclose(bins.mean_confidence[full], [0.05, 0.125, 0.5, 0.975])
    np.testing.assert_allclose(bins.accuracy[full], [1.0, 0.5, 1.0, 0.5])
    assert np.isnan(bins.mean_confidence[~full]).all() and np.isnan(bins.accuracy[~full]).all()


@pytest.mark.parametrize("n_bins", [3, 7, 10])
def test_every_edge_opens_its_own_bin(n_bins):
    edges = [k / n_bins for k in range(n_bins)] + [1.0]
    bins = reliability_bins(edges, [1] * len(edges), n_bins)
    assert bins.counts.tolist() == [1] * (n_bins - 1) + [2]


def test_ece_by_hand_and_against_a_loop():
    # (1*|1-.05| + 2*|.5-.125| + 1*|1-.5| + 2*|.5-.975|) / 6 = 3.15 / 6
    assert expected_calibration_error(CONF, HIT) == pytest.approx(0.525)
    assert expected_calibration_error(CONF, HIT, n_bins=1) == pytest.approx(abs(4 / 6 - np.mean(CONF)))
    rng = np.random.default_rng(0)
    conf, hit = rng.random(500), rng.random(500) < 0.6
    loop = 0.0
    for i in range(15):
        inside = (conf >= i / 15) & ((conf < (i + 1) / 15) | (i == 14))
        if inside.any():
            loop += inside.sum() / 500 * abs(hit[inside].mean() - conf[inside].mean())
    assert expected_calibration_error(conf, hit, n_bins=15) == pytest.approx(loop)
    assert expected_calibration_error([1.0, 0.0], [True, False]) == 0.0  # perfectly calibrated and sharp


def test_inputs_may_be_lists_arrays_or_tensors():
    expected = expected_calibration_error(CONF, HIT)
    tensor = torch.tensor(CONF, requires_grad=True)
    assert expected_calibration_error(tensor, torch.tensor(HIT, dtype=torch.bool)) == pytest.approx(expected)
    assert expected_calibration_error(np.array(CONF, dtype=np.float32), np.array(HIT)) == pytest.approx(expected)


@pytest.mark.parametrize("confidence, correct, n_bins, error, match", [
    ([0.5, 1.2], [1, 0], 10, ValueError, r"confidence must lie in \[0, 1\]"),
    ([0.5, -0.1], [1, 0], 10, ValueError, r"confidence must lie in \[0, 1\]"),
    ([0.5, math.nan], [1, 0], 10, ValueError, "confidence must be finite"),
    ([0.5, 0.2], [1], 10, ValueError, "correct has 1 entries but the scores have 2"),
    ([0.5, 0.2], [1, 2], 10, ValueError, "correct must be booleans or 0/1"),
    ([], [], 10, ValueError, "confidence must be a non-empty 1-D sequence"),
    ([[0.5]], [[1]], 10, ValueError, "non-empty 1-D"),
    ("0.5", [1], 10, TypeError, "confidence must be a list, numpy array or tensor"),
    (["a"], [1], 10, TypeError, "confidence must hold numbers"),
    ([0.5], [1], 0, ValueError, "n_bins must be an int >= 1, got 0"),
    ([0.5], [1], 2.0, ValueError, "n_bins must be an int >= 1"),
])
def test_calibration_rejects_bad_input(confidence, correct, n_bins, error, match):
    with pytest.raises(error, match=match):
        expected_calibration_error(confidence, correct, n_bins)


def test_abstention_by_hand():
    conf, hit = [0.9, 0.2, 0.9, 0.5], [1, 0, 0, 1]
    thresholds, coverage, accuracy = abstention_curve(conf, hit)
    np.testing.assert_allclose(thresholds, [0.2, 0.5, 0.9])
    np.testing.assert_allclose(coverage, [1.0, 0.75, 0.5])
    np.testing.assert_allclose(accuracy, [0.5, 2 / 3, 0.5])  # the two tied 0.9s are answered together
    point = abstain_at(conf, hit, 0.5)
    assert point == pytest.approx((0.75, 2 / 3, 0.25))
    coverage, accuracy, hallucination = abstain_at(conf, hit, 0.95)  # unpacks: nothing answered, nothing wrong
    assert coverage == 0.0 and math.isnan(accuracy) and hallucination == 0.0
    assert abstain_at(conf, hit, -1).hallucination_rate == 0.5  # answer all: every wrong answer counts
    with pytest.raises(ValueError, match="threshold must be a number"):
        abstain_at(conf, hit, None)


def test_abstention_curve_matches_abstain_at_everywhere():
    rng = np.random.default_rng(1)
    conf = rng.integers(0, 20, 200) / 19  # many ties
    hit = rng.random(200) < conf  # higher confidence, more often right
    for t, c, a in zip(*abstention_curve(conf, hit)):
        point = abstain_at(conf, hit, float(t))
        assert (c, a) == pytest.approx((point.coverage, point.accuracy))
    assert abstention_curve(np.log(conf + 0.1), hit)[0].min() < 0  # any real score works (log-probabilities)


def pairs_auroc(scores, labels):
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


def test_auroc_by_hand():
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert auroc([0.5, 0.5, 0.2, 0.9], [1, 0, 0, 1]) == pytest.approx(0.875)  # a tie counts 1/2
    assert auroc([3.0, 3.0, 3.0], [1, 0, 1]) == 0.5  # a constant score carries no information
    assert auroc([-5.0, -1.0], [False, True]) == 1.0 and auroc([-5.0, -1.0], [True, False]) == 0.0


def test_auroc_equals_pair_counting_trapezoid_and_scipy():
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(2)
    labels = rng.random(300) < 0.4
    scores = np.round(rng.normal(size=300) + labels, 1)  # rounded: many ties
    value = auroc(scores, labels)
    assert value == pytest.approx(pairs_auroc(scores.tolist(), labels.tolist()))
    fpr, tpr, thresholds = roc_curve(scores, labels)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0) and thresholds[0] == np.inf
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert value == pytest.approx(float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)))
    u = mannwhitneyu(scores[labels], scores[~labels]).statistic
    assert value == pytest.approx(u / (labels.sum() * (~labels).sum()))
    assert auroc(np.exp(scores), labels) == pytest.approx(value)  # ranks only: any increasing transform


def test_auroc_needs_both_classes():
    with pytest.raises(ValueError, match="labels must contain both classes.*only positives"):
        auroc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="only negatives"):
        roc_curve([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match="labels has 1 entries"):
        auroc([0.1, 0.2], [1])


def test_auroc_resolution_is_the_most_one_moved_answer_changes_an_auroc():
    assert auroc_resolution([1, 1, 0, 0, 0, 0]) == 0.5 and auroc_resolution([True, False, False]) == 1.0
    rng = np.random.default_rng(4)
    for _ in range(20):
        n = int(rng.integers(3, 12))
        labels = rng.permutation(np.arange(n) < rng.integers(1, n))           # both classes
        scores = rng.normal(size=n)
        base = auroc(scores, labels)
        moved = [auroc(np.where(np.arange(n) == i, to, scores), labels) for i in range(n) for to in (-99.0, 99.0)]
        assert max(abs(m - base) for m in moved) <= auroc_resolution(labels) + 1e-12
        # the bound is reached: a member of the smaller class moved from the bottom of the ranking to the top
        i = int(np.where(labels if labels.sum() <= (~labels).sum() else ~labels)[0][0])
        at = lambda value: np.where(np.arange(n) == i, value, scores)
        assert abs(auroc(at(99.0), labels) - auroc(at(-99.0), labels)) == pytest.approx(auroc_resolution(labels))
    with pytest.raises(ValueError, match="both classes.*only positives"):
        auroc_resolution([1, 1])


def test_self_consistency_and_majority_agreement():
    same = lambda a, b: float(a.lower() == b.lower())  # noqa: E731
    assert self_consistency(["Paris", "paris", "Lyon"], "Paris", same) == pytest.approx(2 / 3)
    overlap = lambda a, b: len(set(a.split()) & set(b.split())) / len(set(a.split()) | set(b.split()))  # noqa: E731
    assert self_consistency(["the red fox", "a red fox"], "red fox", overlap) == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert majority_agreement(["a", "A", "b", "c"], str.lower) == 0.5
    assert majority_agreement(["x", "y", "z"], str.lower) == pytest.approx(1 / 3)
    assert majority_agreement(["x"] * 5, str.strip) == 1.0


def test_self_consistency_rejects_bad_input():
    same = lambda a, b: float(a == b)  # noqa: E731
    with pytest.raises(TypeError, match="samples must be a non-empty sequence of strings"):
        self_consistency([], "a", same)
    with pytest.raises(TypeError, match="samples must be a non-empty sequence"):
        self_consistency("abc", "a", same)
    with pytest.raises(TypeError, match="every sample must be a string"):
        majority_agreement(["a", 3], str.lower)
    with pytest.raises(TypeError, match="reference must be a string"):
        self_consistency(["a"], None, same)
    with pytest.raises(TypeError, match="similar must be a function"):
        self_consistency(["a"], "a", "token_f1")
    with pytest.raises(ValueError, match=r"similar must return numbers in \[0, 1\]"):
        self_consistency(["a"], "a", lambda a, b: 2.0)
    with pytest.raises(TypeError, match="normalize must be a function"):
        majority_agreement(["a"], None)


def test_abstain_at_takes_a_numpy_threshold():
    conf = np.random.default_rng(0).random(50).astype(np.float32)
    hit = np.random.default_rng(1).random(50) < 0.5
    threshold = np.quantile(conf, 0.2)  # a numpy float32, which was refused as "not a number"
    assert abstain_at(conf, hit, threshold) == abstain_at(conf, hit, float(threshold))
    with pytest.raises(ValueError, match="threshold"):
        abstain_at(conf, hit, np.float32("nan"))


def test_numpy_bin_counts_give_the_same_bins():
    ours, plain = reliability_bins(CONF, HIT, n_bins=np.int64(7)), reliability_bins(CONF, HIT, n_bins=7)
    assert all(np.array_equal(getattr(ours, f), getattr(plain, f), equal_nan=True)
               for f in ("edges", "counts", "mean_confidence", "accuracy"))
    assert expected_calibration_error(CONF, HIT, np.int32(5)) == expected_calibration_error(CONF, HIT, 5)
    for bad in (True, np.float64(5.0)):
        with pytest.raises(ValueError, match="n_bins must be an int >= 1"):
            reliability_bins(CONF, HIT, bad)


def test_calibrated_ece_samples_by_hand_and_against_a_loop():
    # certain confidences: every draw reproduces them exactly, so a perfectly calibrated model scores 0
    assert (calibrated_ece_samples([0.0, 1.0, 1.0], 50, make_generator(0, "cpu")) == 0).all()
    # one answer at 0.5: right or wrong, its one bin is 0.5 away from the confidence
    assert np.allclose(calibrated_ece_samples([0.5], 40, make_generator(0, "cpu")), 0.5)
    # three answers at 0.5 in one bin: gaps |k/3 - 1/2| with k ~ Binomial(3, 1/2): 1/6 or 1/2, mean 1/4
    eces = calibrated_ece_samples([0.5, 0.5, 0.5], 20_000, make_generator(1, "cpu"))
    assert set(np.round(eces, 12)) == {round(1 / 6, 12), 0.5} and eces.mean() == pytest.approx(0.25, abs=0.01)
    # the same draws as a loop over Bernoulli outcomes on the same generator
    conf = np.array(CONF)
    eces = calibrated_ece_samples(conf, 30, make_generator(7, "cpu"), n_bins=5)
    draws = torch.bernoulli(torch.tensor(CONF, dtype=torch.float64).expand(30, -1), generator=make_generator(7, "cpu"))
    assert eces.shape == (30,)
    assert np.array_equal(eces, [expected_calibration_error(conf, d.numpy(), 5) for d in draws])


def test_calibrated_ece_samples_rejects_bad_input():
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        calibrated_ece_samples([0.5, 1.5], 10, make_generator(0, "cpu"))
    with pytest.raises(ValueError, match="n_draws"):
        calibrated_ece_samples([0.5], 0, make_generator(0, "cpu"))
    with pytest.raises(TypeError, match="CPU torch.Generator"):
        calibrated_ece_samples([0.5], 10, np.random.default_rng(0))
