"""Is a confidence score worth trusting? Reliability bins, expected calibration error, abstention and detection.

* :func:`reliability_bins` and :func:`expected_calibration_error`: C. Guo, G. Pleiss, Y. Sun, K. Weinberger, "On
  Calibration of Modern Neural Networks", 2017. M equal-width bins; ECE = sum over bins of (n_i / N) *
  |accuracy_i - mean confidence_i|. The paper's bins are closed on the right, ((m-1)/M, m/M]; the course's are closed
  on the left, bin i = [i/M, (i+1)/M) with the last one closed at 1.0 (a confidence of exactly 0 then has a bin).
  :func:`calibrated_ece_samples`: what a perfectly calibrated model with the same confidences scores on as many answers
  and the same bins (each answer right with probability its confidence), the range a measured ECE is read against.
* :func:`abstention_curve` and :func:`abstain_at`: selective prediction (R. El-Yaniv, Y. Wiener, "On the Foundations
  of Noise-free Selective Classification", 2010): answer only when confidence >= a threshold; coverage is the share
  answered, selective accuracy the accuracy on those, and ``hallucination_rate`` the share of ALL questions answered
  and not correct (what a user actually receives; an upper bound on hallucinations, since a reply that is not
  correct may be the model's own abstention: only ``correct`` is passed in).
* :func:`auroc`: the area under the ROC curve, computed as the Mann-Whitney statistic P(score of a random positive >
  score of a random negative), ties counting 1/2 (J. Hanley, B. McNeil, "The Meaning and Use of the Area under a
  Receiver Operating Characteristic (ROC) Curve", 1982); :func:`roc_curve` gives the curve itself.
  :func:`auroc_resolution`: with n_pos positives and n_neg negatives, moving one answer across the ranking changes an
  AUROC by up to 1 / min(n_pos, n_neg), the grain of an AUROC at this n (context, not a test).
* Two AUROCs on the same answers (DeLong's test, a permutation test) are compared in
  :mod:`course_utils.rag.auroc_comparison`.
* :func:`self_consistency` and :func:`majority_agreement`: sample the model several times and see whether the samples
  agree with its answer (P. Manakul, A. Liusie, M. Gales, "SelfCheckGPT", 2023, the n-gram/overlap flavour; X. Wang
  et al., "Self-Consistency Improves Chain of Thought Reasoning in Language Models", arXiv 2022, ICLR 2023, for the
  majority vote).

Inputs may be lists, numpy arrays or tensors on any device. Left out: adaptive (equal-mass) bins, temperature scaling,
confidence intervals for one AUROC, the NLI and LLM-prompt flavours of SelfCheckGPT.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch

from course_utils.arguments import check_int, check_real


def _as_array(name: str, values: object) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise TypeError(f"{name} must be a list, numpy array or tensor of numbers, got {type(values).__name__}")
    array = np.asarray(values)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {array.shape}")
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers or booleans, got dtype {array.dtype}")
    return array


def _scores(name: str, values: object, unit: bool) -> np.ndarray:
    array = _as_array(name, values).astype(np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite (an empty answer's scores are nan: drop or replace them first)")
    if unit and ((array < 0).any() or (array > 1).any()):
        raise ValueError(f"{name} must lie in [0, 1] (a probability), got values from {array.min()} to {array.max()}")
    return array


def _labels(name: str, values: object, n: int) -> np.ndarray:
    array = _as_array(name, values)
    if array.shape[0] != n:
        raise ValueError(f"{name} has {array.shape[0]} entries but the scores have {n}: one per question")
    if not np.isin(array, (0, 1)).all():
        raise ValueError(f"{name} must be booleans or 0/1, got values {sorted(set(array.tolist()))[:5]}")
    return array.astype(bool)


@dataclass
class ReliabilityBins:
    edges: np.ndarray  # (M + 1,) 0, 1/M, ..., 1
    counts: np.ndarray  # (M,) questions per bin
    mean_confidence: np.ndarray  # (M,) nan where a bin is empty
    accuracy: np.ndarray  # (M,) nan where a bin is empty


def reliability_bins(confidence: object, correct: object, n_bins: int = 10) -> ReliabilityBins:
    """Equal-width bins of ``confidence`` (in [0, 1]): bin i = [i/M, (i+1)/M), the last bin closed at 1.0; per bin the
    number of questions, their mean confidence and the share of them answered correctly."""
    n_bins = check_int(n_bins, "n_bins", minimum=1)
    conf = _scores("confidence", confidence, unit=True)
    hit = _labels("correct", correct, len(conf))
    edges = np.arange(n_bins + 1) / n_bins  # exactly i / M
    index = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, n_bins - 1)  # (N,)
    counts = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(index, weights=conf, minlength=n_bins) / counts
        accuracy = np.bincount(index, weights=hit.astype(np.float64), minlength=n_bins) / counts
    return ReliabilityBins(edges, counts, mean_conf, accuracy)


def expected_calibration_error(confidence: object, correct: object, n_bins: int = 10) -> float:
    """Count-weighted mean gap between accuracy and confidence over the non-empty bins (Guo et al., 2017): 0 for a
    perfectly calibrated score, up to 1."""
    bins = reliability_bins(confidence, correct, n_bins)
    full = bins.counts > 0
    gaps = np.abs(bins.accuracy[full] - bins.mean_confidence[full])
    return float((bins.counts[full] * gaps).sum() / bins.counts.sum())


def calibrated_ece_samples(confidence: object, n_draws: int, generator: torch.Generator,
                           n_bins: int = 10) -> np.ndarray:
    """(n_draws,) the ECE a perfectly calibrated model with these confidences scores on as many answers and the same
    bins: each draw makes every answer right with probability its own confidence (chapter 05, section 6, teaches
    this). With few answers per bin the accuracies scatter and the absolute gaps do not cancel, so a measured ECE is
    read against this distribution, not against 0. ``generator``: a CPU torch.Generator (the draws are made there).
    For several labels and the top label's confidence, see
    :func:`course_utils.classify.metrics.calibrated_ece_samples`."""
    conf = _scores("confidence", confidence, unit=True)
    n_draws = check_int(n_draws, "n_draws", minimum=1, allowed="a positive int")
    if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
        raise TypeError("generator must be a CPU torch.Generator (make_generator(seed, 'cpu'))")
    p = torch.from_numpy(conf).to(torch.float64)  # (N,)
    outcomes = torch.bernoulli(p.expand(n_draws, -1), generator=generator).numpy()  # (n_draws, N), on the CPU
    return np.array([expected_calibration_error(conf, row, n_bins) for row in outcomes])


def abstention_curve(confidence: object, correct: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(thresholds, coverage, selective_accuracy)``, each (K,) for the K distinct confidence values in increasing
    order: answering only the questions with confidence >= threshold, the share answered and the accuracy on them.
    The first threshold answers everything (coverage 1); ties are answered or withheld together."""
    conf = _scores("confidence", confidence, unit=False)
    hit = _labels("correct", correct, len(conf))
    order = np.argsort(conf, kind="stable")  # ascending: the questions answered at t are a suffix
    hits_before = np.concatenate([[0], np.cumsum(hit[order])])  # (N + 1,) correct answers among the i lowest
    thresholds = np.unique(conf)  # (K,) increasing
    skipped = np.searchsorted(conf[order], thresholds, side="left")  # (K,) questions with conf < t
    answered = len(conf) - skipped
    coverage = answered / len(conf)
    selective_accuracy = (hits_before[-1] - hits_before[skipped]) / answered
    return thresholds, coverage, selective_accuracy


