"""Passages: cut on line boundaries without front matter, headings, directions or speaker names; deterministic;
splits by play are stratified and disjoint, the by-passage split shares plays; bad input raises."""

import re

import numpy as np
import pytest

from course_utils.classify.genres import GENRES
from course_utils.classify.passages import (Passage, check_no_shared_plays, cut_passages, make_passages,
                                            sample_per_genre, speaker_headings, split_by_passage, split_by_play)

PLAY = """THE TRAGEDY OF NOBODY

by William Shakespeare

Persons Represented

ALPHA, a king.
Beta, his fool.

ACT I.

SCENE I. A heath.

[Enter ALPHA and Beta, with
attendants.]

ALPHA.
Now is the winter of our discontent [Aside.]
Made glorious summer by this sun of York.

Beta.
And all the clouds that lour'd upon our house
In the deep bosom of the ocean buried.

[Exeunt.]

SCENE II.

Another part of the heath.

ALPHA.
Short.
"""


def test_cut_keeps_speech_lines_only_and_breaks_at_scenes():
    cut = cut_passages(PLAY, max_chars=200, min_chars=1)
    assert [text for _, text in cut] == [
        "Now is the winter of our discontent\nMade glorious summer by this sun of York.\n"
        "And all the clouds that lour'd upon our house\nIn the deep bosom of the ocean buried.",
        "Short."]
    lines = PLAY.split("\n")
    assert lines[cut[0][0]].startswith("Now is the winter")  # the line number points at the passage's first line
    with_names = cut_passages(PLAY, max_chars=200, min_chars=1, speakers=True)
    assert with_names[0][1].startswith("ALPHA.\nNow is") and "\nBeta.\nAnd all" in with_names[0][1]


PLAY_2 = """THE COMEDY OF TWO

Persons Represented

PROLOGUE.

CHORUS.
Two houses, both alike in dignity,
In fair Verona, where we lay our scene.

ACT I.

SCENE I. A street.

ANTIPHOLUS OF SYRACUSE.
I to the world am like a drop of water
[Enter a Messenger, running,
with letters.]
That in the ocean seeks another drop.

1 Clown.
A fool, a fool, I met a fool.
[Exit.]
Farewell.

Antipholus of Ephesus.
What is your will?
"""


def test_prologues_long_and_numbered_speakers_and_directions_inside_a_speech():
    cut = cut_passages(PLAY_2, max_chars=400, min_chars=1)
    prologue = "Two houses, both alike in dignity,\nIn fair Verona, where we lay our scene."
    assert [text for _, text in cut] == [  # the prologue counts; "Farewell." alone after a direction is verse
        prologue, "I to the world am like a drop of water\nThat in the ocean seeks another drop.\n"
                  "A fool, a fool, I met a fool.\nFarewell.\nWhat is your will?"]
    assert PLAY_2.split("\n")[cut[0][0]] == "Two houses, both alike in dignity,"
    assert speaker_headings(PLAY_2) == ["CHORUS.", "ANTIPHOLUS OF SYRACUSE.", "1 Clown.", "Antipholus of Ephesus."]
    assert cut_passages(PLAY_2, max_chars=400, min_chars=len(prologue))[0][1] == prologue  # min_chars is inclusive


def test_speaker_headings_are_the_lines_the_passages_drop():
    assert speaker_headings(PLAY) == ["ALPHA.", "Beta.", "ALPHA."]  # not the cast list, headings or directions
    with pytest.raises(TypeError, match="string"):
        speaker_headings(None)


def test_a_heading_on_the_speech_line_is_cut_off_and_listed():  # "CYMBELINE. Thou foolish thing!" in the plays
    play = ("ACT I\n\nSCENE 1. A place.\n\nCYMBELINE. Thou foolish thing!\nNo more, O. K. said.\n\n"
            "FIRST LORD. Away.\n\nQUEEN.\nO, content thee.\n")
    speech = "Thou foolish thing!\nNo more, O. K. said.\nAway.\nO, content thee."
    assert cut_passages(play, min_chars=1) == [(4, speech)]
    assert speaker_headings(play) == ["CYMBELINE.", "FIRST LORD.", "QUEEN."]
    kept = cut_passages(play, min_chars=1, speakers=True)[0][1]
    assert kept.startswith("CYMBELINE. Thou foolish thing!") and "FIRST LORD. Away." in kept


def test_cut_respects_max_and_min_chars():
    cut = cut_passages(PLAY, max_chars=90, min_chars=1)
    assert all(len(text) <= 90 for _, text in cut) and len(cut) == 3
    assert [text for _, text in cut_passages(PLAY, max_chars=200)] == [cut_passages(PLAY, 200, 1)[0][1]]  # min 100
    with pytest.raises(ValueError, match="max_chars"):
        cut_passages(PLAY, max_chars=5)
    with pytest.raises(ValueError, match="min_chars"):
        cut_passages(PLAY, max_chars=100, min_chars=101)
    with pytest.raises(ValueError, match="ACT"):
        cut_passages("no play here")


@pytest.fixture(scope="module")
def passages():
    return make_passages(max_chars=300)


