"""Run one function on ``world_size`` worker processes with ``torch.distributed`` initialised, and always clean up.

This is the course's stand-in for ``torchrun``: :func:`launch` spawns one process per rank (the *spawn* start method,
so it works from a Jupyter kernel, whose ``__main__`` cannot be forked safely), points them at a rendezvous on
``MASTER_ADDR=127.0.0.1`` and a free port, initialises the process group (``gloo`` on CPU, ``nccl`` when the ranks
use CUDA devices), calls ``fn(ctx, *args)`` on every rank and returns the ranks' return values, in rank order.
Results travel back through files written to a temporary name and renamed (``os.replace`` is atomic), so a rank
that dies half-way never leaves a half-written result.

``fn`` and ``args`` are pickled once, in the caller (:mod:`course_utils.parallel.payload`): a class or function
defined in a notebook, which a fresh process cannot import, is refused before any rank starts. The pickle goes to a
file in the launch's temporary folder (written atomically), and each rank reads it from there: only its path crosses
the *spawn* pipe. CPython writes a spawned process's start-up data into that pipe while keeping the pipe's read end
open until the write ends, so a payload larger than the pipe's buffer (64 KiB on Linux) sent that way would block
``Process.start()`` forever if the rank died during start-up (killed, or failing to import), before any timeout.

Failure is the normal case to design for. The parent polls its children until every rank has finished, and:
- a rank that raises: :class:`WorkerError` naming the rank, the exception and its traceback text;
- a rank killed by a signal (or exiting without a result): :class:`WorkerError` naming the rank and the signal;
- a hang (one rank waiting in a collective the other never joins): ``TimeoutError`` after ``timeout_s``.
In every case (and on a ``KeyboardInterrupt`` in the caller, e.g. a notebook's interrupt button) the ranks are
stopped (SIGTERM, then SIGKILL) and joined, so no process is left behind, and each worker destroys its process group
in a ``finally`` block. A rank's stdout and stderr, C++'s included, go to a log file that the launcher copies to its
own stdout as the ranks run, each line prefixed with ``[rank r]``; a :class:`WorkerError` quotes the end of the
failed rank's log, so a rank that aborts in C++ (``terminate called ...``) still says why, and where
(:mod:`faulthandler` prints the Python stack of every thread); a ``TimeoutError`` quotes where each hung rank waits
(POSIX: the launcher sends the rank SIGUSR1, and faulthandler prints its stacks). Each rank runs in its own process
group (``os.setsid``) and is stopped with ``os.killpg``, so processes a rank started itself (DataLoader workers, a
shell command) are stopped with it; and each rank watches its parent and exits if the parent dies (a crashed kernel
would otherwise leave ranks waiting forever). Process groups and that watch are POSIX (Linux, macOS): on Windows
only the ranks themselves are stopped, and a rank whose launcher died is not noticed (Windows does not re-parent it,
so ``os.getppid()`` never changes). The same collectives also time out inside the workers
(``init_process_group(timeout=...)``), a second line of defence.

A worker process imports torch afresh: start-up costs about 2-3 s per launch on the course machine (measured in
``benchmarks/bench_distributed.py``), so a notebook runs several experiments per launch rather than one each.
Left out: several nodes (``torchrun --nnodes`` does the rendezvous across machines), elastic restarts, and choosing
a port that can never race with another program (the port is free when picked, then bound by rank 0 a moment later).
"""

from __future__ import annotations

import datetime
import multiprocessing as mp
import os
import signal
import socket
import tempfile
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist

from course_utils.arguments import check_int, check_real
from course_utils.cache import atomic_file
from course_utils.parallel.payload import pickle_for_ranks, unpickle_in_rank
from course_utils.parallel.processes import (LOG_TAIL_CHARS, OutputFollower, capture_output, clear_exited_groups,
                                             detach_and_watch_parent, flush_output, read_output, stop_ranks)

BACKENDS = ("auto", "gloo", "nccl")
POLL_S = 0.05


