"""Automatic checks for the exercises: each prints a clear pass line or raises ``AssertionError`` with a hint.

Exercises call these with the learner's answer; the notebooks' CI run calls them with the reference solutions
from :mod:`course_utils.solutions`, so a broken check or solution fails the build.
"""

from __future__ import annotations

import math
from typing import Any

import torch


def passed(name: str) -> None:
    print(f"[pass] {name}")


def check_close(name: str, actual: Any, expected: Any, atol: float = 1e-6, rtol: float = 1e-5,
                hint: str = "") -> None:
    """Numbers or tensors equal within tolerance."""
    if isinstance(expected, torch.Tensor) or isinstance(actual, torch.Tensor):
        actual_t = torch.as_tensor(actual, dtype=torch.float64)
        expected_t = torch.as_tensor(expected, dtype=torch.float64)
        if actual_t.shape != expected_t.shape:
            raise AssertionError(f"{name}: shape {tuple(actual_t.shape)}, expected {tuple(expected_t.shape)}. {hint}")
        if not torch.allclose(actual_t, expected_t, atol=atol, rtol=rtol, equal_nan=False):
            worst = (actual_t - expected_t).abs().max().item()
            raise AssertionError(f"{name}: values differ (max abs difference {worst:.3g}). {hint}")
    else:
        if actual is None or not math.isclose(float(actual), float(expected), abs_tol=atol, rel_tol=rtol):
            raise AssertionError(f"{name}: got {actual!r}, expected about {expected!r}. {hint}")
    passed(name)


def check_equal(name: str, actual: Any, expected: Any, hint: str = "") -> None:
    """Exact equality (tensors with ``torch.equal``)."""
    if isinstance(expected, torch.Tensor):
        ok = isinstance(actual, torch.Tensor) and actual.shape == expected.shape and torch.equal(actual, expected)
    else:
        ok = actual == expected
    if not ok:
        raise AssertionError(f"{name}: got {actual!r}, expected {expected!r}. {hint}")
    passed(name)


def check_true(name: str, condition: bool, hint: str = "") -> None:
    if not condition:
        raise AssertionError(f"{name}: not satisfied. {hint}")
    passed(name)


def exercise(name: str, learner: Any, reference: Any, check) -> None:
    """Run ``check(answer)`` on the learner's answer; if it is still the ``NotImplementedError`` stub, say so and
    verify the reference solution instead (so the notebook runs top to bottom before anyone solves anything).

    A wrong answer fails loudly with the check's hint.
    """
    try:
        check(learner)
        print(f"[pass] exercise {name}: your answer is correct")
    except NotImplementedError:
        print(f"[todo] exercise {name}: not attempted yet; checking the reference solution instead")
        check(reference)
