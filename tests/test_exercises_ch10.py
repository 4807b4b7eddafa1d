"""Chapter 10's exercise checks accept the reference solution and other correct forms, reject likely wrong answers
without revealing the expected value, cannot be passed by calling the package's scoring, calibration or macro-F1,
and agree with hand computations and with the package (written independently)."""

import math
import sys

import numpy as np
import pytest
import torch

from course_utils.classify import calibration, metrics
from course_utils.exercises import ch10 as ex
from course_utils.solutions import ch10 as sol

from exercise_helpers import (assert_hidden, rejects, refuses_reference_then_passes,  # noqa: E402
                              stand_in_module)


# ---------- exercise 1: every label's score from one padded batch ----------

def expected_scores():
    return torch.cat([ex._score_reference(*case[1:]) for case in ex._score_cases()]).tolist()


def test_score_reference_hand_value():
    # prompt [0], labels [1] and [0, 1] (row 0 padded with token 1); V = 2
    logits = torch.zeros(2, 3, 2)
    logits[1, 0] = torch.tensor([math.log(3.0), 0.0])        # predicts label 1's first token 0: p = 3/4
    logits[0, 1] = torch.tensor([5.0, -5.0])                 # predicts row 0's pad: must not count
    ids = torch.tensor([[0, 1, 1], [0, 0, 1]])
    got = ex._score_reference(logits, ids, 1, [1, 2])         # 1/2; 3/4 * 1/2
    assert got.tolist() == pytest.approx([math.log(0.5), math.log(0.375)])


def test_score_cases_cover_padding_and_shared_prompt():
    cases = ex._score_cases()
    assert any(max(lens) > min(lens) for *_, lens in cases)              # some rows are padded
    assert any(ids.shape[1] > p + max(lens) for _, _, ids, p, lens in cases)  # padding beyond the longest label
    for _, logits, ids, p, lens in cases:
        assert logits.shape[:2] == ids.shape and (ids[:, :p] == ids[0, :p]).all()


def label_positions(i, p, lens):
    return [(l, t) for l, k in enumerate(lens) for t in range(p, p + k)]


def loop_answer(x, i, p, lens):
    logp = torch.log_softmax(x.double(), -1)
    return [sum(float(logp[l, t - 1, i[l, t]]) for t in range(p, p + k)) for l, k in enumerate(lens)]


def test_scores_accept_solution_and_other_forms():
    ex.check_batch_label_scores(sol.batch_label_scores)
    ex.check_batch_label_scores(lambda x, i, p, lens: sol.batch_label_scores(x, i, p, lens).tolist())
    ex.check_batch_label_scores(loop_answer)
    ex.check_batch_label_scores(lambda x, i, p, lens: np.array(loop_answer(x, i, p, lens)))

    def via_cross_entropy(x, i, p, lens):   # the library route: shift, mask the rest with ignore_index, sum
        targets = i[:, 1:].clone()
        t = torch.arange(1, i.shape[1])
        targets[(t < p) | (t >= p + torch.tensor(lens)[:, None])] = -100
        nll = torch.nn.functional.cross_entropy(x[:, :-1].transpose(1, 2), targets, reduction="none")  # (L, T-1)
        return -nll.sum(1)
    ex.check_batch_label_scores(via_cross_entropy)


def summed_over(x, i, rows):
    """Log-softmax at (l, t - 1) of the token at (l, t), summed per label over ``rows[l]`` positions t."""
    logp = torch.log_softmax(x, -1)
    return [sum(logp[l, t - 1, i[l, t]] for t in ts) for l, ts in enumerate(rows)]


def no_shift(x, i, p, lens):
    logp = torch.log_softmax(x, -1)
    return [sum(logp[l, t, i[l, t]] for t in range(p, p + k)) for l, k in enumerate(lens)]


def pads_summed(x, i, p, lens):
    return summed_over(x, i, [range(p, i.shape[1]) for _ in lens])


def up_to_longest_label(x, i, p, lens):
    return summed_over(x, i, [range(p, p + max(lens)) for _ in lens])


