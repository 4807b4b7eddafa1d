"""Chapter 08's exercise checks accept the reference solution and other correct forms, reject likely wrong answers
without revealing the expected value, cannot be passed by calling course_utils.rag's own metrics, and agree with hand
computations and with the package's metrics (written independently)."""

import math
import sys

import numpy as np
import pytest
import torch

from course_utils.exercises import ch08 as ex
from course_utils.rag import ann, auroc_comparison, calibration, hybrid, retrieval_metrics
from course_utils.solutions import ch08 as sol

from exercise_helpers import (assert_hidden, rejects, refuses_reference_then_passes,  # noqa: E402
                              stand_in_module)


# ---------- exercise 1: recall@k and MRR@k ----------

def expected_rank_value(message):
    """The expected value of the comparison that failed (a wrong recall may equal the expected MRR of the same case,
    and printing the learner's own number is no leak, so only the value compared against must stay hidden)."""
    for label, rankings, gold, k in ex._rank_cases():
        for which, value in zip(("recall", "MRR"), ex._rank_reference(rankings, gold, k)):
            if f"recall@k and MRR@k, {label}: {which}:" in message:
                return [value]
    raise AssertionError(f"no comparison named in {message!r}")


def test_recall_and_mrr_hand_values_and_package_agreement():
    assert sol.recall_and_mrr([["a", "b", "c"], ["c", "b", "a"]], ["b", "a"], 2) == (0.5, 0.25)
    assert sol.recall_and_mrr([["a", "b"], ["c"]], ["x", "c"], 10) == (0.5, 0.5)
    for _, rankings, gold, k in ex._rank_cases():
        relevant = [{g} for g in gold]
        expected = (retrieval_metrics.recall_at_k(rankings, relevant, k),
                    retrieval_metrics.mean_reciprocal_rank(rankings, relevant, k))
        assert ex._rank_reference(rankings, gold, k) == pytest.approx(expected)
        assert sol.recall_and_mrr(rankings, gold, k) == pytest.approx(expected)


def test_recall_and_mrr_accepts_solution_and_other_forms():
    ex.check_recall_and_mrr(sol.recall_and_mrr)
    ex.check_recall_and_mrr(lambda r, g, k: list(sol.recall_and_mrr(r, g, k)))
    ex.check_recall_and_mrr(lambda r, g, k: torch.tensor(sol.recall_and_mrr(r, g, k), dtype=torch.float32))
    ex.check_recall_and_mrr(lambda r, g, k: np.array(sol.recall_and_mrr(r, g, k)))

    def with_numpy(rankings, gold_ids, k):
        ranks = np.array([r.index(g) + 1 if g in r else np.inf for r, g in zip(rankings, gold_ids)])
        return np.mean(ranks <= k), np.mean(np.where(ranks <= k, 1.0 / ranks, 0.0))

    ex.check_recall_and_mrr(with_numpy)


def untruncated_mrr(rankings, gold_ids, k):
    recall, _ = sol.recall_and_mrr(rankings, gold_ids, k)
    return recall, float(np.mean([1.0 / (r.index(g) + 1) if g in r else 0.0 for r, g in zip(rankings, gold_ids)]))


def recall_off_by_one(rankings, gold_ids, k):
    return sol.recall_and_mrr(rankings, gold_ids, k + 1)[0], sol.recall_and_mrr(rankings, gold_ids, k)[1]


def mrr_over_hits_only(rankings, gold_ids, k):
    recall, mrr = sol.recall_and_mrr(rankings, gold_ids, k)
    return recall, mrr / recall if recall else 0.0


def reciprocal_of_mean_rank(rankings, gold_ids, k):
    ranks = [r[:k].index(g) + 1 for r, g in zip(rankings, gold_ids) if g in r[:k]]
    return sol.recall_and_mrr(rankings, gold_ids, k)[0], 1.0 / np.mean(ranks) if ranks else 0.0


