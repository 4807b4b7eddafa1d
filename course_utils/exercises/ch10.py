"""Checks for chapter 10's exercises (the LLM as a classifier): every label's summed log-probability from one padded
batch (a verbalizer's scores), contextual calibration by hand, and macro-F1 by hand.

Each check calls the learner's function on seeded CPU cases and computes the expected value itself, written
differently from the reference solution (:mod:`course_utils.solutions.ch10`) and from the package: the label scores as
a Python loop over each label's positions taking the log of a product of softmax probabilities in float64 (the
solution gathers ``log_softmax`` entries of the shifted batch under a mask), calibration as a
Python loop over rows with an explicit normaliser (the solution divides tensors), and macro-F1 from per-class
precision and recall, F1 = 2 P R / (P + R) (the solution uses 2 TP / (2 TP + FP + FN) from a confusion matrix).
Failures go through :mod:`course_utils.checks`, whose messages never show the expected value;
``tests/test_exercises_ch10.py`` feeds every check the reference solution, correct answers in other forms and the
likely wrong answers.

The package has each answer (:mod:`course_utils.classify.scoring`, chapter 06's
:func:`course_utils.lora.answers.label_logprobs`, chapter 05's :func:`course_utils.rlhf.rollout.response_logprobs`
and :func:`course_utils.rlhf.dpo.sequence_logps`, chapter 07's :func:`course_utils.generate.loop.continuation_nll` and
chapter 01's :func:`course_utils.evaluate.scoring.score_ids` (which a stand-in model returning the given logits would
reach), chapter 06's :func:`course_utils.lora.sft.masked_lm_loss` (which takes the logits and labels of -100) and
:func:`~course_utils.lora.sft.labelled_logits` (the shift and the labelled positions, on a stand-in model),
:func:`course_utils.classify.calibration.contextual_calibration`,
:func:`course_utils.classify.metrics.macro_f1` and its confusion matrix, chapter 08's
:func:`course_utils.rag.matching.token_f1` (a bag-of-tokens F1, per class over item indices)), so while the
learner's function runs those are switched off by :func:`course_utils.checks.package_functions_switched_off`, and so
are this module's own references and ``transformers``' causal-LM loss (``ForCausalLMLoss``, a sum with
``num_items_in_batch=1``, and the ``fixed_cross_entropy`` under it and under ``ForMaskedLMLoss`` fed labels shifted by
hand). Where scikit-learn is already imported (the course does not install it; Colab ships it), its F1 functions
and confusion matrices (``SKLEARN_F1``, and its ``contingency_matrix``) are switched off too, and so is
``scipy.stats.contingency.crosstab``; nothing is imported to look.

Conventions the exercise text states.
Label scores: ``input_ids`` (L, T) holds in row l the prompt's P = ``prompt_len`` tokens, label l's K_l =
``label_lens[l]`` tokens, then padding up to T (pad ids are arbitrary vocabulary ids, so a pad cannot be told apart
by its id); ``logits`` (L, T, V) is a causal model's output on that batch, so position t - 1 predicts the token at t.
The score of label l is sum over t = P .. P + K_l - 1 of log softmax(logits[l, t - 1])[input_ids[l, t]]: the
log-probability of the whole label text, no length normalisation, pads left out. Return the L scores (list or
tensor).
Calibration (Zhao et al., 2021, "Calibrate Before Use"): q = probs / p_cf per row, renormalised to sum to 1.
Macro-F1: per class F1 = 2 TP / (2 TP + FP + FN), averaged with equal weight over ``classes``. One case names a class
that occurs in neither list: the formula gives 0/0 there, taken as F1 = 0 (as the package's ``metrics.macro_f1`` and
scikit-learn's default ``zero_division`` do), and the class still counts in the mean, so an answer that averages over
the labels it sees (``set(y_true) | set(y_pred)``) instead of over ``classes`` fails that case.

Tolerances. Scores: float32 logits of order 5, a float32 learner is within ~1e-5 of the float64 value; compared
within 1e-4 absolute, 1e-5 relative, while the likely mistakes (no shift, pads or prompt tokens summed, every row
summed to the longest label, mean instead of sum, raw logits, probabilities instead of log-probabilities) are off by
0.1 or more (tests/test_exercises_ch10.py feeds each). Calibration: probabilities, float32 within ~1e-7;
compared within 1e-6. Macro-F1: a float within 1e-9 of a fraction of small integers; compared within 1e-6, while
accuracy, weighted F1, F1 of one class and the mean over the labels seen differ by at least 0.01 on the cases.

Left out: checks of argument validation, length-normalised scores, the affine calibration with a learned bias.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from course_utils import checks
from course_utils.classify import calibration, metrics, scoring
from course_utils.device import make_generator
from course_utils.evaluate import scoring as text_scoring
from course_utils.generate import loop
from course_utils.lora import answers, sft
from course_utils.rag import matching
from course_utils.rlhf import dpo, rollout

SCORE_ATOL, SCORE_RTOL = 1e-4, 1e-5
CALIBRATION_ATOL = 1e-6
F1_ATOL = 1e-6


# scikit-learn's F1 and the confusion matrices under it (not installed by the course; Colab ships it), switched off
# where already imported, as the package's macro_f1 and confusion_matrix are (and, in _call, the contingency tables
# of scikit-learn and scipy, confusion matrices by another name)
SKLEARN_F1 = ("f1_score", "fbeta_score", "precision_recall_fscore_support", "classification_report",
              "confusion_matrix", "multilabel_confusion_matrix", "confusion_matrix_at_thresholds")


def _call(fn: Callable, *args: Any) -> Any:
    """The learner's ``fn(*args)`` with the package's answers to this chapter's exercises, and this module's own
    references, switched off."""
    package = (scoring.label_logprobs_many, scoring.label_logprobs, scoring.label_logprobs_per_label,
               scoring.label_probabilities, answers.label_logprobs, answers._score_chunk,
               rollout.response_logprobs, dpo.sequence_logps, loop.continuation_nll, sft.masked_lm_loss,
               sft.labelled_logits, text_scoring.score_ids,
               *checks.library_functions("transformers.loss.loss_utils", "ForCausalLMLoss", "fixed_cross_entropy"),
               *checks.library_functions("sklearn.metrics", *SKLEARN_F1, loaded_only=True),
               *checks.library_functions("sklearn.metrics.cluster", "contingency_matrix", loaded_only=True),
               *checks.library_functions("scipy.stats.contingency", "crosstab", loaded_only=True),
               calibration.contextual_calibration, metrics.macro_f1, metrics.confusion_matrix, matching.token_f1,
               _score_reference, _calibration_reference, _f1_reference)  # and this module's own answers
    # torch.no_grad() wraps some of them in a closure: switch off the function it wraps
    with checks.package_functions_switched_off(*(getattr(f, "__wrapped__", f) for f in package)):
        return fn(*args)


def _refuse_half(name: str, answer: Any, steps: str) -> None:
    """A float16 or bfloat16 tensor fails with its own message: its rounding alone exceeds the check's tolerance, and
    the method's hint would describe what the learner already did."""
    if str(getattr(answer, "dtype", "")) in ("torch.float16", "torch.bfloat16", "float16"):  # torch or NumPy
        raise AssertionError(f"{name}: your answer is in {answer.dtype}, {steps} are far coarser than the check's "
                             "tolerance; compute and return float32 or float64")