def prompt_summed_too(x, i, p, lens):
    return summed_over(x, i, [range(1, p + k) for k in lens])


def mean_not_sum(x, i, p, lens):
    return [s / k for s, k in zip(sol.batch_label_scores(x, i, p, lens).tolist(), lens)]


def raw_logits(x, i, p, lens):
    return [sum(x[l, t - 1, i[l, t]] for t in range(p, p + k)) for l, k in enumerate(lens)]


def probabilities(x, i, p, lens):
    return sol.batch_label_scores(x, i, p, lens).exp()


def first_token_only(x, i, p, lens):
    return summed_over(x, i, [[p] for _ in lens])


def last_token_dropped(x, i, p, lens):  # range(p, p + k - 1): an off-by-one at the label's end
    return summed_over(x, i, [range(p, p + k - 1) for k in lens])


@pytest.mark.parametrize("wrong", [no_shift, pads_summed, up_to_longest_label, prompt_summed_too, mean_not_sum,
                                   raw_logits, probabilities, first_token_only, last_token_dropped])
def test_scores_reject_likely_mistakes(wrong):
    assert_hidden(rejects(ex.check_batch_label_scores, wrong), expected_scores())


ROUTES = ["label_probabilities", "response_logprobs", "continuation_nll", "masked_lm_loss", "score_ids",
          "labelled_logits", "ForCausalLMLoss", "ForMaskedLMLoss"]


class _LogitsModel(torch.nn.Module):  # a stand-in causal LM whose decoder's hidden states are the given logits
    def __init__(self, logits):
        super().__init__()
        self.decoder = _Given(logits)

    def get_decoder(self):
        return self.decoder

    def get_output_embeddings(self):
        return torch.nn.Identity()


class _Given(torch.nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, input_ids=None, attention_mask=None, use_cache=False):
        from types import SimpleNamespace
        return SimpleNamespace(last_hidden_state=self.logits)


def via_route(route):
    """An answer to exercise 1 through a package function that does the shift for the learner."""
    from types import SimpleNamespace

    from course_utils.classify.scoring import label_probabilities
    from course_utils.evaluate.scoring import score_ids
    from course_utils.generate.loop import continuation_nll
    from transformers.loss.loss_utils import ForCausalLMLoss, ForMaskedLMLoss

    from course_utils.lora.sft import labelled_logits, masked_lm_loss
    from course_utils.rlhf.rollout import response_logprobs

    def answer(x, i, p, lens):
        if route == "labelled_logits":      # chapter 06's shift and selection of the labelled positions
            labels = torch.full_like(i, -100)
            for l, k in enumerate(lens):
                labels[l, p:p + k] = i[l, p:p + k]
            batch = dict(input_ids=i, attention_mask=torch.ones_like(i), labels=labels)
            picked, targets, rows = labelled_logits(_LogitsModel(x), batch)
            chosen = picked.log_softmax(-1).gather(1, targets[:, None])[:, 0]          # (N,)
            return torch.zeros(len(lens), dtype=chosen.dtype).index_add(0, rows, chosen)
        if route == "label_probabilities":
            return label_probabilities(sol.batch_label_scores(x, i, p, lens)).log()
        if route == "response_logprobs":    # a "model" that returns the given logits
            return [float(r[:k].sum()) for r, k in zip(response_logprobs(lambda ids: (x[:, :ids.shape[1]], None), i, p),
                                                      lens)]
        scores = []
        for l, k in enumerate(lens):
            row, logits = i[l:l + 1, :p + k], x[l:l + 1, :p + k]                  # (1, P + K_l), (1, P + K_l, V)
            if route == "continuation_nll":
                stand_in = lambda input_ids: SimpleNamespace(logits=logits)     # noqa: E731
                scores.append(-continuation_nll(stand_in, row, p).item() * k)
            elif route in ("masked_lm_loss", "ForCausalLMLoss", "ForMaskedLMLoss"):
                labels = torch.full_like(row, -100)
                labels[0, p:] = row[0, p:]
                if route == "masked_lm_loss":
                    scores.append(-masked_lm_loss(logits, labels).item() * k)
                elif route == "ForCausalLMLoss":   # transformers' loss, summed: one item in the batch
                    scores.append(-float(ForCausalLMLoss(logits, labels, logits.shape[-1], num_items_in_batch=1)))
                else:                              # its masked-LM twin, shifted by hand (through fixed_cross_entropy)
                    scores.append(-float(ForMaskedLMLoss(logits[:, :-1], labels[:, 1:], logits.shape[-1],
                                                         num_items_in_batch=1)))
            else:                                   # score_ids: prompt + label minus prompt alone
                def logits_fn(ids, logits=logits):
                    return logits[:, :ids.shape[-1]]
                total = score_ids(logits_fn, row[0], window=p + k, progress=False)
                prompt = score_ids(logits_fn, row[0, :p], window=p, progress=False) if p > 1 else None
                scores.append(-(total.total_nats - (prompt.total_nats if prompt else 0.0)))
        return scores
    return answer


