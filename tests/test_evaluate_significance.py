"""The exact paired tests against brute force and hand values."""

import itertools
from fractions import Fraction

import numpy as np
import pytest
import torch

from course_utils.evaluate.significance import holm_adjust, p_text, sign_flip_p, sign_test


def test_sign_test_hand_values_and_symmetry():
    assert sign_test(9, 11) == pytest.approx(0.0654296875)          # 2 * (C(11,9) + C(11,10) + C(11,11)) / 2^11
    assert sign_test(10, 10) == pytest.approx(2 / 2 ** 10) and sign_test(0, 10) == sign_test(10, 10)
    assert sign_test(5, 10) == 1.0 and sign_test(0, 0) == 1.0
    assert sign_test(977, 1577) == pytest.approx(1.842e-21, rel=1e-3)   # chapter 02's cpu blanks
    for bad in [(3, 2), (-1, 4), (1.0, 2), (True, 2), (np.float64(2), 7), (np.True_, 2), (torch.tensor(True), 2),
                (torch.tensor([1]), 2)]:
        with pytest.raises(ValueError, match="wins"):
            sign_test(*bad)


def test_sign_test_takes_numpy_and_tensor_integers():
    # chapter 10 counts wins as sum(numpy bools), an np.int64: its cpu run failed when only int was accepted
    wins = sum([np.float64(0.6) > np.float64(0.4), np.float64(0.1) > np.float64(0.2)] * 1 + [np.bool_(True)])
    assert isinstance(wins, np.integer) and sign_test(wins, 7) == sign_test(2, 7)
    assert sign_test(torch.tensor(2), torch.tensor(7)) == sign_test(np.int32(2), 7) == sign_test(2, 7)


def test_sign_flip_reduces_to_the_sign_test_on_right_wrong_differences():
    d = torch.tensor([1.0] * 9 + [-1.0] * 2 + [0.0] * 13)
    assert sign_flip_p(d) == sign_test(9, 11)
    assert sign_flip_p(torch.zeros(5)) == 1.0


def test_sign_flip_is_exact_against_brute_force_with_float32_ties():
    values = [Fraction(1, 2), Fraction(1, 4), Fraction(-1, 6), Fraction(1, 3), Fraction(1, 2), Fraction(1, 2),
              Fraction(1, 6), Fraction(1, 2), Fraction(-1, 4)]
    observed = abs(sum(values))
    hits = sum(abs(sum(s * v for s, v in zip(signs, values))) >= observed
               for signs in itertools.product([-1, 1], repeat=len(values)))
    d = torch.tensor([float(v) for v in values] + [0.0], dtype=torch.float32)
    assert sign_flip_p(d) == hits / 2 ** len(values)


def test_sign_flip_monte_carlo_is_seeded_and_close_to_the_exact_share():
    d = torch.randn(18, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 0.4   # 18 > 16: sampled
    signs = 1 - 2 * ((torch.arange(2 ** 18)[:, None] >> torch.arange(18)) & 1)                  # every pattern
    exact = ((signs.double() @ d).abs() >= d.sum().abs() - 1e-6).double().mean().item()
    p = sign_flip_p(d, draws=20_000)
    assert p == sign_flip_p(d, draws=20_000) and abs(p - exact) < 0.01 and p > 0
    with pytest.raises(ValueError, match="1-D"):
        sign_flip_p(torch.zeros(2, 2))


@pytest.mark.parametrize("diffs", [[np.nan, 1, 1, 1, 1, 1], [np.nan] * 3, [np.inf, 1, -0.5]])
def test_sign_flip_p_refuses_non_finite_differences(diffs):
    with pytest.raises(ValueError, match="finite"):
        sign_flip_p(diffs)  # NaN was dropped (0.0625), all-NaN and inf gave 1.0


@pytest.mark.parametrize("draws", [0, -5, True, 2.0, None])
def test_sign_flip_p_needs_a_positive_int_of_draws(draws):
    with pytest.raises(ValueError, match="draws must be an int >= 1"):
        sign_flip_p(list(range(1, 20)), draws=draws)  # draws=0 gave 1.0


def test_sign_flip_p_takes_numpy_draws():
    d = [1.0, -0.3, 0.5] * 7
    assert sign_flip_p(d, draws=np.int64(500)) == sign_flip_p(d, draws=500)


def test_sign_flip_is_exact_at_sixteen_differences():
    d = np.array([3, -1, 4, 1.5, 5, 9, -2, 6, 5.5, 3.5, 8, 9.5, 7, -9.25, 3.25, 2.5])  # 16 nonzero, unequal sizes
    signs = np.array(list(itertools.product([-1, 1], repeat=16)))  # (65536, 16): enumerated, not sampled
    exact = float(np.mean(np.abs(signs @ d) >= abs(d.sum())))
    assert sign_flip_p(torch.tensor(d)) == exact


def test_sign_flip_monte_carlo_counts_the_observed_pattern_once():
    d = torch.linspace(1.0, 2.0, 20, dtype=torch.float64)  # 20 > 16: sampled; only all-equal signs reach the sum
    assert sign_flip_p(d, draws=100) == 1 / 101  # no draw of 100 reaches it (chance 2 / 2^20 each): (0 + 1) / 101


def test_holm_by_hand():
    # sorted: a 0.01 x 3 = 0.03, c 0.03 x 2 = 0.06, b 0.04 x 1 = 0.04 -> kept non-decreasing: 0.06
    assert holm_adjust({"a": 0.01, "b": 0.04, "c": 0.03}) == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06})
    assert holm_adjust({"x": 0.6, "y": 0.7}) == {"x": 1.0, "y": 1.0}   # 1.2 capped, then kept non-decreasing
    assert holm_adjust({"only": 0.2}) == {"only": 0.2} and holm_adjust({}) == {}
    assert list(holm_adjust({"b": 0.5, "a": 0.1})) == ["b", "a"]          # the caller's order of keys


def test_holm_rejects_exactly_what_the_step_down_procedure_rejects():
    rng = np.random.default_rng(0)
    for _ in range(200):
        m = int(rng.integers(1, 8))
        p = {i: float(v) for i, v in enumerate(rng.uniform(0, 0.1, m) ** rng.uniform(0.5, 2))}
        adjusted = holm_adjust(p)
        for alpha in (0.01, 0.05, 0.1):
            order = sorted(p, key=p.get)
            rejected = set()
            for j, i in enumerate(order):          # the procedure: stop at the first p above alpha / (m - j)
                if p[i] > alpha / (m - j):
                    break
                rejected.add(i)
            assert {i for i in p if adjusted[i] <= alpha} == rejected


@pytest.mark.parametrize("bad", [{"a": 1.5}, {"a": -0.1}, {"a": float("nan")}, {"a": True}, {"a": "0.1"}])
def test_holm_refuses_what_is_no_p_value(bad):
    with pytest.raises(ValueError, match="must be a number in \\[0, 1\\]"):
        holm_adjust(bad)


def test_holm_wants_a_mapping():
    with pytest.raises(TypeError, match="mapping"):
        holm_adjust([0.1, 0.2])


def test_p_text_never_prints_a_small_p_as_zero():
    assert p_text(0.25) == "0.25" and p_text(1.0) == "1.00" and p_text(0.05) == "0.050"
    assert p_text(0.0011) == "0.0011" and p_text(5.8e-4) == "0.00058" and p_text(np.float64(0.076)) == "0.076"
    assert p_text(0.0) == "0"
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="p must be a p-value in \\[0, 1\\]"):
            p_text(bad)
