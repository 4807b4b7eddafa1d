"""course_utils.parent_watch: whether a process still runs (a zombie has ended), and a watcher that ends when a
process it does not descend from directly ends (the forkserver case). The direct-parent watch is tested through
launch's ranks (test_parallel_launch), the tests' fresh processes (test_fresh_process) and the sweep's workers
(test_scaling_sweep)."""

import os
import subprocess
import sys
import textwrap
import time

import pytest

from course_utils import parent_watch
from orphans import assert_ends_within, wait_for_pid


@pytest.mark.skipif(os.name != "posix", reason="os.kill(pid, 0) would end the process on Windows")
def test_process_exists_for_a_running_process_and_not_for_an_exited_one_reaped_or_not():
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        assert parent_watch.process_exists(os.getpid()) and parent_watch.process_exists(child.pid)
        child.stdin.close()  # it exits; not reaped yet: a zombie
        deadline = time.monotonic() + 30
        while parent_watch.process_exists(child.pid):
            assert time.monotonic() < deadline, "an exited, unreaped child still counts as running"
            time.sleep(0.05)
    finally:
        child.kill()
        child.wait()
    assert not parent_watch.process_exists(child.pid)  # reaped


@pytest.mark.skipif(os.name != "posix", reason="the watch needs POSIX")
def test_watch_process_ends_a_process_when_a_grandparent_ends(tmp_path):
    # the watcher is not the watched process's child (as a forkserver's worker is not the kernel's): a process
    # that forks and exits leaves it re-parented; it must end when the watched process ends, and not before
    code = textwrap.dedent("""
        import os, sys, time
        from course_utils.parent_watch import watch_process
        watched = int(sys.argv[1])
        if os.fork():  # the parent half exits at once: the watcher is re-parented, its parent is not the watched one
            os._exit(0)
        watch_process(watched)
        open(sys.argv[2], "w").write(str(os.getpid()))
        time.sleep(120)
    """)
    watched = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    pid_file = tmp_path / "watcher.pid"
    subprocess.run([sys.executable, "-c", code, str(watched.pid), str(pid_file)], check=True)
    watcher = wait_for_pid(pid_file, "watcher")
    time.sleep(2 * parent_watch.PARENT_WATCH_S)
    assert parent_watch.process_exists(watcher), "the watcher ended while the watched process ran"
    watched.kill()
    watched.wait()
    assert_ends_within(watcher, "watcher")
