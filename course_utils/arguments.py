"""Checks for the arguments a public function is given: a count must be an int, a quantity a real number in range,
a text a str.

Every public entry point of the package validates its arguments once, at the door (the course guide, section 3), and
most of those arguments are counts (``n_layer``, ``k``, ``max_new_tokens``) or quantities (``temperature``, ``lr``,
``top_p``). Two Python facts make the obvious check wrong:

- ``bool`` is a subclass of ``int``: ``isinstance(True, int)`` holds, so ``n_merges=True`` would run one merge.
  A bool is refused wherever a number is expected.
- numpy's scalars are not Python ints or floats (``np.int64(4)`` from a grid, ``np.float32`` from an array), but they
  are ``numbers.Integral`` / ``numbers.Real``: they are accepted, and converted to a Python ``int`` or ``float``
  once, so that ``vocab_size ** n`` cannot overflow int64 silently and a value printed later reads ``4``, not
  ``np.int64(4)``.

NaN fails every comparison, so a range check written as "inside the range" (never "not outside it") refuses NaN by
itself; infinity is refused unless ``finite=False``.

A value of the wrong kind raises :class:`ArgumentTypeError`, which is a ``TypeError`` and also a ``ValueError`` (as
numpy's ``AxisError`` is both a ``ValueError`` and an ``IndexError``), so callers written against either convention
catch it; a number of the right kind outside its range raises ``ValueError``. The message always says what was
wrong and what is allowed: ``"k must be an int >= 1, got 0"``.

Left out: tensors and arrays (their checks are about shape and dtype, next to the code that uses them), and
per-element checks of sequences.
"""

from __future__ import annotations

import math
import numbers

__all__ = ["ArgumentTypeError", "check_int", "check_real", "check_str"]


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong kind (a bool, a float or a string where an int is needed): both a TypeError and a
    ValueError."""


def _range_text(low: object, low_open: bool, high: object, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high}"
    return ""


def check_int(value: object, name: str, *, minimum: int | None = None, maximum: int | None = None,
              allowed: str | None = None) -> int:
    """``value`` as a Python ``int`` if it is an integer (Python or numpy, not a bool) in ``[minimum, maximum]``
    (either bound may be None); otherwise :class:`ArgumentTypeError` (wrong kind) or ``ValueError`` (out of range),
    worded ``"{name} must be {allowed}, got {value!r}"``. ``allowed`` defaults to e.g. ``"an int >= 1"``."""
    if allowed is None:
        allowed = " ".join(filter(None, ["an int", _range_text(minimum, False, maximum, False)]))
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ArgumentTypeError(f"{name} must be {allowed}, got {value!r}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return int(value)


def check_real(value: object, name: str, *, minimum: float | None = None, maximum: float | None = None,
               low_open: bool = False, high_open: bool = False, finite: bool = True,
               allowed: str | None = None, keep_int: bool = False) -> float:
    """``value`` as a Python ``float`` if it is a real number (Python or numpy, ints too, not a bool), not NaN, finite
    unless ``finite=False``, and inside the bounds: ``minimum <= value`` (``<`` with ``low_open``) and
    ``value <= maximum`` (``<`` with ``high_open``); either bound may be None. Otherwise :class:`ArgumentTypeError`
    (wrong kind) or ``ValueError``, worded ``"{name} must be {allowed}, got {value!r}"``; ``allowed`` defaults to e.g.
    ``"a finite number > 0"`` or ``"a number in [0, 1)"``. With ``keep_int``, an integer (Python or numpy) comes back
    as an exact Python ``int`` instead (a count of parameters stays exact; ``rrf_k=60`` prints as 60)."""
    if allowed is None:
        kind = "a finite number" if finite and (minimum is None or maximum is None) else "a number"
        allowed = " ".join(filter(None, [kind, _range_text(minimum, low_open, maximum, high_open)]))
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{name} must be {allowed}, got {value!r}")
    try:
        number = float(value)
    except OverflowError:  # an int beyond float's range: infinite for every purpose here
        number = math.inf if value > 0 else -math.inf
    inside = (not finite or math.isfinite(number)) and not math.isnan(number) \
        and (minimum is None or (number > minimum if low_open else number >= minimum)) \
        and (maximum is None or (number < maximum if high_open else number <= maximum))
    if not inside:
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return int(value) if keep_int and isinstance(value, numbers.Integral) else number


def check_str(value: object, name: str, *, non_empty: bool = False) -> str:
    """``value`` if it is a ``str`` (with ``non_empty``, one that is not blank); otherwise :class:`ArgumentTypeError`
    (``"{name} must be a str, got {type}"``) or ``ValueError`` (``"{name} must be a non-empty str, got {value!r}"``)."""
    if not isinstance(value, str):
        raise ArgumentTypeError(f"{name} must be a {'non-empty ' if non_empty else ''}str, got {type(value).__name__}")
    if non_empty and not value.strip():
        raise ValueError(f"{name} must be a non-empty str, got {value!r}")
    return value
