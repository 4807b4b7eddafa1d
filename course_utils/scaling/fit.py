"""Fitting scaling laws: L(N) and L(D) power laws, and the Chinchilla form L(N, D) = E + A / N^alpha + B / D^beta.

* Power law with an irreducible floor, ``L(x) = E + A x^(-alpha)`` (Kaplan et al., 2020, "Scaling Laws for Neural
  Language Models", use ``E = 0`` and the form ``(x_c / x)^alpha``; a floor is needed at small scale).
* Chinchilla "approach 3" (Hoffmann et al., 2022, "Training Compute-Optimal Large Language Models", section 3.3 and
  appendix D.2): with ``A = e^a, B = e^b, E = e^e`` minimise the Huber loss (delta = 1e-3) between
  ``log L`` and ``LSE(a - alpha log N, b - beta log D, e)`` with L-BFGS, from every point of a grid of initial
  values, and keep the best fit. Besiroglu et al. (2024, "Chinchilla Scaling: A replication attempt") redid this
  on points digitised from the paper's figure 4; ``tests/test_scaling_fit.py`` checks us against their refit.
* A profile of the fit over a held floor E (:func:`floor_profile`): the best objective with E fixed at each value,
  the other constants refitted, which shows whether the data pin E at all (as in profile likelihood).
* Compute-optimal allocation under ``C = 6 N D``: ``N*(C) = G (C / 6)^(beta / (alpha + beta))`` with
  ``G = (alpha A / (beta B))^(1 / (alpha + beta))``, and ``D*(C) = C / (6 N*(C))``.

Left out: the paper's approaches 1 and 2 (envelope and IsoFLOP minima, which chapter 04 does in the notebook),
data-constrained forms (Muennighoff et al., 2023), and the Kaplan L(N, D) joint form.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from course_utils.arguments import check_int, check_real

PAPER_GRID = {  # Hoffmann et al. (2022), appendix D.2: initial values of the L-BFGS runs
    "alpha": (0.0, 0.5, 1.0, 1.5, 2.0), "beta": (0.0, 0.5, 1.0, 1.5, 2.0), "e": (-1.0, -0.5, 0.0, 0.5, 1.0),
    "a": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0), "b": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
}
COARSE_GRID = {"alpha": (0.0, 1.0), "beta": (0.0, 1.0), "e": (-1.0, 0.5), "a": (0.0, 10.0, 20.0),
               "b": (0.0, 10.0, 20.0)}


def _positive_array(name: str, values) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size == 0 or not np.all(np.isfinite(array)) or np.any(array <= 0):
        raise ValueError(f"{name} must be a non-empty sequence of finite positive numbers")
    return array


def _huber(r: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Huber loss of residuals ``r`` and its derivative."""
    small = np.abs(r) <= delta
    loss = np.where(small, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta))
    grad = np.where(small, r, delta * np.sign(r))
    return loss, grad


def _chinchilla_objective(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray,
                          delta: float) -> tuple[float, np.ndarray]:
    """Sum of Huber(LSE(a - alpha log N, b - beta log D, e) - log L) and its gradient in (a, b, e, alpha, beta)."""
    a, b, e, alpha, beta = theta
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])  # (3, P)
    top = terms.max(axis=0)
    weights = np.exp(terms - top)  # (3, P)
    total = weights.sum(axis=0)
    predicted = top + np.log(total)  # (P,) log of the predicted loss
    loss, dloss = _huber(predicted - log_l, delta)
    soft = weights / total  # (3, P) d predicted / d term
    grad = np.array([
        (dloss * soft[0]).sum(), (dloss * soft[1]).sum(), (dloss * soft[2]).sum(),
        -(dloss * soft[0] * log_n).sum(), -(dloss * soft[1] * log_d).sum(),
    ])
    return float(loss.sum()), grad


