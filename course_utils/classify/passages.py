"""Shakespeare's labelled plays cut into short passages, and the two ways to split them: by play, and (leakily) by
passage.

Cutting (:func:`cut_passages`), deterministic and on line boundaries:

* everything before the first ``ACT``/``PROLOGUE``/``INDUCTION`` heading is skipped (title page, cast list, setting);
* act, scene, prologue and epilogue headings are dropped, and end the passage being built (a passage never spans
  two scenes);
* stage directions in square brackets are dropped, whole-line ones (which may run over several lines) and inline ones;
* a one-line block right after a heading (the scene's place, "The same. A public place.") is dropped;
* speaker headings (the short first line of a speech, "MACBETH." or "Lear.", and the capitals that open a line
  such as "CYMBELINE. Thou foolish thing!") are dropped unless ``speakers=True``: a name such as "KING HENRY." would
  give the genre away without the model reading the verse;
* the remaining lines are packed greedily into passages of at most ``max_chars`` characters (a longer single line
  stands alone), and passages shorter than ``min_chars`` (the scraps at scene ends) are dropped.

:func:`speaker_headings` returns the speaker headings the passages drop, for checking which characters' names two
plays share (a name can still appear inside the verse: "Clarence" in *Richard III* and in *Henry VI, Part 3*).

Splitting: :func:`split_by_play` holds out whole plays, chosen per genre with a seeded generator so that both sides
have every genre (stratified); :func:`split_by_passage` shuffles passages regardless of play, so neighbouring lines of
one scene land on both sides -- the leak the chapter measures. :func:`check_no_shared_plays` is the guard a by-play
experiment should call.

Left out: sentence-level cutting, token-count budgets (characters are used; SmolLM2 reads about 3.5 characters
per token of this text), the First Folio spellings, de-duplication of repeated lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from course_utils.arguments import check_int, check_real
from course_utils.classify.genres import GENRES, labelled_works
from course_utils.device import make_generator
from course_utils.text.corpus import load_work

_START = re.compile(r"^\s*(ACT|Act|PROLOGUE|Prologue|INDUCTION|Induction)\b")
_HEADING = re.compile(r"^\s*(ACT|Act|SCENE|Scene|PROLOGUE|Prologue|EPILOGUE|Epilogue|INDUCTION|Induction)\b")
_INLINE_DIRECTION = re.compile(r"\[[^\]]*\]")
# a speaker heading on the same line as the speech ("CYMBELINE. Thou foolish thing!", 45 lines of the labelled plays)
_INLINE_SPEAKER = re.compile(r"^[A-Z][A-Z'\-]+(?: [A-Z][A-Z'\-]+)*\.\s+(?=\S)")
_NAME_WORDS = {"of", "and", "the", "de", "la", "le", "du", "to"}


@dataclass(frozen=True)
class Passage:
    work: str  # key of the play (course_utils.text.corpus.list_works)
    genre: str  # its Folio genre (course_utils.classify.genres)
    index: int  # position of the passage within the play, from 0
    line: int  # line number (from 0) in the play's file where the passage starts
    text: str


@dataclass(frozen=True)
class PassageSplit:
    train: list[Passage]
    test: list[Passage]
    kind: str  # "by play" or "by passage"

    def describe(self) -> str:
        def side(ps):
            counts = {g: sum(p.genre == g for p in ps) for g in GENRES}
            return f"{len(ps)} passages from {len({p.work for p in ps})} plays {counts}"
        return f"split {self.kind}: train {side(self.train)} | test {side(self.test)}"


def _is_speaker(line: str, block_has_more: bool) -> bool:
    """A speaker heading: short and all capitals ("FIRST WITCH"), or a capitalised name ending in a full stop that
    opens a block of more lines ("Lear.", "1 Clown.", "Antipholus of Syracuse.")."""
    line = line.strip()
    words = line.rstrip(".").split()
    if not words or len(line) > 40:
        return False
    name_like = all(w[0].isupper() or w[0].isdigit() or w in _NAME_WORDS for w in words)
    return line.isupper() or (block_has_more and line.endswith(".") and name_like)


def _speech_lines(text: str, speakers: bool) -> list[tuple[int, str | None]]:
    """(line number, speech line) for the body of a play; ``None`` marks a heading (a passage boundary)."""
    lines = text.split("\n")
    start = next((i for i, line in enumerate(lines) if _START.match(line)), None)
    if start is None:
        raise ValueError("no ACT/PROLOGUE/INDUCTION heading found: is this the text of a play?")
    out, in_direction, after_gap = [], False, True  # after_gap: the previous line was blank or dropped
    after_heading = False  # a one-line block right after a heading is the scene's place ("Rome. A street.")
    for number in range(start, len(lines)):
        line = lines[number]
        if in_direction or line.lstrip().startswith("["):
            in_direction, after_gap = "]" not in line, True
            continue
        if _HEADING.match(line):
            out.append((number, None))
            after_gap = after_heading = True
            continue
        stripped = _INLINE_DIRECTION.sub("", line).strip()
        if not stripped:
            after_gap = True
            continue
        block_has_more = number + 1 < len(lines) and bool(lines[number + 1].strip())
        if after_heading and after_gap and not block_has_more:
            after_heading = False
            continue
        after_heading = False
        speaker = after_gap and _is_speaker(stripped, block_has_more)
        after_gap = False
        if speaker and not speakers:
            continue
        if not speakers:
            stripped = _INLINE_SPEAKER.sub("", stripped)
        out.append((number, stripped))
    return out


def cut_passages(text: str, max_chars: int = 400, min_chars: int | None = None,
                 speakers: bool = False) -> list[tuple[int, str]]:
    """(starting line number, passage text) for one play's text, cut as the module docstring describes."""
    max_chars = check_int(max_chars, "max_chars", minimum=20)  # numpy ints too (and min_chars)
    min_chars = max_chars // 2 if min_chars is None else min_chars
    min_chars = check_int(min_chars, "min_chars", minimum=1, maximum=max_chars,
                          allowed=f"an int in [1, max_chars={max_chars}]")
    passages, current, first = [], [], None

    def flush():
        body = "\n".join(current)
        if current and len(body) >= min_chars:
            passages.append((first, body))
        current.clear()

    for number, line in _speech_lines(text, speakers):
        if line is None or (current and len("\n".join(current)) + 1 + len(line) > max_chars):
            flush()
        if line is not None:
            if not current:
                first = number
            current.append(line)
    flush()
    return passages