@pytest.mark.parametrize("route", ROUTES)
def test_scores_cannot_call_the_package(route):
    assert "switched off" in rejects(ex.check_batch_label_scores, via_route(route))


@pytest.mark.parametrize("route", ROUTES[1:])
def test_package_routes_are_right_when_not_switched_off(route):
    """Each refused route would be a right answer: the refusal is what stops it."""
    answer = via_route(route)
    for _, x, i, p, lens in ex._score_cases():
        assert [float(v) for v in answer(x, i, p, lens)] == pytest.approx(
            ex._score_reference(x, i, p, lens).tolist(), abs=1e-4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_scores_in_half_precision_get_their_own_message(dtype):
    def half(x, i, p, lens):
        return sol.batch_label_scores(x, i, p, lens).to(dtype)
    message = rejects(ex.check_batch_label_scores, half)
    assert "float32 or float64" in message
    assert_hidden(message, expected_scores())


def test_solution_ignores_minus_infinity_outside_the_labels():
    _, x, i, p, lens = ex._score_cases()[1]
    x = x.clone()
    x[0, -1, 0] = float("-inf")       # row 0's last position is padding (labels of 1, 2 and 3 tokens)
    assert torch.isfinite(sol.batch_label_scores(x, i, p, lens)).all()


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
    ex.check_calibrate(lambda p, c: [row / c / (row / c).sum() for row in p])  # a loop's list of row tensors


@pytest.mark.parametrize("wrong", [lambda p, c: p * c / (p * c).sum(-1, keepdim=True),
                                   lambda p, c: p / c,
                                   lambda p, c: (p - c).clamp(min=0) / (p - c).clamp(min=0).sum(-1, keepdim=True),
                                   lambda p, c: p,
                                   lambda p, c: (p / c) / (p / c).sum(),
                                   lambda p, c: torch.softmax(p / c, -1)])  # softmax(W p), b = 0: the paper's form
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
    # class a: TP 1, FP 1, FN 0 -> 2/3; class b: TP 0, FN 1 -> 0; class c in neither list -> 0, still counted; mean 2/9
    assert ex._f1_reference(["a", "b"], ["a", "a"], ["a", "b", "c"]) == pytest.approx(2 / 9)
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


def f1_of_macro_precision_and_recall(t, p, c):
    """The other "macro-F" (Sokolova and Lapalme): the F1 of the macro-averaged precision and recall."""
    precision = mean_precision(t, p, c)
    recall = sum(sum(a == k and b == k for a, b in zip(t, p)) / max(1, t.count(k)) for k in c) / len(c)
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def union_of_labels(t, p, c):
    """Ignores ``classes``: averages over the labels seen in either list (metrics.macro_f1's default)."""
    return sol.macro_f1_by_hand(t, p, sorted(set(t) | set(p), key=str))


@pytest.mark.parametrize("wrong", [accuracy, weighted_f1, present_classes_only, mean_precision,
                                   f1_of_macro_precision_and_recall, union_of_labels])
def test_f1_rejects_likely_mistakes(wrong):
    expected = [ex._f1_reference(t, p, c) for _, t, p, c in ex._f1_cases()]
    assert_hidden(rejects(ex.check_macro_f1, wrong), expected)


def test_f1_only_the_case_with_an_absent_class_tells_the_union_of_labels_apart():
    """The union of labels agrees with the reference wherever every class occurs; the case with a class in neither
    list is what rejects it (by a clear margin: the absent class's 0 moves a mean over 3 classes to one over 4)."""
    for name, t, p, c in ex._f1_cases():
        gap = abs(union_of_labels(t, p, c) - ex._f1_reference(t, p, c))
        if any(k not in t and k not in p for k in c):
            assert gap > 0.1, name
        else:
            assert gap < 1e-12, name


def test_f1_cannot_call_the_package():
    assert "switched off" in rejects(ex.check_macro_f1, metrics.macro_f1)


def f1_via_token_f1(y_true, y_pred, classes):  # chapter 08's bag-of-tokens F1 per class, over item indices as tokens
    from course_utils.rag.matching import token_f1
    f1s = []
    for c in classes:
        predicted = " ".join(f"x{n}" for n, label in enumerate(y_pred) if label == c)
        actual = " ".join(f"x{n}" for n, label in enumerate(y_true) if label == c)
        f1s.append(token_f1(predicted, actual) if predicted or actual else 0.0)
    return sum(f1s) / len(f1s)


def test_f1_cannot_call_the_packages_token_f1_and_restores_it():
    for _, t, p, c in ex._f1_cases():  # a right answer without the switch (so this test can fail) ...
        assert f1_via_token_f1(t, p, c) == pytest.approx(ex._f1_reference(t, p, c), abs=1e-12)
    message = rejects(ex.check_macro_f1, f1_via_token_f1)  # ... refused by the check ...
    assert "switched off" in message and "token_f1" in message, message
    _, t, p, c = ex._f1_cases()[0]
    assert f1_via_token_f1(t, p, c) == pytest.approx(ex._f1_reference(t, p, c), abs=1e-12)  # ... and restored
    ex.check_macro_f1(sol.macro_f1_by_hand)


@pytest.mark.parametrize("check, via_reference, right", [
    (ex.check_batch_label_scores, lambda x, i, p, lens: ex._score_reference(x, i, p, lens), sol.batch_label_scores),
    (ex.check_calibrate, lambda p, c: ex._calibration_reference(p, c), sol.calibrate),
    (ex.check_macro_f1, lambda t, p, c: ex._f1_reference(t, p, c), sol.macro_f1_by_hand),
], ids=["scores", "calibrate", "macro_f1"])
def test_checks_refuse_their_own_reference_and_restore_it(check, via_reference, right):
    refuses_reference_then_passes(check, via_reference, right)


# ---------- added by the mutation audit ----------

def test_scores_reject_logits_rounded_to_float16():  # float32 scores of float16-rounded logits: up to 2.7e-3 off
    rejects(ex.check_batch_label_scores, lambda x, i, p, lens: sol.batch_label_scores(x.half().float(), i, p, lens))


def test_calibration_rejects_an_epsilon_in_the_division():  # probs / (p_cf + 1e-5): up to 3e-5 off
    rejects(ex.check_calibrate, lambda p, c: (p / (c + 1e-5)) / (p / (c + 1e-5)).sum(-1, keepdim=True))


def test_f1_cannot_call_the_packages_confusion_matrix():
    def via_confusion_matrix(t, p, c):
        counts = metrics.confusion_matrix(t, p, c).double()
        denominator = counts.sum(0) + counts.sum(1)
        return float(torch.where(denominator > 0, 2 * counts.diag() / denominator.clamp(min=1), 0.0).mean())

    assert via_confusion_matrix(["a", "b", "a"], ["a", "a", "a"], ["a", "b"]) == pytest.approx(0.4)  # right: 0.8, 0
    assert "switched off" in rejects(ex.check_macro_f1, via_confusion_matrix)


def _macro_f1_through(module_name):  # scikit-learn's one call: f1_score(..., labels=classes, average="macro")
    def answer(y_true, y_pred, classes):
        return sys.modules[module_name].f1_score(y_true, y_pred, labels=classes, average="macro", zero_division=0)
    return answer


def test_f1_refuses_a_loaded_sklearn_f1_score(monkeypatch):  # a stand-in module: runs where scikit-learn is absent
    stand_in_module(monkeypatch, "sklearn.metrics", f1_score=lambda y_true, y_pred, labels, average, zero_division:
                    sol.macro_f1_by_hand(y_true, y_pred, labels))
    for _, y_true, y_pred, classes in ex._f1_cases():  # right outside the check
        assert _macro_f1_through("sklearn.metrics")(y_true, y_pred, classes) == pytest.approx(
            ex._f1_reference(y_true, y_pred, classes), abs=1e-12)
    message = rejects(ex.check_macro_f1, _macro_f1_through("sklearn.metrics"))
    assert "switched off" in message and "f1_score" in message, message
    assert _macro_f1_through("sklearn.metrics")(["a"], ["a"], ["a"]) == 1.0  # restored afterwards


def test_f1_refuses_scikit_learn_where_installed():
    metrics_module = pytest.importorskip("sklearn.metrics")
    for _, y_true, y_pred, classes in ex._f1_cases():
        assert metrics_module.f1_score(y_true, y_pred, labels=classes, average="macro", zero_division=0) == \
            pytest.approx(ex._f1_reference(y_true, y_pred, classes), abs=1e-12)
    for route in (_macro_f1_through("sklearn.metrics"),
                  lambda t, p, c: metrics_module.precision_recall_fscore_support(t, p, labels=c,
                                                                                 zero_division=0)[2].mean()):
        assert "switched off" in rejects(ex.check_macro_f1, route)


@pytest.mark.parametrize("to_half", [lambda q: q.to(torch.float16), lambda q: q.to(torch.bfloat16),
                                     lambda q: q.numpy().astype(np.float16)])
def test_calibration_in_half_precision_gets_its_own_message(to_half):
    message = rejects(ex.check_calibrate, lambda probs, p_cf: to_half(sol.calibrate(probs, p_cf)))
    assert "16" in message and "float32 or float64" in message, message


def test_f1_cannot_build_its_confusion_matrix_with_scipys_crosstab():  # a confusion matrix by another name
    from scipy.stats.contingency import crosstab

    def via_crosstab(t, p, c):
        counts = torch.as_tensor(crosstab(t, p, levels=(c, c)).count, dtype=torch.float64)  # (C, C) true x predicted
        denominator = counts.sum(0) + counts.sum(1)
        return float(torch.where(denominator > 0, 2 * counts.diag() / denominator.clamp(min=1), 0.0).mean())

    for _, y_true, y_pred, classes in ex._f1_cases():  # right outside the check
        assert via_crosstab(y_true, y_pred, classes) == pytest.approx(ex._f1_reference(y_true, y_pred, classes))
    assert "switched off" in rejects(ex.check_macro_f1, via_crosstab)


def test_f1_rejects_the_per_class_tensor_with_a_clear_message():  # the F1 of every class, the mean forgotten
    def per_class(t, p, c):
        return torch.tensor([2 * sum(a == b == k for a, b in zip(t, p)) / max(1, t.count(k) + p.count(k)) for k in c])

    assert "one number" in rejects(ex.check_macro_f1, per_class)


def test_f1_accepts_a_one_element_numpy_array_and_refuses_a_longer_one():
    ex.check_macro_f1(lambda t, p, c: np.array([sol.macro_f1_by_hand(t, p, c)]))
    assert "one number" in rejects(ex.check_macro_f1, lambda t, p, c: np.array([sol.macro_f1_by_hand(t, p, c)] * 3))