@dataclass
class ChinchillaFit:
    E: float
    A: float
    B: float
    alpha: float
    beta: float
    objective: float  # the Huber objective at the optimum

    def loss(self, N, D) -> np.ndarray:
        """Predicted loss at parameters ``N`` and tokens ``D`` (broadcast)."""
        N, D = np.asarray(N, dtype=np.float64), np.asarray(D, dtype=np.float64)
        return self.E + self.A / N**self.alpha + self.B / D**self.beta

    def compute_optimal(self, C) -> tuple[np.ndarray, np.ndarray]:
        """``(N*, D*)`` minimising the fitted loss at training compute ``C = 6 N D`` FLOPs."""
        C = _positive_array("C", C)
        G = (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))
        n_opt = G * (C / 6.0) ** (self.beta / (self.alpha + self.beta))
        return n_opt, C / (6.0 * n_opt)

    def optimal_loss(self, C) -> np.ndarray:
        """The fitted loss of the compute-optimal model at each budget ``C`` (falls monotonically with ``C``)."""
        n_opt, d_opt = self.compute_optimal(C)
        return self.loss(n_opt, d_opt)

    def as_dict(self) -> dict[str, float]:
        return {"E": self.E, "A": self.A, "B": self.B, "alpha": self.alpha, "beta": self.beta}


def fit_chinchilla_form(N, D, L, delta: float = 1e-3, grid: dict | None = None) -> ChinchillaFit:
    """Fit ``L = E + A / N^alpha + B / D^beta`` by the published procedure (see the module docstring).

    L-BFGS runs from every point of ``grid`` (default: the paper's 4,500 starts, minutes of CPU; ``COARSE_GRID``'s
    72 starts take seconds and find the same optimum on the published points, see ``tests/test_scaling_fit.py``).
    """
    log_n, log_d, log_l, starts = _checked_fit_input(N, D, L, delta, PAPER_GRID if grid is None else grid)
    return _fit_from_result(_best_of_starts(starts, log_n, log_d, log_l, delta))


def _fit_from_result(result) -> ChinchillaFit:
    """The constants of an L-BFGS result over (a, b, e, alpha, beta), with A = e^a, B = e^b, E = e^e."""
    a, b, e, alpha, beta = result.x
    return ChinchillaFit(E=float(np.exp(e)), A=float(np.exp(a)), B=float(np.exp(b)), alpha=float(alpha),
                         beta=float(beta), objective=float(result.fun))


def _checked_fit_input(N, D, L, delta, grid) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """log N, log D, log L and the (S, 5) starting points (a, b, e, alpha, beta), after checking the arguments."""
    log_n, log_d, log_l = (np.log(_positive_array(name, v)) for name, v in (("N", N), ("D", D), ("L", L)))
    if not log_n.size == log_d.size == log_l.size:
        raise ValueError(f"N, D and L must have the same length, got {log_n.size}, {log_d.size}, {log_l.size}")
    if log_n.size < 5:
        raise ValueError(f"the form has 5 parameters; fitting needs at least 5 points, got {log_n.size}")
    # NaN, 0 or a negative Huber threshold made every L-BFGS run stop at its start, and the fit came back as the
    # first starting point without a word
    check_real(delta, "delta (the Huber threshold)", minimum=0, low_open=True)
    missing = {"a", "b", "e", "alpha", "beta"} - set(grid)
    if missing:
        raise ValueError(f"grid needs initial values for {sorted(missing)}")
    starts = np.array(list(itertools.product(grid["a"], grid["b"], grid["e"], grid["alpha"], grid["beta"])))
    return log_n, log_d, log_l, starts


def _best_of_starts(starts, log_n, log_d, log_l, delta, bounds=None):
    """The best L-BFGS result over ``starts`` (``bounds`` as scipy's, e.g. to hold e fixed)."""
    from scipy.optimize import minimize  # scipy is a dependency of this module only

    best = None
    for start in starts:
        result = minimize(_chinchilla_objective, start, args=(log_n, log_d, log_l, delta), jac=True,
                          method="L-BFGS-B", bounds=bounds)
        if best is None or result.fun < best.fun:
            best = result
    return best


