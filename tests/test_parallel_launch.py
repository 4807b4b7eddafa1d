"""The launcher runs a function on several gloo ranks and always cleans up: results in rank order; a rank that
raises, is killed or hangs gives a clear error in bounded time with no worker left alive; bad input is refused."""

import atexit
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
import torch.distributed as dist

from course_utils.parallel.launch import (RankContext, WorkerError, _worker, free_port, hello_rank, launch,
                                         resolve_backend)
from course_utils.parallel.payload import pickle_for_ranks


# Worker functions must be importable by the spawned ranks: module-level functions of this test module.
def _record_pid(directory: str, ctx: RankContext) -> None:
    with open(os.path.join(directory, f"pid{ctx.rank}"), "w") as f:
        f.write(str(os.getpid()))


def raise_on_rank_one(ctx: RankContext, directory: str) -> None:
    _record_pid(directory, ctx)
    if ctx.rank == 1:
        raise ValueError("rank one refuses to all-reduce")
    dist.all_reduce(torch.ones(1))  # rank 0 waits here for a partner that never comes


def kill_rank_one(ctx: RankContext, directory: str) -> None:
    _record_pid(directory, ctx)
    if ctx.rank == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    dist.all_reduce(torch.ones(1))


def hang_in_collective(ctx: RankContext, directory: str) -> None:
    _record_pid(directory, ctx)
    if ctx.rank == 0:
        dist.all_reduce(torch.ones(1))  # rank 1 never joins
    else:
        time.sleep(600)


def add_rank(ctx: RankContext, offset: int) -> int:
    return ctx.rank + offset


def always_raise(ctx: RankContext) -> None:
    raise ValueError(f"rank {ctx.rank} refuses")


def return_text(ctx: RankContext) -> str:
    return f"rank {ctx.rank} says hello"


def _start_child(directory: str) -> None:
    """Start a long-lived child process (like a DataLoader worker) and record its pid in ``directory/child``."""
    child = subprocess.Popen(["sleep", "600"])
    with open(os.path.join(directory, "child"), "w") as f:
        f.write(str(child.pid))


def start_child_then_raise(ctx: RankContext, directory: str) -> None:
    """Rank 1 starts a long-lived child process, records its pid, then raises."""
    _record_pid(directory, ctx)
    if ctx.rank == 1:
        _start_child(directory)
        raise RuntimeError("rank 1 fails with a child still running")
    time.sleep(600)


def start_child_then_return(ctx: RankContext, directory: str) -> int:
    """Rank 1 starts a long-lived child process, records its pid, and returns normally, leaving the child behind."""
    _record_pid(directory, ctx)
    if ctx.rank == 1:
        _start_child(directory)
    return ctx.rank


def abort_rank_one_in_c(ctx: RankContext) -> int:
    """Rank 1 writes its last words straight to file descriptor 2, as C++'s terminate handler does, then aborts."""
    if ctx.rank == 1:
        print("python's last words")  # reaches the log before the abort only if the rank's stdout is unbuffered
        os.write(2, b"terminate called after throwing an instance of 'demo::Error'\n  what():  peer vanished\n")
        os.abort()
    return ctx.rank


def abort_at_interpreter_exit(ctx: RankContext) -> int:
    """Returns normally, but leaves the interpreter's teardown a C++-style abort (as torch 2.13 after gloo sometimes
    does): a rank that ends by os._exit once its result is on disk never gets there."""
    atexit.register(os.abort)
    return ctx.rank


def print_then_return(ctx: RankContext) -> int:
    print(f"hello from rank {ctx.rank}")
    print("a warning on stderr", file=sys.stderr)
    print("0%\r50%\r100%")  # a progress bar redrawn in place
    return ctx.rank


def wait_forever(ctx: RankContext, directory: str) -> None:
    _record_pid(directory, ctx)
    time.sleep(600)


