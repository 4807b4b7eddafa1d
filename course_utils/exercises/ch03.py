"""Checks for chapter 03's exercises (byte-pair encoding): encode one pre-token, decode safely, the unknown rate of
a word vocabulary capped at its V most frequent words, when a word becomes one token, and a heap key for the
trainer's tie rule.

Each check takes the learner's function plus the notebook data it needs, computes the expected value with plain Python
here (never by calling the package function; after the learner's calls, so that no local of the check holds it
meanwhile), and fails through :mod:`course_utils.checks`, whose messages never show
the expected value. While the learner's encoder, decoder or merge counter runs (exercises 1, 2 and 4), every ready-made
BPE encoder and decoder the notebook can reach is switched off (``checks.package_functions_switched_off``):
``BPETokenizer``'s encode and decode paths, this module's own helpers, ``to_hf_tokenizer``, tiktoken's ``Encoding``
and ``_educational`` encoders, and the pure-Python ``bpe`` method of every ``transformers`` slow tokenizer already
imported (:func:`course_utils.checks.loaded_transformers_copies`; each learner call looks afresh). Compiled code (a
``tokenizers`` BPE model, tiktoken's ``_tiktoken.CoreBPE``) cannot be switched off this way; one built beforehand
from the chapter's tokenizer fails the cases with merges (exercise 1), a vocabulary (exercise 2) or merge lists
(exercise 4) of their own, while one built inside the answer from the merges it is given passes: the guards stop
shortcuts, not deliberate evasion. Exercise 4's answer must apply the merges itself: the id of a one-token word is
256 + the rank of the last merge it needs, so any encoder would leave only that to read off. While exercise 3's answer
runs, this module's reference (``_capped_rate``, ``_words_by_count``) is switched off; while exercise 5's heap key
runs, the package's tie key (``train.tie_key`` and its ``_Greater`` class). ``tests/test_exercises_ch03.py`` feeds
every check the reference solution, a correct answer in another form and the likely wrong answers, including one
that goes through each ready-made encoder.
"""

from __future__ import annotations

import contextlib
import copy
import heapq
import numbers
import random
import re
from typing import Any, Callable, Iterator, Sequence

import torch

from course_utils import checks
from course_utils.text.bpe import interop, train
from course_utils.text.bpe.tokenizer import BPETokenizer

WORD_PATTERN = r"\w+|[^\w\s]"  # words and single punctuation marks, the word-level baseline of section 1


def _ready_made_codecs() -> tuple[Callable, ...]:
    """Every BPE encoder/decoder written in Python that the notebook can reach (its namespace or an import)."""
    found: list[Callable] = [_merge_word, _one_token_k, interop.to_hf_tokenizer, interop.from_tiktoken,
                             interop.load_cl100k, BPETokenizer.from_ranks.__func__]
    found += [getattr(BPETokenizer, n) for n in ("bpe", "_bpe_ranked", "_encode_pretoken", "encode_ordinary",
                                                 "encode", "encode_iterable", "merge_steps", "decode_bytes",
                                                 "decode")]
    found += checks.loaded_transformers_copies(("bpe",))  # slow tokenizers' pure-Python BPE, if imported
    try:
        import tiktoken
        import tiktoken._educational as educational
    except ImportError:  # tiktoken is a dependency of the course; without it there is nothing to switch off
        return tuple(found)
    found += [f for n, f in vars(tiktoken.Encoding).items()
              if n == "__init__" or n.startswith(("encode", "_encode", "decode"))]
    found += [educational.bpe_encode] + [f for n, f in vars(educational.SimpleBytePairEncoding).items()
                                         if n in ("__init__", "encode", "decode", "decode_bytes")]
    return tuple(f for f in found if hasattr(f, "__code__") and not f.__closure__)


def _alone(fn: Callable, *args: Any) -> Any:
    """``fn(*args)`` with the ready-made codecs switched off, looked up afresh for this call."""
    with _without_ready_made_codecs():
        return fn(*args)


