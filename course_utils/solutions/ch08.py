"""Reference solutions to chapter 08's exercises: recall@k and MRR@k of a retriever, the expected calibration error
of a confidence score (Guo et al., 2017, with the course's left-closed equal-width bins [i/n, (i+1)/n), the last
closed at 1.0), and AUROC as the Mann-Whitney probability with ties counting 1/2. The conventions are spelt out in
:mod:`course_utils.exercises.ch08`."""

from __future__ import annotations

import torch


def recall_and_mrr(rankings: list[list[str]], gold_ids: list[str], k: int) -> tuple[float, float]:
    """(share of queries whose gold id is among the first k, mean of 1/rank over queries with 0 beyond k)."""
    hits, reciprocal = 0, 0.0
    for ranking, gold in zip(rankings, gold_ids):
        top = ranking[:k]
        if gold in top:
            hits += 1
            reciprocal += 1.0 / (top.index(gold) + 1)  # ranks count from 1
    return hits / len(rankings), reciprocal / len(rankings)


def expected_calibration_error(confidence: torch.Tensor, correct: torch.Tensor, n_bins: int) -> float:
    """sum over bins of (count / N) * |accuracy - mean confidence|; the bin of c is floor(c * n), 1.0 in the last."""
    confidence = torch.as_tensor(confidence, dtype=torch.float64)  # (N,)
    correct = torch.as_tensor(correct, dtype=torch.float64)  # (N,)
    index = (confidence * n_bins).floor().long().clamp(max=n_bins - 1)  # (N,)
    counts = torch.bincount(index, minlength=n_bins).double()  # (n_bins,)
    conf_sum = torch.bincount(index, weights=confidence, minlength=n_bins)
    hit_sum = torch.bincount(index, weights=correct, minlength=n_bins)
    # |hits - confidences| summed in each bin, over N: the count-weighted gap, empty bins adding 0
    return float((hit_sum - conf_sum).abs().sum() / counts.sum())


def auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over all (positive, negative) pairs of 1[s_pos > s_neg] + 1/2 1[s_pos == s_neg]."""
    scores = torch.as_tensor(scores, dtype=torch.float64)
    labels = torch.as_tensor(labels).bool()
    pos, neg = scores[labels], scores[~labels]
    diff = pos[:, None] - neg[None, :]  # (n_pos, n_neg)
    return float(((diff > 0).double() + 0.5 * (diff == 0).double()).mean())
