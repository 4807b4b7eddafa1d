"""Helpers for the tests that kill a process and require what it started to end as well (the tests' fresh processes,
the scaling sweep's pool workers, course_utils.parent_watch): no test may leave a process computing on."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from course_utils.parent_watch import process_exists

TESTS = pathlib.Path(__file__).parent


def write_pid_and_sleep(path: str) -> None:
    """A started process's task: write its pid, then work on (sleep) far longer than any test waits."""
    pathlib.Path(path).write_text(str(os.getpid()))
    time.sleep(120)


def wait_for_pid(pid_file: pathlib.Path, what: str, starter: subprocess.Popen | None = None,
                 timeout_s: float = 60.0) -> int:
    """The pid that ``what`` wrote to ``pid_file``, once it has; a failure if it never does (or ``starter`` ends)."""
    deadline = time.monotonic() + timeout_s
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline and (starter is None or starter.poll() is None), f"the {what} never started"
        time.sleep(0.05)
    return int(pid_file.read_text())


def assert_ends_within(pid: int, what: str, seconds: float = 10.0) -> None:
    """Fail (and kill it) if process ``pid`` still runs ``seconds`` from now."""
    deadline = time.monotonic() + seconds
    while process_exists(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            pytest.fail(f"the {what} outlived the process it depends on by {seconds:g} s")
        time.sleep(0.05)


def assert_no_orphan_after_a_kill(code: str, pid_file: pathlib.Path, what: str) -> None:
    """Run ``code`` (``python -c``; argv[1] is the tests folder, argv[2] ``pid_file``) as a stand-in kernel or test
    process that starts ``what``, which writes its pid; SIGKILL the stand-in (no shutdown, no atexit) and require
    ``what`` gone within 10 s."""
    parent = subprocess.Popen([sys.executable, "-c", code, str(TESTS), str(pid_file)])
    try:
        pid = wait_for_pid(pid_file, what, parent)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    assert_ends_within(pid, what)