@contextlib.contextmanager
def _without_ready_made_codecs() -> Iterator[None]:
    with checks.package_functions_switched_off(*_ready_made_codecs()):
        yield


def _ids(value: Any) -> Any:
    """Ids (list, tuple, tensor, array) as Python ints; a float id or a nested row is left for check_equal to report."""
    checks.no_meta("your ids", value)  # a shape without values: .tolist() would raise inside the check
    if hasattr(value, "tolist") and not isinstance(value, (list, tuple)):  # torch.Tensor, numpy.ndarray
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [int(i) if isinstance(i, numbers.Integral) and not isinstance(i, bool) else
                i.item() if isinstance(i, torch.Tensor) and i.dim() == 0 else i for i in value]
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
             ("lowest rank first, not leftmost first", list(b"abc"), [(98, 99), (97, 98)]),
             ("a word that ends as one token", list(b"abc"), [(97, 98), (256, 99)])]
    answers = [_ids(_alone(fn, list(ids), list(m))) for _, ids, m in cases]  # one block per call: see _alone
    answers_held_out = [_ids(_alone(fn, list(w.encode()), list(merges))) for w in words]
    expected = [_merge_word(list(ids), m) for _, ids, m in cases]  # after the learner's calls, like held_out
    held_out = [_merge_word(list(w.encode()), merges) for w in words]
    for (name, _, _), got, want in zip(cases, answers, expected):
        checks.check_equal(name, got, want, hint=hint)
    wrong = [k for k, (got, want) in enumerate(zip(answers_held_out, held_out)) if got != want]
    if wrong:  # the first wrong word, with the learner's ids only: not a dump of every answer
        k = wrong[0]
        checks.check_equal(f"held-out word {words[k]!r} (bytes {list(words[k].encode())}; {len(wrong)} of "
                           f"{len(words)} held-out words come out differently)", answers_held_out[k], held_out[k],
                           hint=hint)
    checks.check_equal(f"{len(words)} held-out words", answers_held_out, held_out, hint=hint)


def _one_mark_per_run(text: Any) -> Any:
    """``text`` with every run of U+FFFD shortened to one (anything that is not a str is left as it is)."""
    return re.sub("\ufffd+", "\ufffd", text) if isinstance(text, str) else text


