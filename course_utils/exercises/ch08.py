"""Checks for chapter 08's exercises (hallucination and retrieval): recall@k and MRR@k of a retriever, the expected
calibration error of a confidence score, and the AUROC of a hallucination detector, ties included.

Each check calls the learner's function on seeded cases and computes the expected value itself, with code written
differently from the reference solution (:mod:`course_utils.solutions.ch08`): a dictionary of positions for the
ranks (the solution scans each ranking), explicit ``lower <= c < upper`` comparisons per bin for ECE (the solution
computes a bin index with floor), and a sweep over distinct score levels for AUROC (the solution compares every pair).
Failures go through :mod:`course_utils.checks`, whose messages never show the expected value;
``tests/test_exercises_ch08.py`` feeds every check the reference solution, correct answers in other forms and the
likely wrong answers.

The package has these metrics (:mod:`course_utils.rag.retrieval_metrics`, :mod:`course_utils.rag.calibration`), so
while the learner's function runs they are switched off by :func:`course_utils.checks.package_functions_switched_off`
(their code objects are swapped for one that raises, which catches every way of reaching them, ``from ... import
auroc`` done earlier in the notebook included, and restored afterwards), and so are this module's own references.
So are the package functions an answer could be rebuilt from: ``delong_test``, ``auroc_permutation_test`` and
``compare_aurocs`` (the AUROC difference against a constant score is AUROC - 1/2), ``abstention_curve`` and
``abstain_at`` (coverage and accuracy at every threshold give the ROC curve's counts), ``reciprocal_rank_fusion`` (one
ranking fused with k = 0 scores 1/rank), ``ann.recall_against_exact`` (recall of one list against another) and the
private rank helpers ``_first_relevant_rank`` and ``calibration._mid_ranks`` (tie-averaged ranks). A
package function that calls a switched-off one (``HybridRetriever.search``, ``ann.measure_index``,
``classify.metrics.top_label_ece``) is refused with it.
Where scipy.stats is already imported (nothing is imported to look), the scipy functions that hand over exercise 3's
answer are switched off the same way: ``scipy.stats.mannwhitneyu`` (its U statistic over n_pos * n_neg is the AUROC with
ties), ``scipy.stats.somersd`` (Somers' D of the scores given the labels is 2 AUROC - 1), ``scipy.stats.rankdata`` (the
tie-averaged ranks, like ``_mid_ranks``), ``scipy.stats.percentileofscore`` (with ``kind="mean"``, the mean over right
answers of their percentile among wrong ones is 100 AUROC), ``scipy.stats.kendalltau`` (its tau-c of scores against
labels is the AUROC after one line of algebra) and ``scipy.stats.weightedtau`` (with a constant weigher, Kendall's
tau-b). Where scikit-learn is already imported (the course does not install it; Colab ships it), its ``roc_auc_score``
and ``roc_curve`` are switched off too, and the curves and ranking loss an AUROC is one line from (``det_curve``,
``confusion_matrix_at_thresholds``, ``label_ranking_loss``). Where pandas is already imported (Colab ships it), its
tie-averaged ranks (``Series.rank``, ``DataFrame.rank``, a group's or a window's) are switched off like
``rankdata``. FAISS's compiled ``eval_intersection`` (recall of one list
against another, like ``recall_against_exact``; recall@k is one membership test, so it saves nothing) is not blocked,
nor are building blocks such as sorting, ``torch.unique`` or ``np.searchsorted``.
The switch-off stops shortcuts, not deliberate copying: a copy of a reference's function made beforehand is caught,
but a learner who pastes a reference's source text into a cell, or tabulates the answers outside the check, can
pass; so can an answer built on the notebook's own inline ``my_rrf`` (section 4 writes it in a cell, where the
package cannot switch it off), which is the same as building on the learner's own code.

Conventions the exercise text states. Ranks count from 1; MRR@k gives 1/rank when the gold id is among the first k
and 0 otherwise (MS MARCO's MRR@10 is this with k = 10); recall@k is the share of queries whose gold id is among the
first k. ECE (Guo et al., 2017, "On Calibration of Modern Neural Networks", whose bins are closed on the right;
the course closes them on the left): n equal-width bins, bin i = [i/n, (i+1)/n), the last bin closed at 1.0,
ECE = sum over non-empty bins of (count / N) * |accuracy - mean confidence|. AUROC = P(score of a random
positive > score of a random negative) + 1/2 P(tie): the Mann-Whitney U statistic divided by n_pos * n_neg (Hanley
and McNeil, 1982).

Tolerances: every expected value is a ratio of small integers or a mean of float64 inputs, exact to ~1e-15; a learner
working in float32 is within ~1e-7. Answers are compared within 1e-6 absolute. The likely mistakes are off by 1e-2
or more on these cases: bin-edge cases put confidences exactly on the (dyadic, exactly representable) edges i/n and at
1.0, and the AUROC cases have many tied scores.

Left out: checks of argument validation, several gold ids per query, equal-mass bins, ROC curves.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from course_utils import checks
from course_utils.device import make_generator
from course_utils.rag import ann, auroc_comparison, calibration, hybrid, retrieval_metrics

ATOL = 1e-6


def _package_metrics_off():
    """The package's metrics, the package functions an answer could be rebuilt from (module docstring), this
    module's own references and, where scipy.stats or scikit-learn is already imported, the library functions
    that hand over an AUROC (the module docstring lists them), switched off while the learner's function runs."""
    return checks.package_functions_switched_off(
        retrieval_metrics.recall_at_k, retrieval_metrics.recall_fraction_at_k, retrieval_metrics.mean_reciprocal_rank,
        retrieval_metrics._first_relevant_rank, hybrid.reciprocal_rank_fusion, ann.recall_against_exact,
        calibration.reliability_bins, calibration.expected_calibration_error, calibration.auroc, calibration.roc_curve,
        auroc_comparison.delong_test, auroc_comparison.auroc_permutation_test, auroc_comparison.compare_aurocs,
        calibration.abstention_curve, calibration.abstain_at, calibration._mid_ranks,
        _rank_reference, _ece_reference, _auroc_reference,
        *checks.library_functions("scipy.stats", "mannwhitneyu", "somersd", "rankdata", "percentileofscore",
                                  "kendalltau", "weightedtau", loaded_only=True),
        *checks.library_functions("sklearn.metrics", "roc_auc_score", "roc_curve", "det_curve",
                                  "confusion_matrix_at_thresholds", "label_ranking_loss", loaded_only=True),
        *checks.library_functions("scipy.stats._mstats_basic", "rankdata", loaded_only=True),  # mstats.rankdata
        *_pandas_ranks())


