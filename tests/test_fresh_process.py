"""``fresh_process.run_in_fresh_process``: the function runs in another process, its result and its failures come
back, the child is offline as the test process is, and it ends when the test process dies."""

import os
import socket
import sys

import pytest

from fresh_process import run_in_fresh_process
from orphans import assert_no_orphan_after_a_kill


def child_facts(x: int) -> dict:
    connected = None
    try:
        socket.create_connection(("192.0.2.1", 80), timeout=1)  # TEST-NET-1: never routed
        connected = True
    except OSError as error:  # without the guard: a timeout, or no route
        connected = type(error).__name__
    return {"pid": os.getpid(), "doubled": 2 * x, "connect": connected, "profile": os.environ.get("COURSE_PROFILE")}


def failing_child(text: str):
    assert text == "expected", f"the child saw {text!r}"


def test_the_function_runs_in_another_process_with_this_environment_and_offline(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    facts = run_in_fresh_process(child_facts, 21)
    assert facts["pid"] != os.getpid()
    assert facts["doubled"] == 42
    assert facts["profile"] == "smoke"  # the environment at the call is the child's
    assert facts["connect"] == "NetworkBlockedError"  # conftest's guard travels through PYTHONPATH


def test_a_failure_in_the_child_fails_the_test_with_its_message():
    with pytest.raises(AssertionError, match="the child saw 'other'"):
        run_in_fresh_process(failing_child, "other")


@pytest.mark.skipif(sys.platform == "win32", reason="Windows does not re-parent an orphan")
def test_the_child_ends_when_the_test_process_dies(tmp_path):
    # a stand-in test process runs the child, then is killed; the child must end within seconds, not finish its work
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import fresh_process, orphans; "
            "fresh_process.run_in_fresh_process(orphans.write_pid_and_sleep, sys.argv[2])")
    assert_no_orphan_after_a_kill(code, tmp_path / "child.pid", "fresh process")
