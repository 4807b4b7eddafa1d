"""Scores for a classifier: accuracy, the confusion matrix, macro-F1, and the expected calibration error of its
top-label confidence.

Macro-F1 averages the per-class F1 = 2 TP / (2 TP + FP + FN) with equal weight per class, so a classifier that
always answers the majority genre scores well on accuracy only when the classes are unbalanced, and poorly on
macro-F1 whatever the balance. This is the mean of the per-class F1s (scikit-learn's ``average='macro'``), not the
F of the macro-averaged precision and recall that Sokolova & Lapalme (2009, "A systematic analysis of performance
measures for classification tasks") call the macro F-score; the two can differ by up to 0.5 (J. Opitz and S. Burst,
"Macro F1 and Macro F1", 2019). A class that is neither present nor predicted has F1 0 here, as scikit-learn's default
(``zero_division``) gives it, and it still counts in the average when named in ``classes``.

The expected calibration error is chapter 08's :func:`course_utils.rag.calibration.expected_calibration_error`,
applied to the probability of the predicted label (Guo et al., 2017); this module only turns a (N, L) probability
matrix into (confidence, correct) pairs. ECE is biased upwards at small n: even a perfectly calibrated model scores
well above 0 on a few dozen examples. :func:`calibrated_ece_samples` measures that floor for given probabilities by
drawing each label from the model's own distribution (so the model is calibrated by construction) and scoring the ECE.

Left out: micro and weighted averages, per-class reports, confidence intervals (see the chapter's bootstrap).
"""

from __future__ import annotations

import numbers
from typing import Sequence

import torch

from course_utils.arguments import check_int
from course_utils.rag.calibration import expected_calibration_error


def _as_list(name: str, values: object) -> list:
    """One label per example as a list: a list, tuple, or 1-D tensor or numpy array (a (N, L) matrix or a column
    (N, 1) is refused, not compared row by row); each label one value (int, str, ...), not a list or a tensor."""
    if hasattr(values, "tolist") and not isinstance(values, (list, tuple)):  # tensors and numpy arrays
        if getattr(values, "ndim", 1) != 1:
            raise ValueError(f"{name} must be 1-D, one label per example; got shape {tuple(values.shape)} (for "
                             "probabilities (N, L) take .argmax(-1); flatten a (N, 1) column)")
        values = values.detach().cpu().tolist() if isinstance(values, torch.Tensor) else values.tolist()
    if isinstance(values, str) or not isinstance(values, (list, tuple)):
        raise TypeError(f"{name} must be a list, tuple, numpy array or 1-D tensor of labels")
    if not values:
        raise ValueError(f"{name} is empty")
    for i, v in enumerate(values):
        if isinstance(v, (list, tuple, set, dict, torch.Tensor)) or getattr(v, "ndim", 0) != 0:
            raise TypeError(f"{name}[{i}] is a {type(v).__name__}: each label must be one value (int, str, ...); "
                            "pass a flat list, or a tensor as labels.tolist()")
    return list(values)


def _pair(y_true: object, y_pred: object) -> tuple[list, list]:
    y_true, y_pred = _as_list("y_true", y_true), _as_list("y_pred", y_pred)
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} labels and y_pred {len(y_pred)}: one prediction per example")
    return y_true, y_pred


def accuracy(y_true: object, y_pred: object) -> float:
    """The share of predictions equal to the true label."""
    y_true, y_pred = _pair(y_true, y_pred)
    return sum(t == p for t, p in zip(y_true, y_pred)) / len(y_true)


def confusion_matrix(y_true: object, y_pred: object, classes: Sequence) -> torch.Tensor:
    """(K, K) counts: row = true class, column = predicted class, in the order of ``classes``."""
    y_true, y_pred = _pair(y_true, y_pred)
    index = {c: i for i, c in enumerate(classes)}
    if len(index) != len(classes) or not classes:
        raise ValueError(f"classes must be a non-empty list of distinct labels, got {classes!r}")
    unknown = sorted({str(v) for v in y_true + y_pred if v not in index})
    if unknown:
        raise ValueError(f"labels {unknown[:5]} are not in classes {list(classes)}")
    counts = torch.zeros(len(classes), len(classes), dtype=torch.long)
    for t, p in zip(y_true, y_pred):
        counts[index[t], index[p]] += 1
    return counts


def macro_f1(y_true: object, y_pred: object, classes: Sequence | None = None) -> float:
    """The unweighted mean over ``classes`` (default: every label seen in either list) of each class's F1."""
    y_true, y_pred = _pair(y_true, y_pred)
    classes = sorted(set(y_true) | set(y_pred), key=str) if classes is None else list(classes)
    counts = confusion_matrix(y_true, y_pred, classes).double()
    true_pos = counts.diag()
    denominator = counts.sum(0) + counts.sum(1)  # (TP + FP) + (TP + FN)
    f1 = torch.where(denominator > 0, 2 * true_pos / denominator.clamp(min=1), torch.zeros_like(true_pos))
    return f1.mean().item()


def top_label_ece(probs: torch.Tensor, targets: object, n_bins: int = 10) -> float:
    """Expected calibration error of the predicted label's probability; ``probs`` (N, L), ``targets`` N class
    indices."""
    if not isinstance(probs, torch.Tensor) or probs.dim() != 2:
        raise ValueError("probs must be a (N, L) tensor of label probabilities")
    targets = _as_list("targets", targets)
    if len(targets) != probs.shape[0]:
        raise ValueError(f"targets has {len(targets)} entries for {probs.shape[0]} rows of probs")
    bad = [t for t in targets if isinstance(t, bool) or not isinstance(t, numbers.Integral)
           or not 0 <= t < probs.shape[1]]
    if bad:
        raise ValueError(f"targets must be class indices, ints in [0, {probs.shape[1]}) (the columns of probs); got "
                         f"{bad[0]!r}: map label names to their column first")
    return _top_label_ece(probs, torch.tensor([int(t) for t in targets]), n_bins)


def _top_label_ece(probs: torch.Tensor, targets: torch.Tensor, n_bins: int) -> float:
    confidence, predicted = probs.detach().float().cpu().max(1)  # (N,), (N,)
    return expected_calibration_error(confidence, predicted == targets, n_bins)


def calibrated_ece_samples(probs: torch.Tensor, n_draws: int, generator: torch.Generator,
                           n_bins: int = 10) -> torch.Tensor:
    """(n_draws,) the ECE a perfectly calibrated model with these probabilities (N, L) scores on N examples: each
    draw samples every example's label from its own row, so confidence and accuracy agree in expectation and what
    remains is the noise of N examples. Compare a measured ECE with this distribution, not with 0. For one confidence
    per answer (right or wrong), see :func:`course_utils.rag.calibration.calibrated_ece_samples`."""
    if not isinstance(probs, torch.Tensor) or probs.dim() != 2 or probs.shape[0] == 0:
        raise ValueError("probs must be a non-empty (N, L) tensor of label probabilities")
    n_draws = check_int(n_draws, "n_draws", minimum=1, allowed="a positive int")
    if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
        raise TypeError("generator must be a CPU torch.Generator (make_generator(seed, 'cpu'))")
    rows = probs.detach().float().cpu()
    if not bool((rows >= 0).all() and (rows <= 1).all()):  # NaN and negatives failed inside torch.multinomial
        raise ValueError("probs must be label probabilities in [0, 1] (no NaN), one row per example")
    labels = torch.multinomial(rows, n_draws, replacement=True, generator=generator).T  # (n_draws, N)
    return torch.tensor([_top_label_ece(rows, draw, n_bins) for draw in labels])
