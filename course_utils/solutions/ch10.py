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


#: Exercise 3's question, answered.
WHY_MACRO_F1 = ("Accuracy rewards a classifier that answers the most common genre every time whenever the classes are "
                "unbalanced, and a template or prompt that collapses to one answer scores exactly the majority share; "
                "macro-F1 gives each genre equal weight, so a constant answer scores at most about 1/3 x F1 of one "
                "class (0.167 on a balanced 3-genre set, printed as the majority class's macro-F1 in the closing "
                "table) and a classifier must get every genre right to score well. The closing table's test set is "
                "balanced, so accuracy and macro-F1 differ there mostly when a method's answers are lopsided.")