def _vector(name: str, answer: Any, n: int, hint: str) -> torch.Tensor:
    t = checks.finite_float_tensor(name, answer, hint).flatten()
    if t.numel() != n:
        raise AssertionError(f"{name}: {t.numel()} values, expected {n} (one per label). {hint}")
    return t


# ---------- exercise 1: every label's score from one padded batch ----------

SCORE_HINT = ("logits at position t - 1 predict the token at position t; turn each of those rows into "
              "log-probabilities over the whole vocabulary (log-softmax, not the raw logit), pick the token that "
              "actually sits at t, and ADD the values over the label's own positions only: not the prompt's, not the "
              "padding's, no averaging over the label's length")

Case = tuple[str, torch.Tensor, torch.Tensor, int, list[int]]


def _score_cases() -> list[Case]:
    """(name, logits (L, T, V), input_ids (L, T), prompt_len, label_lens): random logits, random prompt, label and
    pad ids (a pad id means nothing, so it is drawn like any token)."""
    g = make_generator(100, "cpu")
    V = 50

    def case(name: str, prompt_len: int, label_lens: list[int], extra_pad: int = 0) -> Case:
        T = prompt_len + max(label_lens) + extra_pad
        ids = torch.randint(0, V, (len(label_lens), T), generator=g)  # (L, T): the pads are random ids too
        ids[:, :prompt_len] = ids[0, :prompt_len]                      # one prompt, shared by every row
        return name, 3 * torch.randn(len(label_lens), T, V, generator=g), ids, prompt_len, label_lens

    return [case("three one-token labels, no padding", 4, [1, 1, 1]),
            case("labels of 1, 2 and 3 tokens", 3, [1, 2, 3]),
            case("a one-token prompt, labels of 2 and 4 tokens", 1, [2, 4]),
            case("labels of 3, 1, 2, 1 tokens, padded 2 beyond the longest", 5, [3, 1, 2, 1], extra_pad=2)]


def _score_reference(logits: torch.Tensor, input_ids: torch.Tensor, prompt_len: int,
                     label_lens: list[int]) -> torch.Tensor:
    scores = []
    for row_logits, row_ids, k in zip(logits.double(), input_ids.tolist(), label_lens):
        probability = 1.0
        for t in range(prompt_len, prompt_len + k):
            row = row_logits[t - 1]  # the position before t predicts the token at t
            probability *= (row.exp()[row_ids[t]] / row.exp().sum()).item()
        scores.append(math.log(probability))
    return torch.tensor(scores, dtype=torch.float64)


