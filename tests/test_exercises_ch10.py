"""Chapter 10's exercise checks accept the reference solution and other correct forms, reject likely wrong answers
without revealing the expected value, cannot be passed by calling the package's scoring, calibration or macro-F1,
and agree with hand computations and with the package (written independently)."""

import math

import numpy as np
import pytest
import torch

from course_utils.classify import calibration, metrics
from course_utils.exercises import ch10 as ex
from course_utils.solutions import ch10 as sol

from exercise_helpers import assert_hidden, rejects, refuses_reference_then_passes  # noqa: E402


# ---------- exercise 1: verbalizer scores ----------

def expected_scores():
    return torch.cat([ex._score_reference(l, i) for _, l, i in ex._score_cases()]).tolist()


def test_score_reference_hand_value():
    logits = [torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])]
    got = ex._score_reference(logits, [[1], [0, 1]])  # 1/2; 3/4 * 1/2
    assert got.tolist() == pytest.approx([math.log(0.5), math.log(0.375)])


def test_scores_accept_solution_and_other_forms():
    ex.check_verbalizer_scores(sol.verbalizer_scores)
    ex.check_verbalizer_scores(lambda l, i: sol.verbalizer_scores(l, i).tolist())
    ex.check_verbalizer_scores(lambda l, i: [float(torch.log_softmax(x.double(), -1)[range(len(t)), t].sum())
                                              for x, t in zip(l, i)])
    ex.check_verbalizer_scores(lambda l, i: np.array(sol.verbalizer_scores(l, i).tolist()))


def mean_not_sum(l, i):
    return [torch.log_softmax(x, -1)[range(len(t)), t].mean() for x, t in zip(l, i)]


def raw_logits(l, i):
    return [x[range(len(t)), t].sum() for x, t in zip(l, i)]


def probabilities(l, i):
    return sol.verbalizer_scores(l, i).exp()


def shifted_rows(l, i):
    return [torch.log_softmax(x, -1)[range(len(t)), t[::-1]].sum() for x, t in zip(l, i)]


def first_token_only(l, i):
    return [torch.log_softmax(x, -1)[0, t[0]] for x, t in zip(l, i)]


@pytest.mark.parametrize("wrong", [mean_not_sum, raw_logits, probabilities, shifted_rows, first_token_only])
def test_scores_reject_likely_mistakes(wrong):
    assert_hidden(rejects(ex.check_verbalizer_scores, wrong), expected_scores())


def test_scores_cannot_call_the_package():
    from course_utils.classify.scoring import label_probabilities

    def via_package(l, i):
        return label_probabilities(sol.verbalizer_scores(l, i)).log()

    assert "switched off" in rejects(ex.check_verbalizer_scores, via_package)


# ---------- exercise 2: contextual calibration ----------

def test_calibration_reference_hand_value_and_package_agreement():
    got = ex._calibration_reference(torch.tensor([[0.5, 0.5]]), torch.tensor([0.8, 0.2]))
    assert got.tolist() == [pytest.approx([0.2, 0.8])]  # (0.625, 2.5) / 3.125
    for _, probs, p_cf in ex._calibration_cases():
        assert torch.allclose(ex._calibration_reference(probs, p_cf),
                              calibration.contextual_calibration(probs, p_cf).double(), atol=1e-6)


def test_calibration_accepts_solution_and_other_forms():
    ex.check_calibrate(sol.calibrate)
    ex.check_calibrate(lambda p, c: sol.calibrate(p, c).tolist())
    ex.check_calibrate(lambda p, c: torch.softmax(p.double().log() - c.double().log(), -1))  # the same in logs


@pytest.mark.parametrize("wrong", [lambda p, c: p * c / (p * c).sum(-1, keepdim=True),
                                   lambda p, c: p / c,
                                   lambda p, c: (p - c).clamp(min=0) / (p - c).clamp(min=0).sum(-1, keepdim=True),
                                   lambda p, c: p,
                                   lambda p, c: (p / c) / (p / c).sum()])
def test_calibration_rejects_likely_mistakes(wrong):
    expected = torch.cat([ex._calibration_reference(p, c).flatten() for _, p, c in ex._calibration_cases()])
    assert_hidden(rejects(ex.check_calibrate, wrong), expected.tolist())


def test_calibration_cannot_call_the_package():
    assert "switched off" in rejects(ex.check_calibrate, calibration.contextual_calibration)


# ---------- exercise 3: macro-F1 ----------

def test_f1_reference_hand_value_and_package_agreement():
    # class a: TP 1, FP 1, FN 1 -> 0.5; class b: TP 0 -> 0; class c: TP 0 -> 0; mean 1/6
    assert ex._f1_reference(["a", "b", "a", "c"], ["a", "a", "b", "b"], ["a", "b", "c"]) == pytest.approx(1 / 6)
    # class a: TP 2, FP 1, FN 0 -> 0.8; class b: TP 1, FP 0, FN 1 -> 2/3; mean 11/15
    assert ex._f1_reference(["a", "b", "a", "b"], ["a", "a", "a", "b"], ["a", "b"]) == pytest.approx(11 / 15)
    for _, y_true, y_pred, classes in ex._f1_cases():
        assert ex._f1_reference(y_true, y_pred, classes) == pytest.approx(metrics.macro_f1(y_true, y_pred, classes))


def test_f1_accepts_solution_and_other_forms():
    ex.check_macro_f1(sol.macro_f1_by_hand)
    ex.check_macro_f1(lambda t, p, c: torch.tensor(sol.macro_f1_by_hand(t, p, c)))
    ex.check_macro_f1(lambda t, p, c: np.float32(sol.macro_f1_by_hand(t, p, c)))


def accuracy(t, p, c):
    return sum(a == b for a, b in zip(t, p)) / len(t)


def weighted_f1(t, p, c):
    per_class = [sol.macro_f1_by_hand(t, p, [k]) for k in c]
    return sum(f * t.count(k) for f, k in zip(per_class, c)) / len(t)


def present_classes_only(t, p, c):
    return sol.macro_f1_by_hand(t, p, sorted(set(p), key=str))


def mean_precision(t, p, c):
    return sum(sum(a == k and b == k for a, b in zip(t, p)) / max(1, p.count(k)) for k in c) / len(c)


@pytest.mark.parametrize("wrong", [accuracy, weighted_f1, present_classes_only, mean_precision])
def test_f1_rejects_likely_mistakes(wrong):
    expected = [ex._f1_reference(t, p, c) for _, t, p, c in ex._f1_cases()]
    assert_hidden(rejects(ex.check_macro_f1, wrong), expected)


def test_f1_cannot_call_the_package():
    assert "switched off" in rejects(ex.check_macro_f1, metrics.macro_f1)


@pytest.mark.parametrize("check, via_reference, right", [
    (ex.check_verbalizer_scores, lambda l, i: ex._score_reference(l, i), sol.verbalizer_scores),
    (ex.check_calibrate, lambda p, c: ex._calibration_reference(p, c), sol.calibrate),
    (ex.check_macro_f1, lambda t, p, c: ex._f1_reference(t, p, c), sol.macro_f1_by_hand),
], ids=["scores", "calibrate", "macro_f1"])
def test_checks_refuse_their_own_reference_and_restore_it(check, via_reference, right):
    refuses_reference_then_passes(check, via_reference, right)
