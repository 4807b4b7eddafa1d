"""The launcher runs a function on several gloo ranks and always cleans up: results in rank order; a rank that
raises, is killed or hangs gives a clear error in bounded time with no worker left alive; bad input is refused."""

import atexit
import ctypes
import multiprocessing as mp
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist

from course_utils.parallel.launch import (RankContext, WorkerError, _first_failure, _worker, _write_atomically,
                                         free_port, hello_rank, launch, resolve_backend)
from course_utils.parallel.payload import pickle_for_ranks
from course_utils.parent_watch import process_exists


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


def report_set_up(ctx: RankContext) -> dict:
    """What a rank was given (rendezvous variables, threads, its group's timeout); it also prints through C's
    stdio."""
    ctypes.CDLL(None).printf(b"rank %d speaks through C stdio\n", ctx.rank)
    backend = dist.distributed_c10d._get_default_group()._get_backend(torch.device("cpu"))
    names = ("MASTER_ADDR", "RANK", "WORLD_SIZE", "LOCAL_RANK", "PYTHONUNBUFFERED")
    return {"env": {name: os.environ.get(name) for name in names},
            "threads": torch.get_num_threads(), "timeout_s": backend.options._timeout.total_seconds()}


def print_then_raise_on_rank_one(ctx: RankContext) -> int:
    if ctx.rank == 1:
        print("rank 1 is about to raise")
        raise ValueError("rank 1 refuses after printing")
    return ctx.rank


def print_then_vanish_on_rank_one(ctx: RankContext) -> int:
    """Rank 1 ends its process with exit code 0 without returning: no result, no traceback."""
    if ctx.rank == 1:
        print("rank 1 leaves without a result", flush=True)
        os._exit(0)
    return ctx.rank


def start_child_then_wait(ctx: RankContext, directory: str) -> None:
    _record_pid(directory, ctx)
    if ctx.rank == 1:
        _start_child(directory)
    time.sleep(600)


def print_without_a_newline(ctx: RankContext) -> int:
    print(f"rank {ctx.rank} ends without a newline", end="", flush=True)
    return ctx.rank