def floor_profile(N, D, L, floors, delta: float = 1e-3, grid: dict | None = None) -> list[ChinchillaFit]:
    """The best Chinchilla fit with the floor held at each value of ``floors`` (E > 0), the other four constants
    refitted: from ``grid``'s starts (default ``COARSE_GRID``), from the free fit, and then from every other floor's
    optimum (with E moved to this floor), repeated until no held fit improves (at most ``len(floors)`` passes), so one
    stuck start does not make a bump in the profile (a neighbour's optimum alone, one sweep up and one down, left some
    on chapter 04's cpu sweep).
    Each fit's ``objective`` is the profile; its other constants show what else moves with the floor (the allocation
    exponent, a prediction).

    A profile, as in profile likelihood: where it is flat, the data do not pin E, however precisely one fit reports
    it (the fitted E can then move with the order of the points or the starting grid). Compare with
    ``fit_chinchilla_form(...).objective``: no held floor can do better than the free fit, up to the optimiser."""
    given = _positive_array("floors", floors)
    order = np.argsort(given)
    floors = given[order]  # fitted in ascending order, returned in the order given
    grid = COARSE_GRID if grid is None else grid
    log_n, log_d, log_l, starts = _checked_fit_input(N, D, L, delta, grid)
    free = _best_of_starts(starts, log_n, log_d, log_l, delta).x
    log_floors = np.log(floors)

    def held_fit(i, points):  # the best L-BFGS result with e held at floor i, from ``points`` with their e moved there
        e = float(log_floors[i])
        held = np.unique(np.array([np.r_[x[:2], e, x[3:]] for x in points]), axis=0)
        bounds = [(None, None), (None, None), (e, e), (None, None), (None, None)]
        return _best_of_starts(held, log_n, log_d, log_l, delta, bounds)

    results = [held_fit(i, (*starts, free)) for i in range(len(floors))]
    for _ in range(len(floors)):  # each pass starts every floor from every other floor's optimum
        improved = False
        for i in range(len(floors)):
            best = held_fit(i, [r.x for j, r in enumerate(results) if j != i] or [results[i].x])
            if best.fun < results[i].fun * (1 - 1e-9):
                results[i], improved = best, True
        if not improved:
            break
    fits = [None] * len(floors)
    for i, result in zip(order, results):
        fits[i] = _fit_from_result(result)
    return fits


def fit_chinchilla(N, D, L, delta: float = 1e-3, grid: dict | None = None) -> dict[str, float]:
    """The fitted constants as a dict with keys ``E, A, B, alpha, beta`` (see :func:`fit_chinchilla_form`)."""
    return fit_chinchilla_form(N, D, L, delta, grid).as_dict()


@dataclass
class PowerLawFit:
    E: float  # irreducible loss (0 when fitted without a floor)
    A: float
    alpha: float

    def loss(self, x) -> np.ndarray:
        return self.E + self.A * np.asarray(x, dtype=np.float64) ** (-self.alpha)


