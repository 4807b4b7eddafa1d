"""Helpers shared by the exercise-check tests: a wrong answer must be rejected, and the message must not show the
expected value."""

import sys
import types

import pytest


def rejects(check, *answer):
    """The message of the AssertionError that ``check(*answer)`` must raise."""
    with pytest.raises(AssertionError) as info:
        check(*answer)
    return str(info.value)


def assert_hidden(message, values):
    """None of the expected numbers appears in the message, in either of the forms a message could print."""
    for v in values:
        v = float(v)
        if v not in (0.0, 1.0):  # 0 and 1 are too common to mean anything
            assert repr(v) not in message and f"{v:.6g}" not in message, (v, message)
            if v == int(v):
                assert str(int(v)) not in message and f"{int(v):,}" not in message, (v, message)


def refuses_reference_then_passes(check, via_reference, right):
    """``check`` refuses an answer that calls its own (switched-off) reference, then passes a right answer: the switch
    is restored after the refusal."""
    assert "switched off" in rejects(check, via_reference)
    check(right)


def stand_in_module(monkeypatch, name, **functions):
    """A module ``name`` holding ``functions``, in ``sys.modules`` for one test: a library's function as a check sees
    it once loaded (scikit-learn's), where the library itself is not installed."""
    module = types.ModuleType(name)
    for attribute, function in functions.items():
        setattr(module, attribute, function)
    monkeypatch.setitem(sys.modules, name, module)
    return module