def zero_based_ranks(rankings, gold_ids, k):
    hits = [1.0 / (r[:k].index(g) + 2) if g in r[:k] else 0.0 for r, g in zip(rankings, gold_ids)]
    return sol.recall_and_mrr(rankings, gold_ids, k)[0], float(np.mean(hits))


def percentages(rankings, gold_ids, k):
    return tuple(100 * v for v in sol.recall_and_mrr(rankings, gold_ids, k))


def swapped(rankings, gold_ids, k):
    return sol.recall_and_mrr(rankings, gold_ids, k)[::-1]


@pytest.mark.parametrize("wrong", [untruncated_mrr, recall_off_by_one, mrr_over_hits_only, reciprocal_of_mean_rank,
                                   zero_based_ranks, percentages, swapped])
def test_recall_and_mrr_rejects_likely_mistakes(wrong):
    message = rejects(ex.check_recall_and_mrr, wrong)
    assert_hidden(message, expected_rank_value(message))


def test_recall_and_mrr_cannot_call_the_package():
    def via_package(rankings, gold_ids, k):
        relevant = [{g} for g in gold_ids]
        return (retrieval_metrics.recall_at_k(rankings, relevant, k),
                retrieval_metrics.mean_reciprocal_rank(rankings, relevant, k))

    assert "switched off" in rejects(ex.check_recall_and_mrr, via_package)
    assert retrieval_metrics.recall_at_k([["a"]], [{"a"}], 1) == 1.0  # restored afterwards


# ---------- exercise 2: expected calibration error ----------

def expected_ece_values():
    return [ex._ece_reference(c, h, n) for _, c, h, n in ex._ece_cases()]


def test_ece_hand_value_and_package_agreement():
    _, conf, hit, n_bins = ex._ece_cases()[0]
    # bins of width 1/4: {0, 0.125} gap |1/2 - 1/16|, {0.25, 0.25} gap 1/4, {0.5 x 3} gap 1/6, {0.75, 1, 1} gap 7/12
    by_hand = (2 * 0.4375 + 2 * 0.25 + 3 / 6 + 3 * 7 / 12) / 10
    assert by_hand == pytest.approx(0.3625)
    assert ex._ece_reference(conf, hit, n_bins) == pytest.approx(by_hand)
    assert sol.expected_calibration_error(conf, hit, n_bins) == pytest.approx(by_hand)
    for _, conf, hit, n_bins in ex._ece_cases():
        expected = calibration.expected_calibration_error(conf, hit.bool(), n_bins)
        assert ex._ece_reference(conf, hit, n_bins) == pytest.approx(expected, abs=1e-12)


def test_ece_accepts_solution_and_other_forms():
    ex.check_expected_calibration_error(sol.expected_calibration_error)
    ex.check_expected_calibration_error(lambda c, h, n: torch.tensor(sol.expected_calibration_error(c, h, n)))

    def with_digitize(conf, correct, n_bins):  # np.digitize on the inner edges: bins [lower, upper), 1.0 in the last
        conf, correct = conf.numpy(), correct.numpy()
        index = np.digitize(conf, np.linspace(0, 1, n_bins + 1)[1:-1])
        return sum(np.sum(index == b) / len(conf) * abs(correct[index == b].mean() - conf[index == b].mean())
                   for b in range(n_bins) if np.any(index == b))

    def in_float32_with_lists(conf, correct, n_bins):
        conf, correct = conf.float(), correct.float()
        bins = [[] for _ in range(n_bins)]
        for c, y in zip(conf.tolist(), correct.tolist()):
            bins[min(int(c * n_bins), n_bins - 1)].append((c, y))
        return sum(len(b) / len(conf) * abs(sum(y for _, y in b) / len(b) - sum(c for c, _ in b) / len(b))
                   for b in bins if b)

    ex.check_expected_calibration_error(with_digitize)
    ex.check_expected_calibration_error(in_float32_with_lists)