def _alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (exited, not yet reaped by an init that may never reap it) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_for_files(directory, names, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not all((directory / n).exists() for n in names):
        assert time.monotonic() < deadline, f"{names} never appeared in {directory}"
        time.sleep(0.1)


def _assert_workers_gone(directory) -> None:
    pids = [int((directory / f"pid{r}").read_text()) for r in range(2) if (directory / f"pid{r}").exists()]
    assert pids, "the workers never started"
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # signal 0 only checks existence; a reaped child no longer exists


def _assert_child_and_workers_gone(directory) -> None:
    child = int((directory / "child").read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child), "the rank's child process outlived the launch"
    _assert_workers_gone(directory)


def test_results_come_back_in_rank_order_with_the_group_initialised():
    results = launch(hello_rank, world_size=2, backend="gloo", timeout_s=120)
    assert [r["rank"] for r in results] == [0, 1]
    assert all(r["world_size"] == 2 and r["backend"] == "gloo" for r in results)
    assert [r["sum_of_ranks"] for r in results] == [1.0, 1.0]  # the all-reduce really ran across both ranks
    assert results[0]["pid"] != results[1]["pid"] != os.getpid()
    for pid in (r["pid"] for r in results):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_rank_that_raises_is_reported_with_its_traceback_and_nothing_survives(tmp_path):
    start = time.monotonic()
    with pytest.raises(WorkerError, match="rank 1 raised ValueError: rank one refuses") as caught:
        launch(raise_on_rank_one, world_size=2, args=(str(tmp_path),), timeout_s=120)
    assert caught.value.rank == 1 and "raise_on_rank_one" in caught.value.traceback_text
    assert time.monotonic() - start < 60  # reported at once, not after the timeout
    _assert_workers_gone(tmp_path)


def test_a_killed_rank_is_reported_with_its_signal_and_nothing_survives(tmp_path):
    with pytest.raises(WorkerError, match="rank 1 was killed by signal SIGKILL") as caught:
        launch(kill_rank_one, world_size=2, args=(str(tmp_path),), timeout_s=120)
    assert caught.value.exitcode == -signal.SIGKILL
    _assert_workers_gone(tmp_path)


def test_a_rank_that_aborts_in_c_is_reported_with_its_last_words(monkeypatch):
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)  # as in CI and Jupyter: the launcher sets it for the ranks
    with pytest.raises(WorkerError, match="rank 1 was killed by signal SIGABRT") as caught:
        launch(abort_rank_one_in_c, world_size=2, timeout_s=120)
    assert caught.value.exitcode == -signal.SIGABRT
    assert "python's last words" in caught.value.output_tail
    assert "what():  peer vanished" in caught.value.output_tail
    assert "in abort_rank_one_in_c" in caught.value.output_tail  # faulthandler's Python stack: where it aborted
    assert "--- last output of rank 1 ---" in str(caught.value)


def test_a_rank_skips_the_interpreter_teardown_once_its_result_is_on_disk():
    assert launch(abort_at_interpreter_exit, world_size=2, backend="gloo", timeout_s=120) == [0, 1]


def test_what_ranks_print_reaches_the_callers_stdout_with_their_rank(capfd):
    assert launch(print_then_return, world_size=2, backend="gloo", timeout_s=120) == [0, 1]
    shown = capfd.readouterr().out
    for rank in (0, 1):
        assert f"[rank {rank}] hello from rank {rank}\n" in shown
        assert f"[rank {rank}] a warning on stderr\n" in shown
        assert f"[rank {rank}] 100%\n" in shown and "[rank 0] 50%" not in shown  # a bar's last state only


def test_a_hang_ends_in_a_timeout_and_nothing_survives(tmp_path):
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="had not finished after 12 s") as caught:
        launch(hang_in_collective, world_size=2, args=(str(tmp_path),), timeout_s=12)
    assert "in hang_in_collective" in str(caught.value)  # the hung ranks' stacks, from faulthandler on SIGUSR1
    assert 12 <= time.monotonic() - start < 30  # SIGTERM, then SIGKILL at most 2 s later
    _assert_workers_gone(tmp_path)


def test_the_worker_destroys_its_process_group_on_success_and_on_failure(tmp_path):
    # _worker is what each spawned rank runs; here it runs in this process as a world of one.
    _worker(pickle_for_ranks(add_rank, (10,)), 0, 1, "gloo", free_port(), 1, 30.0, str(tmp_path))
    assert not dist.is_initialized()
    assert torch.load(tmp_path / "rank0.result") == 10
    with pytest.raises(SystemExit):
        _worker(pickle_for_ranks(always_raise, ()), 0, 1, "gloo", free_port(), 1, 30.0, str(tmp_path))
    assert not dist.is_initialized()
    assert "ValueError: rank 0 refuses" in (tmp_path / "rank0.error").read_text()


