"""Run part of a test in a fresh Python process, so that the memory it takes goes back to the system when it ends.

A test that executes notebook cells on SmolLM2 in the pytest process leaves that process gigabytes larger for the rest
of the run: the allocator keeps the freed pages (RESULTS.md, "The full CI with it, and where its peak memory is").
The child is *spawned*, not forked: it starts from nothing but this process's environment (so the network guard that
``conftest.py`` puts on ``PYTHONPATH`` is active there too) and its ``sys.path``, and it shares no threads, locks or
CUDA context with the parent. It ends itself if the test process dies (stopped CI, a killed pytest) instead of
computing on for minutes as an orphan."""

import concurrent.futures
import multiprocessing
import os
import threading
import time

PARENT_WATCH_S = 0.5  # how often the child checks that the test process is still its parent


def _exit_when_orphaned(parent_pid: int) -> None:
    while os.getppid() == parent_pid:  # re-parented (to init, or a subreaper) once the test process is gone
        time.sleep(PARENT_WATCH_S)
    os._exit(1)


def _watch_parent(parent_pid: int) -> None:
    threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), name="watch-parent", daemon=True).start()


def run_in_fresh_process(function, /, *args, **kwargs):
    """``function(*args, **kwargs)`` in a fresh interpreter, returning what it returns; an exception it raises (a
    failed assertion) is raised here, with the child's traceback attached as its cause. ``function`` must be defined
    at the top level of an importable module (a test module is), and its arguments and result must pickle."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_watch_parent,
                                                initargs=(os.getpid(),)) as pool:
        return pool.submit(function, *args, **kwargs).result()
