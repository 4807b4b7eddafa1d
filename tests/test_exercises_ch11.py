"""Chapter 11's exercise checks accept the reference solution and other correct forms, reject likely wrong answers
without revealing the expected value, cannot be passed by calling the package's ZeRO arithmetic or tensor-parallel
layers, and agree with hand computations and with the package (written independently)."""

import math
import re

from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_utils.exercises import ch11 as ex
from course_utils.solutions import ch11 as sol

from exercise_helpers import assert_hidden, rejects, refuses_reference_then_passes  # noqa: E402


# ---------- exercise 1: ring all-reduce ----------

def test_ring_accepts_the_solution_and_another_valid_schedule():
    ex.check_ring_schedule(sol.ring_schedule)
    ex.check_ring_schedule(lambda p: np.array(sol.ring_schedule(p)))

    def shifted(p):  # a different valid ring: rank r starts from chunk (r + 1), everything moves by one
        return [[(c + 1) % p for c in step] for step in sol.ring_schedule(p)]

    ex.check_ring_schedule(shifted)


def test_ring_solution_by_hand_for_two_ranks():
    assert sol.ring_schedule(2) == [[0, 1], [1, 0]]  # rank 0 adds chunk 0 into rank 1, then gets chunk 1 back


@pytest.mark.parametrize("wrong", [
    lambda p: [[s % p] * p for s in range(2 * (p - 1))],  # everybody sends the same chunk
    lambda p: [[(r + s) % p for r in range(p)] for s in range(2 * (p - 1))],  # the wrong direction
    lambda p: sol.ring_schedule(p)[: p - 1],  # reduce-scatter only
    lambda p: sol.ring_schedule(p)[p - 1:] + sol.ring_schedule(p)[: p - 1],  # phases swapped
    lambda p: [[r for r in range(p)]] * (2 * (p - 1)),  # always one's own index
    lambda p: "ring",
])
def test_ring_rejects_likely_mistakes(wrong):
    message = rejects(ex.check_ring_schedule, wrong)
    assert "ring" in message
    assert not re.search(r"\d\.\d", message), message  # no value of the replayed sums is shown


def test_ring_replay_catches_a_bad_index():
    assert "chunk index" in rejects(ex.check_ring_schedule, lambda p: [[p] * p] * (2 * (p - 1)))


def test_ring_accepts_whole_floats_and_tensors_and_refuses_fractions_and_bools():
    ex.check_ring_schedule(lambda p: [[float(c) for c in step] for step in sol.ring_schedule(p)])  # 1.0 is chunk 1
    ex.check_ring_schedule(lambda p: torch.tensor(sol.ring_schedule(p)))
    # int() would read 1.7 as 1 and True as 1, turning these into the right schedule
    fractions = rejects(ex.check_ring_schedule, lambda p: [[c + 0.7 for c in step] for step in sol.ring_schedule(p)])
    assert "whole-number chunk indices" in fractions
    bools = rejects(ex.check_ring_schedule,
                    lambda p: [[bool(c) for c in step] for step in sol.ring_schedule(p)] if p == 2 else
                    sol.ring_schedule(p))
    assert "whole-number chunk indices" in bools
    tensor_bools = rejects(ex.check_ring_schedule,
                           lambda p: torch.tensor(sol.ring_schedule(p)).bool() if p == 2 else sol.ring_schedule(p))
    assert "whole-number chunk indices" in tensor_bools


# ---------- exercise 2: ZeRO ----------

def test_zero_reference_matches_the_paper():
    # Rajbhandari et al. 2020, figure 1: 7.5B parameters, N_d = 64: 120 GB, 31.4 GB, 16.6 GB, 1.88 GB
    got = [ex._zero_reference(7_500_000_000, 64, s) / 1e9 for s in range(4)]
    assert got == pytest.approx([120, 31.4, 16.6, 1.875], abs=0.05)


def test_zero_accepts_solution_and_forms():
    ex.check_zero_bytes(sol.zero_bytes_per_rank)
    ex.check_zero_bytes(lambda n, nd, s: torch.tensor(sol.zero_bytes_per_rank(n, nd, s), dtype=torch.float64))
    ex.check_zero_bytes(lambda n, nd, s: int(round(sol.zero_bytes_per_rank(n, nd, s))))


