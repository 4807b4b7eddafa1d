"""Reference solutions to chapter 10's exercises: every label's summed log-probability from one padded batch,
contextual calibration, and macro-F1. The conventions are spelt out in :mod:`course_utils.exercises.ch10`. Try the
exercises before reading these."""

from __future__ import annotations

import torch


def batch_label_scores(logits: torch.Tensor, input_ids: torch.Tensor, prompt_len: int,
                       label_lens: list[int]) -> torch.Tensor:
    """(L,) sum over each label's tokens of log p(token | prompt, earlier label tokens), from one right-padded batch.
    Why the batch needs no attention mask: :data:`WHY_NO_MASK`."""
    logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)      # (L, T-1, V): position t predicts t + 1
    targets = input_ids[:, 1:]                                         # (L, T-1): the token each row predicts
    picked = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)    # (L, T-1)
    t = torch.arange(1, input_ids.shape[1], device=input_ids.device)  # (T-1,): the position of each target
    lens = torch.tensor(label_lens, device=input_ids.device)          # (L,)
    in_label = (t >= prompt_len) & (t < prompt_len + lens[:, None])    # (L, T-1): label tokens only
    return torch.where(in_label, picked, 0.0).sum(dim=1)              # where, not *: a -inf logit at a pad stays out


WHY_NO_MASK = ("The padding sits after each label, and a causal model's output at position t - 1 depends only on "
               "positions up to t - 1; the last output that scores a label token is at P + K_l - 2, before the first "
               "pad at P + K_l, so no score has seen a pad. Left padding would put pads before the prompt, where every "
               "real token attends to them: it needs the attention mask and, for absolute position embeddings (the "
               "course's own GPT), position ids that start at 0 at each row's first real token, as Hugging Face builds "
               "them from the mask; with rotary positions (SmolLM2) only the mask is needed. A bidirectional model "
               "needs the mask whichever side the padding is on.")


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
                "unbalanced, and a template or prompt that collapses to one answer scores exactly that label's share "
                "of the test set (the majority share when the label is the majority's); "
                "macro-F1 gives each genre equal weight, so a constant answer scores at most about 1/3 x F1 of one "
                "class (0.167 on a balanced 3-genre set, printed as the majority class's macro-F1 in the closing "
                "table) and a classifier must get every genre right to score well. The closing table's test set is "
                "balanced, so accuracy and macro-F1 differ there mostly when a method's answers are lopsided.")
