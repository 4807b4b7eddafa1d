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