def wait_until_rank_ones_child_is_gone(ctx: RankContext, directory: str) -> int:
    """Rank 1 starts a long-lived child and returns; rank 0 returns only once that child is gone (launch's timeout
    otherwise), which it is as soon as the launcher has seen rank 1 exit and cleared its group."""
    _record_pid(directory, ctx)
    if ctx.rank == 1:
        _start_child(directory)
        return ctx.rank
    child_file = os.path.join(directory, "child")
    while not (os.path.exists(child_file) and os.path.getsize(child_file)):  # written just after it appears
        time.sleep(0.05)
    with open(child_file) as f:
        child = int(f.read())
    while process_exists(child):
        time.sleep(0.05)
    return ctx.rank


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
    while process_exists(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not process_exists(child), "the rank's child process outlived the launch"
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


def test_an_unfinished_last_line_reaches_the_callers_stdout_once_the_ranks_end(capfd):
    assert launch(print_without_a_newline, world_size=2, backend="gloo", timeout_s=120) == [0, 1]
    shown = capfd.readouterr().out
    for rank in (0, 1):  # copied by the follower's last poll only: the line never got its newline
        assert f"[rank {rank}] rank {rank} ends without a newline\n" in shown


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


def test_a_child_left_by_a_rank_that_returned_is_stopped_while_the_other_ranks_still_run(tmp_path):
    # not at the end of the launch: an exited rank's group is cleared within a poll, before its pid can be reused
    assert launch(wait_until_rank_ones_child_is_gone, world_size=2, args=(str(tmp_path),), timeout_s=60) == [0, 1]
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
    assert not any(process_exists(pid) for pid in pids)


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
    while any(process_exists(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(process_exists(pid) for pid in pids), "ranks outlived their killed parent"
    assert [p.name[:14] for p in own_tmp.iterdir()] == ["course-launch-"], "the launcher's folder went elsewhere"


def test_ranks_exit_when_the_launching_process_dies_while_they_start(tmp_path):
    # A rank read its parent's pid only once its code ran, after the 2-3 s in which a spawned rank imports torch: a
    # launcher that died inside that window (a crashed kernel) left the rank watching its new parent, the reaper,
    # and it ran fn to the end. The launcher now hands its own pid to the ranks.
    # Every spawned rank runs this sitecustomize first: it records its pid and sleeps 3 s, standing in for the
    # import of torch; the launcher is killed as soon as both pids are there, so inside that window.
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(f"""
        import os, time
        if b"spawn_main" in open("/proc/self/cmdline", "rb").read():
            with open(os.path.join({str(tmp_path)!r}, f"starting{{os.getpid()}}"), "w") as f:
                f.write(str(os.getpid()))
            time.sleep(3)
    """))
    script = textwrap.dedent(f"""
        from course_utils.parallel.launch import launch
        from tests.test_parallel_launch import wait_forever
        launch(wait_forever, world_size=2, args=({str(tmp_path)!r},), timeout_s=300)
    """)
    own_tmp = tmp_path / "tmp"
    own_tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(own_tmp),
           "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=os.path.dirname(os.path.dirname(__file__)), env=env)
    try:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("starting*"))) < 2:
            assert time.monotonic() < deadline, "the ranks never started"
            time.sleep(0.05)
    finally:
        parent.kill()
        parent.wait()
    pids = [int(p.name.removeprefix("starting")) for p in tmp_path.glob("starting*")]
    deadline = time.monotonic() + 20
    while any(process_exists(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    alive = [pid for pid in pids if process_exists(pid)]
    for pid in alive:  # do not leave them behind when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not alive, "ranks whose launcher died during their start-up ran on"


def test_a_rank_gets_its_rendezvous_threads_and_timeout_and_what_c_prints_is_kept(capfd, monkeypatch):
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)
    monkeypatch.delenv("TORCH_CPP_LOG_LEVEL", raising=False)
    before = dict(os.environ)
    threads = (os.cpu_count() or 1) + 1  # more than torch's default (the cores), so a rank left at it shows
    results = launch(report_set_up, world_size=2, backend="gloo", timeout_s=45, threads_per_rank=threads)
    assert dict(os.environ) == before  # the variables set for the ranks are taken back from the caller
    for rank, result in enumerate(results):
        assert result["env"] == {"MASTER_ADDR": "127.0.0.1", "RANK": str(rank), "WORLD_SIZE": "2",
                                 "LOCAL_RANK": str(rank), "PYTHONUNBUFFERED": "1"}
        assert result["threads"] == threads
        assert result["timeout_s"] == 45  # the collectives time out inside the ranks too
    shown = capfd.readouterr().out
    for rank in (0, 1):  # C's stdio reaches the caller too (a rank's C stdout is unbuffered: PYTHONUNBUFFERED)
        assert f"[rank {rank}] rank {rank} speaks through C stdio\n" in shown


def test_a_rank_that_raises_is_reported_with_what_it_printed():
    with pytest.raises(WorkerError, match="rank 1 raised ValueError: rank 1 refuses after printing") as caught:
        launch(print_then_raise_on_rank_one, world_size=2, backend="gloo", timeout_s=120)
    assert "rank 1 is about to raise" in caught.value.output_tail
    # the rank's output comes under its header, after any lines the libraries print first (torch 2.9's gloo prints
    # "[Gloo] Rank 1 is connected to 1 peer ranks ..." when the group forms)
    head, _, shown = str(caught.value).partition("--- last output of rank 1 ---\n")
    assert head and shown == caught.value.output_tail  # the whole tail, quoted after the header


def test_a_rank_that_exits_with_code_0_but_no_result_is_reported_with_what_it_printed():
    with pytest.raises(WorkerError, match="rank 1 exited with code 0 without a result") as caught:
        launch(print_then_vanish_on_rank_one, world_size=2, backend="gloo", timeout_s=120)
    assert caught.value.exitcode == 0 and "rank 1 leaves without a result" in caught.value.output_tail


def test_a_detached_rank_exits_with_0_after_its_result_and_with_1_after_its_error(tmp_path):
    # launch quotes a rank's exit code as it is when the rank's .error appears (often still running); here it ends
    ctx = mp.get_context("spawn")
    runs = {}
    for name, fn in (("ok", add_rank), ("fails", always_raise)):
        (tmp_path / name).mkdir()
        args = (10,) if fn is add_rank else ()
        runs[name] = ctx.Process(target=_worker, args=(pickle_for_ranks(fn, args), 0, 1, "gloo", free_port(), 1, 30.0,
                                                       str(tmp_path / name)), kwargs={"detach": True})
        runs[name].start()
    for p in runs.values():
        p.join(120)
        assert p.exitcode is not None, "a detached rank of a world of one never ended"
    assert runs["ok"].exitcode == 0 and torch.load(tmp_path / "ok" / "rank0.result") == 10
    assert runs["fails"].exitcode == 1
    assert "ValueError: rank 0 refuses" in (tmp_path / "fails" / "rank0.error").read_text()


def test_the_root_cause_is_a_killed_rank_then_the_earliest_traceback(tmp_path):
    # fake processes: only exitcode is read; the .error files' modification times set which traceback came first
    for rank, written_ns in ((0, 2_000_000_000), (1, 1_000_000_000)):
        path = tmp_path / f"rank{rank}.error"
        path.write_text(f"ValueError: rank {rank} refuses\ntraceback of rank {rank}")
        os.utime(path, ns=(written_ns, written_ns))
    processes = [SimpleNamespace(exitcode=1), SimpleNamespace(exitcode=1), SimpleNamespace(exitcode=-signal.SIGKILL)]
    first = _first_failure(processes, tmp_path)
    assert first.rank == 2 and "was killed by signal SIGKILL" in str(first)  # the others fail because it vanished
    processes[2].exitcode = None  # still running: not a failure (yet)
    first = _first_failure(processes, tmp_path)
    assert first.rank == 1 and first.traceback_text == "traceback of rank 1"  # written first


def test_a_rank_killed_by_sighup_is_reported_as_killed(tmp_path):
    first = _first_failure([SimpleNamespace(exitcode=-signal.SIGHUP)], tmp_path)  # exit code -1: the smallest signal
    assert first.rank == 0 and "was killed by signal SIGHUP (exit code -1)" in str(first)


class _Unsaveable:
    def __reduce__(self):
        raise pickle.PicklingError("this result cannot be saved")


def test_a_result_that_cannot_be_saved_leaves_no_result_file(tmp_path):
    with pytest.raises(pickle.PicklingError, match="this result cannot be saved"):
        _write_atomically(tmp_path / "rank0.result", _Unsaveable())  # torch.save fails after opening its file
    assert not (tmp_path / "rank0.result").exists()


def test_auto_picks_nccl_only_with_one_cuda_device_per_rank(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(dist, "is_nccl_available", lambda: True)
    assert resolve_backend("auto", 2) == resolve_backend("nccl", 2) == "nccl"
    assert resolve_backend("auto", 1) == "nccl"
    assert resolve_backend("auto", 3) == "gloo"  # 3 ranks on 2 devices
    with pytest.raises(ValueError, match="needs one CUDA device per rank"):
        resolve_backend("nccl", 3)
    monkeypatch.setattr(dist, "is_nccl_available", lambda: False)
    assert resolve_backend("auto", 2) == "gloo"


def test_bad_counts_of_ranks_and_threads_are_refused_before_anything_starts():
    with pytest.raises(ValueError, match="world_size must be a positive int"):
        launch(hello_rank, world_size=True)  # a bool is not a count (it ran one rank)
    for bad in (0, -1, 1.5, True):  # True ran one thread per rank
        with pytest.raises(ValueError, match="threads_per_rank must be a positive int"):
            launch(hello_rank, threads_per_rank=bad)
    for bad in (float("inf"), float("nan"), "60"):  # inf overflowed timedelta inside the ranks
        with pytest.raises(ValueError, match="timeout_s must be > 0 and finite"):
            launch(hello_rank, timeout_s=bad)


def test_processes_ranks_started_are_stopped_when_the_launching_process_dies(tmp_path):
    script = textwrap.dedent(f"""
        from course_utils.parallel.launch import launch
        from tests.test_parallel_launch import start_child_then_wait
        launch(start_child_then_wait, world_size=2, args=({str(tmp_path)!r},), timeout_s=300)
    """)
    own_tmp = tmp_path / "tmp"
    own_tmp.mkdir()
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=os.path.dirname(os.path.dirname(__file__)),
                              env={**os.environ, "TMPDIR": str(own_tmp)})
    try:
        _wait_for_files(tmp_path, ["pid0", "pid1", "child"])
        deadline = time.monotonic() + 10
        while not (tmp_path / "child").read_text() and time.monotonic() < deadline:  # written just after it appears
            time.sleep(0.1)
    finally:
        parent.kill()  # SIGKILL: only the ranks' watch can stop the ranks, and through their groups, the child
        parent.wait()
    pids = [int((tmp_path / name).read_text()) for name in ("pid0", "pid1", "child")]
    deadline = time.monotonic() + 15
    while any(process_exists(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(process_exists(pid) for pid in pids), "a rank or the process it started outlived the killed launcher"
