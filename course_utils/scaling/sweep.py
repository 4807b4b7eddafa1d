"""Running a grid of training runs with a cache, on any ``concurrent.futures.Executor``.

A scaling-law sweep is many independent runs. Each run is described by a frozen, JSON-serialisable spec (a
dataclass: model size, token budget, recipe, data). Its cache key is a hash of the spec's fields, so a finished
run is never trained twice and a changed recipe never reuses a stale result. Each result is written atomically to
``<cache>/<key>.json`` the moment it finishes: an interrupted sweep resumes where it stopped, and a run that fails
(an exception in a worker, a worker that dies) is reported with its message while every other result is kept. An
interrupt cancels the runs not yet handed to a worker; those already handed out (a process pool hands out up to one
more than twice its workers: one running in each worker, as many plus one queued for them) finish, and each is
recorded as it finishes (an executor's shutdown waits for exactly these). Jupyter's stop button and Ctrl-C signal the
whole process group, so a local pool's workers are interrupted too: their runs in progress are lost, and only the
queued ones finish and are recorded. On Dask, ``cancel()`` succeeds even for running tasks, so nothing handed out is
recorded (its workers finish and discard them). :func:`local_executor`'s workers end if the process that made them
dies (a killed kernel).

The executor decides where runs happen: ``None`` runs them one after another in this process; a
``ProcessPoolExecutor`` uses local cores (:func:`local_executor` makes the course's: a safe start method and one torch
thread per worker, since on a small CPU two processes of one thread train more tokens per second than one process of
two threads, measured in ``benchmarks/RESULTS.md``, chapter 04); Dask's ``Client.get_executor()`` sends them to a
cluster (on Slurm through dask-jobqueue) with no change here; submitit's executor is not a ``concurrent.futures``
executor and is refused. ``run_fn`` must be importable (a module-level function) for process or cluster executors.

Left out: retries, time limits per run, and sharing a cache between machines (point ``cache`` at a shared folder).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import multiprocessing
import os
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from tqdm.auto import tqdm

from course_utils.cache import atomic_write_text
from course_utils.parent_watch import watch_process


def _one_thread_worker(creator_pid: int) -> None:
    import torch  # the worker's own torch: one intra-op and one inter-op thread, so workers do not oversubscribe

    watch_process(creator_pid)  # a killed kernel (or a stopped test run) must not leave a worker training on

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already fixed (inter-op work happened before); harmless
        pass


def local_executor(workers: int = 2, preload: Sequence[str] = ("course_utils.scaling.runs",)) -> ProcessPoolExecutor:
    """A process pool of ``workers`` processes with one torch thread each, started safely.

    ``fork`` is unsafe once the parent has started OpenMP or torch threads (a Jupyter kernel that trained anything
    has): the child inherits locks held by threads that do not exist in it and can hang. ``forkserver`` (where the
    platform has it, with ``preload`` imported once in the server so each worker starts without re-importing torch)
    or else ``spawn`` starts workers from a clean interpreter. Use it as a context manager, so the workers end.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if context.get_start_method() == "forkserver":
        context.set_forkserver_preload(list(preload))
    return ProcessPoolExecutor(workers, mp_context=context, initializer=_one_thread_worker, initargs=(os.getpid(),))


def run_key(spec: Any) -> str:
    """A stable 16-hex-digit key for a dataclass ``spec``: its class name and fields, hashed."""
    if not dataclasses.is_dataclass(spec) or isinstance(spec, type):
        raise TypeError(f"a run spec must be a dataclass instance, got {type(spec).__name__}")
    payload = json.dumps({"kind": type(spec).__name__, "fields": dataclasses.asdict(spec)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _spec_fields(spec: Any) -> dict:
    """The spec's fields as they read back from JSON (tuples become lists), so a cached record compares equal."""
    return json.loads(json.dumps(dataclasses.asdict(spec)))


@dataclass
class SweepResult:
    results: dict[str, dict] = field(default_factory=dict)  # key -> what run_fn returned
    failures: dict[str, str] = field(default_factory=dict)  # key -> error message
    n_cached: int = 0  # how many results came from the cache


def load_cached(cache: Path, spec: Any) -> dict | None:
    """The cached result of ``spec``, or None if absent, unreadable or written for another spec."""
    path = Path(cache) / f"{run_key(spec)}.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("spec") != _spec_fields(spec):
        return None
    return record.get("result")


def _record_late(record: Callable[[str, Any], None], key: str, future: Future) -> None:
    """Record a run that finishes after an interrupt stopped the sweep (a failed one has no one left to report to)."""
    with contextlib.suppress(Exception):
        if not future.cancelled() and future.exception() is None:
            record(key, future.result())


def run_sweep(specs: Sequence[Any], run_fn: Callable[[Any], dict], cache: Path | str,
              executor: Executor | None = None, progress: bool = True) -> SweepResult:
    """Run ``run_fn(spec)`` for every spec not already in ``cache``; return every result and every failure."""
    if not callable(run_fn):
        raise TypeError(f"run_fn must be callable, got {type(run_fn).__name__}")
    if executor is not None and not isinstance(executor, Executor):
        raise TypeError(f"executor must be a concurrent.futures.Executor or None, got {type(executor).__name__}")
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    by_key = {run_key(spec): spec for spec in specs}
    if len(by_key) != len(specs):
        raise ValueError("specs contain duplicates (two specs with the same fields)")
    out = SweepResult()
    todo = []
    for key, spec in by_key.items():
        cached = load_cached(cache, spec)
        if cached is None:
            todo.append(key)
        else:
            out.results[key] = cached
            out.n_cached += 1
    def record(key: str, result: Any) -> None:
        if not isinstance(result, dict):
            raise TypeError(f"run_fn must return a dict (JSON-serialisable), got {type(result).__name__}")
        record_text = json.dumps({"spec": _spec_fields(by_key[key]), "result": result}, indent=1)
        atomic_write_text(record_text, cache / f"{key}.json")
        out.results[key] = result

    with tqdm(total=len(by_key), initial=out.n_cached, desc="sweep runs", disable=not progress) as bar:
        if executor is None:
            for key in todo:
                try:
                    record(key, run_fn(by_key[key]))
                except Exception as error:  # noqa: BLE001 - one failed run must not lose the others
                    out.failures[key] = f"{type(error).__name__}: {error}"
                bar.update(1)
        else:
            futures = {executor.submit(run_fn, by_key[key]): key for key in todo}
            try:
                for future in as_completed(futures):
                    key = futures[future]
                    try:
                        record(key, future.result())
                    except Exception as error:  # noqa: BLE001 - a worker process that died (BrokenProcessPool) too
                        out.failures[key] = f"{type(error).__name__}: {error}"
                    bar.update(1)
            except BaseException:  # an interrupt (Jupyter's stop button): the queued runs must not go on, nor keep
                for future, key in futures.items():  # the caller's executor.shutdown() waiting for all of them; a
                    if key not in out.results and not future.cancel():  # run already handed to a worker finishes
                        future.add_done_callback(functools.partial(_record_late, record, key))  # there, recorded
                raise
    for key, message in out.failures.items():
        print(f"run {key} ({by_key[key]}) failed: {message}; the other results are kept")
    return out
