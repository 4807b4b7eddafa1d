"""Checks for chapter 10's exercises (the LLM as a classifier): the summed log-probability of a multi-token label
(a verbalizer's score), contextual calibration by hand, and macro-F1 by hand.

Each check calls the learner's function on seeded CPU cases and computes the expected value itself, written
differently from the reference solution (:mod:`course_utils.solutions.ch10`) and from the package: the label score as
a log of a product of softmax probabilities in float64 (the solution sums ``log_softmax`` entries), calibration as a
Python loop over rows with an explicit normaliser (the solution divides tensors), and macro-F1 from per-class
precision and recall, F1 = 2 P R / (P + R) (the solution uses 2 TP / (2 TP + FP + FN) from a confusion matrix).
Failures go through :mod:`course_utils.checks`, whose messages never show the expected value;
``tests/test_exercises_ch10.py`` feeds every check the reference solution, correct answers in other forms and the
likely wrong answers.

The package has each answer (:mod:`course_utils.classify.scoring` and chapter 06's
:func:`course_utils.lora.answers.label_logprobs`, :func:`course_utils.classify.calibration.contextual_calibration`,
:func:`course_utils.classify.metrics.macro_f1` and its confusion matrix), so while the learner's function runs
those are switched off by :func:`course_utils.checks.package_functions_switched_off`, and so are this module's own
references. Libraries outside the course
(scikit-learn's ``f1_score``) are not blocked.

Conventions the exercise text states.
Label score: ``label_logits`` is a list with one (K_l, V) tensor per label: row i holds the model's logits at the
position that predicts the label's token i (the prompt's last position for i = 0, the label's token i - 1 after
that); ``label_ids[l]`` lists the label's K_l token ids. The score is sum_i log softmax(row i)[token i]: the
log-probability of the whole label text, no length normalisation. Return the L scores (list or tensor).
Calibration (Zhao et al., 2021, "Calibrate Before Use"): q = probs / p_cf per row, renormalised to sum to 1.
Macro-F1: per class F1 = 2 TP / (2 TP + FP + FN), averaged with equal weight over ``classes``; every class of every
case occurs in ``y_true``, so no class has an undefined F1.

Tolerances. Scores: float32 logits of order 5, a float32 learner is within ~1e-5 of the float64 value; compared
within 1e-4 absolute, 1e-5 relative, while the likely mistakes (mean instead of sum, raw logits, probabilities instead
of log-probabilities, rows shifted by one) are off by 0.1 or more. Calibration: probabilities, float32 within ~1e-7;
compared within 1e-6. Macro-F1: a float within 1e-9 of a fraction of small integers; compared within 1e-6, while
accuracy, weighted F1 and F1 of one class differ by at least 0.01 on the cases.

Left out: checks of argument validation, length-normalised scores, the affine calibration with a learned bias.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from course_utils import checks
from course_utils.classify import calibration, metrics, scoring
from course_utils.device import make_generator
from course_utils.lora import answers

SCORE_ATOL, SCORE_RTOL = 1e-4, 1e-5
CALIBRATION_ATOL = 1e-6
F1_ATOL = 1e-6


def _call(fn: Callable, *args: Any) -> Any:
    """The learner's ``fn(*args)`` with the package's answers to this chapter's exercises, and this module's own
    references, switched off."""
    package = (scoring.label_logprobs_many, scoring.label_logprobs, scoring.label_logprobs_per_label,
               scoring.label_probabilities, answers.label_logprobs, answers._score_chunk,
               calibration.contextual_calibration, metrics.macro_f1, metrics.confusion_matrix,
               _score_reference, _calibration_reference, _f1_reference)  # and this module's own answers
    # torch.no_grad() wraps some of them in a closure: switch off the function it wraps
    with checks.package_functions_switched_off(*(getattr(f, "__wrapped__", f) for f in package)):
        return fn(*args)


def _vector(name: str, answer: Any, n: int, hint: str) -> torch.Tensor:
    t = checks.finite_float_tensor(name, answer, hint).flatten()
    if t.numel() != n:
        raise AssertionError(f"{name}: {t.numel()} values, expected {n} (one per label). {hint}")
    return t


# ---------- exercise 1: a multi-token label's score ----------

SCORE_HINT = ("row i of a label's logits predicts that label's token i; turn each row into log-probabilities over "
              "the whole vocabulary (log-softmax, not the raw logit), pick the label's token, and ADD the K_l values "
              "(the log-probability of the whole label; no averaging over its length)")


def _score_cases() -> list[tuple[str, list[torch.Tensor], list[list[int]]]]:
    g = make_generator(100, "cpu")
    V = 50

    def logits(k: int) -> torch.Tensor:
        return 3 * torch.randn(k, V, generator=g)

    return [("three one-token labels", [logits(1), logits(1), logits(1)], [[3], [17], [42]]),
            ("labels of 1, 2 and 3 tokens", [logits(1), logits(2), logits(3)], [[5], [8, 9], [20, 21, 22]]),
            ("two labels sharing a first token", [logits(2), logits(3)], [[7, 1], [7, 2, 30]]),
            ("four labels of 2 tokens, vocabulary of 50", [logits(2) for _ in range(4)],
             [[0, 49], [10, 11], [12, 13], [48, 47]])]


def _score_reference(label_logits: list[torch.Tensor], label_ids: list[list[int]]) -> torch.Tensor:
    scores = []
    for rows, ids in zip(label_logits, label_ids):
        probability = 1.0
        for row, token in zip(rows.double(), ids):
            probability *= (row.exp()[token] / row.exp().sum()).item()  # p(token | everything before it)
        scores.append(math.log(probability))
    return torch.tensor(scores, dtype=torch.float64)


def check_verbalizer_scores(fn: Callable[[list[torch.Tensor], list[list[int]]], Any]) -> None:
    """Exercise statement: write ``verbalizer_scores(label_logits, label_ids)``.

    ``label_logits[l]`` is a (K_l, V) tensor whose row i holds the logits at the position that predicts token i of
    label l; ``label_ids[l]`` is the list of that label's K_l token ids. Return the L scores
    sum_i log softmax(label_logits[l][i])[label_ids[l][i]] (list or tensor)."""
    for label, label_logits, label_ids in _score_cases():
        name = f"verbalizer scores, {label}"
        answer = _call(fn, [t.clone() for t in label_logits], [list(ids) for ids in label_ids])
        checks.check_close(name, _vector(name, answer, len(label_ids), SCORE_HINT),
                           _score_reference(label_logits, label_ids), atol=SCORE_ATOL, rtol=SCORE_RTOL,
                           hint=SCORE_HINT)


# ---------- exercise 2: contextual calibration ----------

CALIBRATION_HINT = ("divide each row of probs by p_cf label by label (a label the content-free prompt already favours "
                    "is scaled DOWN), then renormalise every row so it sums to 1; return an (N, L) result")


def _calibration_cases() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    g = make_generator(101, "cpu")

    def rows(n: int, labels: int, scale: float = 1.0) -> torch.Tensor:
        return (scale * torch.randn(n, labels, generator=g)).softmax(-1)

    return [("3 labels, a prompt that favours the first", rows(5, 3), torch.tensor([0.7, 0.2, 0.1])),
            ("2 labels, 4 rows", rows(4, 2, 2.0), torch.tensor([0.35, 0.65])),
            ("4 labels, a strongly biased prompt", rows(6, 4, 3.0), torch.tensor([0.05, 0.05, 0.1, 0.8])),
            ("3 labels, one row", rows(1, 3), torch.tensor([0.2, 0.5, 0.3]))]


def _calibration_reference(probs: torch.Tensor, p_cf: torch.Tensor) -> torch.Tensor:
    out = []
    for row in probs.double().tolist():
        weighted = [p / c for p, c in zip(row, p_cf.double().tolist())]
        total = sum(weighted)
        out.append([w / total for w in weighted])
    return torch.tensor(out, dtype=torch.float64)


def check_calibrate(fn: Callable[[torch.Tensor, torch.Tensor], Any]) -> None:
    """Exercise statement: write ``calibrate(probs, p_cf)``: ``probs`` (N, L) label distributions, ``p_cf`` (L,)
    the content-free distribution; return q (N, L), each row probs / p_cf renormalised to sum to 1."""
    for label, probs, p_cf in _calibration_cases():
        name = f"contextual calibration, {label}"
        answer = _call(fn, probs.clone(), p_cf.clone())
        got = checks.finite_float_tensor(name, answer, CALIBRATION_HINT)
        if tuple(got.shape) != tuple(probs.shape):
            raise AssertionError(f"{name}: shape {tuple(got.shape)}, expected {tuple(probs.shape)}. "
                                 f"{CALIBRATION_HINT}")
        checks.check_close(name, got, _calibration_reference(probs, p_cf), atol=CALIBRATION_ATOL, rtol=0.0,
                           hint=CALIBRATION_HINT)


# ---------- exercise 3: macro-F1 ----------

F1_HINT = ("for EACH class c: TP = predicted c and truly c, FP = predicted c but not c, FN = truly c but predicted "
           "something else; F1_c = 2 TP / (2 TP + FP + FN); return the plain mean of F1_c over the classes given "
           "(not weighted by class size, and not the accuracy)")


def _f1_cases() -> list[tuple[str, list, list, list]]:
    g = make_generator(102, "cpu")
    genres = ["comedy", "history", "tragedy"]
    true = [genres[i] for i in torch.randint(0, 3, (40,), generator=g).tolist()]
    noisy = [t if torch.rand(1, generator=g).item() < 0.6 else genres[torch.randint(0, 3, (1,), generator=g).item()]
             for t in true]
    skewed = ["comedy"] * 12 + ["history"] * 3 + ["tragedy"] * 5
    return [("40 passages, 3 genres, a noisy classifier", true, noisy, genres),
            ("unbalanced classes, always 'comedy'", skewed, ["comedy"] * 20, genres),
            ("unbalanced classes, mixed answers", skewed,
             ["comedy"] * 8 + ["tragedy"] * 4 + ["history"] * 2 + ["comedy"] + ["tragedy"] * 3 + ["history"] * 2,
             genres),
            ("integer classes 0..3", [0, 0, 1, 1, 2, 2, 3, 3, 3], [0, 1, 1, 1, 2, 0, 3, 2, 3], [0, 1, 2, 3])]


def _f1_reference(y_true: list, y_pred: list, classes: list) -> float:
    f1s = []
    for c in classes:
        predicted = [t for t, p in zip(y_true, y_pred) if p == c]
        actual = [p for t, p in zip(y_true, y_pred) if t == c]
        precision = sum(t == c for t in predicted) / len(predicted) if predicted else 0.0
        recall = sum(p == c for p in actual) / len(actual)
        f1s.append(0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall))
    return sum(f1s) / len(f1s)


def check_macro_f1(fn: Callable[[list, list, list], Any]) -> None:
    """Exercise statement: write ``macro_f1_by_hand(y_true, y_pred, classes)``: the unweighted mean over ``classes``
    of F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c), as a float."""
    for label, y_true, y_pred, classes in _f1_cases():
        name = f"macro-F1, {label}"
        answer = _call(fn, list(y_true), list(y_pred), list(classes))
        if isinstance(answer, torch.Tensor):
            if answer.numel() != 1:
                raise AssertionError(f"{name}: expected one number, got a tensor of shape {tuple(answer.shape)}. "
                                     f"{F1_HINT}")
            answer = answer.item()
        checks.check_close(name, answer, _f1_reference(y_true, y_pred, classes), atol=F1_ATOL, rtol=0.0,
                           hint=F1_HINT)