def check_decode_ids(fn: Callable, vocab: Sequence[bytes], ids_of_text: Sequence[int], text: str) -> None:
    """``fn(ids, vocab)`` -> text; ``ids_of_text`` encodes ``text`` (which has multi-byte characters).
    Invalid UTF-8 must become U+FFFD, but how many is a policy: ``errors="replace"`` gives one per maximal invalid
    subsequence (Unicode's practice), a hand-written decoder one per bad byte or per run; the texts are compared with
    every run of U+FFFD shortened to one, so all pass; dropping bad bytes, keeping them or raising still fails.
    """
    hint = ("join the tokens' bytes first and decode UTF-8 once, turning invalid bytes into U+FFFD "
            "(bytes.decode has an argument that says what to do with them)")
    vocab = list(vocab)
    emoji = [0xF0, 0x9F, 0xA4, 0x96]  # 🤖 as four single-byte tokens
    # A vocabulary of its own, so the answer must read `vocab` (a decoder built beforehand from the chapter's tokenizer
    # gives other bytes): ids 0-255 are the bytes reversed, 256 "é", 257 and 258 the halves of 🤖, 259 " king".
    own_vocab = [bytes([255 - b]) for b in range(256)] + ["é".encode(), b"\xf0\x9f", b"\xa4\x96", b" king"]
    own_ids = [255 - ord("H"), 256, 255 - 0x20, 257, 258, 259, 255 - 0xC3]  # ends in half a character
    cases = [("a character split over four tokens", list(emoji), vocab),
             ("half a character, then 'h'", [0xF0, 0x9F, 104], vocab),
             ("the bytes of a surrogate (ED A0 80, not valid UTF-8), then 'A'", [0xED, 0xA0, 0x80, 65], vocab),
             ("é from two byte tokens", [0xC3, 0xA9, 0x20], vocab),
             ("€ from three byte tokens", [0xE2, 0x82, 0xAC], vocab),
             ("an overlong '/' (C0 AF, not valid UTF-8), then 'A'", [0xC0, 0xAF, 65], vocab),
             ("the first byte of a two-byte character, then 'A' (C3 41)", [0xC3, 65], vocab),
             ("a stray continuation byte, then 'A' (80 41)", [0x80, 65], vocab),
             ("an overlong NUL in three bytes (E0 80 80), then 'A'", [0xE0, 0x80, 0x80, 65], vocab),
             ("a code point above U+10FFFF (F4 90 80 80), then 'A'", [0xF4, 0x90, 0x80, 0x80, 65], vocab),
             ("a vocabulary of its own (ids 0-255 are not the bytes 0-255)", own_ids, own_vocab),
             ("held-out text", list(ids_of_text), vocab)]
    answers = []
    for name, ids, v in cases:
        try:
            answers.append(_alone(fn, list(ids), list(v)))
        except ValueError as err:  # UnicodeDecodeError, or chr() of a code point above U+10FFFF
            raise AssertionError(f"{name}: your function raised {type(err).__name__} ({err}). {hint}") from None
    bad = "\ufffd"  # the cases' texts, in order, written after the learner's calls
    wants = ["🤖", bad + "h", 3 * bad + "A", "é ", "€", 2 * bad + "A", bad + "A", bad + "A", bad + "A", bad + "A",
             "Hé 🤖 king" + bad, text]
    for (name, _, _), want, got in zip(cases, wants, answers):
        if _one_mark_per_run(got) != _one_mark_per_run(want):  # the message shows the answer as it came back
            raise AssertionError(f"{name}: got {got!r}, which is not right. {hint}")
        checks.passed(name)


def _words_by_count(text: str) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for w in re.findall(WORD_PATTERN, text):
        counts[w] = counts.get(w, 0) + 1
    return sorted(counts.items(), key=lambda item: -item[1])


def untied_cuts(train_text: str, targets: Sequence[int]) -> list[int]:
    """For each target, the smallest V >= target at which the V-th and (V+1)-th most frequent training words have
    different counts, so "the V most frequent words" is one set whatever the order among equal counts."""
    ranked = [n for _, n in _words_by_count(train_text)]
    cuts = []
    for target in targets:
        v = max(1, target)
        while v < len(ranked) and ranked[v - 1] == ranked[v]:
            v += 1
        if v < len(ranked) and v not in cuts:
            cuts.append(v)
    return cuts


def _capped_rate(train: str, val: str, v: int) -> float:
    kept = {w for w, _ in _words_by_count(train)[:v]}
    words = re.findall(WORD_PATTERN, val)
    return sum(1 for w in words if w not in kept) / len(words)


def check_capped_unknown_rate(fn: Callable, train_text: str, val_text: str,
                              targets: Sequence[int] = (10, 100, 1000, 5000)) -> None:
    """``fn(train_text, val_text, V)`` -> share of held-out word occurrences that are not among the ``V`` most
    frequent training words (``\\w+|[^\\w\\s]``), for V near each target with no tie at the cut."""
    hint = ("cut both texts with the pattern \\w+|[^\\w\\s] (punctuation split off); keep the V words with the "
            "highest counts in the training text; count held-out occurrences, not distinct words, whose word is not "
            "kept")
    cases = [("toy, V = 1", "a a a b b c", "a b c d", 1), ("toy, V = 2", "a a a b b c", "a b c d", 2),
             ("punctuation is its own word, V = 2", "the the the , , king", "the king, the", 2),
             ("V beyond the vocabulary keeps every word", "to be or not", "to be, or not!", 100)]
    cases += [(f"held-out text, V = {v:,}", train_text, val_text, v) for v in untied_cuts(train_text, targets)]
    with checks.package_functions_switched_off(_capped_rate, _words_by_count):  # this module's own answer
        answers = [fn(t, val, v) for _, t, val, v in cases]
    # rtol: a float32 answer is off by ~6e-8 relative; a count off by one on the cpu plays by ~9e-5
    for (name, t, val, v), got in zip(cases, answers):
        checks.check_close(name, got, _capped_rate(t, val, v), atol=0, rtol=1e-6, hint=hint)


