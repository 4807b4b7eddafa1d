"""The sweep runner: cached by spec, resumable, survives failing runs and dead workers, any Executor."""

import json
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import pytest
from orphans import assert_no_orphan_after_a_kill

from course_utils.scaling.runs import ScalingRun, train_scaling_run
from course_utils.scaling.sweep import load_cached, local_executor, run_key, run_sweep


@dataclass(frozen=True)
class Spec:
    n: int
    lr: float = 0.1


def square(spec: Spec) -> dict:
    if spec.n < 0:
        raise ValueError("negative size")
    if spec.n == 99:
        os._exit(1)  # a worker that dies mid-run
    return {"loss": spec.n**2 * spec.lr}


def test_results_are_cached_and_a_changed_recipe_is_rerun(tmp_path):
    calls = []

    def counted(spec):
        calls.append(spec)
        return square(spec)

    first = run_sweep([Spec(1), Spec(2)], counted, tmp_path, progress=False)
    assert first.n_cached == 0 and len(calls) == 2
    again = run_sweep([Spec(1), Spec(2)], counted, tmp_path, progress=False)
    assert again.n_cached == 2 and len(calls) == 2 and again.results == first.results
    changed = run_sweep([Spec(1, lr=0.2)], counted, tmp_path, progress=False)
    assert changed.n_cached == 0 and changed.results[run_key(Spec(1, lr=0.2))] == {"loss": 0.2}


def test_corrupt_or_foreign_cache_files_are_rerun(tmp_path):
    run_sweep([Spec(3)], square, tmp_path, progress=False)
    path = tmp_path / f"{run_key(Spec(3))}.json"
    path.write_text(path.read_text()[:10])  # truncated by a crash
    assert load_cached(tmp_path, Spec(3)) is None
    path.write_text(json.dumps({"spec": {"n": 4, "lr": 0.1}, "result": {"loss": 0}}))  # another spec's result
    assert load_cached(tmp_path, Spec(3)) is None
    assert run_sweep([Spec(3)], square, tmp_path, progress=False).results[run_key(Spec(3))] == {"loss": 0.9}


def test_a_failing_run_is_reported_and_the_others_kept(tmp_path, capsys):
    out = run_sweep([Spec(1), Spec(-1), Spec(2)], square, tmp_path, progress=False)
    assert set(out.results) == {run_key(Spec(1)), run_key(Spec(2))}
    assert "negative size" in out.failures[run_key(Spec(-1))] and "failed" in capsys.readouterr().out
    assert run_sweep([Spec(1), Spec(2)], square, tmp_path, progress=False).n_cached == 2


def test_process_pool_gives_the_same_results_and_survives_a_dead_worker(tmp_path):
    specs = [Spec(n) for n in range(1, 5)]
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
        pooled = run_sweep(specs, square, tmp_path / "pool", executor=pool, progress=False)
    serial = run_sweep(specs, square, tmp_path / "serial", progress=False)
    assert pooled.results == serial.results and not pooled.failures
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        broken = run_sweep([Spec(99)], square, tmp_path / "broken", executor=pool, progress=False)
    assert "BrokenProcessPool" in broken.failures[run_key(Spec(99))]


def test_local_executor_gives_the_in_process_results_and_one_thread_per_worker(tmp_path):
    import torch

    specs = [ScalingRun(n_layer=1, n_head=2, n_embd=16, tokens=n * 8 * 32, block_size=32, batch_size=8,
                        max_train_chars=50_000, eval_batches=2) for n in (6, 12)]
    with local_executor(2) as pool:
        assert pool._mp_context.get_start_method() in ("forkserver", "spawn")  # never fork
        assert [pool.submit(torch.get_num_threads).result() for _ in range(2)] == [1, 1]
        pooled = run_sweep(specs + [Spec(-1)], _run_or_fail, tmp_path / "pool", executor=pool, progress=False)
    assert "negative size" in pooled.failures[run_key(Spec(-1))] and len(pooled.results) == 2  # failure kept apart
    serial = run_sweep(specs, train_scaling_run, tmp_path / "serial", progress=False)
    again = run_sweep(specs, train_scaling_run, tmp_path / "pool", progress=False)
    assert again.n_cached == 2 and again.results == {k: pooled.results[k] for k in again.results}
    for key, result in serial.results.items():
        assert pooled.results[key]["val_loss"] == result["val_loss"]  # same numbers in a worker and here
    with pytest.raises(ValueError, match="workers"):
        local_executor(0)