class WorkerError(RuntimeError):
    """A rank failed: it raised (``traceback_text`` holds its traceback) or died (``exitcode`` < 0: killed by a
    signal). ``output_tail`` holds the end of what the rank printed (C++ included), also quoted in the message."""

    def __init__(self, rank: int, message: str, traceback_text: str = "", exitcode: int | None = None,
                 output_tail: str = "") -> None:
        super().__init__(f"rank {rank} {message}"
                         + (f"\n--- traceback of rank {rank} ---\n{traceback_text}" if traceback_text else "")
                         + (f"\n--- last output of rank {rank} ---\n{output_tail}" if output_tail else ""))
        self.rank, self.traceback_text, self.exitcode = rank, traceback_text, exitcode
        self.output_tail = output_tail


@dataclass(frozen=True)
class RankContext:
    """What a worker function is told about itself: its rank, the world size, the backend and its device."""

    rank: int
    world_size: int
    backend: str
    device: torch.device


def resolve_backend(backend: str, world_size: int) -> str:
    """``"auto"`` -> ``"nccl"`` when there is one CUDA device per rank, else ``"gloo"``; validate explicit choices."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    cuda_ranks = torch.cuda.is_available() and torch.cuda.device_count() >= world_size
    if backend == "auto":
        return "nccl" if cuda_ranks and dist.is_nccl_available() else "gloo"
    if backend == "nccl" and not (cuda_ranks and dist.is_nccl_available()):
        raise ValueError(f"backend 'nccl' needs one CUDA device per rank ({world_size}) and a torch built with NCCL; "
                         f"this machine has {torch.cuda.device_count() if torch.cuda.is_available() else 0} CUDA "
                         "devices; use backend='gloo' (CPU)")
    if backend == "gloo" and not dist.is_gloo_available():
        raise ValueError("this torch build has no gloo backend; use backend='nccl' on CUDA devices")
    return backend


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_atomically(path: Path, payload: Any, as_text: bool = False) -> None:
    """Write to a temporary name, then rename: the parent never sees a half-written file. Results always go through
    ``torch.save`` (whatever their type, a ``str`` included); ``as_text`` is for the ``.error`` report only."""
    tmp = path.with_suffix(".tmp")
    if as_text:
        tmp.write_text(payload)
    else:
        torch.save(payload, tmp)
    os.replace(tmp, path)


def _worker(payload: bytes | str, rank: int, world_size: int, backend: str, port: int, threads: int,
            timeout_s: float, out_dir: str, detach: bool = False, parent_pid: int | None = None) -> None:
    """Body of one spawned rank: rebuild ``fn`` and ``args`` from ``payload`` (:func:`pickle_for_ranks`'s bytes, or
    the path of a file holding them, as :func:`launch` passes; read here, after the log is open, so a class the rank
    cannot import is reported with its traceback), initialise the group, run ``fn``, write the result or the
    traceback, tear down.
    ``detach`` (set by :func:`launch`): own process group, parent watch, output to ``rank{r}.log``, and the end
    described below; off when a test calls it in-process.

    A detached rank ends with ``os._exit`` once its result (or error) is on disk, its process group destroyed and its
    output flushed: it skips the interpreter's teardown, where torch 2.13 after a gloo group sometimes aborts in C++
    ("terminate called without an active exception", no Python frame): 2 aborts in about 160 launches of chapter
    11's DDP worker on the 2-core course machine with both cores kept busy, each after the result was written;
    none in 120 such launches since. ``atexit`` handlers registered in a rank do not run."""
    out = Path(out_dir)
    if detach:
        detach_and_watch_parent(parent_pid)
        capture_output(out / f"rank{rank}.log")
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(threads)
    exit_code = 1  # until the result is on disk
    try:
        try:
            fn, args = unpickle_in_rank(Path(payload).read_bytes() if isinstance(payload, str) else payload)
            device = torch.device("cpu")
            if backend == "nccl":
                device = torch.device("cuda", rank)
                torch.cuda.set_device(device)
            dist.init_process_group(backend, rank=rank, world_size=world_size,
                                    timeout=datetime.timedelta(seconds=timeout_s))
            result = fn(RankContext(rank, world_size, backend, device), *args)
            flush_output()  # the parent reads the log as soon as the result appears
            _write_atomically(out / f"rank{rank}.result", result)
            exit_code = 0
        except BaseException as error:  # noqa: BLE001 -- every failure goes to the parent; the rank exits with 1
            flush_output()
            _write_atomically(out / f"rank{rank}.error",
                              f"{type(error).__name__}: {error}\n{traceback.format_exc()}", as_text=True)
        finally:
            if dist.is_initialized():
                dist.destroy_process_group()
            flush_output()
    except BaseException:  # noqa: BLE001 -- reporting or teardown failed: say it in the log the parent quotes
        traceback.print_exc()
        if not detach:
            raise
    finally:
        if detach:
            os._exit(exit_code)  # also when the teardown raised: the result, if any, is on disk
    if exit_code:
        raise SystemExit(exit_code)


@contextmanager
def _child_environment():
    """Children inherit the environment at start. ``TORCH_CPP_LOG_LEVEL=ERROR`` (unless set): without it, every
    rendezvous in a network namespace prints c10d's harmless "hostname of the client socket cannot be retrieved"
    into the notebook. ``PYTHONUNBUFFERED=1``: a rank's prints reach its log at once, so the last line before a crash
    is not lost in a buffer. Both restored afterwards."""
    wanted = {"TORCH_CPP_LOG_LEVEL": os.environ.get("TORCH_CPP_LOG_LEVEL") or "ERROR", "PYTHONUNBUFFERED": "1"}
    previous = {name: os.environ.get(name) for name in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


def _first_failure(processes: list, out: Path) -> WorkerError | None:
    """The root cause among failed ranks: a rank killed by a signal first (the others fail *because* it vanished),
    then the earliest traceback written, then a rank that exited without a result."""
    killed, raised, silent = [], [], []
    for rank, p in enumerate(processes):
        error_file = out / f"rank{rank}.error"
        if p.exitcode is not None and p.exitcode < 0:
            name = signal.Signals(-p.exitcode).name
            killed.append(WorkerError(rank, f"was killed by signal {name} (exit code {p.exitcode})",
                                      exitcode=p.exitcode, output_tail=read_output(out, rank, LOG_TAIL_CHARS)))
        elif error_file.exists():
            head, _, tb = error_file.read_text().partition("\n")
            raised.append((error_file.stat().st_mtime_ns, WorkerError(rank, f"raised {head}", tb, p.exitcode,
                                                                      read_output(out, rank, LOG_TAIL_CHARS))))
        elif p.exitcode not in (None, 0) or (p.exitcode == 0 and not (out / f"rank{rank}.result").exists()):
            silent.append(WorkerError(rank, f"exited with code {p.exitcode} without a result", exitcode=p.exitcode,
                                      output_tail=read_output(out, rank, LOG_TAIL_CHARS)))
    failures = killed + [e for _, e in sorted(raised, key=lambda pair: pair[0])] + silent
    return failures[0] if failures else None


def _where_they_wait(processes: list, ranks: list[int], out: Path) -> str:
    """Ask the hung ranks for their Python stacks (SIGUSR1 -> faulthandler, POSIX) and quote their logs' tails."""
    if not hasattr(signal, "SIGUSR1"):
        return ""
    for r in ranks:
        try:
            os.kill(processes[r].pid, signal.SIGUSR1)  # the rank only, not processes it started
        except ProcessLookupError:
            pass
    time.sleep(0.5)
    return "".join(f"\n--- last output of rank {r} ---\n{read_output(out, r, LOG_TAIL_CHARS)}" for r in ranks)


