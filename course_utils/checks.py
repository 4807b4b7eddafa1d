"""Automatic checks for the exercises: each prints a clear pass line or raises ``AssertionError`` with a hint.

Exercises call these with the learner's answer; the notebooks' CI run calls them with the reference solutions
from :mod:`course_utils.solutions`, so a broken check or solution fails the build.

A failure message says what the learner's answer got wrong (its type, its shape, how far off it is) and gives the
hint, but **never the expected value**: the answer must not be visible before the learner has found it. Answers are
accepted in every reasonable form (a list, a tuple, a tensor of any integer or float dtype, on any device).
Each chapter's exercise checks live in :mod:`course_utils.exercises`, where ``tests/`` feed them wrong answers.
An exercise whose answer the package already has runs the learner's code inside
:func:`package_functions_switched_off`, so calling the package is not a way to pass; :func:`exercise` switches the
reference solution itself off in the same way while it checks the learner's answer.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import math
import sys
from typing import Any

import torch

from course_utils.switch_off import (  # noqa: F401  (re-exported: the exercise checks call them as checks.X)
    OpsRefused, _switchable, bindings_refused, library_functions, loaded_transformers_copies,
    package_functions_switched_off, refusing)


def passed(name: str) -> None:
    print(f"[pass] {name}")


def check_close(name: str, actual: Any, expected: Any, atol: float = 1e-6, rtol: float = 1e-5,
                hint: str = "", direction: bool = True) -> None:
    """Numbers or tensors equal within tolerance. For a number, any one-element tensor or NumPy array (shape (), (1,),
    (1, 1)) is a number too (:func:`one_element`); a tensor ``expected`` asks for exactly its shape."""
    if isinstance(expected, torch.Tensor) or (isinstance(actual, torch.Tensor) and actual.numel() != 1):
        actual_t = as_float_tensor(name, actual, hint, getattr(expected, "shape", None))
        # MPS has no float64: a tensor is moved to the CPU before the cast
        expected_t = (expected.detach().to("cpu", torch.float64) if isinstance(expected, torch.Tensor)
                      else torch.as_tensor(expected, dtype=torch.float64))
        if actual_t.shape != expected_t.shape:
            raise AssertionError(f"{name}: shape {tuple(actual_t.shape)}, expected {tuple(expected_t.shape)}. {hint}")
        if not torch.allclose(actual_t, expected_t, atol=atol, rtol=rtol, equal_nan=False):
            wrong = (~torch.isclose(actual_t, expected_t, atol=atol, rtol=rtol)).sum().item()
            unfinite = (~actual_t.isfinite() & expected_t.isfinite()).sum().item()
            also = f" ({unfinite} of them NaN or infinite: an overflow or a 0/0 on the way?)" if unfinite else ""
            raise AssertionError(f"{name}: {wrong} of {actual_t.numel()} values are wrong{also}. {hint}")
    else:
        actual = one_element(name, actual, hint)
        if isinstance(actual, (str, bytes)):  # float("0.5") would accept a string
            raise AssertionError(f"{name}: expected a number, got {type(actual).__name__}. {hint}")
        try:
            value = float(actual)
        except (TypeError, ValueError):
            raise AssertionError(f"{name}: expected a number, got {type(actual).__name__}. {hint}") from None
        if not math.isfinite(value) and math.isfinite(float(expected)):
            raise AssertionError(f"{name}: got {value}, not a finite number (an overflow or a 0/0 on the way?). "
                                 f"{hint}")
        if not math.isclose(value, float(expected), abs_tol=atol, rel_tol=rtol):
            side = ("too large" if value > float(expected) else "too small") if direction else "not right"
            raise AssertionError(f"{name}: got {value:.6g}, which is {side}. {hint}")
    passed(name)


def no_meta(name: str, actual: Any, hint: str = "") -> None:
    """Fails, with ``hint``, when ``actual`` is a tensor on the meta device (a shape without a value)."""
    if getattr(actual, "is_meta", False):
        raise AssertionError(f"{name}: a tensor on the meta device holds a shape but no value; compute the value "
                             f"itself. {hint}")


def one_element(name: str, actual: Any, hint: str = "") -> Any:
    """Where one number is expected: the element of a one-element tensor or NumPy array of any shape ((1,), (1, 1),
    what ``scipy.optimize.fsolve`` returns; NumPy 2 refuses ``float`` and ``int`` of an array with ndim > 0), a clear
    failure for more than one element, the element of a one-element list or tuple (``[loss.item()]``), and anything
    else (a number, a 0-d array, a longer list) unchanged; a tensor on the meta device (a shape, no value) fails."""
    no_meta(name, actual, hint)
    if isinstance(actual, (list, tuple)) and len(actual) == 1:
        return one_element(name, actual[0], hint)
    shape = getattr(actual, "shape", None)
    if not isinstance(shape, tuple) or not shape or not hasattr(actual, "reshape"):  # torch.Size is a tuple
        return actual
    if math.prod(shape) != 1:
        raise AssertionError(f"{name}: expected one number, got shape {tuple(shape)}. {hint}")
    if isinstance(actual, torch.Tensor) and actual.layout != torch.strided:  # sparse: reshape refuses it
        actual = actual.to_dense()
    return actual.reshape(-1)[0]


def as_float_tensor(name: str, actual: Any, hint: str = "", shape: tuple | None = None) -> torch.Tensor:
    """The learner's answer (tensor on any device, list, tuple, number, or a list of equal-shaped tensors such as a
    loop's rows) as a float64 CPU tensor, or a clear failure. ``shape``, the expected shape when known, settles one
    ambiguity: one-element tensors of shape (1,) are a loop's scalars (a vector), unless they stack to ``shape``
    (rows of length 1, as a (1, 1) mask built row by row)."""
    no_meta(name, actual, hint)
    try:
        if isinstance(actual, torch.Tensor):
            return _dense_float64(actual)
        if isinstance(actual, (list, tuple)) and actual and all(isinstance(x, torch.Tensor) for x in actual):
            parts = [_dense_float64(x) for x in actual]
            if all(p.numel() == 1 for p in parts):  # a loop's scalars, even of shape (1,): a vector, as as_tensor makes
                rows = torch.stack(parts) if len({p.shape for p in parts}) == 1 else None
                if shape is not None and rows is not None and rows.shape == tuple(shape):
                    return rows
                return torch.stack([p.reshape(()) for p in parts])
            if len({p.shape for p in parts}) > 1:
                raise AssertionError(f"{name}: your list holds tensors of different shapes "
                                     f"{sorted({tuple(p.shape) for p in parts})}; they must all be alike. {hint}")
            return torch.stack(parts)
        try:
            return torch.as_tensor(actual, dtype=torch.float64)
        except (ValueError, TypeError):  # a NumPy view with negative strides (V[:, ::-1]) or of a dtype torch lacks
            import numpy as np  # (longdouble): torch refuses it, a float64 copy is fine; nothing else is converted

            if not (isinstance(actual, np.ndarray) and actual.dtype.kind in "biuf"):
                raise  # a str, None, a list of str: not numbers ("5" must not read as 5.0)
            return torch.as_tensor(np.array(actual, dtype=np.float64))
    except (TypeError, ValueError, RuntimeError):
        raise AssertionError(f"{name}: expected a tensor or a list of numbers, got {type(actual).__name__}. {hint}") \
            from None


def _dense_float64(tensor: torch.Tensor) -> torch.Tensor:
    """A float64 CPU copy, made dense when the tensor is sparse (COO, CSR...), which comparisons refuse."""
    tensor = tensor.detach().to("cpu", torch.float64)
    return tensor.to_dense() if tensor.layout != torch.strided else tensor


def finite_float_tensor(name: str, actual: Any, hint: str = "") -> torch.Tensor:
    """:func:`as_float_tensor`, failing with ``hint`` when the answer holds a NaN or inf (the usual sign of an
    overflow)."""
    t = as_float_tensor(name, actual, hint)
    if not torch.isfinite(t).all():
        raise AssertionError(f"{name}: your answer contains NaN or inf. {hint}")
    return t


def check_equal(name: str, actual: Any, expected: Any, hint: str = "") -> None:
    """Exact equality. A tensor ``expected`` accepts a tensor (any dtype or device), list or tuple with equal values."""
    no_meta(name, actual, hint)
    if isinstance(expected, torch.Tensor):
        actual_t = as_float_tensor(name, actual, hint, expected.shape)
        expected_t = expected.detach().to("cpu", torch.float64)
        if actual_t.shape != expected_t.shape:
            raise AssertionError(f"{name}: shape {tuple(actual_t.shape)}, expected {tuple(expected_t.shape)}. {hint}")
        wrong = (actual_t != expected_t).sum().item()
        if wrong:
            raise AssertionError(f"{name}: {wrong} of {actual_t.numel()} entries are wrong. {hint}")
    else:
        try:
            different = bool(actual != expected)
        except RuntimeError:  # e.g. a list of meta tensors: no values to compare
            raise AssertionError(f"{name}: got {actual!r}, which holds no comparable values. {hint}") from None
        if different:
            raise AssertionError(f"{name}: got {actual!r}, which is not right. {hint}")
    passed(name)


def check_true(name: str, condition: bool, hint: str = "") -> None:
    if not condition:
        raise AssertionError(f"{name}: not satisfied. {hint}")
    passed(name)


def exercise(name: str, learner: Any, reference: Any, check) -> None:
    """Run ``check(answer)`` on the learner's answer; if it is still the ``NotImplementedError`` stub, say so and
    verify the reference solution instead (so the notebook runs top to bottom before anyone solves anything).

    A wrong answer fails loudly with the check's hint, and so does a half-done one (a case passed, then the stub's
    bare ``raise NotImplementedError`` on another). When the reference is a plain function (the solution in
    :mod:`course_utils.solutions`), it is switched off while the learner's answer is checked, with the other solutions
    of its chapter, so an answer that calls a solution does not pass. Handing in the solution function itself is
    checked and reported as ``[ref]``, never as a pass.
    """
    if _is_the_reference(learner, reference):
        with contextlib.redirect_stdout(io.StringIO()):  # its sub-checks' [pass] lines would read as the learner's
            check(reference)
        print(f"[ref] exercise {name}: this is the reference solution itself (course_utils.solutions), which "
              "passes; write your own answer to pass")
        return
    switch_off = _solutions_in_reach(reference)
    shown = _Tee(sys.stdout)  # what the check printed: a [pass] line before the stub's error means a half-done answer
    try:
        with package_functions_switched_off(*switch_off), contextlib.redirect_stdout(shown):
            check(learner)
        print(f"[pass] exercise {name}: your answer is correct")
    except NotImplementedError as error:
        if not _is_the_stub(error, learner) or "[pass]" in shown.getvalue():
            raise AssertionError(f"exercise {name}: your answer raised NotImplementedError({error}) on one of the "
                                 "check's cases; it must handle every input the exercise describes") from error
        print(f"[todo] exercise {name}: not attempted yet; checking the reference solution instead")
        with contextlib.redirect_stdout(io.StringIO()):  # as for [ref]: the reference's [pass] lines are not theirs
            check(reference)


class _Tee(io.StringIO):
    """Writes through to ``out`` and keeps a copy."""

    def __init__(self, out: Any) -> None:
        super().__init__()
        self.out = out

    def write(self, text: str) -> int:
        self.out.write(text)
        return super().write(text)


def _is_the_stub(error: NotImplementedError, learner: Any) -> bool:
    """True when ``error`` is an unchanged stub: a value answer still ``None`` (its check raises), or a bare ``raise
    NotImplementedError`` in a function of the learner's own notebook (theirs, or an earlier exercise's that it calls).
    One with a message, or raised in a library (a torch operation a device lacks), comes from an attempted answer and
    must not read as "not attempted"."""
    if learner is None:
        return True
    if error.args:
        return False
    own_globals = getattr(inspect.unwrap(learner), "__globals__", None)   # through @torch.no_grad() and the like
    if own_globals is None:  # not a plain function (a partial, a callable object): keep the old reading
        return True
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    return frame is not None and frame.tb_frame.f_globals is own_globals


def _is_the_reference(learner: Any, reference: Any) -> bool:
    """True when the learner handed in the reference solution: the same object, or a function built on its very code
    object (``types.FunctionType(reference.__code__, ...)``). The same code written out again is the learner's own."""
    if not callable(reference):  # a value answer (a number, a list) is judged by its value, never by identity
        return False
    if learner is reference:
        return True
    code = getattr(learner, "__code__", None)
    return code is not None and code is getattr(reference, "__code__", None)


def _solutions_in_reach(reference: Any) -> tuple:
    """The reference, and when it is a solution in :mod:`course_utils.solutions`, every plain function its chapter's
    solutions module defines (so that exercise 2b cannot pass through exercise 2a's solution)."""
    if not _switchable(reference):
        return ()
    module = sys.modules.get(reference.__module__)
    if module is None or not reference.__module__.startswith("course_utils.solutions."):
        return (reference,)
    siblings = [f for f in vars(module).values()
                if _switchable(f) and f.__module__ == module.__name__ and f is not reference]
    return (reference, *siblings)