def _run_or_fail(spec):
    return square(spec) if isinstance(spec, Spec) else train_scaling_run(spec)


def test_dask_local_cluster_reuses_the_same_cache(tmp_path):
    distributed = pytest.importorskip("distributed")
    specs = [Spec(n) for n in range(1, 4)]
    serial = run_sweep(specs, square, tmp_path, progress=False)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False) as cluster, \
            distributed.Client(cluster) as client:
        via_dask = run_sweep(specs + [Spec(5)], square, tmp_path, executor=client.get_executor(), progress=False)
    assert via_dask.n_cached == 3 and via_dask.results[run_key(Spec(5))] == {"loss": 2.5}
    assert all(via_dask.results[k] == v for k, v in serial.results.items())


@dataclass(frozen=True)
class OtherSpec:
    n: int
    lr: float = 0.1


def test_run_key_names_the_spec_class_and_its_fields():
    assert run_key(Spec(1)) == run_key(Spec(1)) and len(run_key(Spec(1))) == 16
    assert run_key(Spec(1)) != run_key(OtherSpec(1))  # same fields, another kind of run: another cache file
    assert run_key(Spec(1)) != run_key(Spec(1, lr=0.2))


def test_bad_input(tmp_path):
    with pytest.raises(TypeError, match="dataclass"):
        run_sweep([{"n": 1}], square, tmp_path)
    with pytest.raises(ValueError, match="duplicates"):
        run_sweep([Spec(1), Spec(1)], square, tmp_path)
    with pytest.raises(TypeError, match="Executor"):
        run_sweep([Spec(1)], square, tmp_path, executor="pool")
    out = run_sweep([Spec(1)], lambda spec: 3.0, tmp_path, progress=False)
    assert "must return a dict" in out.failures[run_key(Spec(1))]


def test_an_interrupt_cancels_the_queued_runs_and_keeps_the_recorded_ones(tmp_path):
    import threading
    from concurrent.futures import ThreadPoolExecutor

    calls, released = [], threading.Event()

    def interrupted_at_two(spec):
        calls.append(spec.n)
        if spec.n == 2:
            raise KeyboardInterrupt  # as Jupyter's stop button raises it, here inside the run
        if spec.n > 2:
            released.wait(10)  # a run in progress while the interrupt arrives
        return square(spec)

    specs = [Spec(n) for n in range(1, 7)]
    with ThreadPoolExecutor(1) as pool:  # one worker: runs start in the order submitted
        try:
            with pytest.raises(KeyboardInterrupt):
                run_sweep(specs, interrupted_at_two, tmp_path, executor=pool, progress=False)
        finally:
            released.set()
    assert calls[:2] == [1, 2] and len(calls) <= 3  # at most the run that had started; not all six
    assert load_cached(tmp_path, Spec(1)) == {"loss": 0.1}  # recorded before the interrupt, kept


def test_a_run_already_handed_out_at_an_interrupt_is_recorded_when_it_finishes(tmp_path):
    import threading
    from concurrent.futures import ThreadPoolExecutor

    calls, released = [], threading.Event()

    def interrupted_at_two(spec):
        calls.append(spec.n)
        if spec.n == 2:
            raise KeyboardInterrupt  # the stop button, while run 1 (and perhaps run 3) is in progress
        released.wait(10)
        return square(spec)

    specs = [Spec(n) for n in range(1, 7)]
    with ThreadPoolExecutor(2) as pool:
        try:
            with pytest.raises(KeyboardInterrupt):
                run_sweep(specs, interrupted_at_two, tmp_path, executor=pool, progress=False)
        finally:
            released.set()  # the runs in progress finish; the pool's shutdown waits for them
    assert 1 in calls and len(calls) <= 3  # the queued runs were cancelled
    for n in calls:
        assert load_cached(tmp_path, Spec(n)) == (None if n == 2 else square(Spec(n))), n


@pytest.mark.skipif(sys.platform == "win32", reason="Windows does not re-parent an orphan")
def test_a_local_executor_worker_ends_when_the_process_that_made_it_dies(tmp_path):
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import orphans; "
            "from course_utils.scaling.sweep import local_executor; "
            "local_executor(1).submit(orphans.write_pid_and_sleep, sys.argv[2]).result()")
    assert_no_orphan_after_a_kill(code, tmp_path / "worker.pid", "sweep worker")