def check_merges_until_one_token(fn: Callable, tokenizer, toy_tokenizer) -> None:
    """``fn(tokenizer, word)`` -> smallest k such that the first k merges make ``word`` one token, or None."""
    hint = ("k counts merges in the list up to and including the last one the word needs (not only the merges it "
            "uses); 0 for a single byte (one character can be several bytes: 'é' is two); None if even all merges "
            "leave several tokens")
    cases = [case[:3] for case in _one_token_cases(tokenizer, toy_tokenizer)]  # the wants are made after the calls
    answers = [_alone(fn, copy.deepcopy(tok), word) for _, tok, word in cases]  # a copy each: the wants read theirs
    wants = [case[3] for case in _one_token_cases(tokenizer, toy_tokenizer)]
    for (name, _, _), want, got in zip(cases, wants, answers):
        checks.no_meta(name, got, hint)
        if isinstance(got, bool) or str(getattr(got, "dtype", "")) in ("bool", "torch.bool"):  # False == 0, but it
            raise AssertionError(f"{name}: got {got!r}, a bool; return an int or None. {hint}")  # counts no merges
        if want is None:
            checks.check_true(name, got is None, hint=hint)
        else:
            checks.check_equal(name, _ids([got])[0] if got is not None else got, want, hint=hint)


def _one_token_cases(tokenizer, toy_tokenizer) -> list[tuple[str, BPETokenizer, str, int | None]]:
    """(name, tokenizer, word, the smallest k or None) for :func:`check_merges_until_one_token`."""
    abc = BPETokenizer([(97, 98), (120, 121), (256, 99)])  # ab, xy, abc: 'abc' needs 3 merges of the list, uses 2
    e_acute = BPETokenizer([(97, 98), (0xC3, 0xA9)])  # 'é' is the two bytes C3 A9, joined by the second merge
    expected = [("a single byte needs no merge", tokenizer, "a", 0), ("abc, an unrelated merge between", abc, "abc", 3),
                ("a word that never becomes one token", toy_tokenizer, " lowest", None),
                ("one character of two bytes, 'é'", e_acute, "é", 2)]
    expected += [(f"{word!r} in the chapter's tokenizer", tokenizer, word, _one_token_k(tokenizer, word))
                 for word in (" the", " and", " to", " lord")]  # two pre-tokens next: merges never join them
    expected += [(f"{w!r}, which pre-tokenization splits, in the chapter's tokenizer", tokenizer, w, None)
                 for w in (" the,", "a b")]
    # merges across the pre-token boundary (a + space, then that + b): still None, since encoding cuts the word first
    # (a trained list never has such merges); 'abc' is in the next vocabulary (a + bc), but BPE merges a+b first and
    # never builds it: a vocabulary (or tiktoken's whole-piece) lookup fails; a merge joins every occurrence, left to
    # right: first-only or right-to-left loops fail the last two
    return expected + [("'a b' under merges that would join its pieces", BPETokenizer([(97, 32), (256, 98)]), "a b",
                        None), ("a word in the vocabulary that the merges never build",
                                BPETokenizer([(97, 98), (98, 99), (97, 257)]), "abc", None),
                       ("aaaa under a+a, then aa+aa", BPETokenizer([(97, 97), (256, 256)]), "aaaa", 2),
                       ("aaa under a+a, then aa+a", BPETokenizer([(97, 97), (256, 97)]), "aaa", 2)]