def _pandas_ranks():
    """pandas' tie-averaged ranks (``Series.rank``, ``DataFrame.rank``, a group's or an expanding window's), where
    pandas is already imported: the same ranks as ``scipy.stats.rankdata``."""
    return (*checks.library_functions("pandas.core.generic", "NDFrame.rank", loaded_only=True),
            *checks.library_functions("pandas.core.algorithms", "rank", loaded_only=True),
            *checks.library_functions("pandas.core.groupby.groupby", "GroupBy.rank", loaded_only=True),
            *checks.library_functions("pandas.core.window.rolling", "Rolling.rank", loaded_only=True),
            *checks.library_functions("pandas.core.window.expanding", "Expanding.rank", loaded_only=True))


def _one_number(name: str, actual: Any, hint: str) -> float:
    t = checks.finite_float_tensor(name, actual, hint)
    if t.numel() != 1:
        raise AssertionError(f"{name}: expected one number, got shape {tuple(t.shape)}. {hint}")
    return float(t)


# ---------- exercise 1: recall@k and MRR@k ----------

def _rank_cases() -> list[tuple[str, list[list[str]], list[str], int]]:
    g = make_generator(80, "cpu")
    ids = [f"doc-{i:03d}" for i in range(60)]

    def rankings(n_queries: int, length: int, k: int) -> tuple[list[list[str]], list[str]]:
        lists, gold = [], []
        for q in range(n_queries):
            perm = torch.randperm(len(ids), generator=g)[:length].tolist()
            ranking = [ids[i] for i in perm]
            where = q % 4  # gold at a rank <= k, at k + 1, further down, or absent
            rank = [int(torch.randint(1, k + 1, (1,), generator=g)), k + 1, length, None][where]
            gold_id = ranking[rank - 1] if rank is not None else ids[perm[0]] + "-absent"
            lists.append(ranking)
            gold.append(gold_id)
        return lists, gold

    cases = [("one query, gold first, k = 1", [["doc-a", "doc-b", "doc-c"]], ["doc-a"], 1),
             ("two queries, gold second and third, k = 2", [["a", "b", "c"], ["c", "b", "a"]], ["b", "a"], 2),
             ("gold absent from every ranking, k = 3", [["a", "b", "c", "d"], ["d", "c"]], ["e", "f"], 3),
             ("rankings shorter than k, k = 10", [["a", "b"], ["c"], ["d", "e", "f"]], ["b", "x", "f"], 10)]
    for n, length, k in ((8, 12, 3), (20, 20, 5), (13, 30, 10), (9, 6, 1)):
        lists, gold = rankings(n, length, k)
        cases.append((f"{n} seeded queries, rankings of length {length}, k = {k}", lists, gold, k))
    return cases


