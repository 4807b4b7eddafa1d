"""Tokenizer files and vocabulary tables: our checksummed merge files refuse every kind of wrong file, tiktoken rank
files are read strictly, and a vocabulary given as {id: bytes} (with its special tokens) is checked."""

import base64
import json

import pytest

from course_utils.text.bpe.vocab_files import load_merges, load_tiktoken_ranks, save_merges, special_ids, vocab_list


def test_merge_file_round_trip_and_refusals(tmp_path):
    path = save_merges(tmp_path / "sub" / "tok.json", r"\S+", ["<s>"], [(97, 98), (256, 99)])
    assert load_merges(path) == (r"\S+", ["<s>"], [(97, 98), (256, 99)])
    assert [p.name for p in path.parent.iterdir()] == ["tok.json"]  # no temporary file left behind
    record = json.loads(path.read_text())
    for name, change, match in [
        ("version", {"version": 2}, "format version 2"),
        ("old", {"version": 0}, "format version 0"),
        ("format", {"format": "other-bpe"}, "is not a course-utils-bpe file"),
        ("field", {"sha256": None}, r"lacks the field\(s\) \['sha256'\]"),
    ]:
        edited = {k: v for k, v in {**record, **change}.items() if v is not None}
        bad = tmp_path / f"{name}.json"
        bad.write_text(json.dumps(edited))
        with pytest.raises(ValueError, match=match):
            load_merges(bad)


def rank_line(token: bytes, rank: int) -> str:
    return f"{base64.b64encode(token).decode()} {rank}\n"


def test_rank_files_are_read_strictly(tmp_path):
    path = tmp_path / "ok.tiktoken"
    path.write_text(rank_line(b"a", 0) + "\n" + rank_line(b"ab", 1))  # a blank line is skipped
    assert load_tiktoken_ranks(path) == {b"a": 0, b"ab": 1}
    for name, text, match in [
        ("twice", rank_line(b"a", 0) + rank_line(b"a", 1), "line 2: token b'a' appears twice"),
        ("junk", rank_line(b"a", 0) + "QUJD!! 1\n", "line 2"),  # base64 of b"ABC" with junk: not skipped silently
        ("empty", "\n\n", "holds no ranks"),
    ]:
        bad = tmp_path / f"{name}.tiktoken"
        bad.write_text(text)
        with pytest.raises(ValueError, match=match):
            load_tiktoken_ranks(bad)


def test_vocab_list_checks_ids_and_tokens():
    assert vocab_list({2: b"b", 0: b"a"}) == [b"a", None, b"b"]
    for bad in ({-1: b"x", 0: b"a"}, {0: b""}, {0: "a"}):
        with pytest.raises(ValueError, match="int id >= 0 -> non-empty bytes"):
            vocab_list(bad)


def test_special_ids_reuse_append_or_refuse():
    table = [b"a", b"<s>"]
    assert special_ids(["<s>", "<t>"], table, {b"a": 0, b"<s>": 1}) == {"<s>": 1, "<t>": 2}  # reused, appended
    assert table == [b"a", b"<s>", b"<t>"]
    table = [b"a", None]
    assert special_ids({"<s>": 3, "<t>": 1}, table, {}) == {"<s>": 3, "<t>": 1}  # given ids, table grown
    assert table == [b"a", b"<t>", None, b"<s>"]
    assert special_ids({"<t>": 1}, table, {}) == {"<t>": 1}  # the id already holds these bytes: fine
    with pytest.raises(ValueError, match="which is already the token b'a'"):
        special_ids({"<s>": 0}, [b"a"], {})
    with pytest.raises(ValueError, match="needs an int id >= 0"):
        special_ids({"<s>": -1}, [b"a"], {})