def _bins(conf, correct, index, n_bins):
    out = []
    for b in range(n_bins):
        members = index == b
        if members.any():
            out.append((int(members.sum()), float(correct[members].mean()), float(conf[members].mean())))
    return out


def unweighted(conf, correct, n_bins):
    index = (conf * n_bins).floor().long().clamp(max=n_bins - 1)
    gaps = [abs(a - c) for _, a, c in _bins(conf, correct, index, n_bins)]
    return sum(gaps) / len(gaps)


def right_closed_bins(conf, correct, n_bins):  # (i/n, (i+1)/n]: the edge cases land one bin lower
    index = ((conf * n_bins).ceil().long() - 1).clamp(min=0)
    return sum(n / len(conf) * abs(a - c) for n, a, c in _bins(conf, correct, index, n_bins))


def one_dropped(conf, correct, n_bins):  # 1.0 falls in bin n, which does not exist, and is lost
    index = (conf * n_bins).floor().long()
    keep = index < n_bins
    return sum(n / int(keep.sum()) * abs(a - c) for n, a, c in _bins(conf[keep], correct[keep], index[keep], n_bins))


def one_in_a_bin_of_its_own(conf, correct, n_bins):  # floor(c * n) unclamped: 1.0 goes to an extra bin n
    index = (conf * n_bins).floor().long()
    return sum(n / len(conf) * abs(a - c) for n, a, c in _bins(conf, correct, index, n_bins + 1))


def max_gap(conf, correct, n_bins):
    index = (conf * n_bins).floor().long().clamp(max=n_bins - 1)
    return max(abs(a - c) for _, a, c in _bins(conf, correct, index, n_bins))


def signed_gaps(conf, correct, n_bins):  # over- and under-confidence cancel
    index = (conf * n_bins).floor().long().clamp(max=n_bins - 1)
    return abs(sum(n / len(conf) * (a - c) for n, a, c in _bins(conf, correct, index, n_bins)))


@pytest.mark.parametrize("wrong", [unweighted, right_closed_bins, one_dropped, one_in_a_bin_of_its_own, max_gap,
                                   signed_gaps])
def test_ece_rejects_likely_mistakes(wrong):
    assert_hidden(rejects(ex.check_expected_calibration_error, wrong), expected_ece_values())


def test_ece_cannot_call_the_package():
    message = rejects(ex.check_expected_calibration_error,
                      lambda c, h, n: calibration.expected_calibration_error(c, h.bool(), n))
    assert "switched off" in message
    assert calibration.expected_calibration_error([0.5], [True], 2) == pytest.approx(0.5)  # restored


# ---------- exercise 3: AUROC with ties ----------

def expected_auroc_values():
    return [ex._auroc_reference(s, y) for _, s, y in ex._auroc_cases()]


def test_auroc_hand_values_and_package_agreement():
    cases = ex._auroc_cases()
    assert ex._auroc_reference(*cases[0][1:]) == sol.auroc(*cases[0][1:]) == 0.75  # 3 of 4 pairs ordered
    assert ex._auroc_reference(*cases[1][1:]) == sol.auroc(*cases[1][1:]) == 0.5  # all tied
    assert ex._auroc_reference(*cases[2][1:]) == pytest.approx(9.5 / 12)  # pairs: 1.5 + 2.5 + 2.5 + 3 of 12
    assert sol.auroc(*cases[2][1:]) == pytest.approx(9.5 / 12)
    for _, scores, labels in cases:
        assert ex._auroc_reference(scores, labels) == pytest.approx(calibration.auroc(scores, labels), abs=1e-12)
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    for _, scores, labels in cases:
        assert ex._auroc_reference(scores, labels) == pytest.approx(
            sklearn_metrics.roc_auc_score(labels.numpy(), scores.numpy()))