def fit_power_law(x, L, floor: bool = True, delta: float = 1e-3) -> PowerLawFit:
    """Fit ``L(x) = E + A x^(-alpha)`` (Kaplan's L(N) or L(D)); ``floor=False`` fixes E = 0 (a line in log-log).

    With a floor: the same loss as the Chinchilla fit, Huber on log-loss, L-BFGS from a small grid of starts.
    Without (``floor=False``): ordinary least squares of log L on log x (``np.polyfit``), Kaplan's straight line.
    """
    from scipy.optimize import minimize

    log_x, log_l = np.log(_positive_array("x", x)), np.log(_positive_array("L", L))
    delta = check_real(delta, "delta (the Huber threshold)", minimum=0, low_open=True)
    if log_x.size != log_l.size:
        raise ValueError(f"x and L must have the same length, got {log_x.size} and {log_l.size}")
    if log_x.size < (3 if floor else 2):
        raise ValueError(f"need at least {3 if floor else 2} points to fit this power law, got {log_x.size}")
    if not floor:
        alpha, log_a = np.polyfit(-log_x, log_l, 1)
        return PowerLawFit(E=0.0, A=float(np.exp(log_a)), alpha=float(alpha))
    # the Chinchilla objective with the D term switched off (b = -inf is not representable: fix beta=0, b very low)
    def objective(theta):
        value, grad = _chinchilla_objective(np.array([theta[0], -1e3, theta[1], theta[2], 0.0]), log_x,
                                            np.zeros_like(log_x), log_l, delta)
        return value, grad[[0, 2, 3]]

    best = None
    for start in itertools.product((0.0, 5.0, 10.0), (-1.0, 0.0, 1.0), (0.1, 0.5, 1.0)):
        result = minimize(objective, np.array(start), jac=True, method="L-BFGS-B")
        if best is None or result.fun < best.fun:
            best = result
    a, e, alpha = best.x
    return PowerLawFit(E=float(np.exp(e)), A=float(np.exp(a)), alpha=float(alpha))


def bootstrap_chinchilla(N, D, L, n_boot: int, rng: np.random.Generator, delta: float = 1e-3,
                         grid: dict | None = None, starts=(), refit_grid: dict | None = None, progress: bool = False
                         ) -> tuple[ChinchillaFit, list[ChinchillaFit]]:
    """The fit on all points (from ``grid``, default ``COARSE_GRID``) and ``n_boot`` refits on resamples drawn with
    replacement; the spread of the refits' constants is their uncertainty. Each refit runs L-BFGS from the full fit,
    from each fit in ``starts`` (e.g. :func:`floor_profile`'s fits, which lie along a valley in E) and from every point
    of ``refit_grid`` (e.g. ``COARSE_GRID``), and keeps the best: ``1 + len(starts)`` (+ the grid's size) L-BFGS runs
    per resample. With neither every refit stays in the full fit's basin: where the data do not pin a constant (E
    along a flat valley), the intervals are then conditional on the full fit and understate the uncertainty; on
    chapter 04's sweeps the grid's starts still found lower optima than the valley's for about half the resamples.
    ``progress=True`` shows a tqdm bar over the resamples."""
    n_boot = check_int(n_boot, "n_boot", minimum=1)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
    starts = list(starts)
    odd = [s for s in starts if not isinstance(s, ChinchillaFit)]
    if odd:
        raise TypeError("starts must be ChinchillaFit objects (e.g. floor_profile's fits), "
                        f"got {type(odd[0]).__name__}")
    N, D, L = (_positive_array(name, v) for name, v in (("N", N), ("D", D), ("L", L)))
    full = fit_chinchilla_form(N, D, L, delta, COARSE_GRID if grid is None else grid)
    theta = np.array([[np.log(f.A), np.log(f.B), np.log(max(f.E, 1e-300)), f.alpha, f.beta] for f in (full, *starts)])
    refit_grid = {} if refit_grid is None else refit_grid
    log_n, log_d, log_l, grid_starts = _checked_fit_input(N, D, L, delta, refit_grid or COARSE_GRID)
    if refit_grid:
        theta = np.concatenate([theta, grid_starts])
    theta = np.unique(theta, axis=0)  # (S, 5) the distinct starting points (a, b, e, alpha, beta)
    refits = []
    for _ in tqdm(range(n_boot), desc="bootstrap refits", disable=not progress, leave=False):
        pick = rng.integers(0, len(L), size=len(L))
        refits.append(_fit_from_result(_best_of_starts(theta, log_n[pick], log_d[pick], log_l[pick], delta)))
    return full, refits