class AbstentionPoint(NamedTuple):
    coverage: float  # share of questions answered
    accuracy: float  # accuracy on the answered questions (nan when none is answered)
    hallucination_rate: float  # share of ALL questions answered and not correct (an upper bound on hallucinations)


def abstain_at(confidence: object, correct: object, threshold: float) -> AbstentionPoint:
    """Answer only when confidence >= ``threshold``: coverage, accuracy on the answered questions, and the share of
    all questions that were answered and not correct."""
    conf = _scores("confidence", confidence, unit=False)
    hit = _labels("correct", correct, len(conf))
    # numpy scalars too, e.g. np.quantile(confidence, 0.2); inf is accepted
    threshold = check_real(threshold, "threshold", finite=False, allowed="a number (not NaN)")
    answered = conf >= threshold
    accuracy = float(hit[answered].mean()) if answered.any() else float("nan")
    return AbstentionPoint(float(answered.mean()), accuracy, float((answered & ~hit).mean()))


def _two_classes(scores: object, labels: object) -> tuple[np.ndarray, np.ndarray]:
    s = _scores("scores", scores, unit=False)
    y = _labels("labels", labels, len(s))
    if y.all() or not y.any():
        raise ValueError(f"labels must contain both classes (positives and negatives) for a ROC curve, "
                         f"got only {'positives' if y.all() else 'negatives'}")
    return s, y


