"""course_utils.parallel.processes: the follower that copies the ranks' logs to the caller while they run
(the rest of the module, process groups and the parent watch, is tested through launch in test_parallel_launch)."""

from course_utils.parallel.processes import OutputFollower, read_output


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


def test_read_output_returns_the_tail_or_nothing(tmp_path):
    assert read_output(tmp_path, 0) == ""
    (tmp_path / "rank0.log").write_text("first\nsecond\n")
    assert read_output(tmp_path, 0) == "first\nsecond"
    assert read_output(tmp_path, 0, tail_chars=7) == "second"