def test_auroc_accepts_solution_and_other_forms():
    ex.check_auroc(sol.auroc)
    ex.check_auroc(lambda s, y: torch.tensor([sol.auroc(s, y)]))

    def midranks(scores, labels):  # Mann-Whitney U from average ranks
        s, y = scores.numpy(), labels.numpy().astype(bool)
        ranks = np.empty(len(s))
        for value in np.unique(s):
            tied = s == value
            ranks[tied] = np.sum(s < value) + (tied.sum() + 1) / 2
        n_pos, n_neg = y.sum(), (~y).sum()
        return (ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)

    def trapezoid_roc(scores, labels):  # area under the ROC curve, one step per distinct threshold
        s, y = scores.tolist(), labels.tolist()
        points = [(0.0, 0.0)]
        for t in sorted(set(s), reverse=True):
            points.append((sum(1 for a, b in zip(s, y) if a >= t and b == 0) / y.count(0),
                           sum(1 for a, b in zip(s, y) if a >= t and b == 1) / y.count(1)))
        return sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in zip(points, points[1:]))

    ex.check_auroc(midranks)
    ex.check_auroc(trapezoid_roc)


def pairs(scores, labels, tie):
    pos, neg = scores[labels.bool()], scores[~labels.bool()]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).double() + tie * (diff == 0).double()).mean())


def no_ties(scores, labels):
    return pairs(scores, labels, 0.0)


def ties_count_one(scores, labels):
    return pairs(scores, labels, 1.0)


def one_minus(scores, labels):
    return 1 - sol.auroc(scores, labels)


def flipped_below_half(scores, labels):
    value = sol.auroc(scores, labels)
    return max(value, 1 - value)


def ordinal_ranks(scores, labels):  # Mann-Whitney with ranks from argsort: ties broken by position, not averaged
    ranks = torch.empty(len(scores), dtype=torch.float64)
    ranks[torch.argsort(scores, stable=True)] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    y = labels.bool()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@pytest.mark.parametrize("wrong", [no_ties, ties_count_one, one_minus, flipped_below_half, ordinal_ranks])
def test_auroc_rejects_likely_mistakes(wrong):
    assert_hidden(rejects(ex.check_auroc, wrong), expected_auroc_values())


def test_auroc_cannot_call_the_package_and_the_switch_restores_on_errors():
    assert "switched off" in rejects(ex.check_auroc, lambda s, y: calibration.auroc(s, y))

    def explodes(scores, labels):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        ex.check_auroc(explodes)
    assert calibration.auroc([0.1, 0.9], [0, 1]) == 1.0  # the package works again after the check


@pytest.mark.parametrize("check, via_reference, right", [
    (ex.check_recall_and_mrr, lambda r, g, k: ex._rank_reference(r, g, k), sol.recall_and_mrr),
    (ex.check_expected_calibration_error, lambda c, h, n: ex._ece_reference(c, h, n), sol.expected_calibration_error),
    (ex.check_auroc, lambda s, y: ex._auroc_reference(s, y), sol.auroc),
], ids=["recall_mrr", "ece", "auroc"])
def test_checks_refuse_their_own_reference_and_restore_it(check, via_reference, right):
    refuses_reference_then_passes(check, via_reference, right)


# ---------- added by the mutation audit ----------

def test_recall_and_mrr_cannot_call_the_packages_rank_helper():
    def via_rank_helper(rankings, gold_ids, k):  # the package's rank of the gold id among the first k
        ranks = [retrieval_metrics._first_relevant_rank(r, {g}, k) for r, g in zip(rankings, gold_ids)]
        return (sum(rank is not None for rank in ranks) / len(ranks),
                sum(1 / rank for rank in ranks if rank is not None) / len(ranks))

    assert via_rank_helper([["a", "b", "c"], ["c", "b", "a"]], ["b", "a"], 2) == (0.5, 0.25)  # right, when allowed
    assert "switched off" in rejects(ex.check_recall_and_mrr, via_rank_helper)


