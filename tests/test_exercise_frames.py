"""No exercise check passes a function that reads the expected value out of the check's own frames.

A learner's function runs inside the check, so ``sys._getframe(1).f_locals`` shows the check's local variables: a
check that computes the expected value before calling the learner hands it over to one line of introspection. The
checks compute it after the call (or keep it out of any single local), and this test feeds every check of every
chapter such a function. It is deliberate copying rather than a shortcut, which no check can fully stop (a
determined learner can read any object the check holds); this closes the one-line route.
"""

import contextlib
import importlib
import inspect
import io
import sys

import pytest

NAMES = ("expected", "want", "reference", "truth", "target", "expect", "right")


def _every_check():
    for number in range(1, 12):
        module = importlib.import_module(f"course_utils.exercises.ch{number:02d}")
        for name, check in inspect.getmembers(module, inspect.isfunction):
            if name.startswith("check_") and check.__module__ == module.__name__:
                yield pytest.param(check, id=f"ch{number:02d}.{name}")


def reads_the_checks_frames(*args, **kwargs):
    frame = sys._getframe(1)
    while frame is not None:
        for name in NAMES:
            value = frame.f_locals.get(name)
            if value is not None and not callable(value):
                return value
        frame = frame.f_back
    raise ValueError("no expected value in any calling frame")


@pytest.mark.parametrize("check", list(_every_check()))
def test_no_check_passes_a_function_that_reads_its_frames(check):
    with contextlib.redirect_stdout(io.StringIO()), pytest.raises(Exception):
        check(reads_the_checks_frames)
