"""Reference solutions to chapter 08's exercises: recall@k and MRR@k of a retriever, the expected calibration error
of a confidence score (Guo et al., 2017, with the course's left-closed equal-width bins [i/n, (i+1)/n), the last
closed at 1.0), and AUROC as the Mann-Whitney probability with ties counting 1/2. The conventions are spelt out in
:mod:`course_utils.exercises.ch08`. The exercises' questions are answered in :data:`WHY_MRR`,
:data:`WHY_ECE_FEW_ANSWERS` and :data:`WHY_CONSTANT_AUROC`."""

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


#: Exercise 1's question, answered.
WHY_MRR = ("Yes: where the gold passage sits, not only whether it is in the top k. Recall@5 gives a query 1 when its "
           "gold passage is anywhere among the first five; MRR@5 gives it 1 / rank: 1 at rank 1, 1/2 at rank 2, down "
           "to 1/5 at rank 5, and 0 beyond. So MRR@5 always lies between recall@1 and recall@5. When nearly every gold "
           "passage is in the top five, recall@5 is close to 1 and can no longer tell two retrievers apart, while "
           "MRR@5 still falls for every gold passage that is not first. That position matters in this chapter: a RAG "
           "prompt holds only the retriever's first k passages (section 5 varies k, from 1), and the first-passage "
           "attribution rule cites rank 1. What MRR does not tell you is what lies behind its mean: the same MRR can "
           "come from many gold passages at rank 2 or from fewer at rank 1 and some misses, so read it beside "
           "recall@1 and recall@5. "
           "(Section 4 prints MRR@10, which differs from MRR@5 only by the queries whose gold passage is at ranks 6 to "
           "10, each adding at most 1/6 to the sum before the mean.)")

#: Exercise 2's question, answered.
WHY_ECE_FEW_ANSWERS = (
    "Because much of it can be noise, and noise that pushes it up on average (for a perfectly calibrated model, always "
    "in expectation). With 30 answers in 10 bins a bin holds 3 "
    "answers on average, and confidences cluster, so some bins hold one or two and others none. A bin's accuracy is "
    "then the share of a handful of right-or-wrong answers, which scatters around the bin's mean confidence even when "
    "that confidence is exactly right: with 3 answers at confidence 0.5 the accuracy can only be 0, 1/3, 2/3 or 1, so "
    "the bin's gap is at least 1/6 and 0.25 on average for a model that is perfectly calibrated. The ECE adds the "
    "gaps in absolute value, so this scatter does not cancel: even a perfectly calibrated model scores well above 0, "
    "and the value also moves with the number and edges of the bins. So compare such an ECE with what a perfectly "
    "calibrated model with the same confidences scores on the same answers and bins (the range section 3 prints, as "
    "chapter 05, section 6, did), not with 0: only an ECE above that range shows miscalibration, and two ECEs this "
    "noisy cannot be ranked without a paired test.")

#: Exercise 3's question, answered.
WHY_CONSTANT_AUROC = ("Exactly 0.5, whatever the answers, as long as both classes occur: every (positive, negative) "
                      "pair is a tie, a tie counts one half, and the mean of one half over all pairs is one half, the "
                      "value of a coin. That is what counting ties as one half buys: a detector that says nothing "
                      "scores 'no signal' (counting ties as 0 would give it 0, counting them as 1 would give it 1). "
                      "The same pull acts on a score with many ties, such as minus the reply's length (a whole number "
                      "of tokens) or a self-consistency of 0 on several answers: each tied (right, wrong) pair adds "
                      "one half, drawing the AUROC towards 0.5. With one class only there is no pair, and the "
                      "AUROC is undefined (nan).")