def test_recall_and_mrr_rejects_a_triple_without_revealing_the_pair():
    def triple_from_the_second_case(rankings, gold_ids, k):  # (recall, mrr, n_queries) where k = 2
        recall, mrr = sol.recall_and_mrr(rankings, gold_ids, k)
        return (recall, mrr, len(rankings)) if k == 2 else (recall, mrr)

    message = rejects(ex.check_recall_and_mrr, triple_from_the_second_case)
    assert "pair" in message and "k = 2" in message
    assert_hidden(message, ex._rank_reference(*ex._rank_cases()[1][1:]))  # (0.5, 0.25)


# ---------- routes through other package functions (review): each is a right answer when allowed ----------

def auroc_via_delong(scores, labels):  # against a constant score, DeLong's difference is AUROC - 1/2
    return auroc_comparison.delong_test(scores, torch.zeros_like(scores), labels).difference + 0.5


def auroc_via_permutation_test(scores, labels):  # the same difference, from the permutation test
    return auroc_comparison.auroc_permutation_test(scores, torch.zeros_like(scores), labels).difference + 0.5


def auroc_via_compare_aurocs(scores, labels):  # and from the rule that picks a test
    return auroc_comparison.compare_aurocs(scores, torch.zeros_like(scores), labels).difference + 0.5


def auroc_via_mid_ranks(scores, labels):  # Mann-Whitney on the package's tie-averaged ranks (a second read found it)
    s, y = scores.double().numpy(), labels.numpy().astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    rank_sum = calibration._mid_ranks(s)[y].sum() / 2  # _mid_ranks gives twice each mean rank
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _roc_area(tp, fp, n_pos, n_neg):
    """Trapezoid area of the ROC points (fp / n_neg, tp / n_pos), given from the lowest threshold to the highest."""
    tpr, fpr = np.append(tp, 0.0) / n_pos, np.append(fp, 0.0) / n_neg
    return float(np.sum((fpr[:-1] - fpr[1:]) * (tpr[:-1] + tpr[1:]) / 2))


def auroc_via_abstention_curve(scores, labels):  # answered = coverage * N, right among them = accuracy * answered
    s, y = scores.double().numpy(), labels.numpy().astype(bool)
    _, coverage, accuracy = calibration.abstention_curve(s, y)
    answered = np.round(coverage * len(s))
    tp = np.round(accuracy * answered)
    return _roc_area(tp, answered - tp, int(y.sum()), int((~y).sum()))


def auroc_via_abstain_at(scores, labels):  # one abstention point per distinct score: the same ROC counts
    s, y = scores.double().numpy(), labels.numpy().astype(bool)
    points = [calibration.abstain_at(s, y, t) for t in np.unique(s)]
    answered = np.round(np.array([p.coverage for p in points]) * len(s))
    fp = np.round(np.array([p.hallucination_rate for p in points]) * len(s))
    return _roc_area(answered - fp, fp, int(y.sum()), int((~y).sum()))


def recall_and_mrr_via_fusion(rankings, gold_ids, k):  # one ranking fused with k = 0 scores each id 1 / rank
    recall = reciprocal = 0.0
    for ranking, gold in zip(rankings, gold_ids):
        top = ranking[:k]
        recall += gold in top
        ids = {d: i for i, d in enumerate(dict.fromkeys(top + [gold]))}
        fused = dict(hybrid.reciprocal_rank_fusion([[ids[d] for d in top]], k=0))
        reciprocal += fused.get(ids[gold], 0.0)
    return recall / len(rankings), reciprocal / len(rankings)