def _one_token_k(tokenizer, word: str) -> int | None:
    """Merges apply in rank order, so the first k merges suffice exactly when k > the last rank the word uses."""
    used: list[int] = []
    if len(_merge_word(list(word.encode()), tokenizer.merges, used)) != 1:
        return None
    return max(used) + 1 if used else 0


def _heap_cases() -> list[tuple[str, dict[tuple[int, int], int], list[bytes]]]:
    vocab = [bytes([b]) for b in range(256)] + [b"aa", b"BA", b"ZZ", b"B\x00", b"\xff"]
    A, B, C = ord("A"), ord("B"), ord("C")
    cases = [
        ("the highest count pops first", {(97, 98): 5, (98, 99): 7, (99, 97): 6}, vocab),
        ("a tie: the greater first byte string", {(97, 98): 4, (98, 97): 4, (97, 99): 2}, vocab),
        ("a tie: same first token, greater second", {(97, 98): 3, (97, 99): 3}, vocab),
        ("the CS336 example: (BA, A) beats (B, ZZ), (A, C), (A, B)",
         {(A, B): 9, (A, C): 9, (B, 258): 9, (257, A): 9}, vocab),
        ("a prefix is smaller: (BA, ...) and (B\\x00, ...) before (B, ...)",
         {(B, A): 2, (257, A): 2, (259, A): 2, (B, 260): 2, (B, B): 2}, vocab),
        ("ids and bytes disagree: (aa, a) against (a, b)", {(97, 98): 2, (256, 97): 2}, vocab),
    ]
    rng = random.Random(3)
    # distinct words, none a single byte
    words = sorted({bytes(rng.choice(b"ab\x00\xff") for _ in range(rng.randint(2, 3))) for _ in range(40)})
    rand_vocab = [bytes([b]) for b in range(256)] + words
    ids = list(range(97, 99)) + [0, 255] + list(range(256, len(rand_vocab)))
    pairs = {(rng.choice(ids), rng.choice(ids)) for _ in range(300)}
    cases.append((f"{len(pairs)} random pairs, counts 1-3 (many ties)", {p: rng.randint(1, 3) for p in pairs},
                  rand_vocab))
    return cases


def check_heap_key(fn: Callable) -> None:
    """``fn(count, pair, vocab)`` -> a key such that ``heapq`` (a min-heap) pops the highest count first, and among
    equal counts the greater ``(vocab[a], vocab[b])``. Checked by the pop order of shuffled entries."""
    hint = ("heapq pops the smallest key: the highest count must give the smallest key, and among equal counts the "
            "greater tuple (vocab[a], vocab[b]) must give the smaller key. Byte strings cannot be negated; think "
            "about b'B' against b'BA', and give two different pairs two different keys")
    rng = random.Random(0)
    own_key = [train.tie_key, train._Greater.__init__, train._Greater.__lt__, train._Greater.__eq__]
    for name, counts, vocab in _heap_cases():
        for shuffle in range(3):
            entries = list(counts.items())
            rng.shuffle(entries)
            order = list(range(len(entries)))
            rng.shuffle(order)  # a key that ties two pairs leaves their order to this random number: it shows
            with checks.package_functions_switched_off(*own_key):
                heap: list = []
                try:
                    for k, (pair, count) in zip(order, entries):
                        heapq.heappush(heap, (fn(count, pair, list(vocab)), k, pair))
                    got = [heapq.heappop(heap)[2] for _ in range(len(heap))]
                except TypeError as err:
                    raise AssertionError(f"{name}: your keys cannot be compared with each other ({err}). "
                                         f"{hint}") from None
            # the wanted order is made after the learner's calls: no local holds it while fn runs
            if got != sorted(counts, key=lambda p: (counts[p], (vocab[p[0]], vocab[p[1]])), reverse=True):
                raise AssertionError(f"{name} (shuffle {shuffle + 1}): the pairs pop in the wrong order. {hint}")
        checks.passed(f"{name}: pop order")
