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
import functools
import importlib
import io
import math
import sys
import types
from typing import Any, Callable, Iterator

import torch


def passed(name: str) -> None:
    print(f"[pass] {name}")


def check_close(name: str, actual: Any, expected: Any, atol: float = 1e-6, rtol: float = 1e-5,
                hint: str = "") -> None:
    """Numbers or tensors equal within tolerance. For a number, any one-element tensor or NumPy array (shape (), (1,),
    (1, 1)) is a number too (:func:`one_element`); a tensor ``expected`` asks for exactly its shape."""
    if isinstance(expected, torch.Tensor) or (isinstance(actual, torch.Tensor) and actual.numel() != 1):
        actual_t = as_float_tensor(name, actual, hint)
        # MPS has no float64: a tensor is moved to the CPU before the cast
        expected_t = (expected.detach().to("cpu", torch.float64) if isinstance(expected, torch.Tensor)
                      else torch.as_tensor(expected, dtype=torch.float64))
        if actual_t.shape != expected_t.shape:
            raise AssertionError(f"{name}: shape {tuple(actual_t.shape)}, expected {tuple(expected_t.shape)}. {hint}")
        if not torch.allclose(actual_t, expected_t, atol=atol, rtol=rtol, equal_nan=False):
            wrong = (~torch.isclose(actual_t, expected_t, atol=atol, rtol=rtol)).sum().item()
            raise AssertionError(f"{name}: {wrong} of {actual_t.numel()} values are wrong. {hint}")
    else:
        actual = one_element(name, actual, hint)
        try:
            value = float(actual)
        except (TypeError, ValueError):
            raise AssertionError(f"{name}: expected a number, got {type(actual).__name__}. {hint}") from None
        if not math.isclose(value, float(expected), abs_tol=atol, rel_tol=rtol):
            side = "too large" if value > float(expected) else "too small"
            raise AssertionError(f"{name}: got {value:.6g}, which is {side}. {hint}")
    passed(name)


def one_element(name: str, actual: Any, hint: str = "") -> Any:
    """Where one number is expected: the element of a one-element tensor or NumPy array of any shape ((1,), (1, 1),
    what ``scipy.optimize.fsolve`` returns; NumPy 2 refuses ``float`` and ``int`` of an array with ndim > 0), a clear
    failure for more than one element, and anything else (a number, a 0-d array, a list) unchanged."""
    shape = getattr(actual, "shape", None)
    if not isinstance(shape, tuple) or not shape or not hasattr(actual, "reshape"):  # torch.Size is a tuple
        return actual
    if math.prod(shape) != 1:
        raise AssertionError(f"{name}: expected one number, got shape {tuple(shape)}. {hint}")
    return actual.reshape(-1)[0]