def test_a_rank_that_dies_at_start_up_with_a_large_payload_is_reported_not_hung(tmp_path, monkeypatch):
    # Every spawned Python runs sitecustomize at start-up: this one exits before the rank reads anything. Were the
    # 1 MB payload sent through the spawn pipe (64 KiB buffer), whose read end CPython keeps open until its write
    # ends, Process.start() would block forever, before the timeout could apply; launch runs in a thread so that
    # such a hang fails this test instead of hanging it.
    import threading
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()  # started now, so that the sitecustomize below cannot stop it
    (tmp_path / "sitecustomize.py").write_text("import os\nos._exit(3)\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    outcome = []

    def run():
        try:
            launch(add_rank, world_size=2, args=(b"x" * 2**20,), backend="gloo", timeout_s=120)
        except BaseException as error:  # noqa: BLE001 -- handed to the test's thread
            outcome.append(error)

    start = time.monotonic()
    caller = threading.Thread(target=run, daemon=True)
    caller.start()
    caller.join(90)
    assert not caller.is_alive(), "launch hung while starting a rank that died at start-up"
    assert len(outcome) == 1 and isinstance(outcome[0], WorkerError), outcome
    assert "exited with code 3 without a result" in str(outcome[0])
    assert time.monotonic() - start < 60  # reported once the rank is seen dead, long before timeout_s (120 s)


def test_bad_input_is_refused_before_anything_starts():
    with pytest.raises(ValueError, match="backend must be one of"):
        launch(hello_rank, backend="mpi")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="needs one CUDA device per rank"):
            resolve_backend("nccl", 2)
        assert resolve_backend("auto", 2) == "gloo"
    with pytest.raises(ValueError, match="lambda or a nested function"):
        launch(lambda ctx: None)
    with pytest.raises(ValueError, match="world_size must be a positive int"):
        launch(hello_rank, world_size=0)
    with pytest.raises(ValueError, match="timeout_s must be > 0"):
        launch(hello_rank, timeout_s=0)


class _OnlyInTheCaller:  # its module is registered in the caller's sys.modules only (see the test below)
    pass


def test_an_arg_a_rank_cannot_import_is_reported_with_its_traceback(monkeypatch):
    import types
    phantom = types.ModuleType("course_phantom_module")  # importable here, not in a fresh process
    _OnlyInTheCaller.__module__ = "course_phantom_module"
    phantom._OnlyInTheCaller = _OnlyInTheCaller
    monkeypatch.setitem(sys.modules, "course_phantom_module", phantom)
    try:
        with pytest.raises(WorkerError, match="could not rebuild fn and args") as caught:
            launch(hello_rank, world_size=2, args=(_OnlyInTheCaller(),), backend="gloo", timeout_s=120)
    finally:
        _OnlyInTheCaller.__module__ = __name__
    assert "No module named 'course_phantom_module'" in caught.value.traceback_text


def test_a_str_result_comes_back_like_any_other():
    assert launch(return_text, world_size=2, backend="gloo", timeout_s=120) == ["rank 0 says hello",
                                                                                 "rank 1 says hello"]


def test_processes_a_rank_started_are_stopped_with_it(tmp_path):
    with pytest.raises(WorkerError, match="rank 1 raised RuntimeError"):
        launch(start_child_then_raise, world_size=2, args=(str(tmp_path),), timeout_s=120)
    _assert_child_and_workers_gone(tmp_path)


def test_a_child_left_by_a_rank_that_succeeded_is_stopped_too(tmp_path):
    assert launch(start_child_then_return, world_size=2, args=(str(tmp_path),), timeout_s=120) == [0, 1]
    _assert_child_and_workers_gone(tmp_path)


def test_a_keyboard_interrupt_in_the_caller_stops_every_rank(tmp_path):
    def interrupt(signum, frame):
        if all((tmp_path / f"pid{r}").exists() and (tmp_path / f"pid{r}").read_text() for r in range(2)):
            raise KeyboardInterrupt
        signal.setitimer(signal.ITIMER_REAL, 0.2)  # the ranks are not running user code yet: look again soon

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)  # interrupts once both ranks run user code, however slow start-up is
        with pytest.raises(KeyboardInterrupt):
            launch(wait_forever, world_size=2, args=(str(tmp_path),), timeout_s=120)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert (tmp_path / "pid0").exists() and (tmp_path / "pid1").exists(), "interrupted before the ranks ran"
    pids = [int((tmp_path / f"pid{r}").read_text()) for r in range(2)]
    assert not any(_alive(pid) for pid in pids)


def test_ranks_exit_when_the_launching_process_dies(tmp_path):
    script = textwrap.dedent(f"""
        from course_utils.parallel.launch import launch
        from tests.test_parallel_launch import wait_forever
        launch(wait_forever, world_size=2, args=({str(tmp_path)!r},), timeout_s=300)
    """)
    own_tmp = tmp_path / "tmp"  # a SIGKILLed launcher cannot remove its log folder: keep it out of the system's /tmp
    own_tmp.mkdir()
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=os.path.dirname(os.path.dirname(__file__)),
                              env={**os.environ, "TMPDIR": str(own_tmp)})
    try:
        _wait_for_files(tmp_path, ["pid0", "pid1"])
    finally:
        parent.kill()  # SIGKILL: no finally block of the launcher runs, only the ranks' own watch can help
        parent.wait()
    pids = [int((tmp_path / f"pid{r}").read_text()) for r in range(2)]
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in pids), "ranks outlived their killed parent"
    assert [p.name[:14] for p in own_tmp.iterdir()] == ["course-launch-"], "the launcher's folder went elsewhere"
