"""Switching package functions off while a learner's answer runs, so that calling the package (or a library) is
not a way to pass an exercise: :func:`package_functions_switched_off` swaps a function's code for a refusing one,
:func:`bindings_refused` rebinds what cannot be swapped (builtins, NumPy ufuncs) by name, and :class:`OpsRefused`
refuses a torch operation under every name it is reached by. :mod:`course_utils.checks` uses these and re-exports them.

The guard stops shortcuts, not a determined copier: source text copied into a cell is the learner's own code.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import sys
import types
from typing import Any, Callable, Iterator

import torch
import torch.overrides


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
    """The functions ``names`` (``"name"`` or ``"Class.method"``) of ``module_name``, unwrapped (every ``__wrapped__``
    layer: scikit-learn wraps some functions twice), in the form :func:`package_functions_switched_off` takes; a
    module or name the installed version lacks is skipped, and so is one that cannot be switched off (a closure, a
    builtin, a classmethod's bound method). With ``loaded_only`` nothing is imported to look: a module not imported
    yet gives nothing (checks call the learner once per case, each time with a fresh look, so a module first
    imported inside the learner's function escapes that call, not the next)."""
    if loaded_only and module_name not in sys.modules:
        return ()
    found = []
    for name in names:
        with contextlib.suppress(ImportError, AttributeError):
            function = functools.reduce(getattr, name.split("."), importlib.import_module(module_name))
            found.append(inspect.unwrap(function))
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


class OpsRefused(torch.overrides.TorchFunctionMode):
    """While active, a torch function whose ``__name__`` is in ``names`` raises like a switched-off function, under
    whatever name it is reached (``torch.kl_div``, ``torch._C._VariableFunctions.kl_div``, ``torch.ops.aten.kl_div``):
    the builtins that :func:`bindings_refused` can refuse only by the names bound to them."""

    def __init__(self, names: tuple[str, ...]) -> None:
        super().__init__()
        self.names = frozenset(names)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = (getattr(func, "__name__", None) or "").split(".")[0]   # an overload is "kl_div.default"
        if name in self.names:
            raise AssertionError(f"this exercise asks you to write it yourself: torch's {name} is switched off while "
                                 "the check runs")
        return func(*args, **(kwargs or {}))


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