def _rank_reference(rankings: list[list[str]], gold_ids: list[str], k: int) -> tuple[float, float]:
    hits, reciprocal = 0, 0.0
    for ranking, gold in zip(rankings, gold_ids):
        position = {doc: r for r, doc in reversed(list(enumerate(ranking, start=1)))}  # first occurrence wins
        rank = position.get(gold, len(ranking) + k + 1)
        hits += rank <= k
        reciprocal += 1.0 / rank if rank <= k else 0.0
    return hits / len(rankings), reciprocal / len(rankings)


def check_recall_and_mrr(fn: Callable[[list[list[str]], list[str], int], Any]) -> None:
    """``fn(rankings, gold_ids, k) -> (recall_at_k, mrr_at_k)``: rankings[q] lists document ids best first,
    gold_ids[q] is the one relevant id of query q."""
    hint = ("ranks count from 1 (the first id has rank 1); recall@k is the share of queries whose gold id is among "
            "the FIRST k ids (ranking[:k]); MRR@k averages 1/rank over ALL queries, counting 0 for a query whose gold "
            "id is not among the first k (or not retrieved at all); return the pair (recall, mrr) as fractions in "
            "[0, 1]")
    for label, rankings, gold, k in _rank_cases():
        name = f"recall@k and MRR@k, {label}"
        with _package_metrics_off():
            answer = fn([list(r) for r in rankings], list(gold), k)
        if isinstance(answer, (torch.Tensor, np.ndarray)):
            answer = answer.flatten().tolist()
        if not isinstance(answer, (tuple, list)) or len(answer) != 2:
            raise AssertionError(f"{name}: return a pair (recall, mrr), got {type(answer).__name__}. {hint}")
        recall, mrr = _rank_reference(rankings, gold, k)
        checks.check_close(f"{name}: recall", _one_number(name, answer[0], hint), recall, atol=ATOL, rtol=0.0,
                           hint=hint)
        checks.check_close(f"{name}: MRR", _one_number(name, answer[1], hint), mrr, atol=ATOL, rtol=0.0, hint=hint)


# ---------- exercise 2: expected calibration error ----------

def _ece_cases() -> list[tuple[str, torch.Tensor, torch.Tensor, int]]:
    g = make_generator(81, "cpu")
    d = torch.float64
    cases = []
    conf = torch.tensor([0.0, 0.25, 0.25, 0.5, 0.5, 0.5, 0.75, 1.0, 1.0, 0.125])
    hit = torch.tensor([0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0])
    cases.append(("10 confidences on the bin edges, 4 bins", conf.to(d), hit.to(d), 4))
    conf = torch.randint(0, 9, (200,), generator=g).to(d) / 8  # multiples of 1/8, 1.0 included
    hit = (torch.rand(200, generator=g, dtype=d) < conf * 0.7 + 0.1).to(d)
    cases.append(("200 confidences that are multiples of 1/8, 8 bins", conf, hit, 8))
    cases.append(("the same 200 confidences, 2 bins", conf, hit, 2))
    conf = torch.rand(500, generator=g, dtype=d) ** 0.5  # mostly confident
    hit = (torch.rand(500, generator=g, dtype=d) < conf ** 2).to(d)  # and over-confident
    cases.append(("500 over-confident scores, 10 bins", conf, hit, 10))
    conf = 0.6 + 0.4 * torch.rand(300, generator=g, dtype=d)  # the low bins stay empty
    hit = (torch.rand(300, generator=g, dtype=d) < 0.5).to(d)
    cases.append(("300 scores in [0.6, 1), several empty bins, 15 bins", conf, hit, 15))
    cases.append(("one question, 1 bin", torch.tensor([0.9], dtype=d), torch.tensor([1.0], dtype=d), 1))
    # 1.0 (wrong) in the last bin beside under-confident 0.85 and 0.9 (both right), none on an edge but 1.0: bins
    # {0.1} and {0.85, 0.9, 1.0} give (|0 - 0.1| + |2 - 2.75|) / 4 = 0.2125, while 1.0 in a bin of its own gives
    # (0.1 + |2 - 1.75| + |0 - 1|) / 4 = 0.3375 (a group of 1.0s never scores above its confidence, so only an
    # under-confident rest of the last bin tells the two apart)
    cases.append(("1.0 beside under-confident answers in the last bin, 5 bins",
                  torch.tensor([0.85, 0.9, 1.0, 0.1], dtype=d), torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=d), 5))
    return cases


