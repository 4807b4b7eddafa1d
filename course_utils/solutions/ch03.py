"""Reference solutions for chapter 03 (byte-pair encoding). Try the exercises before reading these."""

from __future__ import annotations

from typing import Sequence


def encode_word(byte_ids: Sequence[int], merges: Sequence[tuple[int, int]]) -> list[int]:
    """Apply BPE merges to one pre-token: repeatedly merge the adjacent pair with the lowest rank (merge ``i`` has
    rank ``i`` and creates id ``256 + i``), all its left-to-right occurrences at once, until no pair is a merge."""
    ranks = {tuple(pair): i for i, pair in enumerate(merges)}
    ids = list(byte_ids)
    while len(ids) > 1:
        candidates = [ranks[p] for p in zip(ids, ids[1:]) if p in ranks]
        if not candidates:
            break
        rank = min(candidates)
        pair, out, i = merges[rank], [], 0
        while i < len(ids):
            if i + 1 < len(ids) and (ids[i], ids[i + 1]) == tuple(pair):
                out.append(256 + rank)
                i += 2
            else:
                out.append(ids[i])
                i += 1
        ids = out
    return ids


def decode_ids(ids: Sequence[int], vocab: Sequence[bytes]) -> str:
    """Concatenate the tokens' bytes first, then decode once: a character split across two tokens survives, and
    bytes that are not valid UTF-8 become U+FFFD instead of raising."""
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")


def unknown_word_rate(train_text: str, val_text: str) -> float:
    """Fraction of whitespace-separated word occurrences in ``val_text`` never seen in ``train_text``."""
    known = set(train_text.split())
    words = val_text.split()
    return sum(1 for w in words if w not in known) / len(words)


def merges_until_one_token(tokenizer, word: str) -> int | None:
    """How many of the tokenizer's merges (taken in order) are needed before ``word`` encodes to one token, or
    None if it never does."""
    ids = list(word.encode("utf-8"))
    if len(ids) == 1:
        return 0
    steps = tokenizer.merge_steps(word)
    for rank, pieces in steps[1:]:
        if sum(len(p) for p in pieces) == 1:
            return rank + 1
    return None

