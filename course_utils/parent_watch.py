"""Ending a worker process when the process that started it dies, so that a killed kernel, launcher or test run
leaves nothing computing on as an orphan.

A daemon thread in the worker checks every ``PARENT_WATCH_S`` seconds. :func:`watch_parent` watches the direct
parent: a process whose parent dies is re-parented (to init or a subreaper), so ``os.getppid()`` changes; the ranks
of :func:`~course_utils.parallel.launch.launch` and the tests' fresh processes use it. :func:`watch_process` watches
any ancestor by its pid: a worker of a ``forkserver`` pool (the scaling sweep's) needs it, since its parent is the
fork server, which lives as long as its workers do and so stays in place when the kernel dies.

Left out: Windows, which does not re-parent orphans and where ``os.kill(pid, 0)`` would end the process it tests;
there nothing is watched (:func:`watch_parent` never fires, :func:`watch_process` starts no thread).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable

PARENT_WATCH_S = 0.5  # how often a worker checks that the process it watches is still there
PROCESS_GROUPS = hasattr(os, "setsid") and hasattr(os, "killpg")  # POSIX; on Windows only the ranks are stopped


def process_exists(pid: int) -> bool:
    """Whether process ``pid`` is still running (POSIX only: on Windows ``os.kill(pid, 0)`` would end it). A zombie,
    exited but not yet reaped by its parent, has ended (Linux reads its state in /proc)."""
    if os.name != "posix":
        raise OSError("process_exists needs POSIX: os.kill(pid, 0) terminates the process on Windows")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:  # no /proc (macOS: os.kill found it), or it ended just now
        return not Path("/proc").is_dir()


def exit_when(gone: Callable[[], bool], whole_group: bool = False) -> None:
    """End this process as soon as ``gone()`` is true, checking every ``PARENT_WATCH_S`` seconds; with
    ``whole_group`` (a rank, which leads its own process group) kill the whole group, what the rank started included.
    Runs in a daemon thread (see :func:`watch_parent`)."""
    while not gone():
        time.sleep(PARENT_WATCH_S)
    if whole_group and PROCESS_GROUPS:
        os.killpg(os.getpgrp(), signal.SIGKILL)
    os._exit(1)  # Windows: no process groups, only this process ends


def _start_watch(gone: Callable[[], bool], whole_group: bool) -> None:
    threading.Thread(target=exit_when, args=(gone, whole_group), name="watch-parent", daemon=True).start()


def watch_parent(parent_pid: int | None = None, whole_group: bool = False) -> None:
    """End this process (see :func:`exit_when`) once ``parent_pid`` (default: the current parent) is no longer its
    parent: a process whose parent dies is re-parented, so ``os.getppid()`` changes (not on Windows, which does not
    re-parent). Used by the ranks and by the tests' fresh processes, so a killed launcher leaves nothing computing."""
    parent_pid = os.getppid() if parent_pid is None else parent_pid
    _start_watch(lambda: os.getppid() != parent_pid, whole_group)


def watch_process(pid: int) -> None:
    """End this process once process ``pid`` (an ancestor, not necessarily the parent) has ended. A forkserver's
    worker needs it: its parent is the fork server, which lives as long as its workers do, so a killed kernel leaves
    the worker's parent in place. POSIX only; on Windows nothing is watched."""
    if os.name == "posix":
        _start_watch(lambda: not process_exists(pid), whole_group=False)