def _mid_ranks(s: np.ndarray) -> np.ndarray:
    """Twice the average rank (1 = lowest) of each value among ``s``, ties sharing their mean rank: integers."""
    order = np.argsort(s, kind="stable")
    ranks = np.empty(len(s))
    ranks[order] = np.arange(1, len(s) + 1)
    _, inverse = np.unique(s, return_inverse=True)
    return np.rint(2 * np.bincount(inverse, weights=ranks) / np.bincount(inverse)).astype(np.int64)[inverse]


def auroc(scores: object, labels: object) -> float:
    """P(score of a random positive > score of a random negative) + 1/2 P(tie): 0.5 for a score that carries no
    information, 1.0 for one that ranks every positive above every negative. Any real scores (log-probabilities
    too); labels are booleans or 0/1. From average ranks (Mann-Whitney U), O(N log N)."""
    s, y = _two_classes(scores, labels)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    u = int(_mid_ranks(s)[y].sum()) / 2 - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def _class_counts(labels: object) -> tuple[int, int]:
    y = _labels("labels", labels, len(_as_array("labels", labels)))
    if y.all() or not y.any():
        raise ValueError(f"labels must contain both classes (positives and negatives) for an AUROC, got only "
                         f"{'positives' if y.all() else 'negatives'}")
    return int(y.sum()), int((~y).sum())


def auroc_resolution(labels: object) -> float:
    """1 / min(n_pos, n_neg): the most an AUROC on these labels changes when one answer moves across the ranking (a
    positive moved from top to bottom loses its n_neg wins: 1 / n_pos; a negative, 1 / n_neg)."""
    return 1 / min(_class_counts(labels))


def roc_curve(scores: object, labels: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)``: flagging the questions with score >= threshold, for every distinct score from the
    highest down, starting at (0, 0) (threshold +inf). The trapezoid area under it equals :func:`auroc`."""
    s, y = _two_classes(scores, labels)
    thresholds = np.concatenate([[np.inf], np.unique(s)[::-1]])  # (K + 1,)
    flagged_pos = np.array([(y & (s >= t)).sum() for t in thresholds])
    flagged_neg = np.array([(~y & (s >= t)).sum() for t in thresholds])
    return flagged_neg / (~y).sum(), flagged_pos / y.sum(), thresholds


def _check_samples(samples: object) -> None:
    if isinstance(samples, str) or not isinstance(samples, Sequence) or not samples:
        raise TypeError("samples must be a non-empty sequence of strings (sampled answers)")
    if not all(isinstance(x, str) for x in samples):
        raise TypeError("every sample must be a string")


def self_consistency(samples: Sequence[str], reference: str, similar: Callable[[str, str], float]) -> float:
    """Mean ``similar(sample, reference)`` over the samples: how much the model's other draws agree with the answer
    it gave. A fact the model knows is reproduced across samples; a hallucination tends to change from draw to draw
    (SelfCheckGPT). ``similar`` returns a number in [0, 1], e.g. token F1."""
    _check_samples(samples)
    if not isinstance(reference, str):
        raise TypeError(f"reference must be a string (the answer being checked), got {type(reference).__name__}")
    if not callable(similar):
        raise TypeError(f"similar must be a function (sample, reference) -> float in [0, 1], got {similar!r}")
    values = [similar(sample, reference) for sample in samples]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in values):
        raise ValueError(f"similar must return numbers in [0, 1], got {values[:5]}")
    return float(np.mean(values))


def majority_agreement(samples: Sequence[str], normalize: Callable[[str], str]) -> float:
    """The share of samples equal, after ``normalize``, to the most common normalised sample: 1.0 when every draw
    says the same thing, 1/n when all n differ."""
    _check_samples(samples)
    if not callable(normalize):
        raise TypeError(f"normalize must be a function str -> str, got {normalize!r}")
    counts = Counter(normalize(sample) for sample in samples)
    return counts.most_common(1)[0][1] / len(samples)