def _ece_reference(conf: torch.Tensor, hit: torch.Tensor, n_bins: int) -> float:
    values, outcomes = conf.tolist(), hit.tolist()
    total = 0.0
    for i in range(n_bins):
        lower, upper = i / n_bins, (i + 1) / n_bins
        members = [j for j, c in enumerate(values) if lower <= c < upper or (i == n_bins - 1 and c == upper)]
        if members:
            accuracy = sum(outcomes[j] for j in members) / len(members)
            confidence = sum(values[j] for j in members) / len(members)
            total += len(members) / len(values) * abs(accuracy - confidence)
    return total


def check_expected_calibration_error(fn: Callable[[torch.Tensor, torch.Tensor, int], Any]) -> None:
    """``fn(confidence (N,), correct (N,) of 0.0/1.0, n_bins) -> float``: ECE with equal-width bins
    [i/n, (i+1)/n), the last one closed at 1.0, each bin's |accuracy - mean confidence| weighted by its count."""
    hint = ("bin i holds the confidences c with i/n <= c < (i+1)/n, and the last bin also holds c = 1.0 (a confidence "
            "on an edge goes to the bin above it: 0.375 with n = 8 goes to bin 3, not bin 2; a wrong edge rule can "
            "pass a case by chance and fail another); skip empty bins; weight each bin's |accuracy - mean "
            "confidence| by the number of questions in it divided by the TOTAL number of questions (not by the "
            "number of bins)")
    for label, conf, hit, n_bins in _ece_cases():
        name = f"expected calibration error, {label}"
        with _package_metrics_off():
            answer = fn(conf.clone(), hit.clone(), n_bins)
        checks.check_close(name, _one_number(name, answer, hint), _ece_reference(conf, hit, n_bins), atol=ATOL,
                           rtol=0.0, hint=hint)


# ---------- exercise 3: AUROC with ties ----------

def _auroc_cases() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    g = make_generator(82, "cpu")
    d = torch.float64
    cases = [("4 scores, no ties", torch.tensor([0.1, 0.4, 0.35, 0.8], dtype=d), torch.tensor([0, 0, 1, 1])),
             ("every score tied", torch.full((6,), 0.3, dtype=d), torch.tensor([1, 0, 1, 0, 0, 1])),
             ("ties across the classes", torch.tensor([1.0, 2, 2, 3, 3, 3, 4], dtype=d),
              torch.tensor([0, 0, 1, 0, 1, 1, 1]))]
    labels = (torch.rand(300, generator=g) < 0.4).long()
    scores = torch.round(2 * torch.randn(300, generator=g, dtype=d) + labels, decimals=0)  # ~10 levels: many ties
    cases.append(("300 scores rounded to integers (many ties)", scores, labels))
    labels = (torch.rand(200, generator=g) < 0.3).long()
    scores = torch.randn(200, generator=g, dtype=d) - 1.5 * labels  # a detector scored the wrong way round
    cases.append(("200 distinct scores, positives scored LOWER", scores, labels))
    scores = -torch.randint(0, 4, (150,), generator=g).to(d)  # log-probability-like scores, 4 levels
    labels = (torch.rand(150, generator=g) < 0.5 + 0.1 * scores).long()
    cases.append(("150 negative scores on 4 levels", scores, labels))
    return cases


def _auroc_reference(scores: torch.Tensor, labels: torch.Tensor) -> float:
    pairs = sorted(zip(scores.tolist(), labels.tolist()))
    n_pos = sum(y for _, y in pairs)
    n_neg = len(pairs) - n_pos
    credit, negatives_below, i = 0.0, 0, 0
    while i < len(pairs):  # one level of tied scores at a time, lowest first
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        pos_here = sum(y for _, y in pairs[i:j])
        neg_here = (j - i) - pos_here
        credit += pos_here * (negatives_below + 0.5 * neg_here)
        negatives_below += neg_here
        i = j
    return credit / (n_pos * n_neg)


def check_auroc(fn: Callable[[torch.Tensor, torch.Tensor], Any]) -> None:
    """``fn(scores (N,), labels (N,) of 0/1) -> float``: P(a random positive scores higher than a random negative),
    a tie counting 1/2."""
    hint = ("compare every (positive, negative) pair: 1 when the positive's score is higher, 1/2 when the two scores "
            "are EQUAL, 0 when it is lower; divide the sum by n_pos * n_neg; a detector that scores positives lower "
            "gets an AUROC below one half (do not flip it)")
    for label, scores, labels in _auroc_cases():
        name = f"AUROC, {label}"
        with _package_metrics_off():
            answer = fn(scores.clone(), labels.clone())
        checks.check_close(name, _one_number(name, answer, hint), _auroc_reference(scores, labels), atol=ATOL,
                           rtol=0.0, hint=hint)
