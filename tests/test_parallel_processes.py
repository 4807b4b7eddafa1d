"""course_utils.parallel.processes: the follower that copies the ranks' logs to the caller while they run, and the
order in which the launcher stops ranks (fake ranks here, their signals recorded; the process groups and the parent
watch with real processes are tested through launch in test_parallel_launch)."""

import signal

import pytest

from course_utils.parallel import processes
from course_utils.parallel.processes import OutputFollower, clear_exited_groups, read_output, stop_ranks


def test_the_follower_copies_complete_lines_with_their_rank_and_keeps_split_characters_whole(tmp_path, capsys):
    follower = OutputFollower(tmp_path, world_size=2)
    follower.poll()  # no log yet: nothing, no error
    encoded = "naïve start\nhalf a li".encode()
    cut = encoded.index("ï".encode()) + 1  # the first read ends inside the two bytes of "ï"
    (tmp_path / "rank1.log").write_bytes(encoded[:cut])
    follower.poll()
    assert capsys.readouterr().out == ""  # no complete line yet
    (tmp_path / "rank1.log").write_bytes(encoded)
    follower.poll()
    assert capsys.readouterr().out == "[rank 1] naïve start\n"
    with open(tmp_path / "rank1.log", "ab") as f:
        f.write("ne\n10%\r100%\nno newline at the end".encode())
    follower.poll(final=True)
    assert capsys.readouterr().out == "[rank 1] half a line\n[rank 1] 100%\n[rank 1] no newline at the end\n"
    follower.poll(final=True)
    assert capsys.readouterr().out == ""  # nothing is copied twice


def test_the_follower_drops_a_crlf_and_marks_a_character_cut_by_the_end_of_the_log(tmp_path, capsys):
    follower = OutputFollower(tmp_path, world_size=1)
    (tmp_path / "rank0.log").write_bytes(b"a line ended by CRLF\r\n" + "café".encode()[:-1])  # killed mid-"é"
    follower.poll(final=True)
    assert capsys.readouterr().out == "[rank 0] a line ended by CRLF\n[rank 0] caf\ufffd\n"


def test_read_output_returns_the_tail_or_nothing(tmp_path):
    assert read_output(tmp_path, 0) == ""
    (tmp_path / "rank0.log").write_text("first\nsecond\n")
    assert read_output(tmp_path, 0) == "first\nsecond"
    assert read_output(tmp_path, 0, tail_chars=7) == "second"


class FakeRank:
    """Stands in for a rank's ``multiprocessing.Process``: a SIGTERM to its group ends it unless it ignores SIGTERM;
    ``kill()`` always does. ``pid=None``: a rank whose start() failed."""

    def __init__(self, pid, exitcode=None, ignores_sigterm=False):
        self.pid, self.exitcode, self.ignores_sigterm = pid, exitcode, ignores_sigterm
        self.joins, self.killed = [], False

    def is_alive(self):
        return self.pid is not None and self.exitcode is None

    def join(self, timeout=None):
        assert self.pid is not None, "can only join a started process"
        assert self.exitcode is not None or timeout is not None, "joined a running rank without a timeout: hangs"
        self.joins.append(timeout)

    def kill(self):
        self.killed, self.exitcode = True, -signal.SIGKILL


class Groups:
    """Stands in for ``signal_group``: records each (pid, signal) sent; a SIGTERM ends the fake ranks in ``ranks``
    that do not ignore it."""

    def __init__(self):
        self.sent, self.ranks = [], {}

    def __call__(self, pid, sig):
        self.sent.append((pid, sig))
        rank = self.ranks.get(pid)
        if rank is not None and rank.exitcode is None and sig == signal.SIGTERM and not rank.ignores_sigterm:
            rank.exitcode = -signal.SIGTERM


@pytest.fixture
def groups(monkeypatch):
    stand_in = Groups()
    monkeypatch.setattr(processes, "signal_group", stand_in)
    return stand_in


def test_an_exited_ranks_group_is_killed_once_and_a_running_ranks_not_at_all(groups):
    running, exited, unstarted = FakeRank(101), FakeRank(102, exitcode=1), FakeRank(None)
    cleared = set()
    clear_exited_groups([running, exited, unstarted], cleared)
    clear_exited_groups([running, exited, unstarted], cleared)
    assert groups.sent == [(102, signal.SIGKILL)] and cleared == {102}  # SIGKILL: what it left may ignore SIGTERM
    running.exitcode = 0
    clear_exited_groups([running, exited, unstarted], cleared)
    assert groups.sent == [(102, signal.SIGKILL), (101, signal.SIGKILL)]


def test_stopping_sends_sigterm_then_kills_what_outlasts_it_and_clears_every_group(groups):
    polite, stubborn, exited, unstarted = FakeRank(201), FakeRank(202, ignores_sigterm=True), FakeRank(203, 0), \
        FakeRank(None)
    groups.ranks.update({rank.pid: rank for rank in (polite, stubborn, exited)})
    stop_ranks([polite, stubborn, exited, unstarted], set())
    assert groups.sent[:3] == [(203, signal.SIGKILL), (201, signal.SIGTERM), (202, signal.SIGTERM)]
    assert sorted(groups.sent[3:]) == [(201, signal.SIGKILL), (202, signal.SIGKILL)]  # once each rank is reaped
    assert not polite.killed and stubborn.killed and stubborn.exitcode == -signal.SIGKILL
    assert 1.0 < stubborn.joins[0] <= 2.0 and stubborn.joins[-1] is None  # a grace period, then kill and reap
    assert unstarted.joins == [] and all(pid is not None for pid, _ in groups.sent)