@pytest.mark.parametrize("wrong, said", [
    (lambda n, nd, s: torch.tensor(sol.zero_bytes_per_rank(n, nd, s), device="meta"), "meta device"),  # no value
    (lambda n, nd, s: torch.tensor([sol.zero_bytes_per_rank(n, nd, s)] * 2), "shape (2,)"),  # two numbers, not one
])
def test_zero_refuses_tensors_without_one_value(wrong, said):
    assert said in rejects(ex.check_zero_bytes, wrong)  # a message with the hint, not a raw RuntimeError


def expected_at_first_failure(wrong):
    """The expected value of the first case the wrong answer fails (the message prints the learner's own value,
    which may equal another case's answer: that is not a leak)."""
    for case in ex._zero_cases():
        expected = ex._zero_reference(*case)
        if abs(float(wrong(*case)) - expected) > 1e-6 * expected:
            return [expected]
    raise AssertionError("the wrong answer passes every case")


@pytest.mark.parametrize("wrong", [
    lambda n, nd, s: 16 * n / (nd if s else 1),  # everything sharded from stage 1
    lambda n, nd, s: sol.zero_bytes_per_rank(n, nd, min(s + 1, 3)),  # one stage off
    lambda n, nd, s: sol.zero_bytes_per_rank(n, nd, s) - 12 * n / (nd if s else 1),  # optimizer states forgotten
    lambda n, nd, s: 4 * n + 12 * n / nd if s else 16 * n,  # stage 2 and 3 shard nothing more than stage 1
    lambda n, nd, s: sol.zero_bytes_per_rank(n, nd, s) / 2**30 * 1e9,  # GiB mixed with GB
])
def test_zero_rejects_likely_mistakes(wrong):
    assert_hidden(rejects(ex.check_zero_bytes, wrong), expected_at_first_failure(wrong))


def test_zero_cannot_call_the_package():
    from course_utils.parallel.zero import zero_memory_per_rank

    assert "switched off" in rejects(ex.check_zero_bytes, lambda n, nd, s: zero_memory_per_rank(n, nd, s).total)
    assert zero_memory_per_rank(8, 2, 3).total == 64  # and switched back on afterwards


def test_zero_package_agrees_with_the_check():
    from course_utils.parallel.zero import zero_memory_per_rank

    for n, nd, stage in ex._zero_cases():
        assert zero_memory_per_rank(n, nd, stage).total == pytest.approx(ex._zero_reference(n, nd, stage), rel=1e-9)


# ---------- exercise 2b: the smallest number of ranks at which each stage fits ----------

def test_fit_reference_by_hand():
    # Llama-2-70B, 80 GB: stages 0-2 keep 16, 4 and 2 bytes per parameter unsharded (all > 80 GB); stage 3 needs
    # 16 x 68,976,648,192 / N_d <= 80e9, i.e. N_d >= 13.795...
    assert ex._fit_reference(68_976_648_192, 80 * 10**9) == [None, None, None, 14]
    # 7.5e9 parameters, 25 GB: stage 1 keeps 30 GB unsharded (never fits); stage 2 keeps 15 GB and spreads 105 GB
    # (N_d >= 10.5); stage 3 spreads 120 GB (N_d >= 4.8)
    assert ex._fit_reference(7_500_000_000, 25 * 10**9) == [None, None, 11, 5]
    assert ex._fit_reference(134_515_008, 24 * 10**9) == [1, 1, 1, 1]  # 2.15 GB fit on one rank
    # Llama-2-70B, 1 MB per rank: stage 3 needs 16 x 68,976,648,192 / 1e6 = 1,103,626.37... -> 1,103,627 ranks
    assert ex._fit_reference(68_976_648_192, 10**6) == [None, None, None, 1_103_627]
    # 1e15 parameters, 6,992 = 16 x 437 bytes per rank: stage 3 needs 1e15 / 437 = 2,288,329,519,450.80... ->
    # 2,288,329,519,451
    assert ex._fit_reference(10**15, 6992) == [None, None, None, 2_288_329_519_451]


