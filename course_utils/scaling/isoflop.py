"""IsoFLOP analysis (Chinchilla "approach 2"): for each compute budget, which model size gives the lowest loss?

Hoffmann et al. (2022, "Training Compute-Optimal Large Language Models", section 3.2) train several model sizes at
each fixed FLOP budget ``C``, fit a parabola to the final loss against ``log N`` and take its vertex as the optimal
size ``N*(C)``; then ``N*(C) ~ C^a`` and ``D*(C) = C / (6 N*(C)) ~ C^b`` are fitted as lines in log-log space.
(The paper reports a = 0.49, b = 0.51; Kaplan et al., 2020, had found N* ~ C^0.73.)

Left out: the paper's approach 1 (the envelope of training curves), and error bars on the vertex.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from course_utils.arguments import check_real


@dataclass
class IsoFLOPMinimum:
    compute: float  # the budget C in FLOPs
    n_opt: float  # the parabola's vertex, in parameters
    loss_min: float  # the fitted loss at the vertex
    n_runs: int  # runs at this budget
    interior: bool  # False when the vertex lies outside the sizes tried (an extrapolation: widen the grid)


def isoflop_minima(N, D, L, rel_tol: float = 0.05, skip_flat: bool = False) -> list[IsoFLOPMinimum]:
    """Group runs by compute ``6 N D`` (budgets equal within ``rel_tol``) and fit ``L = p(log N)`` per budget.

    A budget whose losses do not curve upwards has no minimum: an error by default, or left out of the result with
    ``skip_flat=True`` (compare the result's budgets with the sweep's to see which were left out).
    """
    N, D, L = (np.asarray(v, dtype=np.float64).ravel() for v in (N, D, L))
    if not N.size == D.size == L.size or N.size == 0:
        raise ValueError(f"N, D and L must be non-empty and of equal length, got {N.size}, {D.size}, {L.size}")
    if np.any(~np.isfinite(np.concatenate([N, D, L]))) or np.any(N <= 0) or np.any(D <= 0) or np.any(L <= 0):
        raise ValueError("N, D and L must be finite and positive")
    check_real(rel_tol, "rel_tol", minimum=0, maximum=1, high_open=True,  # checked; kept as given
               allowed="a number in [0, 1) (budgets within this fraction are one budget; inf merged every run into "
                       "one)")
    C = 6 * N * D
    order = np.argsort(C)
    groups, current = [], [order[0]]
    for i in order[1:]:
        if C[i] <= C[current[0]] * (1 + rel_tol):
            current.append(i)
        else:
            groups.append(current)
            current = [i]
    groups.append(current)
    minima = []
    for group in groups:
        if len(group) < 3:
            raise ValueError(f"a parabola needs at least 3 model sizes per budget; budget {C[group[0]]:.3g} FLOPs "
                             f"has {len(group)}")
        x, y = np.log(N[group]), L[group]
        c2, c1, c0 = np.polyfit(x, y, 2)
        if not c2 > 0:
            if skip_flat:
                continue
            raise ValueError(f"the losses at budget {C[group[0]]:.3g} FLOPs do not curve upwards (no minimum); "
                             "train smaller and larger models at that budget")
        vertex = -c1 / (2 * c2)
        minima.append(IsoFLOPMinimum(compute=float(np.mean(C[group])), n_opt=float(np.exp(vertex)),
                                     loss_min=float(c0 + c1 * vertex + c2 * vertex**2), n_runs=len(group),
                                     interior=bool(x.min() <= vertex <= x.max())))
    return minima


def allocation_exponents(minima: list[IsoFLOPMinimum]) -> dict[str, float]:
    """Fit ``N* = k C^a`` through the minima; return ``a``, ``b = 1 - a`` (since D* = C / 6N*) and ``k``."""
    if len(minima) < 2:
        raise ValueError(f"need minima at 2 or more budgets to fit an exponent, got {len(minima)}")
    a, log_k = np.polyfit(np.log([m.compute for m in minima]), np.log([m.n_opt for m in minima]), 1)
    return {"a": float(a), "b": float(1 - a), "k": float(np.exp(log_k))}
