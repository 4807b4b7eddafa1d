"""IsoFLOP minima recover the compute-optimal allocation of a known loss surface."""

import numpy as np
import pytest

from course_utils.scaling.fit import ChinchillaFit
from course_utils.scaling.isoflop import allocation_exponents, isoflop_minima

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
