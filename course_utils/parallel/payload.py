"""What crosses from the launcher to its ranks: ``fn`` and ``args``, pickled once in the caller and rebuilt in each
rank.

A spawned rank is a fresh Python: it rebuilds every function and class in ``fn`` and ``args`` by importing its module
by name. What a notebook defines lives in the kernel's ``__main__``, which a fresh process cannot import, so
:func:`pickle_for_ranks` refuses it in the caller, before any process starts, with a message that says what to do;
anything unpicklable is refused there too. A rank rebuilds the payload (:func:`unpickle_in_rank`) only after its log
is open, so a class the rank still cannot import (a module that exists only in the caller) fails with a traceback
the launcher quotes, not with an empty log.

Left out: shared-memory transfer of large tensors (``torch.multiprocessing`` reductions); arguments are copied.
"""

from __future__ import annotations

import inspect
import io
import pickle
import sys
from typing import Any, Callable


def _defined_in_a_notebook(obj: Any) -> bool:
    return getattr(obj, "__module__", None) == "__main__" and not hasattr(sys.modules["__main__"], "__file__")


def check_importable(fn: Callable) -> None:
    """Spawned workers import ``fn`` by name: refuse lambdas, closures and functions defined in a notebook."""
    if not callable(fn):
        raise TypeError(f"fn must be a function, got {type(fn).__name__}")
    qualname = getattr(fn, "__qualname__", "")
    if "<lambda>" in qualname or "<locals>" in qualname:
        raise ValueError(f"fn {qualname!r} is a lambda or a nested function; worker processes import fn by name, "
                         "so define it at the top level of a module")
    if _defined_in_a_notebook(fn):
        raise ValueError(f"fn {qualname!r} is defined in a notebook or interactive session; spawned workers cannot "
                         "import it. Put it in a module (e.g. course_utils.parallel) and import it from there")


class _RankPickler(pickle.Pickler):
    """Refuses a class or function defined in a notebook: a fresh process cannot import it by name."""

    def reducer_override(self, obj: Any) -> Any:
        if (isinstance(obj, type) or inspect.isroutine(obj)) and _defined_in_a_notebook(obj):
            raise ValueError(f"args hold {obj.__qualname__!r} (or an object of it), defined in a notebook or "
                             "interactive session; spawned workers cannot import it. Define it in a module and "
                             "import it from there")
        return NotImplemented


def pickle_for_ranks(fn: Callable, args: tuple) -> bytes:
    """``(fn, args)`` as the bytes every rank unpickles, checked here, before any process starts: ``fn`` importable
    (:func:`check_importable`), nothing in ``args`` defined in a notebook, everything picklable."""
    check_importable(fn)
    buffer = io.BytesIO()
    try:
        _RankPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump((fn, tuple(args)))
    except (pickle.PicklingError, TypeError, AttributeError) as error:
        raise TypeError(f"fn and args must be picklable to reach the ranks, and these are not: {error}") from error
    return buffer.getvalue()


def unpickle_in_rank(payload: bytes) -> tuple[Callable, tuple]:
    """``(fn, args)`` from :func:`pickle_for_ranks`'s bytes; a failure says what a fresh process needs."""
    try:
        return pickle.loads(payload)
    except Exception as error:
        raise RuntimeError("the rank could not rebuild fn and args from their pickle (a fresh process imports every "
                           f"class and function in them by its module's name): {type(error).__name__}: {error}"
                           ) from error
