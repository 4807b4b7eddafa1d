"""The worker processes behind :func:`~course_utils.parallel.launch.launch`: how a rank detaches from its launcher
and watches it, where a rank's output goes, and how the launcher stops ranks and everything they started.

- A rank leads its own POSIX process group (``os.setsid``), so one ``os.killpg`` stops it and every process it
  started (DataLoader workers, a shell command); a daemon thread ends the rank's group when its parent dies.
- A rank's file descriptors 1 and 2 go to ``rank{r}.log``, so what C++ prints before an abort (``terminate called
  ...``) is kept, with the Python stacks :mod:`faulthandler` prints (also on SIGUSR1, for a hung rank); the launcher
  quotes its tail in an error and, while the ranks run, copies it to its own stdout line by line with ``[rank r]``,
  as ``torchrun --tee`` does.
  The watch is :mod:`course_utils.parent_watch`'s, which also ends the scaling sweep's pool workers.
Left out: Windows has no process groups and does not re-parent orphans, so there only the ranks themselves are
stopped and a rank whose launcher died is not noticed.
"""

from __future__ import annotations

import codecs
import ctypes
import faulthandler
import os
import signal
import sys
import time
from pathlib import Path

from course_utils.parent_watch import PROCESS_GROUPS, watch_parent

LOG_TAIL_CHARS = 8000  # how much of a failed rank's output its WorkerError quotes (faulthandler's dump is long)


def detach_and_watch_parent(parent_pid: int | None = None) -> None:
    """Put this rank in its own process group (so the launcher can stop it *and* its children with one
    ``os.killpg``) and start the thread that ends it if the launcher dies."""
    if PROCESS_GROUPS:
        os.setsid()
    watch_parent(parent_pid, whole_group=True)  # parent_pid: the launcher's pid, as it passed it


def capture_output(log_path: Path) -> None:
    """Point this process's file descriptors 1 and 2 (stdout and stderr of Python and of C++ alike) at ``log_path``,
    so the parent can report what a rank printed, including the message of a C++ abort."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    faulthandler.enable(all_threads=True)  # a crash in C++ (SIGABRT, SIGSEGV) also prints the Python stacks
    if hasattr(signal, "SIGUSR1"):  # POSIX: the launcher asks a hung rank where it waits
        faulthandler.register(signal.SIGUSR1, all_threads=True)


def flush_output() -> None:
    """Flush Python's stdout and stderr and C's stdio buffers (``fflush(NULL)``, POSIX), before a rank reports a
    result or ends with ``os._exit``, which flushes nothing."""
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        try:
            ctypes.CDLL(None).fflush(None)
        except (OSError, AttributeError):
            pass


def read_output(out: Path, rank: int, tail_chars: int | None = None) -> str:
    """What rank ``rank`` printed (the last ``tail_chars`` characters when given); empty if nothing or no log."""
    try:
        text = (out / f"rank{rank}.log").read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return (text[-tail_chars:] if tail_chars else text).strip()


def signal_group(pid: int, sig: int) -> None:
    """Send ``sig`` to the process group a rank leads (the rank and every process it started); a group that no longer
    exists is fine. Without process groups (Windows) this does nothing: the rank itself is stopped by ``kill()``."""
    if not PROCESS_GROUPS:
        return
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def clear_exited_groups(processes: list, cleared: set) -> None:
    """SIGKILL what a rank left behind in its process group, once, as soon as the rank is seen to have exited.
    Seeing the exit reaps the rank, which frees its pid; the group id stays reserved only while a member (a child
    the rank left) lives. Killing the group within one polling interval, not minutes later, leaves the kernel no
    realistic chance to hand that pid (after wrapping around the whole pid space) to an unrelated process group,
    which a late ``killpg`` could then hit."""
    for p in processes:
        if p.pid is not None and p.pid not in cleared and p.exitcode is not None:
            signal_group(p.pid, getattr(signal, "SIGKILL", signal.SIGTERM))
            cleared.add(p.pid)


def stop_ranks(processes: list, cleared: set) -> None:
    """Stop every rank's process group (SIGTERM, then SIGKILL after 2 s) and reap the ranks, so no rank and no
    process a rank started is left behind (:func:`clear_exited_groups` for the groups of ranks that exited)."""
    processes = [p for p in processes if p.pid is not None]  # a start() that failed left nothing to stop
    clear_exited_groups(processes, cleared)
    for p in processes:
        if p.pid not in cleared:
            signal_group(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + 2.0
    for p in processes:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()
        clear_exited_groups([p], cleared)  # reaped just now: its children, if any, go too


class OutputFollower:
    """Copy what the ranks print to this process's stdout while they run (in a notebook: live, under the cell), each
    complete line prefixed with ``[rank r]``, as ``torchrun --tee`` does. A progress bar's carriage returns keep only
    the line's last state."""

    def __init__(self, out: Path, world_size: int) -> None:
        self.paths = [out / f"rank{rank}.log" for rank in range(world_size)]
        self.offsets = [0] * world_size
        self.partial = [""] * world_size
        # one decoder per rank: a UTF-8 character split across two reads is decoded whole
        self.decoders = [codecs.getincrementaldecoder("utf-8")(errors="replace") for _ in range(world_size)]

    def poll(self, final: bool = False) -> None:
        """Copy the complete lines printed since the last call (``final``: the unfinished last line too)."""
        for rank, path in enumerate(self.paths):
            try:
                with open(path, "rb") as f:
                    f.seek(self.offsets[rank])
                    data = f.read()
            except FileNotFoundError:
                continue
            self.offsets[rank] += len(data)
            decoded = self.decoders[rank].decode(data, final=final)
            *lines, self.partial[rank] = (self.partial[rank] + decoded).split("\n")
            if final and self.partial[rank]:
                lines, self.partial[rank] = lines + [self.partial[rank]], ""
            text = "".join(f"[rank {rank}] {line.rstrip().rsplit(chr(13), 1)[-1]}\n" for line in lines)
            if text:
                sys.stdout.write(text)
                sys.stdout.flush()