def as_float_tensor(name: str, actual: Any, hint: str = "") -> torch.Tensor:
    """The learner's answer (tensor on any device, list, tuple, number, or a list of equal-shaped tensors such as a
    loop's rows) as a float64 CPU tensor, or a clear failure."""
    try:
        if isinstance(actual, torch.Tensor):
            return actual.detach().to("cpu", torch.float64)
        if isinstance(actual, (list, tuple)) and actual and all(isinstance(x, torch.Tensor) for x in actual):
            parts = [x.detach().to("cpu", torch.float64) for x in actual]
            if all(p.numel() == 1 for p in parts):  # a loop's scalars, even of shape (1,): a vector, as as_tensor makes
                return torch.stack([p.reshape(()) for p in parts])
            if len({p.shape for p in parts}) > 1:
                raise AssertionError(f"{name}: your list holds tensors of different shapes "
                                     f"{sorted({tuple(p.shape) for p in parts})}; they must all be alike. {hint}")
            return torch.stack(parts)
        return torch.as_tensor(actual, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise AssertionError(f"{name}: expected a tensor or a list of numbers, got {type(actual).__name__}. {hint}") \
            from None


def finite_float_tensor(name: str, actual: Any, hint: str = "") -> torch.Tensor:
    """:func:`as_float_tensor`, failing with ``hint`` when the answer holds a NaN or inf (the usual sign of an
    overflow)."""
    t = as_float_tensor(name, actual, hint)
    if not torch.isfinite(t).all():
        raise AssertionError(f"{name}: your answer contains NaN or inf. {hint}")
    return t


def check_equal(name: str, actual: Any, expected: Any, hint: str = "") -> None:
    """Exact equality. A tensor ``expected`` accepts a tensor (any dtype or device), list or tuple with equal values."""
    if isinstance(expected, torch.Tensor):
        actual_t = as_float_tensor(name, actual, hint)
        expected_t = expected.detach().to("cpu", torch.float64)
        if actual_t.shape != expected_t.shape:
            raise AssertionError(f"{name}: shape {tuple(actual_t.shape)}, expected {tuple(expected_t.shape)}. {hint}")
        wrong = (actual_t != expected_t).sum().item()
        if wrong:
            raise AssertionError(f"{name}: {wrong} of {actual_t.numel()} entries are wrong. {hint}")
    elif actual != expected:
        raise AssertionError(f"{name}: got {actual!r}, which is not right. {hint}")
    passed(name)


def check_true(name: str, condition: bool, hint: str = "") -> None:
    if not condition:
        raise AssertionError(f"{name}: not satisfied. {hint}")
    passed(name)


def exercise(name: str, learner: Any, reference: Any, check) -> None:
    """Run ``check(answer)`` on the learner's answer; if it is still the ``NotImplementedError`` stub, say so and
    verify the reference solution instead (so the notebook runs top to bottom before anyone solves anything).

    A wrong answer fails loudly with the check's hint. When the reference is a plain function (the solution in
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
    try:
        with package_functions_switched_off(*switch_off):
            check(learner)
        print(f"[pass] exercise {name}: your answer is correct")
    except NotImplementedError:
        print(f"[todo] exercise {name}: not attempted yet; checking the reference solution instead")
        check(reference)


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


def _switchable(function: Any) -> bool:
    """True for a plain Python function without closures, the kind :func:`package_functions_switched_off` takes."""
    return isinstance(function, types.FunctionType) and not function.__closure__


def _refused(*args, **kwargs):
    # This code runs with the switched-off function's globals, so it may use nothing from this module's namespace.
    import sys

    name = sys._getframe(0).f_code.co_name  # the switched-off function's dotted name (set by the swap below)
    raise AssertionError(f"this exercise asks you to write it yourself: {name} is switched off while the check "
                         "runs")


def library_functions(module_name: str, *names: str, loaded_only: bool = False) -> tuple[Callable, ...]:
    """The functions ``names`` (``"name"`` or ``"Class.method"``) of ``module_name``, unwrapped (``__wrapped__``), in
    the form :func:`package_functions_switched_off` takes; a module or name the installed version lacks is skipped, and
    so is one that cannot be switched off (a closure, a builtin, a classmethod's bound method). With ``loaded_only``
    nothing is imported to look: a module not imported yet gives nothing (checks call the learner once per case, each
    time with a fresh look, so a module first imported inside the learner's function escapes that call, not the
    next)."""
    if loaded_only and module_name not in sys.modules:
        return ()
    found = []
    for name in names:
        with contextlib.suppress(ImportError, AttributeError):
            function = functools.reduce(getattr, name.split("."), importlib.import_module(module_name))
            found.append(getattr(function, "__wrapped__", function))
    return tuple(f for f in found if _switchable(f))


def loaded_transformers_copies(names: tuple[str, ...], first: str | None = None) -> list[Callable]:
    """``transformers``' plain functions and class methods called ``names`` (the model modules copy them: Llama's
    ``rotate_half`` lives again in dozens of models), in every ``transformers.models`` or ``transformers.integrations``
    module already imported, after importing module ``first`` if given; nothing else is imported to look, so a copy
    first imported inside the learner's function escapes that call, not the next (checks call the learner several
    times, looking again each time)."""
    if first is not None:
        with contextlib.suppress(ImportError):  # no transformers, or a model moved: the loaded copies still count
            importlib.import_module(first)
    found = {}
    for module_name, module in list(sys.modules.items()):
        if module_name.startswith(("transformers.models.", "transformers.integrations.")):
            spaces = [getattr(module, "__dict__", {})]
            spaces += [vars(c) for c in spaces[0].values() if isinstance(c, type)]  # and its classes' methods
            for fn in (getattr(f, "__func__", f) for space in spaces for f in map(space.get, space.keys() & names)):
                if _switchable(fn):
                    found[id(fn)] = fn
    return list(found.values())


def refusing(name: str) -> Callable:
    """A stand-in that refuses like a switched-off function, for what cannot be switched off by swapping code (a
    builtin, a NumPy ufunc): :func:`bindings_refused` binds it where the original was bound."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"this exercise asks you to write it yourself: {name} is switched off while the check "
                             "runs")
    return refuse


