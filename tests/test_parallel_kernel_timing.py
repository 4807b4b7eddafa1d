"""Single kernels timed at a precision (course_utils.parallel.kernel_timing): the functions run at every precision
and refuse bad input. No timed comparisons: the machine's load decides those (benchmarks measure speed)."""

import math

import pytest

from course_utils.parallel.kernel_timing import matmul_seconds, sdpa_seconds


def test_matmul_seconds_times_each_precision_and_refuses_bad_input():
    for precision in ("fp32", "bf16", "bf16 autocast"):
        seconds = matmul_seconds(16, precision, repeats=2, min_seconds=1e-3)
        assert 0 < seconds and math.isfinite(seconds)   # no timed comparison: the machine's load decides those
    with pytest.raises(ValueError, match="precision must be one of"):
        matmul_seconds(16, "fp16")
    with pytest.raises(ValueError, match="sizes and repeats must be ints >= 1"):
        matmul_seconds(0)
    with pytest.raises(ValueError, match="sizes and repeats must be ints >= 1"):
        matmul_seconds(16, repeats=0)
    # a linear layer's (m, k) @ (k, n) (no timed comparison: the machine's load decides those)
    seconds = matmul_seconds((64, 16, 8), repeats=2, min_seconds=1e-3)
    assert 0 < seconds and math.isfinite(seconds)
    with pytest.raises(ValueError, match="size must be an int or"):
        matmul_seconds((4, 4))
    with pytest.raises(ValueError, match="sizes and repeats must be ints >= 1"):
        matmul_seconds((4, 0, 4))


def test_sdpa_seconds_times_forward_and_backward_and_refuses_bad_input():
    for precision in ("fp32", "bf16", "bf16 autocast"):
        seconds = sdpa_seconds((2, 2, 8, 4), precision, repeats=2, min_seconds=1e-3)
        assert 0 < seconds and math.isfinite(seconds)   # no timed comparison: the machine's load decides those
    with pytest.raises(ValueError, match="shape must be"):
        sdpa_seconds((2, 8, 4))
    with pytest.raises(ValueError, match="sizes and repeats must be ints >= 1"):
        sdpa_seconds((2, 2, 0, 4))
    with pytest.raises(ValueError, match="precision must be one of"):
        sdpa_seconds((2, 2, 8, 4), "fp16")


def test_the_best_round_per_call_by_a_fake_clock(monkeypatch):
    """The arithmetic only, on a clock that each call advances by a set cost: two untimed calls (set-up, then the
    estimate), rounds of max(3, min_seconds / estimate + 1) calls, the best round divided by its calls."""
    import course_utils.parallel.kernel_timing as kt

    clock, costs, calls = [0.0], iter([8.0, 0.25] + [0.5] * 5 + [0.25] * 5 + [0.75] * 5), []
    monkeypatch.setattr(kt.time, "perf_counter", lambda: clock[0])

    def call():
        calls.append(1)
        clock[0] += next(costs)

    assert kt._best_seconds_per_call(call, kt.torch.device("cpu"), repeats=3, min_seconds=1.0) == 0.25
    assert len(calls) == 2 + 3 * 5  # 1.0 / 0.25 + 1 = 5 calls per round
    clock[0], costs, calls[:] = 0.0, iter([8.0, 4.0] + [4.0] * 6), []
    assert kt._best_seconds_per_call(call, kt.torch.device("cpu"), repeats=2, min_seconds=1.0) == 4.0
    assert len(calls) == 2 + 2 * 3  # at least 3 calls per round


def test_inputs_are_bf16_only_for_the_bare_bf16_precision():
    import torch

    import course_utils.parallel.kernel_timing as kt

    bare, autocast = kt._inputs([(2, 3)], "bf16", torch.device("cpu")), kt._inputs([(2, 3)], "bf16 autocast", "cpu")
    assert bare[0].dtype == torch.bfloat16 and autocast[0].dtype == torch.float32
    assert torch.equal(bare[0], autocast[0].bfloat16())  # the same seeded numbers
