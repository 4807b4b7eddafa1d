"""The classic word-level BPE toy of Sennrich et al. (2016, "Neural Machine Translation of Rare Words with Subword
Units"): words split into characters plus an end-of-word symbol ``</w>``, merges learned from word counts.

The marker lets a merge tell "est" at the end of a word ("newest") from "est" inside one ("estate"). Ties between
pairs with equal counts go to the pair seen first when the words are scanned in corpus order. That is what the
paper's Algorithm 1 listing (``max(pairs, key=pairs.get)``) does under Python 3.7 and later, where dicts keep insertion
order and ``max`` returns the first maximal key; in 2016 dict order was arbitrary. The authors' released tool,
subword-nmt's ``learn_bpe.py``, takes the lexicographically greatest pair instead
(``max(stats, key=lambda x: (stats[x], x))``).

Left out: bytes (see :mod:`course_utils.text.bpe.train`), pre-tokenization, encoding new text.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Mapping

from course_utils.arguments import check_int

END_OF_WORD = "</w>"

#: The toy corpus used in the paper and in most textbooks: word -> count.
TOY_CORPUS = {"low": 5, "lower": 2, "newest": 6, "widest": 3}


@dataclass(frozen=True)
class ToyStep:
    pair: tuple[str, str]  # the symbols merged
    count: int  # how often the pair occurred
    words: dict[str, int]  # the corpus after the merge: "l o w </w>" -> 5


def split_words(word_counts: Mapping[str, int], end_of_word: str = END_OF_WORD) -> dict[tuple[str, ...], int]:
    """Each word as a tuple of its characters followed by the symbol ``end_of_word`` (none if it is empty)."""
    out: dict[tuple[str, ...], int] = {}
    for word, count in word_counts.items():
        if not isinstance(word, str) or not word:
            raise ValueError(f"words must be non-empty strings, got {word!r}")
        if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 1:  # numpy ints too
            raise ValueError(f"counts must be positive ints, got {count!r} for {word!r}")
        symbols = tuple(word) + ((end_of_word,) if end_of_word else ())
        out[symbols] = out.get(symbols, 0) + int(count)
    return out


def toy_pair_counts(words: Mapping[tuple[str, ...], int]) -> dict[tuple[str, str], int]:
    """Adjacent symbol pairs and their counts, in order of first appearance."""
    counts: dict[tuple[str, str], int] = {}
    for symbols, count in words.items():
        for pair in zip(symbols, symbols[1:]):
            counts[pair] = counts.get(pair, 0) + count
    return counts


def toy_merge(words: Mapping[tuple[str, ...], int], pair: tuple[str, str]) -> dict[tuple[str, ...], int]:
    """Replace every left-to-right occurrence of ``pair`` by the concatenated symbol."""
    out: dict[tuple[str, ...], int] = {}
    for symbols, count in words.items():
        merged, i = [], 0
        while i < len(symbols):
            if i < len(symbols) - 1 and (symbols[i], symbols[i + 1]) == pair:
                merged.append(symbols[i] + symbols[i + 1])
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        out[tuple(merged)] = count
    return out


def learn_toy_bpe(word_counts: Mapping[str, int] = TOY_CORPUS, n_merges: int = 10,
                  end_of_word: str = END_OF_WORD) -> list[ToyStep]:
    """Up to ``n_merges`` merges (fewer if every word becomes a single symbol), with the corpus after each."""
    n_merges = check_int(n_merges, "n_merges", minimum=0)
    words = split_words(word_counts, end_of_word)
    steps = []
    for _ in range(n_merges):
        counts = toy_pair_counts(words)
        if not counts:
            break
        pair = max(counts, key=counts.get)  # first maximal pair in scan order wins ties
        words = toy_merge(words, pair)
        steps.append(ToyStep(pair, counts[pair], {" ".join(s): c for s, c in words.items()}))
    return steps
