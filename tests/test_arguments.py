"""The shared argument checks: what they accept, what they return, and the error type and wording of a refusal."""

import math
from fractions import Fraction

import numpy as np
import pytest

from course_utils.arguments import ArgumentTypeError, check_int, check_real, check_str


@pytest.mark.parametrize("value", [1, 7, np.int64(7), np.int32(7), np.uint8(7)])
def test_check_int_accepts_python_and_numpy_ints_and_returns_a_python_int(value):
    out = check_int(value, "n", minimum=1, maximum=7)
    assert out == value and type(out) is int


@pytest.mark.parametrize("value", [True, False, np.bool_(True), 2.0, 2.5, np.float64(2.0), "2", None, Fraction(2),
                                   math.nan, [2]])
def test_check_int_refuses_what_is_not_an_integer_as_both_type_and_value_error(value):
    with pytest.raises(ArgumentTypeError) as info:
        check_int(value, "n_layer", minimum=1)
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)
    assert str(info.value) == f"n_layer must be an int >= 1, got {value!r}"


@pytest.mark.parametrize("value, minimum, maximum, allowed", [
    (0, 1, None, "an int >= 1"), (-1, 0, None, "an int >= 0"), (9, None, 8, "an int <= 8"),
    (9, 0, 8, "an int in [0, 8]"), (-1, 0, 8, "an int in [0, 8]"), (np.int64(0), 1, None, "an int >= 1"),
])
def test_check_int_refuses_out_of_range_values_with_a_plain_value_error(value, minimum, maximum, allowed):
    with pytest.raises(ValueError) as info:
        check_int(value, "k", minimum=minimum, maximum=maximum)
    assert type(info.value) is ValueError
    assert str(info.value) == f"k must be {allowed}, got {value!r}"


def test_check_int_bounds_are_inclusive_and_optional():
    assert check_int(0, "x", minimum=0, maximum=0) == 0
    assert check_int(-10**30, "x") == -10**30  # no bound: any int
    assert check_int(2, "x", allowed="an even int") == 2
    with pytest.raises(ValueError, match=r"^cache_size must be an int >= 0 \(0 disables the cache\), got -1$"):
        check_int(-1, "cache_size", minimum=0, allowed="an int >= 0 (0 disables the cache)")


@pytest.mark.parametrize("value", [0.5, 1, np.float32(0.5), np.float64(0.25), np.int64(1), Fraction(1, 2)])
def test_check_real_accepts_python_and_numpy_numbers_and_returns_a_python_float(value):
    out = check_real(value, "p", minimum=0, maximum=1)
    assert out == float(value) and type(out) is float


@pytest.mark.parametrize("value", [True, np.bool_(False), "0.5", None, [0.5], 1j])
def test_check_real_refuses_what_is_not_a_real_number(value):
    with pytest.raises(ArgumentTypeError, match=r"^lr must be a finite number > 0, got "):
        check_real(value, "lr", minimum=0, low_open=True)


@pytest.mark.parametrize("value, kwargs, allowed", [
    (math.nan, {}, "a finite number"),
    (math.inf, {}, "a finite number"),
    (-math.inf, dict(maximum=0.0), "a finite number <= 0.0"),
    (0.0, dict(minimum=0, low_open=True), "a finite number > 0"),
    (-1e-9, dict(minimum=0), "a finite number >= 0"),
    (1.0, dict(minimum=0, maximum=1, high_open=True), "a number in [0, 1)"),
    (0.0, dict(minimum=0, maximum=1, low_open=True), "a number in (0, 1]"),
    (1.5, dict(minimum=0, maximum=1), "a number in [0, 1]"),
    (math.nan, dict(minimum=0, finite=False), "a number >= 0"),
    (10 ** 400, {}, "a finite number"),
])
def test_check_real_refuses_nan_infinity_and_values_outside_the_bounds(value, kwargs, allowed):
    with pytest.raises(ValueError) as info:
        check_real(value, "x", **kwargs)
    assert type(info.value) is ValueError
    assert str(info.value) == f"x must be {allowed}, got {value!r}"


def test_check_real_bounds_open_closed_and_infinity_when_allowed():
    assert check_real(0, "x", minimum=0) == 0.0
    assert check_real(1, "x", maximum=1) == 1.0
    assert check_real(math.inf, "x", minimum=0, low_open=True, finite=False) == math.inf
    assert check_real(10 ** 400, "x", finite=False) == math.inf
    assert check_real(-5.0, "x") == -5.0
    with pytest.raises(ValueError, match=r"^top_p must be in \(0, 1\], got 0$"):
        check_real(0, "top_p", minimum=0, maximum=1, low_open=True, allowed="in (0, 1]")


def test_check_real_keep_int_returns_integers_as_exact_python_ints():
    for value in (60, np.int64(60), 10**20 + 1):
        out = check_real(value, "n", minimum=0, keep_int=True)
        assert out == value and type(out) is int  # 10**20 + 1 is not a float: kept exact
    for value in (0.5, np.float32(0.5), Fraction(1, 2)):
        out = check_real(value, "n", minimum=0, keep_int=True)
        assert out == 0.5 and type(out) is float
    assert check_real(10**400, "n", finite=False, keep_int=True) == 10**400
    with pytest.raises(ValueError, match=r"^n must be a finite number >= 0, got -1$"):
        check_real(-1, "n", minimum=0, keep_int=True)  # still checked
    with pytest.raises(ArgumentTypeError):
        check_real(True, "n", keep_int=True)


def test_check_str_returns_the_text_and_refuses_other_kinds_and_blank_text_when_asked():
    assert check_str("", "text") == "" and check_str("a b", "text", non_empty=True) == "a b"
    for value in (b"bytes", None, 3, ["a"]):
        with pytest.raises(ArgumentTypeError, match=f"text must be a str, got {type(value).__name__}"):
            check_str(value, "text")
    with pytest.raises(ArgumentTypeError, match="question must be a non-empty str, got int"):
        check_str(3, "question", non_empty=True)
    for blank in ("", "  \n"):
        with pytest.raises(ValueError, match="question must be a non-empty str, got "):
            check_str(blank, "question", non_empty=True)