def recall_via_ann(rankings, gold_ids, k):  # |top k ∩ {gold}| from recall_against_exact; MRR written out
    ids, recall, reciprocal = {}, 0.0, 0.0
    for ranking, gold in zip(rankings, gold_ids):
        top = [ids.setdefault(d, len(ids)) for d in ranking[:k]]
        top += [-1 - j for j in range(k - len(top))]                       # pad a short ranking with unseen ids
        exact = [ids.setdefault(gold, len(ids))] + [-1000 - j for j in range(k - 1)]
        recall += k * ann.recall_against_exact(np.array([top]), np.array([exact]), k)
        reciprocal += 1.0 / (ranking[:k].index(gold) + 1) if gold in ranking[:k] else 0.0
    return recall / len(rankings), reciprocal / len(rankings)


@pytest.mark.parametrize("via", [auroc_via_delong, auroc_via_permutation_test, auroc_via_compare_aurocs,
                                 auroc_via_abstention_curve, auroc_via_abstain_at, auroc_via_mid_ranks])
def test_auroc_cannot_be_rebuilt_from_other_package_functions(via):
    for _, scores, labels in ex._auroc_cases():  # each route is right when the package is on
        assert via(scores, labels) == pytest.approx(ex._auroc_reference(scores, labels), abs=1e-9)
    assert "switched off" in rejects(ex.check_auroc, via)
    assert via(*ex._auroc_cases()[0][1:]) == pytest.approx(0.75)  # restored afterwards


@pytest.mark.parametrize("via", [recall_and_mrr_via_fusion, recall_via_ann])
def test_recall_and_mrr_cannot_be_rebuilt_from_other_package_functions(via):
    for _, rankings, gold, k in ex._rank_cases():
        assert via(rankings, gold, k) == pytest.approx(ex._rank_reference(rankings, gold, k), abs=1e-12)
    assert "switched off" in rejects(ex.check_recall_and_mrr, via)
    assert via([["a", "b", "c"], ["c", "b", "a"]], ["b", "a"], 2) == pytest.approx((0.5, 0.25))  # restored


def test_ece_has_a_case_where_an_extra_bin_for_one_changes_the_value():
    # a group of 1.0s always has hits - confidence <= 0, so moving it out of the last bin changes the ECE only when the
    # rest of that bin is under-confident: 0.85 and 0.9, both right, beside a 1.0 that is wrong
    conf = torch.tensor([0.85, 0.9, 1.0, 0.1], dtype=torch.float64)
    hit = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    assert ex._ece_reference(conf, hit, 5) == pytest.approx((0.1 + 0.75) / 4)  # bins {0.1}, {0.85, 0.9, 1.0}: 0.2125
    assert sol.expected_calibration_error(conf, hit, 5) == pytest.approx(0.2125)
    assert one_in_a_bin_of_its_own(conf, hit, 5) == pytest.approx((0.1 + 0.25 + 1.0) / 4)  # 0.3375
    assert any(torch.equal(c, conf) and torch.equal(h, hit) and n == 5 for _, c, h, n in ex._ece_cases())
    ex.check_expected_calibration_error(sol.expected_calibration_error)


def auroc_via_mannwhitneyu(scores, labels):  # U / (n_pos n_neg) is the AUROC, ties counted 1/2
    import scipy.stats

    pos, neg = scores[labels == 1].numpy(), scores[labels == 0].numpy()
    return scipy.stats.mannwhitneyu(pos, neg).statistic / (len(pos) * len(neg))


def auroc_via_somersd(scores, labels):  # Somers' D of the scores given the labels is 2 AUROC - 1
    import scipy.stats

    if scores.unique().numel() == 1:  # scipy gives nan for a one-column table; every pair tied is AUROC 1/2
        return 0.5
    return (scipy.stats.somersd(labels.numpy(), scores.numpy()).statistic + 1) / 2