def test_fit_cases_include_one_no_search_rank_by_rank_finishes():
    # the exercise text promises it: the largest case needs more than 2**40 ranks, so a search one rank at a time
    # would not finish and a search capped at any practical limit (10**7 ranks, say) must fail
    needed = [k for _, n, m in ex._fit_cases() for k in ex._fit_reference(n, m) if k is not None]
    assert max(needed) > 2**40
    label, n, m = ex._fit_cases()[-1]  # the last case, so a search that never ends there has passed all the others
    assert label == LARGEST_LABEL and ex._fit_reference(n, m)[3] == max(needed)


def test_fit_cases_are_exact_ties_or_far_from_them():
    # each ratio is either a whole number exactly (a tie, where "<=" and "<" differ: one case has one) or more than
    # 1e-4 from one, so a float ceiling of a correct formula cannot land on the wrong side
    ties = 0
    for _, n, gpu in ex._fit_cases():
        for stage in range(4):
            kept = (16, 4, 2, 0)[stage] * n  # bytes not sharded at this stage (2 + 2 + 12 per parameter in all)
            spread = 16 * n - kept
            if kept < gpu < kept + spread:
                ratio = Fraction(spread, gpu - kept)
                ties += ratio.denominator == 1
                assert ratio.denominator == 1 or abs(float(ratio) - round(float(ratio))) > 1e-4, (n, gpu, stage)
    assert ties >= 1
    assert ex._fit_reference(7_500_000_000, 24 * 10**9) == [None, None, 12, 5]  # 16 x 7.5e9 / 5 = 24e9 exactly


def test_fit_accepts_solution_and_forms():
    ex.check_smallest_ranks(sol.smallest_ranks_that_fit)
    ex.check_smallest_ranks(lambda n, m: tuple(sol.smallest_ranks_that_fit(n, m)))
    ex.check_smallest_ranks(lambda n, m: dict(enumerate(sol.smallest_ranks_that_fit(n, m))))
    ex.check_smallest_ranks(lambda n, m: np.array(sol.smallest_ranks_that_fit(n, m), dtype=object))
    ex.check_smallest_ranks(lambda n, m: [None if k is None else float(k) for k in sol.smallest_ranks_that_fit(n, m)])
    ex.check_smallest_ranks(lambda n, m: [None if k is None else np.int64(k)
                                          for k in sol.smallest_ranks_that_fit(n, m)])

    def by_doubling_and_bisection(n, m):  # a correct search: no cap, and about 2 log2(N_d) steps, not N_d
        answer = []
        for stage in range(4):
            kept = sol.zero_bytes_per_rank(n, 10**30, stage)
            if kept >= m and sol.zero_bytes_per_rank(n, 1, stage) > m:
                answer.append(None)
                continue
            high = 1
            while sol.zero_bytes_per_rank(n, high, stage) > m:  # double until it fits...
                high *= 2
            low = high // 2  # ...then bisect: low does not fit (or is 0), high fits
            while high - low > 1:
                mid = (low + high) // 2
                low, high = (low, mid) if sol.zero_bytes_per_rank(n, mid, stage) <= m else (mid, high)
            answer.append(high)
        return answer

    ex.check_smallest_ranks(by_doubling_and_bisection)


