"""Reference solutions to chapter 10's exercises: the summed log-probability of a multi-token label, contextual
calibration, and macro-F1. The conventions are spelt out in :mod:`course_utils.exercises.ch10`. Try the exercises
before reading these."""

from __future__ import annotations

import torch


def verbalizer_scores(label_logits: list[torch.Tensor], label_ids: list[list[int]]) -> torch.Tensor:
    """(L,) sum over each label's tokens of log p(token | prompt, earlier label tokens)."""
    scores = []
    for logits, ids in zip(label_logits, label_ids):
        logprobs = torch.log_softmax(logits.float(), dim=-1)  # (K, V): row i predicts token i
        scores.append(logprobs[torch.arange(len(ids)), torch.tensor(ids)].sum())
    return torch.stack(scores)


def calibrate(probs: torch.Tensor, p_cf: torch.Tensor) -> torch.Tensor:
    """(N, L) probs / p_cf, each row renormalised (W = diag(p_cf)^-1, then divide by the row sum)."""
    scaled = probs / p_cf  # (N, L): broadcast over rows
    return scaled / scaled.sum(dim=-1, keepdim=True)


def macro_f1_by_hand(y_true: list, y_pred: list, classes: list) -> float:
    """Unweighted mean over ``classes`` of 2 TP / (2 TP + FP + FN)."""
    f1s = []
    for c in classes:
        tp = sum(t == c and p == c for t, p in zip(y_true, y_pred))
        fp = sum(t != c and p == c for t, p in zip(y_true, y_pred))
        fn = sum(t == c and p != c for t, p in zip(y_true, y_pred))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return sum(f1s) / len(f1s)