def auroc_via_rankdata(scores, labels):  # Mann-Whitney on scipy's tie-averaged ranks
    import scipy.stats

    ranks, y = scipy.stats.rankdata(scores.numpy()), labels.numpy() == 1
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    return (ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def auroc_via_percentileofscore(scores, labels):  # each right answer's percentile among wrong ones, ties 1/2
    import scipy.stats

    pos, neg = scores[labels == 1].numpy(), scores[labels == 0].numpy()
    return scipy.stats.percentileofscore(neg, pos, kind="mean").mean() / 100


def auroc_via_kendalltau(scores, labels):  # tau-c = 2 (2 AUROC - 1) n_pos n_neg / (N^2 / 2) for two labels
    import scipy.stats

    if scores.unique().numel() == 1:  # scipy gives nan when one side is constant; every pair tied is AUROC 1/2
        return 0.5
    y = labels.numpy()
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    tau = scipy.stats.kendalltau(y, scores.numpy(), variant="c").statistic
    return 0.5 + tau * len(y) ** 2 / (8 * n_pos * n_neg)


def auroc_via_weightedtau(scores, labels):  # with a constant weigher it is Kendall's tau-b; tau-b to AUROC for labels
    import scipy.stats

    if scores.unique().numel() == 1:
        return 0.5
    y, s = labels.numpy().astype(float), scores.numpy()
    n_pos, n_neg, n = int(y.sum()), int((1 - y).sum()), len(y)
    tau_b = scipy.stats.weightedtau(y, s, weigher=lambda r: 1, rank=False).statistic
    pairs, label_ties = n * (n - 1) / 2, n_pos * (n_pos - 1) / 2 + n_neg * (n_neg - 1) / 2
    score_ties = sum(c * (c - 1) / 2 for c in np.unique(s, return_counts=True)[1])
    concordant_minus_discordant = tau_b * math.sqrt((pairs - label_ties) * (pairs - score_ties))
    return 0.5 + concordant_minus_discordant / (2 * n_pos * n_neg)


@pytest.mark.parametrize("via, name", [(auroc_via_mannwhitneyu, "mannwhitneyu"), (auroc_via_somersd, "somersd"),
                                       (auroc_via_rankdata, "rankdata"),
                                       (auroc_via_percentileofscore, "percentileofscore"),
                                       (auroc_via_kendalltau, "kendalltau"),
                                       (auroc_via_weightedtau, "weightedtau")])
def test_auroc_refuses_scipys_mann_whitney_somers_d_and_ranks_and_restores_them(via, name):
    pytest.importorskip("scipy.stats")
    for _, scores, labels in ex._auroc_cases():  # right outside the check
        assert via(scores, labels) == pytest.approx(ex._auroc_reference(scores, labels), abs=1e-12)
    message = rejects(ex.check_auroc, via)
    assert "switched off" in message and name in message, message
    assert_hidden(message, expected_auroc_values())
    _, scores, labels = ex._auroc_cases()[2]
    assert via(scores, labels) == pytest.approx(9.5 / 12)  # restored afterwards
    ex.check_auroc(sol.auroc)


def _auroc_through_sklearn(scores, labels):  # scikit-learn's one call, looked up where it is loaded
    return sys.modules["sklearn.metrics"].roc_auc_score(labels.numpy(), scores.numpy())


def test_auroc_refuses_a_loaded_sklearn_roc_auc_score(monkeypatch):  # a stand-in module: runs without scikit-learn
    stand_in_module(monkeypatch, "sklearn.metrics",
                    roc_auc_score=lambda y, s: sol.auroc(torch.as_tensor(s), torch.as_tensor(y)))
    for _, scores, labels in ex._auroc_cases():  # right outside the check
        assert float(_auroc_through_sklearn(scores, labels)) == pytest.approx(ex._auroc_reference(scores, labels))
    message = rejects(ex.check_auroc, _auroc_through_sklearn)
    assert "switched off" in message and "roc_auc_score" in message, message


def test_auroc_refuses_scikit_learn_where_installed():
    metrics_module = pytest.importorskip("sklearn.metrics")
    def via_label_ranking_loss(s, y):  # the share of (wrong, right) pairs ranked the wrong way, from both sides
        loss = lambda labels: metrics_module.label_ranking_loss(labels[None, :], s.numpy()[None, :])
        return 0.5 + 0.5 * (loss(1 - y.numpy()) - loss(y.numpy()))

    def via_thresholds(s, y):  # the ROC curve's counts at every threshold, integrated by the trapezoid rule
        _, fps, _, tps, _ = metrics_module.confusion_matrix_at_thresholds(y.numpy(), s.numpy())
        return np.trapezoid(np.r_[0, tps / tps[-1]], np.r_[0, fps / fps[-1]])

    for route in (_auroc_through_sklearn, via_label_ranking_loss, via_thresholds,
                  lambda s, y: metrics_module.auc(*metrics_module.roc_curve(y.numpy(), s.numpy())[:2])):
        for _, scores, labels in ex._auroc_cases():
            if len(set(labels.tolist())) == 2:  # scikit-learn refuses a single class
                assert float(route(scores, labels)) == pytest.approx(ex._auroc_reference(scores, labels))
        assert "switched off" in rejects(ex.check_auroc, route)


def test_auroc_refuses_mstats_rankdata():  # the twin of scipy.stats.rankdata, same tie-averaged ranks
    import scipy.stats  # noqa: F401  (loaded, as in a notebook that used scipy earlier)
    from scipy.stats import mstats

    def via(scores, labels):
        ranks = mstats.rankdata(scores.numpy())
        n1, n0 = int(labels.sum()), int((labels == 0).sum())
        return float((ranks[labels.numpy() == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))
    assert "switched off" in rejects(ex.check_auroc, via)
    ex.check_auroc(sol.auroc)


def _auroc_through_pandas_ranks(scores, labels):  # tie-averaged ranks from pandas, where it is loaded
    ranks = np.asarray(sys.modules["pandas.core.generic"].NDFrame.rank(scores.numpy()), dtype=float)
    n1, n0 = int(labels.sum()), int((labels == 0).sum())
    return float((ranks[labels.numpy() == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def test_auroc_refuses_loaded_pandas_ranks(monkeypatch):  # a stand-in module: runs without pandas
    class NDFrame:  # pandas' base class of Series and DataFrame, whose rank both inherit
        def rank(values):  # tie-averaged ranks from 1, written here (scipy's rankdata is switched off itself)
            return [1 + (values < v).sum() + ((values == v).sum() - 1) / 2 for v in values]
    stand_in_module(monkeypatch, "pandas.core.generic", NDFrame=NDFrame)
    for _, scores, labels in ex._auroc_cases():  # right outside the check
        if len(set(labels.tolist())) == 2:
            assert _auroc_through_pandas_ranks(scores, labels) == pytest.approx(ex._auroc_reference(scores, labels))
    message = rejects(ex.check_auroc, _auroc_through_pandas_ranks)
    assert "switched off" in message and "rank" in message, message
    ex.check_auroc(sol.auroc)


def test_auroc_refuses_pandas_where_installed():
    pandas = pytest.importorskip("pandas")

    def via(scores, labels, rank):
        ranks = np.asarray(rank(scores.numpy()), dtype=float)
        n1, n0 = int(labels.sum()), int((labels == 0).sum())
        return float((ranks[labels.numpy() == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))
    ranks = (lambda v: pandas.Series(v).rank(), lambda v: pandas.DataFrame({"s": v}).rank()["s"],
             lambda v: pandas.Series(v).groupby(np.zeros(len(v))).rank(), pandas.core.algorithms.rank)
    for rank in ranks:
        for _, scores, labels in ex._auroc_cases():
            if len(set(labels.tolist())) == 2:
                assert via(scores, labels, rank) == pytest.approx(ex._auroc_reference(scores, labels))
        assert "switched off" in rejects(ex.check_auroc, lambda s, y: via(s, y, rank))