def hello_rank(ctx: RankContext, fail_rank: int | None = None) -> dict:
    """A first worker: report who this rank is, when it started running user code, and one all-reduce (the sum of
    the ranks, which every rank must agree on). ``fail_rank`` makes that rank raise first, to see a failure."""
    started = time.time()
    if ctx.rank == fail_rank:
        raise RuntimeError(f"rank {ctx.rank} was asked to fail before the all-reduce")
    total = torch.tensor([float(ctx.rank)], device=ctx.device)
    dist.all_reduce(total)  # sum over ranks: 0 + 1 + ... + (p - 1)
    return {"rank": ctx.rank, "world_size": ctx.world_size, "backend": ctx.backend, "pid": os.getpid(),
            "started": started, "sum_of_ranks": total.item()}


def launch(fn: Callable, world_size: int = 2, args: tuple = (), backend: str = "auto", timeout_s: float = 120.0,
           threads_per_rank: int = 1) -> list:
    """Run ``fn(ctx, *args)`` on ``world_size`` ranks; return the ranks' results in rank order.

    ``fn`` must be importable (a top-level function of a module), ``args`` picklable with no class or function
    defined in a notebook (checked before any rank starts), and the result picklable by ``torch.save`` (move CUDA
    tensors to the CPU). Raises :class:`WorkerError` if a rank raises or dies (during start-up too), ``TimeoutError``
    if the ranks have not all finished after ``timeout_s`` seconds (start-up included); no worker survives either.
    A rank ends with ``os._exit`` once its result is on disk (see :func:`_worker`): ``atexit`` handlers, non-daemon
    threads and files ``fn`` left open and unflushed in a rank are not finished for it; flush and close what you write.
    """
    world_size = check_int(world_size, "world_size", minimum=1, allowed="a positive int")
    timeout_s = check_real(timeout_s, "timeout_s", minimum=0, low_open=True, allowed="> 0 and finite")  # inf:
    # timedelta(seconds=inf) overflows in the ranks' init_process_group
    threads_per_rank = check_int(threads_per_rank, "threads_per_rank", minimum=1, allowed="a positive int")
    payload = pickle_for_ranks(fn, args)
    backend = resolve_backend(backend, world_size)
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="course-launch-") as tmp:
        out, port = Path(tmp), free_port()
        payload_path = out / "payload.pickle"  # only this path crosses the spawn pipe (see the module's docstring)
        with atomic_file(payload_path) as f:
            f.write(payload)
        processes = [ctx.Process(target=_worker, name=f"course-rank{rank}", daemon=True,
                                 args=(str(payload_path), rank, world_size, backend, port, threads_per_rank,
                                       timeout_s, tmp),
                                 kwargs={"detach": True, "parent_pid": os.getpid()})
                     for rank in range(world_size)]
        cleared: set = set()  # pids whose process group was already cleared after the rank exited
        follower = OutputFollower(out, world_size)
        try:
            with _child_environment():
                for p in processes:
                    p.start()
            deadline = time.monotonic() + timeout_s
            while any(p.exitcode is None for p in processes):
                follower.poll()
                clear_exited_groups(processes, cleared)
                failure = _first_failure(processes, out)
                if failure is not None:
                    raise failure
                if time.monotonic() > deadline:
                    alive = [r for r, p in enumerate(processes) if p.exitcode is None]
                    raise TimeoutError(f"ranks {alive} of {world_size} had not finished after {timeout_s:g} s "
                                       "(a rank waiting in a collective that another rank never joined?); "
                                       "all workers were stopped" + _where_they_wait(processes, alive, out))
                time.sleep(POLL_S)
            clear_exited_groups(processes, cleared)
            failure = _first_failure(processes, out)
            if failure is not None:
                raise failure
            return [torch.load(out / f"rank{r}.result", map_location="cpu", weights_only=False)
                    for r in range(world_size)]
        finally:
            stop_ranks(processes, cleared)
            try:
                follower.poll(final=True)
            except (OSError, ValueError):  # e.g. stdout closed: never hide the error or result above
                pass
