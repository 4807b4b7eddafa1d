"""Checks for chapter 03's exercises (byte-pair encoding): encode one pre-token, decode safely, the word-level
unknown rate, when a word becomes one token, and breaking a tie the CS336 way.

Each check takes the learner's function plus the notebook data it needs, computes the expected value with plain
Python here (never by calling the package function the exercise asks for), and fails through
:mod:`course_utils.checks`, whose messages never show the expected value. While the learner's function runs, the
package's own encoder and decoder refuse to work (:func:`_without_package_encoder`), so an answer that just calls
``BPETokenizer`` fails with a message saying so. ``tests/test_exercises_ch03.py`` feeds every check the reference
solution, a correct answer in another form and the likely wrong answers.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any, Callable, Sequence

import torch

from course_utils import checks
from course_utils.text.bpe.tokenizer import BPETokenizer

WORD_PATTERN = r"\w+|[^\w\s]"  # words and single punctuation marks, the word-level baseline of section 1


@contextlib.contextmanager
def _without_package_encoder(exercise: str):
    """Make ``BPETokenizer``'s encode/decode raise while the learner's code runs."""
    names = ["bpe", "encode", "encode_ordinary", "_encode_pretoken", "decode", "decode_bytes", "merge_steps"]
    saved = {n: getattr(BPETokenizer, n) for n in names}

    def refuse(*args, **kwargs):
        raise AssertionError(f"exercise {exercise}: write the loop yourself; calling BPETokenizer's own "
                             "encoder or decoder is not allowed here")

    try:
        for n in names:
            setattr(BPETokenizer, n, refuse)
        yield
    finally:
        for n, f in saved.items():
            setattr(BPETokenizer, n, f)


def _ids(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return [int(i) for i in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [int(i) if not isinstance(i, bool) else i for i in value]
    return value


def _merge_word(ids: list[int], merges: Sequence[tuple[int, int]], used: list[int] | None = None) -> list[int]:
    """Plain BPE of one pre-token (merge ``i`` creates id ``256 + i``); the ranks applied go into ``used``."""
    ranks = {tuple(p): i for i, p in enumerate(merges)}
    while True:
        found = [ranks[p] for p in zip(ids, ids[1:]) if p in ranks]
        if not found:
            return ids
        rank = min(found)
        if used is not None:
            used.append(rank)
        out, i = [], 0
        while i < len(ids):
            if i + 1 < len(ids) and (ids[i], ids[i + 1]) == tuple(merges[rank]):
                out.append(256 + rank)
                i += 2
            else:
                out.append(ids[i])
                i += 1
        ids = out


def check_encode_word(fn: Callable, merges: Sequence[tuple[int, int]], words: Sequence[str]) -> None:
    """``fn(byte_ids, merges)`` -> ids of one pre-token; ``words``: held-out pre-tokens to try."""
    hint = ("merge the adjacent pair with the lowest rank, all its left-to-right occurrences at once, and repeat "
            "until no adjacent pair is a merge; merge i creates id 256 + i")
    wiki = [(97, 97), (97, 98), (256, 257), (97, 99)]
    cases = [("no merges: bytes unchanged", [104, 105], []), ("aaabdaaabac by hand", list(b"aaabdaaabac"), wiki),
             ("aaaa: no overlapping merges", list(b"aaaa"), [(97, 97)]),
             ("lowest rank first, not leftmost first", list(b"abc"), [(98, 99), (97, 98)])]
    expected = [_merge_word(list(ids), m) for _, ids, m in cases]
    held_out = [_merge_word(list(w.encode()), merges) for w in words]
    with _without_package_encoder("1"):
        answers = [_ids(fn(list(ids), list(m))) for _, ids, m in cases]
        answers_held_out = [_ids(fn(list(w.encode()), list(merges))) for w in words]
    for (name, _, _), got, want in zip(cases, answers, expected):
        checks.check_equal(name, got, want, hint=hint)
    checks.check_equal(f"{len(words)} held-out words", answers_held_out, held_out, hint=hint)


def check_decode_ids(fn: Callable, vocab: Sequence[bytes], ids_of_text: Sequence[int], text: str) -> None:
    """``fn(ids, vocab)`` -> text; ``ids_of_text`` encodes ``text`` (which has multi-byte characters)."""
    hint = "join the tokens' bytes first and decode UTF-8 once, with errors='replace'"
    vocab = list(vocab)
    emoji = [0xF0, 0x9F, 0xA4, 0x96]  # 🤖 as four single-byte tokens
    with _without_package_encoder("2"):
        answers = [fn(list(emoji), vocab), fn([0xF0, 0x9F, 104], vocab), fn([0xC3, 0xA9, 0x20], vocab),
                   fn(list(ids_of_text), vocab)]
    checks.check_equal("a character split over four tokens", answers[0], "🤖", hint=hint)
    checks.check_equal("half a character, then 'h'", answers[1], "\ufffdh", hint=hint)
    checks.check_equal("é from two byte tokens", answers[2], "é ", hint=hint)
    checks.check_equal("held-out text", answers[3], text, hint=hint)


def check_unknown_word_rate(fn: Callable, train_text: str, val_text: str) -> None:
    """``fn(train_text, val_text)`` -> share of held-out word *occurrences* (``\\w+|[^\\w\\s]``) unseen in training."""
    hint = ("cut both texts with the pattern \\w+|[^\\w\\s] (punctuation split off), then count held-out "
            "occurrences, not distinct words, whose word never occurs in the training text")

    def rate(train: str, val: str) -> float:
        known = set(re.findall(WORD_PATTERN, train))
        words = re.findall(WORD_PATTERN, val)
        return sum(w not in known for w in words) / len(words)

    cases = [("toy example", "a b c", "a d d b"), ("punctuation is its own word", "to be, or not", "be, or not!"),
             ("held-out plays", train_text, val_text)]
    answers = [fn(t, v) for _, t, v in cases]
    for (name, t, v), got in zip(cases, answers):
        checks.check_close(name, got, rate(t, v), rtol=1e-12, hint=hint)


def check_merges_until_one_token(fn: Callable, tokenizer, toy_tokenizer) -> None:
    """``fn(tokenizer, word)`` -> smallest k such that the first k merges make ``word`` one token, or None."""
    hint = ("k counts merges in the list up to and including the last one the word needs (not only the merges it "
            "uses); 0 for a single byte; None if even all merges leave several tokens")
    abc = BPETokenizer([(97, 98), (120, 121), (256, 99)])  # ab, xy, abc: 'abc' needs 3 merges of the list, uses 2
    expected = [("a single byte needs no merge", tokenizer, "a", 0), ("abc with an unrelated merge between", abc,
                                                                     "abc", 3),
                ("a word that never becomes one token", toy_tokenizer, " lowest", None)]
    for word in (" the", " and", " to", " lord"):
        expected.append((f"{word!r} in the chapter's tokenizer", tokenizer, word, _one_token_k(tokenizer, word)))
    answers = [fn(tok, word) for _, tok, word, _ in expected]
    for (name, _, _, want), got in zip(expected, answers):
        if want is None:
            checks.check_true(name, got is None, hint=hint)
        else:
            checks.check_equal(name, _ids([got])[0] if got is not None else got, want, hint=hint)


def _one_token_k(tokenizer, word: str) -> int | None:
    """Merges apply in rank order, so the first k merges suffice exactly when k > the last rank the word uses."""
    used: list[int] = []
    if len(_merge_word(list(word.encode()), tokenizer.merges, used)) != 1:
        return None
    return max(used) + 1 if used else 0


def check_tie_break(fn: Callable) -> None:
    """``fn(counts, vocab)`` -> the pair to merge: highest count; a tie goes to the greater ``(vocab[a], vocab[b])``."""
    hint = ("first the highest count; among equal counts compare the pairs as tuples of byte strings, "
            "(vocab[a], vocab[b]), and take the greater one")
    vocab = [bytes([b]) for b in range(256)] + [b"aa", b"BA", b"ZZ"]
    A, B, C = ord("A"), ord("B"), ord("C")
    cases = [
        ("the highest count wins", {(97, 98): 5, (98, 99): 7, (99, 97): 6}, (98, 99)),
        ("a tie: the greater first byte string", {(97, 98): 4, (98, 97): 4, (97, 99): 2}, (98, 97)),
        ("a tie: same first token, greater second", {(97, 98): 3, (97, 99): 3}, (97, 99)),
        ("the CS336 example: (BA, A) beats (B, ZZ), (A, C), (A, B)",
         {(A, B): 9, (A, C): 9, (B, 258): 9, (257, A): 9}, (257, A)),
        ("ids and bytes disagree: (aa, a) against (a, b)", {(97, 98): 2, (256, 97): 2}, (256, 97)),
        ("ids and bytes disagree: (b, a) against (aa, b)", {(256, 98): 2, (98, 97): 2}, (98, 97)),
    ]
    answers = [fn(dict(counts), list(vocab)) for _, counts, _ in cases]
    for (name, _, want), got in zip(cases, answers):
        got = tuple(_ids(list(got))) if isinstance(got, (list, tuple, torch.Tensor)) else got
        checks.check_equal(name, got, want, hint=hint)