def padded_bytes_per_rank(n, n_ranks, stage):  # shards rounded up to whole parameters, as zero_memory_per_rank pads
    shard = -(-n // n_ranks)
    return 2 * (shard if stage >= 3 else n) + 2 * (shard if stage >= 2 else n) + 12 * (shard if stage >= 1 else n)


def test_fit_cases_give_the_same_answer_with_padded_shards():
    # a learner whose (a) pads shards like the package (2a's cases all divide exactly, so that passes 2a) and whose (b)
    # searches by doubling and bisection on it must get every case right and finish: a stage that fits only with a
    # fraction of a parameter per rank would never fit padded, and the doubling would run forever
    def padded_search(n, m):
        answer = []
        for stage in range(4):
            if (16, 4, 2, 0)[stage] * n >= m and padded_bytes_per_rank(n, 1, stage) > m:
                answer.append(None)
                continue
            high = 1
            while padded_bytes_per_rank(n, high, stage) > m:
                assert high < 2**64, (n, m, stage)  # a failure here, not an endless loop
                high *= 2
            low = high // 2
            while high - low > 1:
                mid = (low + high) // 2
                low, high = (low, mid) if padded_bytes_per_rank(n, mid, stage) <= m else (mid, high)
            answer.append(high)
        return answer

    for _, n, m in ex._fit_cases():
        assert padded_search(n, m) == ex._fit_reference(n, m), (n, m)
    ex.check_smallest_ranks(padded_search)


def _wrong_fit(transform):
    return lambda n, m: [transform(k, n, m, s) for s, k in enumerate(sol.smallest_ranks_that_fit(n, m))]


def floor_instead_of_ceil(n, m):
    answer = sol.smallest_ranks_that_fit(n, m)
    for stage in range(4):
        kept = sol.zero_bytes_per_rank(n, 10**30, stage)
        if answer[stage] not in (None, 1):
            answer[stage] = math.floor((sol.zero_bytes_per_rank(n, 1, stage) - kept) / (m - kept))
    return answer


def strictly_less_than(n, m):  # "< gpu_bytes" instead of "at most": floor + 1
    answer = sol.smallest_ranks_that_fit(n, m)
    for stage in range(4):
        kept = sol.zero_bytes_per_rank(n, 10**30, stage)
        if answer[stage] not in (None, 1):
            answer[stage] = math.floor((sol.zero_bytes_per_rank(n, 1, stage) - kept) / (m - kept)) + 1
    return answer


def capped_search(n, m, cap=1024):
    return [next((nd for nd in range(1, cap + 1) if sol.zero_bytes_per_rank(n, nd, s) <= m), None) for s in range(4)]


LARGEST_LABEL = "10^15 parameters, 6,992 bytes per rank"


def capped_linear_search(n, m, cap=10**7):
    """Tries N_d = 1, 2, ..., cap in order and returns the first that fits, after a correct None pre-check: right on
    every case that needs at most ``cap`` ranks. The tries run as numpy arrays of 2**20 ranks at a time, with the same
    answers as a Python loop over them, so that the test stays fast."""
    answer = []
    for stage in range(4):
        if sol.zero_bytes_per_rank(n, 10**30, stage) >= m and sol.zero_bytes_per_rank(n, 1, stage) > m:
            answer.append(None)
            continue
        found = None
        for start in range(1, cap + 1, 2**20):
            nd = np.arange(start, min(start + 2**20, cap + 1), dtype=np.float64)
            fits = np.broadcast_to(sol.zero_bytes_per_rank(n, nd, stage) <= m, nd.shape)
            if fits.any():
                found = int(nd[fits.argmax()])
                break
        answer.append(found)  # None past the cap: the search gave up
    return answer


def test_a_search_capped_at_ten_million_ranks_fails_only_at_the_largest_case():
    cases = ex._fit_cases()
    for label, n, m in cases[:-1]:  # right wherever the cap is enough...
        assert capped_linear_search(n, m) == ex._fit_reference(n, m), label
    message = rejects(ex.check_smallest_ranks, capped_linear_search)  # ...and rejected at the case beyond 2**40
    assert message.startswith(f"smallest ranks that fit, {LARGEST_LABEL}, stage 3: got None"), message


def no_never_fits(n, m):  # the closed form without the None case: a negative or huge number of ranks
    answer = []
    for stage in range(4):
        kept = sol.zero_bytes_per_rank(n, 10**30, stage)
        spread = sol.zero_bytes_per_rank(n, 1, stage) - kept
        answer.append(max(1, math.ceil(spread / (m - kept))) if m != kept else 1)
    return answer


@pytest.mark.parametrize("wrong", [
    floor_instead_of_ceil,
    strictly_less_than,
    capped_search,
    lambda n, m: capped_search(n, m, cap=100_000),  # a generous cap still stops before a million ranks
    capped_linear_search,  # 10**7 ranks: stops before the case beyond 2**40
    no_never_fits,
    _wrong_fit(lambda k, n, m, s: 1 if s == 0 else k),  # stage 0 "fits" everywhere
    _wrong_fit(lambda k, n, m, s: None if s == 0 else k),  # stage 0 never fits
    _wrong_fit(lambda k, n, m, s: -1 if k is None else k),  # -1 instead of None
    _wrong_fit(lambda k, n, m, s: math.inf if k is None else k),  # inf instead of None
    _wrong_fit(lambda k, n, m, s: np.True_ if k == 1 else k),  # a comparison's NumPy bool for one rank
    _wrong_fit(lambda k, n, m, s: 2.5 if k is not None and k > 1 else k),  # a fraction of a rank
    _wrong_fit(lambda k, n, m, s: k if k in (None, 1) else k + 1),  # one rank too many
    lambda n, m: sol.smallest_ranks_that_fit(n, m)[::-1],  # stages in the wrong order
    lambda n, m: sol.smallest_ranks_that_fit(n, m)[1:],  # a stage missing
    lambda n, m: [sol.smallest_ranks_that_fit(n, m)[min(s + 1, 3)] for s in range(4)],  # one stage off
    lambda n, m: "fits",
    lambda n, m: [None if k is None else str(k) for k in sol.smallest_ranks_that_fit(n, m)],  # strings
])
def test_fit_rejects_likely_mistakes(wrong):
    message = rejects(ex.check_smallest_ranks, wrong)
    assert "smallest ranks that fit" in message
    # the message is the case's label, the stage, the learner's own entry (or entry count) and a hint that names no
    # number: with those taken out, no digit is left to give an answer away
    labels = [f"smallest ranks that fit, {label}" for label, _, _ in ex._fit_cases()]
    label = next((lb for lb in labels if message.startswith(lb)), None)
    assert label is not None, message
    rest = re.sub(r"stage \d|got \S+|\d+ entries", "", message[len(label):])
    assert not re.search(r"\d", rest), message


def test_fit_cannot_call_the_package():
    from course_utils.parallel.zero import zero_memory_per_rank

    def via_package(n, m):
        return [next((nd for nd in range(1, 20_000) if zero_memory_per_rank(n, nd, s).total <= m), None)
                for s in range(4)]

    assert "switched off" in rejects(ex.check_smallest_ranks, via_package)
    assert zero_memory_per_rank(8, 2, 3).total == 64  # and switched back on afterwards


# ---------- exercise 3: tensor-parallel MLP ----------

def test_tp_reference_sums_to_the_full_mlp():
    g = torch.Generator().manual_seed(0)
    x, w_fc, w_proj = torch.randn(2, 3, 8, generator=g), torch.randn(32, 8, generator=g), torch.randn(8, 32,
                                                                                                      generator=g)
    full = F.gelu(x.double() @ w_fc.double().T) @ w_proj.double().T
    assert torch.allclose(ex._tp_reference(x, w_fc, w_proj, 4).sum(0), full, atol=1e-10)


def test_tp_accepts_solution_and_forms():
    ex.check_tensor_parallel_mlp(sol.tensor_parallel_mlp_partials)
    ex.check_tensor_parallel_mlp(lambda *a: torch.stack(sol.tensor_parallel_mlp_partials(*a)))
    ex.check_tensor_parallel_mlp(lambda *a: tuple(t.double() for t in sol.tensor_parallel_mlp_partials(*a)))


def gelu_after_sum(x, w_fc, w_proj, p):
    f = w_fc.shape[0] // p
    return [F.gelu(x @ w_fc[r * f:(r + 1) * f].T @ w_proj[:, r * f:(r + 1) * f].T) for r in range(p)]


def interleaved(x, w_fc, w_proj, p):
    return [F.gelu(x @ w_fc[r::p].T) @ w_proj[:, r::p].T for r in range(p)]


def wrong_weight_dims(x, w_fc, w_proj, p):  # column block of w_fc (input features): shapes do not even fit
    f = w_fc.shape[1] // p
    return [F.gelu(x[..., r * f:(r + 1) * f] @ w_fc[:, r * f:(r + 1) * f].T) @ w_proj.T / p for r in range(p)]


def full_output_each(x, w_fc, w_proj, p):
    return [F.gelu(x @ w_fc.T) @ w_proj.T for _ in range(p)]


@pytest.mark.parametrize("wrong", [gelu_after_sum, interleaved, wrong_weight_dims, full_output_each])
def test_tp_rejects_likely_mistakes(wrong):
    message = rejects(ex.check_tensor_parallel_mlp, wrong)
    assert "GELU" in message


def test_tp_rejects_the_tanh_gelu_and_the_hint_names_it():
    def tanh_gelu(x, w_fc, w_proj, p):  # the right split, the wrong GELU: the hint must not blame the split alone
        f = w_fc.shape[0] // p
        return [F.gelu(x @ w_fc[r * f:(r + 1) * f].T, approximate="tanh") @ w_proj[:, r * f:(r + 1) * f].T
                for r in range(p)]

    assert "not the tanh approximation" in rejects(ex.check_tensor_parallel_mlp, tanh_gelu)


def test_tp_cannot_call_the_package():
    from course_utils.parallel import tensor_parallel

    def via_package(x, w_fc, w_proj, p):
        tensor_parallel.check_divisible("F", w_fc.shape[0], p)
        return sol.tensor_parallel_mlp_partials(x, w_fc, w_proj, p)

    assert "switched off" in rejects(ex.check_tensor_parallel_mlp, via_package)


@pytest.mark.parametrize("check, via_reference, right", [
    (ex.check_zero_bytes, lambda n, d, s: ex._zero_reference(n, d, s), sol.zero_bytes_per_rank),
    (ex.check_smallest_ranks, lambda n, m: ex._fit_reference(n, m), sol.smallest_ranks_that_fit),
    (ex.check_tensor_parallel_mlp, lambda x, a, b, p: ex._tp_reference(x, a, b, p), sol.tensor_parallel_mlp_partials),
], ids=["zero", "smallest_ranks", "tensor_parallel"])
def test_checks_refuse_their_own_reference_and_restore_it(check, via_reference, right):
    refuses_reference_then_passes(check, via_reference, right)


# ---------- added by the mutation audit ----------

def test_ring_rejects_an_extra_step_and_a_step_of_the_wrong_length():
    extra = lambda p: sol.ring_schedule(p) + sol.ring_schedule(p)[-1:]  # noqa: E731  harmless, but 2p - 1 steps
    assert "2(p - 1)" in rejects(ex.check_ring_schedule, extra)
    for wrong in (lambda p: [step + [0] for step in sol.ring_schedule(p)],     # one index too many per step
                  lambda p: [step[:-1] for step in sol.ring_schedule(p)]):     # one too few
        assert "for each of the" in rejects(ex.check_ring_schedule, wrong)


def test_ring_replays_the_sends_of_a_step_at_once():
    # for 3 ranks this schedule leaves the sum everywhere only if each step's sends happen one after another (rank 0
    # first, so that rank 1 forwards what it has just received); sent at once, as the exercise says, it does not
    one_after_another = [[0, 0, 1], [1, 2, 2], [2, 1, 0], [0, 2, 1]]
    wrong = lambda p: one_after_another if p == 3 else sol.ring_schedule(p)  # noqa: E731
    assert "3 ranks" in rejects(ex.check_ring_schedule, wrong)


def test_fit_rejects_fractional_ranks_and_a_dict_with_extra_keys():
    half_ranks = _wrong_fit(lambda k, n, m, s: k if k is None else k + 0.5)  # int() would floor it to the answer
    assert "whole number" in rejects(ex.check_smallest_ranks, half_ranks)
    as_dict = lambda n, m: {**dict(enumerate(sol.smallest_ranks_that_fit(n, m))), "total": 4}  # noqa: E731
    assert "exactly the stages as keys" in rejects(ex.check_smallest_ranks, as_dict)


def test_fit_rejects_an_answer_that_fits_when_the_unsharded_part_equals_the_budget():
    def strict(n, gpu):  # "never fits" only when the unsharded part is strictly larger than the budget
        out = []
        for kept_bytes in (16, 4, 2, 0):
            kept, spread = kept_bytes * n, (16 - kept_bytes) * n
            out.append(1 if kept + spread <= gpu else None if kept > gpu else -(-spread // max(gpu - kept, 1)))
        return out

    assert strict(7 * 10**8, 28 * 10**8) != ex._fit_reference(7 * 10**8, 28 * 10**8)
    rejects(ex.check_smallest_ranks, strict)
