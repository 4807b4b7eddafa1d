"""``fresh_process.run_in_fresh_process``: the function runs in another process, its result and its failures come
back, the child is offline as the test process is, and it ends when the test process dies."""

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import pytest

from course_utils.parent_watch import process_exists
from fresh_process import run_in_fresh_process


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


def write_pid_and_sleep(path: str) -> None:
    pathlib.Path(path).write_text(str(os.getpid()))
    time.sleep(120)


@pytest.mark.skipif(sys.platform == "win32", reason="Windows does not re-parent an orphan")
def test_the_child_ends_when_the_test_process_dies(tmp_path):
    # a stand-in test process runs the child, then is killed; the child must end within seconds, not finish its work
    pid_file = tmp_path / "child.pid"
    tests = pathlib.Path(__file__).parent
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import fresh_process, test_fresh_process; "
            "fresh_process.run_in_fresh_process(test_fresh_process.write_pid_and_sleep, sys.argv[2])")
    parent = subprocess.Popen([sys.executable, "-c", code, str(tests), str(pid_file)])
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, "the child never started"
            time.sleep(0.1)
        child = int(pid_file.read_text())
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 10
    while process_exists(child):
        if time.monotonic() > deadline:
            os.kill(child, signal.SIGKILL)
            pytest.fail("the child outlived the test process by 10 s")
        time.sleep(0.1)
