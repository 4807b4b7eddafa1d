"""Reference solutions for chapter 03 (byte-pair encoding). Try the exercises before reading these. Exercise 3's
question is answered in :data:`WHY_TOP_V`."""

from __future__ import annotations

import re
from collections import Counter
from typing import Sequence

from course_utils.text.bpe.train import merge_pair, pretokenize


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


def unknown_rate_top_v(train_text: str, val_text: str, V: int) -> float:
    """Fraction of word occurrences in ``val_text`` that a word-level vocabulary of the ``V`` most frequent training
    words does not contain (they would become ``<unk>``). Words are ``\\w+`` runs and each punctuation mark is a word
    of its own (so "king," is the word "king" followed by a comma)."""
    pattern = r"\w+|[^\w\s]"
    kept = {word for word, _ in Counter(re.findall(pattern, train_text)).most_common(V)}
    words = re.findall(pattern, val_text)
    return sum(1 for w in words if w not in kept) / len(words)


#: Exercise 3's question, answered.
WHY_TOP_V = ("No V brings the <unk> rate below section 1's, the share of held-out words that never occur in the "
             "training text at all, and the rate reaches that floor only when V holds every training word that the "
             "held-out text uses, which takes almost every distinct training word, most of which occur three times or "
             "fewer; how rare <unk> can get is set by the training text, not by V. On the way down, the first few "
             "hundred words do most of the work (punctuation, function words and the commonest names make up most "
             "word occurrences), yet the rate falls in roughly equal steps per tenfold increase of V, not in "
             "shrinking ones: under Zipf's law (a word's frequency roughly in inverse proportion to its rank) every "
             "tenfold range of ranks holds about the same share of occurrences. So V must grow by orders of "
             "magnitude, until the rate bends onto the floor as V runs out of the training words that the held-out "
             "text uses (print the drop for each tenfold V to see both). Word-level translation models were typically "
             "limited to 30,000 to 50,000 words (Sennrich et al., 2016) and still met unknown words; subwords remove "
             "the floor, since byte-level BPE spells any word from its bytes.")


def merges_until_one_token(tokenizer, word: str) -> int | None:
    """The smallest k such that the tokenizer's first k merges encode ``word`` as one token (0 for a single byte),
    or None if even all merges leave several tokens. Applying the merges one after another in the order of the list
    (merge r joins its pair into id 256 + r, everywhere in the word) encodes as BPE does, so k is one more than the
    rank at which the word first becomes one token, which counts the merges in between that the word does not use.
    A word that pre-tokenization cuts into several pieces never becomes one token: merges never cross pieces."""
    if len(pretokenize(word, tokenizer.pattern)) != 1:
        return None
    ids = list(word.encode("utf-8"))
    if len(ids) == 1:
        return 0
    for rank, pair in enumerate(tokenizer.merges):
        ids = merge_pair(ids, pair, 256 + rank)
        if len(ids) == 1:
            return rank + 1
    return None


def heap_key(count: int, pair: tuple[int, int], vocab: Sequence[bytes]) -> tuple:
    """A key for ``heapq`` (a min-heap) that pops the highest count first and, among equal counts, the greater pair
    of byte strings ``(vocab[a], vocab[b])`` (Stanford CS336's rule). A count is negated; a byte string cannot be,
    so each one becomes the tuple of its complemented bytes ``255 - x`` followed by 256, a value no complemented
    byte reaches: then a longer string that starts with a shorter one (b"BA" after b"B") gets the smaller key, as
    the reversed order requires. (The package's trainer wraps the pair in a class whose ``<`` is reversed instead.)"""
    def flipped(data: bytes) -> tuple[int, ...]:
        return tuple(255 - x for x in data) + (256,)

    return (-count, flipped(vocab[pair[0]]), flipped(vocab[pair[1]]))