def bindings_refused(stack: contextlib.ExitStack, functions: dict[str, Any], *namespaces: Any) -> None:
    """For what cannot be switched off by swapping code (a builtin such as ``torch.kl_div``, a NumPy ufunc such as
    ``scipy.special.rel_entr``): every name that one of ``namespaces`` (modules, or dicts such as the learner function's
    ``__globals__``, where ``from scipy.special import rel_entr`` put it; ``None`` is skipped) binds to one of
    ``functions`` (the name a refusal shows -> the object) is bound to :func:`refusing` until ``stack`` closes, when
    each name gets its object back (also after a raise). Only these names: a reference held anywhere else (another
    module, a list, a default argument) still reaches the object."""
    for namespace in namespaces:
        space = namespace if isinstance(namespace, dict) or namespace is None else vars(namespace)
        for key, value in list((space or {}).items()):
            label = next((label for label, f in functions.items() if value is f), None)
            if label is not None:
                space[key] = refusing(label)
                stack.callback(space.__setitem__, key, value)


@contextlib.contextmanager
def package_functions_switched_off(*functions: Callable) -> Iterator[None]:
    """While the block runs, calling any of ``functions`` raises an ``AssertionError`` saying it is switched off.

    Each function's code object is swapped for a refusing one and restored afterwards (also when the block raises).
    Swapping the code, not the module attribute, catches every way of reaching the function: a name imported
    earlier with ``from ... import``, another package module that calls it, a method looked up on its class.
    A copy made beforehand (``types.FunctionType(f.__code__, ...)``, ``importlib.reload`` of its module) keeps the
    original code, so a profile hook watches the block for any function of the same file and qualified name and
    fails it afterwards. Copying the source text into a cell is not caught: the guard stops shortcuts, not a
    determined copier.
    Only plain Python functions without closures can be switched off (``TypeError`` otherwise).
    """
    for f in functions:
        if not _switchable(f):
            raise TypeError(f"can only switch off plain Python functions without closures, got {f!r}")
    saved = [f.__code__ for f in functions]
    copies = {(c.co_filename, c.co_qualname): f"{f.__module__}.{f.__qualname__}" for f, c in zip(functions, saved)}
    called: list[str] = []

    def watch(frame, event, arg):  # a copy made before the block, or a reloaded module's new function object
        if event == "call":
            name = copies.get((frame.f_code.co_filename, frame.f_code.co_qualname))
            if name is not None and name not in called:
                called.append(name)
        if outer is not None:  # a switch-off nested in another (a check's own inside exercise()) keeps both watching
            outer(frame, event, arg)

    outer = sys.getprofile()
    if not callable(outer) and outer is not None:  # a C profiler (cProfile, %prun): leave it, and the watch, alone
        copies = {}
    try:
        for f in functions:
            f.__code__ = _refused.__code__.replace(co_name=f"{f.__module__}.{f.__qualname__}")
        if copies:
            sys.setprofile(watch)
        yield
    finally:
        if copies:
            sys.setprofile(outer)
        for f, code in zip(functions, saved):
            f.__code__ = code
    if called:  # recorded, not raised inside the hook: an exception there would switch the watch off
        raise AssertionError(f"this exercise asks you to write it yourself: your answer ran a copy of "
                             f"{', '.join(called)}, which is switched off while the check runs")
