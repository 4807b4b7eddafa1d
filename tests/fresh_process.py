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

from course_utils.parent_watch import watch_parent


def run_in_fresh_process(function, /, *args, **kwargs):
    """``function(*args, **kwargs)`` in a fresh interpreter, returning what it returns; an exception it raises (a
    failed assertion) is raised here, with the child's traceback attached as its cause. ``function`` must be defined
    at the top level of an importable module (a test module is), and its arguments and result must pickle."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=watch_parent,
                                                initargs=(os.getpid(),)) as pool:
        return pool.submit(function, *args, **kwargs).result()