def test_real_passages_are_clean_and_deterministic(passages):
    assert {p.genre for p in passages} == set(GENRES) and len({p.work for p in passages}) == 35
    assert all(150 <= len(p.text) <= 300 or "\n" not in p.text for p in passages)
    assert not any(line.startswith(("[", "ACT", "SCENE", "Persons")) for p in passages for line in
                   p.text.split("\n"))
    assert not any("by William Shakespeare" in p.text for p in passages)
    assert not any(re.match(r"[A-Z][A-Z'-]+( [A-Z][A-Z'-]+)*\.\s", line) for p in passages  # no "QUEEN. O, ..."
                   for line in p.text.split("\n"))
    assert make_passages({"macbeth": "tragedy"}, max_chars=300) == [p for p in passages if p.work == "macbeth"]
    macbeth = [p for p in passages if p.work == "macbeth"]
    assert [p.index for p in macbeth] == list(range(len(macbeth)))  # numbered within the play from 0
    assert make_passages({"tempest": "comedy", "john": "history"}, max_chars=300)[0].work == "john"  # key order


def test_split_by_play_is_stratified_disjoint_and_seeded(passages):
    split = split_by_play(passages, test_fraction=0.3, seed=1)
    train_works, test_works = {p.work for p in split.train}, {p.work for p in split.test}
    assert not train_works & test_works and len(split.train) + len(split.test) == len(passages)
    assert {p.genre for p in split.train} == {p.genre for p in split.test} == set(GENRES)
    assert len(test_works) == 4 + 3 + 3  # round(0.3 * 14) + round(0.3 * 10) + round(0.3 * 11)
    assert split_by_play(passages, 0.3, seed=1) == split
    assert split_by_play(passages, 0.3, seed=2) != split
    assert "by play" in split.describe()


def test_split_by_passage_leaks_plays(passages):
    split = split_by_passage(passages, test_fraction=0.3, seed=0)
    assert len({p.work for p in split.train} & {p.work for p in split.test}) == 35
    assert {p.genre for p in split.test} == set(GENRES)
    with pytest.raises(ValueError, match="both train and test"):
        check_no_shared_plays(split.train, split.test)


def test_sample_per_genre_is_balanced_and_seeded(passages):
    sample = sample_per_genre(passages, 7, seed=3)
    assert {g: sum(p.genre == g for p in sample) for g in GENRES} == {g: 7 for g in GENRES}
    assert sample == sample_per_genre(passages, 7, seed=3) != sample_per_genre(passages, 7, seed=4)


def test_small_fractions_still_hold_out_a_play_per_genre_and_splits_ignore_the_global_rng():
    import torch

    pool = [Passage(f"{g}_{i}", g, j, 0, f"text {j}") for g in GENRES for i in range(3) for j in range(4)]
    split = split_by_play(pool, test_fraction=0.01, seed=0)
    assert sorted(p.genre for p in split.test if p.index == 0) == sorted(GENRES)  # one play of each genre
    torch.manual_seed(0)
    first = split_by_passage(pool, test_fraction=0.3, seed=5)
    torch.manual_seed(1)
    assert split_by_passage(pool, test_fraction=0.3, seed=5) == first


def test_bad_split_input_raises():
    one = Passage("macbeth", "tragedy", 0, 0, "text")
    with pytest.raises(ValueError, match="empty"):
        split_by_play([])
    with pytest.raises(ValueError, match="empty"):
        make_passages({})
    with pytest.raises(ValueError, match="genres"):
        make_passages({"macbeth": "romance"})
    with pytest.raises(ValueError, match="at least two"):
        split_by_play([one, Passage("hamlet", "tragedy", 0, 0, "t"), Passage("john", "history", 0, 0, "t")])
    with pytest.raises(ValueError, match="test_fraction"):
        split_by_play([one], test_fraction=1.0)
    with pytest.raises(TypeError, match="Passage"):
        split_by_passage(["text"])
    with pytest.raises(ValueError, match="romance"):
        split_by_passage([one, Passage("tempest", "romance", 0, 0, "t")])


def test_split_and_sample_seeds_are_checked_and_numpy_counts_accepted():
    pool = [Passage(f"w{i % 4}{g}", g, i, 0, "t") for g in GENRES for i in range(8)]
    for bad in (2.5, None, True, float("nan")):  # RuntimeError: manual_seed expected a long, but got float
        for call in (lambda: split_by_play(pool, 0.5, seed=bad), lambda: split_by_passage(pool, 0.5, seed=bad),
                     lambda: sample_per_genre(pool, 2, seed=bad)):
            with pytest.raises(ValueError, match="seed must be a non-negative int"):
                call()
    assert split_by_play(pool, 0.5, seed=np.int64(3)) == split_by_play(pool, 0.5, seed=3)  # TypeError before
    assert sample_per_genre(pool, np.int64(2), seed=np.int64(1)) == sample_per_genre(pool, 2, seed=1)


def test_numpy_sizes_and_fractions_give_the_same_passages_and_splits(passages):
    assert make_passages({"macbeth": "tragedy"}, max_chars=np.int64(300), min_chars=np.int32(100)) == \
        make_passages({"macbeth": "tragedy"}, max_chars=300, min_chars=100)
    for split in (split_by_play, split_by_passage):
        assert split(passages, np.float32(0.25), seed=np.int64(1)) == split(passages, 0.25, seed=1)
        for bad in (True, np.float32(np.nan), np.int64(1)):
            with pytest.raises(ValueError, match=r"test_fraction must be a float in \(0, 1\)"):
                split(passages, bad)
    with pytest.raises(ValueError, match="max_chars must be an int >= 20"):
        cut_passages("x", max_chars=np.float64(300.0))