def speaker_headings(text: str) -> list[str]:
    """The speaker headings of one play's text ("MACBETH.", "Lear."), in order: the lines :func:`cut_passages` drops
    as speaker names and the headings it cuts from the start of a speech line ("CYMBELINE." of "CYMBELINE. Thou
    foolish thing!"), all of which it keeps with ``speakers=True``."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a play's text (a string), got {type(text).__name__}")
    kept = {number for number, line in _speech_lines(text, speakers=False) if line is not None}
    headings = []
    for number, line in _speech_lines(text, speakers=True):
        if line is None:
            continue
        if number not in kept:  # a whole line dropped as a speaker heading
            headings.append(line)
        elif inline := _INLINE_SPEAKER.match(line):  # a heading cut from the start of a kept line
            headings.append(inline.group().strip())
    return headings


def make_passages(works: dict[str, str] | None = None, max_chars: int = 400, min_chars: int | None = None,
                  speakers: bool = False) -> list[Passage]:
    """Passages of every work in ``works`` (key -> genre; default: all Folio-labelled plays), in key order."""
    works = labelled_works() if works is None else works
    if not works:
        raise ValueError("works is empty: pass a {work key: genre} dict with at least one play")
    bad = {w: g for w, g in works.items() if g not in GENRES}
    if bad:
        raise ValueError(f"genres must be among {GENRES}, got {bad}")
    passages = []
    for work in sorted(works):
        cut = cut_passages(load_work(work), max_chars, min_chars, speakers)
        passages += [Passage(work, works[work], i, line, text) for i, (line, text) in enumerate(cut)]
    return passages


def _check_passages(passages: object) -> None:
    if not isinstance(passages, (list, tuple)) or not all(isinstance(p, Passage) for p in passages):
        raise TypeError("passages must be a list of Passage (make_passages())")
    if not passages:
        raise ValueError("passages is empty: nothing to split")
    unknown = sorted({p.genre for p in passages} - set(GENRES))
    if unknown:
        raise ValueError(f"passages carry genres {unknown}; allowed: {GENRES}")


def _permuted(items: list, generator: torch.Generator) -> list:
    return [items[i] for i in torch.randperm(len(items), generator=generator).tolist()]


def _n_test(n: int, test_fraction: float) -> int:
    return min(n - 1, max(1, round(n * test_fraction)))


def check_no_shared_plays(train: list[Passage], test: list[Passage]) -> None:
    """Raise ``ValueError`` if any play has passages on both sides (a by-play split that leaks)."""
    shared = sorted({p.work for p in train} & {p.work for p in test})
    if shared:
        raise ValueError(f"{len(shared)} plays appear in both train and test: {shared[:5]}; split by play "
                         f"(split_by_play) so that no play is on both sides")


def split_by_play(passages: list[Passage], test_fraction: float = 0.3, seed: int = 0) -> PassageSplit:
    """Hold out whole plays: per genre, ``round(n * test_fraction)`` of its n plays (at least 1, at most n - 1) go to
    test, chosen by a generator seeded with ``seed``. Every genre present needs at least two plays."""
    _check_passages(passages)
    test_fraction = check_real(test_fraction, "test_fraction", minimum=0, maximum=1, low_open=True, high_open=True,
                               allowed="a float in (0, 1)")
    genre_of = {p.work: p.genre for p in passages}
    generator = make_generator(seed, "cpu")  # checks seed: 2.5 or None failed in manual_seed
    test_works = set()
    for genre in GENRES:
        plays = sorted(w for w, g in genre_of.items() if g == genre)
        if len(plays) == 1:
            raise ValueError(f"genre {genre!r} has one play ({plays[0]}): a by-play split needs at least two")
        if plays:
            test_works |= set(_permuted(plays, generator)[:_n_test(len(plays), test_fraction)])
    train = [p for p in passages if p.work not in test_works]
    test = [p for p in passages if p.work in test_works]
    check_no_shared_plays(train, test)
    return PassageSplit(train, test, "by play")


def split_by_passage(passages: list[Passage], test_fraction: float = 0.3, seed: int = 0) -> PassageSplit:
    """The leaky split: per genre, a seeded random ``test_fraction`` of its passages goes to test, whatever the play,
    so train and test share plays (and scenes, characters, names). For the leakage experiment only."""
    _check_passages(passages)
    test_fraction = check_real(test_fraction, "test_fraction", minimum=0, maximum=1, low_open=True, high_open=True,
                               allowed="a float in (0, 1)")
    generator = make_generator(seed, "cpu")  # checks seed: 2.5 or None failed in manual_seed
    test_ids = set()
    for genre in GENRES:
        ids = [i for i, p in enumerate(passages) if p.genre == genre]
        if len(ids) == 1:
            raise ValueError(f"genre {genre!r} has one passage: cannot put it on both sides")
        if ids:
            test_ids |= set(_permuted(ids, generator)[:_n_test(len(ids), test_fraction)])
    train = [p for i, p in enumerate(passages) if i not in test_ids]
    test = [p for i, p in enumerate(passages) if i in test_ids]
    return PassageSplit(train, test, "by passage")


def sample_per_genre(passages: list[Passage], per_genre: int, seed: int = 0) -> list[Passage]:
    """A seeded, class-balanced subsample: up to ``per_genre`` passages of each genre, returned in input order (the
    smoke and cpu profiles score a few hundred passages, not thousands)."""
    _check_passages(passages)
    per_genre = check_int(per_genre, "per_genre", minimum=1, allowed="a positive int")
    generator = make_generator(seed, "cpu")  # checks seed: 2.5 or None failed in manual_seed
    keep = set()
    for genre in GENRES:
        ids = [i for i, p in enumerate(passages) if p.genre == genre]
        keep |= set(_permuted(ids, generator)[:per_genre])
    return [p for i, p in enumerate(passages) if i in keep]
