"""Reference solutions for chapter 03 (byte-pair encoding). Try the exercises before reading these."""

from __future__ import annotations

import re
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
    """Fraction of word occurrences in ``val_text`` never seen in ``train_text``; words are ``\\w+`` runs and each
    punctuation mark is a word of its own (so "king," and "king" are the same word followed by a comma)."""
    pattern = r"\w+|[^\w\s]"
    known = set(re.findall(pattern, train_text))
    words = re.findall(pattern, val_text)
    return sum(1 for w in words if w not in known) / len(words)


def merges_until_one_token(tokenizer, word: str) -> int | None:
    """The smallest k such that the tokenizer's first k merges encode ``word`` as one token (0 for a single byte),
    or None if even all merges leave several tokens. Merges apply in rank order, so k is one more than the rank of
    the last merge the word needs, which counts the merges in between that the word does not use."""
    ids = list(word.encode("utf-8"))
    if len(ids) == 1:
        return 0
    steps = tokenizer.merge_steps(word)
    for rank, pieces in steps[1:]:
        if sum(len(p) for p in pieces) == 1:
            return rank + 1
    return None



def tie_break_pair(counts: dict[tuple[int, int], int], vocab: Sequence[bytes]) -> tuple[int, int]:
    """The pair to merge: the highest count; among equal counts the greater pair of byte strings
    ``(vocab[a], vocab[b])``, compared as tuples (Stanford CS336's rule)."""
    return max(counts, key=lambda pair: (counts[pair], (vocab[pair[0]], vocab[pair[1]])))