def check_batch_label_scores(fn: Callable[[torch.Tensor, torch.Tensor, int, list[int]], Any]) -> None:
    """Exercise statement: write ``batch_label_scores(logits, input_ids, prompt_len, label_lens)``.

    Row l of ``input_ids`` (L, T) is the prompt's ``prompt_len`` tokens, label l's ``label_lens[l]`` tokens, then
    padding (arbitrary ids); ``logits`` (L, T, V) is a causal model's output on that batch. Return the L scores
    sum over the label's positions t of log softmax(logits[l, t - 1])[input_ids[l, t]] (list or tensor)."""
    for label, logits, input_ids, prompt_len, label_lens in _score_cases():
        name = f"batch label scores, {label}"
        answer = _call(fn, logits.clone(), input_ids.clone(), prompt_len, list(label_lens))
        _refuse_half(name, answer, "whose steps near scores of tens of nats")
        checks.check_close(name, _vector(name, answer, len(label_lens), SCORE_HINT),
                           _score_reference(logits, input_ids, prompt_len, label_lens), atol=SCORE_ATOL,
                           rtol=SCORE_RTOL, hint=SCORE_HINT)


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
        _refuse_half(name, answer, "whose steps near a probability of 0.5 (5e-4 in float16, 4e-3 in bfloat16)")
        got = checks.finite_float_tensor(name, answer, CALIBRATION_HINT)
        if tuple(got.shape) != tuple(probs.shape):
            raise AssertionError(f"{name}: shape {tuple(got.shape)}, expected {tuple(probs.shape)}. "
                                 f"{CALIBRATION_HINT}")
        checks.check_close(name, got, _calibration_reference(probs, p_cf), atol=CALIBRATION_ATOL, rtol=0.0,
                           hint=CALIBRATION_HINT)


# ---------- exercise 3: macro-F1 ----------

F1_HINT = ("for EACH class c: TP = predicted c and truly c, FP = predicted c but not c, FN = truly c but predicted "
           "something else; F1_c = 2 TP / (2 TP + FP + FN); return the plain mean of F1_c over the classes given "
           "(not weighted by class size, and not the accuracy); a class given that occurs in neither list has "
           "F1_c = 0 and still counts in the mean")


def _f1_cases() -> list[tuple[str, list, list, list]]:
    g = make_generator(102, "cpu")
    genres = ["comedy", "history", "tragedy"]
    true = [genres[i] for i in torch.randint(0, 3, (40,), generator=g).tolist()]
    noisy = [t if torch.rand(1, generator=g).item() < 0.6 else genres[torch.randint(0, 3, (1,), generator=g).item()]
             for t in true]
    skewed = ["comedy"] * 12 + ["history"] * 3 + ["tragedy"] * 5
    true_30 = [genres[i] for i in torch.randint(0, 3, (30,), generator=g).tolist()]   # drawn after the first case's
    guessed = [t if torch.rand(1, generator=g).item() < 0.5 else genres[torch.randint(0, 3, (1,), generator=g).item()]
               for t in true_30]
    return [("40 passages, 3 genres, a noisy classifier", true, noisy, genres),
            ("unbalanced classes, always 'comedy'", skewed, ["comedy"] * 20, genres),
            ("unbalanced classes, mixed answers", skewed,
             ["comedy"] * 8 + ["tragedy"] * 4 + ["history"] * 2 + ["comedy"] + ["tragedy"] * 3 + ["history"] * 2,
             genres),
            ("integer classes 0..3", [0, 0, 1, 1, 2, 2, 3, 3, 3], [0, 1, 1, 1, 2, 0, 3, 2, 3], [0, 1, 2, 3]),
            ("4 classes given, one of them in neither list", true_30, guessed,
             ["comedy", "history", "romance", "tragedy"])]


def _f1_reference(y_true: list, y_pred: list, classes: list) -> float:
    f1s = []
    for c in classes:
        predicted = [t for t, p in zip(y_true, y_pred) if p == c]
        actual = [p for t, p in zip(y_true, y_pred) if t == c]
        precision = sum(t == c for t in predicted) / len(predicted) if predicted else 0.0
        recall = sum(p == c for p in actual) / len(actual) if actual else 0.0
        f1s.append(0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall))
    return sum(f1s) / len(f1s)


def check_macro_f1(fn: Callable[[list, list, list], Any]) -> None:
    """Exercise statement: write ``macro_f1_by_hand(y_true, y_pred, classes)``: the unweighted mean over ``classes``
    of F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c), as a float."""
    for label, y_true, y_pred, classes in _f1_cases():
        name = f"macro-F1, {label}"
        answer = checks.one_element(name, _call(fn, list(y_true), list(y_pred), list(classes)), F1_HINT)
        checks.check_close(name, answer, _f1_reference(y_true, y_pred, classes), atol=F1_ATOL, rtol=0.0,
                           hint=F1_HINT)
