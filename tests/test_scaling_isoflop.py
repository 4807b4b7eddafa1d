"""IsoFLOP minima recover the compute-optimal allocation of a known loss surface."""

import numpy as np
import pytest

from course_utils.scaling.fit import ChinchillaFit
from course_utils.scaling.isoflop import IsoFLOPMinimum, allocation_exponents, isoflop_minima

SURFACE = ChinchillaFit(E=1.7, A=400.0, B=1800.0, alpha=0.34, beta=0.28, objective=0.0)


def isoflop_grid(budgets, sizes_per_budget=9):
    N, D = [], []
    for C in budgets:
        n_star = SURFACE.compute_optimal(C)[0][0]
        n = n_star * np.geomspace(0.1, 10, sizes_per_budget)
        N += list(n)
        D += list(C / (6 * n))
    return np.array(N), np.array(D)


def test_vertices_recover_the_known_optimum_and_exponent():
    budgets = [1e18, 1e19, 1e20, 1e21]
    N, D = isoflop_grid(budgets)
    minima = isoflop_minima(N, D, SURFACE.loss(N, D))
    assert [m.n_runs for m in minima] == [9] * 4 and all(m.interior for m in minima)
    for m, C in zip(minima, budgets):
        assert m.compute == pytest.approx(C)
        # a parabola in log N is an approximation of the true curve: the vertex lands within 15% of N*
        assert m.n_opt == pytest.approx(SURFACE.compute_optimal(C)[0][0], rel=0.15)
    exps = allocation_exponents(minima)
    assert exps["a"] == pytest.approx(SURFACE.beta / (SURFACE.alpha + SURFACE.beta), abs=0.02)
    assert exps["a"] + exps["b"] == pytest.approx(1.0)


def test_a_vertex_outside_the_sizes_tried_is_flagged():
    C = 1e20
    n_star = SURFACE.compute_optimal(C)[0][0]
    N = n_star * np.geomspace(2, 20, 5)  # every size too large: the minimum is to the left
    minima = isoflop_minima(N, C / (6 * N), SURFACE.loss(N, C / (6 * N)))
    assert not minima[0].interior


def test_bad_input():
    with pytest.raises(ValueError, match="at least 3 model sizes"):
        isoflop_minima([1e6, 2e6], [1e9, 5e8], [3.0, 3.1])
    with pytest.raises(ValueError, match="positive"):
        isoflop_minima([1e6, -2e6, 3e6], [1e9, 5e8, 1e8], [3.0, 3.1, 3.2])
    with pytest.raises(ValueError, match="curve upwards"):
        isoflop_minima([1e6, 2e6, 4e6], [4e8, 2e8, 1e8], [3.0, 3.5, 3.0])
    with pytest.raises(ValueError, match="2 or more budgets"):
        allocation_exponents([])


def test_a_budget_without_a_minimum_can_be_skipped():
    N = np.array([1e3, 1e4, 1e5, 1e3, 1e4, 1e5])
    D = np.array([1e6, 1e5, 1e4, 1e7, 1e6, 1e5])
    L = np.array([3.0, 2.5, 3.0, 3.0, 2.8, 2.5])  # the second budget falls monotonically: no vertex
    with pytest.raises(ValueError, match="curve upwards"):
        isoflop_minima(N, D, L)
    kept = isoflop_minima(N, D, L, skip_flat=True)
    assert len(kept) == 1 and kept[0].compute == pytest.approx(6e9)


def test_exact_parabolas_by_hand():
    # budget 1e15: L = 2 + 0.1 (ln N - ln 1e6)^2 at N = 1e6 e^(-1, 0, 1), computes 1e15 x (1, 1.02, 1.04): one budget
    # (within 5% of its smallest run), reported as their mean; budget 1.08e15 (8% above the first run, though within
    # 5% of the previous one): L = 1.5 + 0.2 (ln N - ln 4e6)^2 at N = 4e6 e^(-3, -2, -1), vertex right of the sizes
    n1, n2 = 1e6 * np.exp([-1.0, 0.0, 1.0]), 4e6 * np.exp([-3.0, -2.0, -1.0])
    N = np.concatenate([n1, n2])
    C = 1e15 * np.array([1.0, 1.02, 1.04, 1.08, 1.08, 1.08])
    L = np.concatenate([2 + 0.1 * np.log(n1 / 1e6) ** 2, 1.5 + 0.2 * np.log(n2 / 4e6) ** 2])
    first, second = isoflop_minima(N, C / (6 * N), L)
    assert (first.n_runs, second.n_runs) == (3, 3)
    assert first.compute == pytest.approx(1.02e15, rel=1e-12) and second.compute == pytest.approx(1.08e15, rel=1e-12)
    assert first.n_opt == pytest.approx(1e6, rel=1e-8) and second.n_opt == pytest.approx(4e6, rel=1e-8)
    assert first.loss_min == pytest.approx(2.0, rel=1e-9) and second.loss_min == pytest.approx(1.5, rel=1e-9)
    assert first.interior and not second.interior  # every size of the second budget is too small


def test_allocation_exponents_of_exact_minima():
    minima = [IsoFLOPMinimum(compute=c, n_opt=0.5 * c**0.6, loss_min=2.0, n_runs=3, interior=True)
              for c in (1e18, 1e20, 1e22)]
    exps = allocation_exponents(minima)  # N* = 0.5 C^0.6
    assert exps["a"] == pytest.approx(0.6, rel=1e-12) and exps["b"] == pytest.approx(0.4, rel=1e-11)
    assert exps["k"] == pytest.approx(0.5, rel=1e-9)


def test_a_tolerance_that_merges_every_budget_is_refused():
    N, D = isoflop_grid([1e18, 1e19])
    for bad in (float("inf"), 2.5, -0.1, float("nan"), True):  # inf and 2.5 merged both budgets into one minimum
        with pytest.raises(ValueError, match=r"rel_tol must be a number in \[0, 1\)"):
            isoflop_minima(N, D, SURFACE.loss(N, D), rel_tol=bad)
    assert len(isoflop_minima(N, D, SURFACE.loss(N, D), rel_tol=np.float32(0.05))) == 2
