"""Training byte-level byte-pair encoding (BPE): pre-tokenization and two trainers, a naive and a fast one.

BPE (Gage, 1994, "A New Algorithm for Data Compression"; Sennrich et al., 2016, "Neural Machine Translation of Rare
Words with Subword Units") starts from a base alphabet and repeatedly merges the most frequent adjacent pair of
symbols into a new symbol. Byte-level BPE (Radford et al., 2019, "Language Models are Unsupervised Multitask
Learners", GPT-2) uses the 256 byte values as the alphabet, so every string is encodable and nothing is "unknown".

Pre-tokenization: the text is first cut at special tokens (which are never part of training, so no merge ever
spans one), then into pre-tokens by a regular expression (GPT-2's by default: words with their leading space,
numbers, punctuation runs, whitespace). Merges never cross a pre-token boundary, so training works on the multiset
of distinct pre-tokens with their counts.

Tie-breaking (documented because it decides the result): at each step the pair with the highest count wins. The
count does not prefer either of two pairs with equal counts, so any deterministic rule yields a valid BPE, but the
rule must be fixed for the merges (and so the ids) to be reproducible and to match a reference implementation.
``tie_break`` chooses it:

* ``"bytes"`` (default): the lexicographically *greater* pair of byte strings ``(bytes(left), bytes(right))``
  wins, the rule of Stanford CS336 assignment 1 ("deterministically break ties in pair frequency by preferring the
  lexicographically greater pair"); ``tests/test_bpe_compat.py`` checks it against that rule written directly on
  byte strings.
* ``"ids"``: the smallest pair of ids ``(left, right)`` wins (ids 0-255 are the bytes, merge ``i`` creates id
  ``256 + i``, so older tokens win). Hugging Face ``tokenizers`` also takes the smaller id pair, but numbers the 256
  bytes in the order of its printable stand-in characters (space is U+0120), so the two differ exactly when a tie
  involves such bytes.

A pair is merged while it occurs at least once (count >= 1), as ``tokenizers`` does with its default
``min_frequency``.

* :func:`train_naive` recounts every pair of every distinct pre-token after each merge: O(merges x corpus).
* :func:`train_fast` counts once, then updates counts only for the pre-tokens that contain the merged pair and
  keeps candidates in a max-heap with lazy deletion (stale entries are re-pushed with their true count when they
  reach the top). Both return exactly the same merges; the tests and the benchmark check it.

Left out: parallel counting, frequency thresholds other than 1, dropout (BPE-dropout), Unicode normalisation.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Sequence

import regex
from tqdm.auto import tqdm

from course_utils.arguments import check_int, check_str

#: GPT-2's pre-tokenization pattern (Radford et al., 2019), also used by Hugging Face's ByteLevel pre-tokenizer.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
#: cl100k_base's (GPT-4's) pattern: case-insensitive contractions, numbers in groups of at most three digits.
GPT4_PATTERN = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
                r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s""")

N_BYTES = 256
TIE_BREAKS = ("bytes", "ids")


class _Greater:
    """Sort key that orders byte-string pairs in *reverse*, so the min-heap and ``min`` pick the greatest pair."""

    __slots__ = ("value",)

    def __init__(self, value: tuple[bytes, bytes]) -> None:
        self.value = value

    def __lt__(self, other: "_Greater") -> bool:
        return self.value > other.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Greater) and self.value == other.value


def tie_key(tie_break: str, vocab: list[bytes]):
    """``key(pair)``: among pairs with equal counts the one with the *smallest* key is merged (ids: the pair itself;
    bytes: the byte strings in reverse order). Raises ``ValueError`` for an unknown rule."""
    if tie_break == "ids":
        return lambda pair: pair
    if tie_break == "bytes":
        return lambda pair: _Greater((vocab[pair[0]], vocab[pair[1]]))
    raise ValueError(f"tie_break must be one of {TIE_BREAKS}, got {tie_break!r}")


@dataclass(frozen=True)
class Merge:
    pair: tuple[int, int]  # (left id, right id); the merge creates id 256 + its index
    count: int  # how often the pair occurred in the corpus when it was merged


@lru_cache(maxsize=16)
def compile_pattern(pattern: str) -> regex.Pattern:
    if not isinstance(pattern, str) or not pattern:
        raise ValueError("pattern must be a non-empty regular expression string")
    try:
        return regex.compile(pattern)
    except regex.error as err:
        raise ValueError(f"pre-tokenization pattern does not compile: {err}") from None


def check_special_tokens(special_tokens: Sequence[str]) -> tuple[str, ...]:
    """Return ``special_tokens`` as a tuple after checking they are non-empty, distinct strings."""
    if isinstance(special_tokens, str):
        raise TypeError("special_tokens must be a sequence of strings, e.g. ['<|endoftext|>'], not one string")
    tokens = tuple(special_tokens)
    for token in tokens:
        if not isinstance(token, str):
            raise TypeError(f"special tokens must be strings, got {type(token).__name__}: {token!r}")
        if not token:
            raise ValueError("a special token is the empty string; special tokens must be non-empty")
    duplicated = sorted({t for t in tokens if tokens.count(t) > 1})
    if duplicated:
        raise ValueError(f"special tokens must be distinct; duplicated: {duplicated}")
    return tokens


def split_on_specials(text: str, special_tokens: Sequence[str]) -> list[tuple[str, bool]]:
    """Cut ``text`` into ``(piece, is_special)`` parts; the longest special token wins where several match."""
    check_str(text, "text")
    if not special_tokens:
        return [(text, False)] if text else []
    alternation = "|".join(regex.escape(t) for t in sorted(special_tokens, key=len, reverse=True))
    parts = []
    for i, piece in enumerate(regex.split(f"({alternation})", text)):
        if piece:
            parts.append((piece, i % 2 == 1))  # split with one group: odd positions are the separators
    return parts


def pretokenize(text: str, pattern: str = GPT2_PATTERN) -> list[str]:
    """Pre-tokens of ``text`` (no special-token handling); their concatenation is ``text`` for the GPT patterns."""
    check_str(text, "text")
    return compile_pattern(pattern).findall(text)


def to_bytes(text: str) -> bytes:
    """UTF-8 bytes; lone surrogates (not valid Unicode, but legal in a Python str) pass through losslessly."""
    return text.encode("utf-8", errors="surrogatepass")


def count_pretokens(text: str, pattern: str = GPT2_PATTERN, special_tokens: Sequence[str] = ()) -> Counter:
    """How often each pre-token occurs in ``text``; special tokens are cut out and not counted."""
    counts: Counter = Counter()
    for piece, is_special in split_on_specials(text, check_special_tokens(special_tokens)):
        if not is_special:
            counts.update(compile_pattern(pattern).findall(piece))
    return counts


def merge_pair(ids: Sequence[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids``, scanning left to right without overlaps, by ``new_id``."""
    out, i, n = [], 0, len(ids)
    a, b = pair
    while i < n:
        if i < n - 1 and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def number_of_merges(vocab_size: int, special_tokens: Sequence[str] = ()) -> int:
    """Merges needed for ``vocab_size`` = 256 byte tokens + merges + special tokens."""
    vocab_size = check_int(vocab_size, "vocab_size")
    n_special = len(check_special_tokens(special_tokens))
    if vocab_size < N_BYTES + n_special:
        raise ValueError(f"vocab_size {vocab_size} is too small: byte-level BPE needs 256 byte tokens plus "
                         f"{n_special} special token(s), so vocab_size >= {N_BYTES + n_special}")
    return vocab_size - N_BYTES - n_special


def initial_words(texts: str | Iterable[str], pattern: str = GPT2_PATTERN,
                  special_tokens: Sequence[str] = ()) -> tuple[list[list[int]], list[int]]:
    """Distinct pre-tokens as byte-id lists with their counts (pre-tokens of one byte have no pairs; dropped)."""
    if isinstance(texts, str):
        texts = [texts]
    counts: Counter = Counter()
    for text in texts:
        counts.update(count_pretokens(text, pattern, special_tokens))
    words, freqs = [], []
    for token, freq in counts.items():
        ids = list(to_bytes(token))
        if len(ids) > 1:
            words.append(ids)
            freqs.append(freq)
    return words, freqs


def train_naive(texts: str | Iterable[str], vocab_size: int, special_tokens: Sequence[str] = (),
                pattern: str = GPT2_PATTERN, progress: bool = False, tie_break: str = "bytes") -> list[Merge]:
    """Byte-level BPE merges, recounting every pair from scratch after each merge (the textbook loop).

    ``tie_break``: ``"bytes"`` (greater byte-string pair wins, CS336) or ``"ids"`` (smaller id pair wins)."""
    vocab = [bytes([b]) for b in range(N_BYTES)]
    key = tie_key(tie_break, vocab)
    n_merges = number_of_merges(vocab_size, special_tokens)
    words, freqs = initial_words(texts, pattern, special_tokens)
    merges: list[Merge] = []
    for step in tqdm(range(n_merges), desc="naive BPE", disable=not progress, leave=False):
        counts: dict[tuple[int, int], int] = defaultdict(int)
        for ids, freq in zip(words, freqs):
            for pair in zip(ids, ids[1:]):
                counts[pair] += freq
        if not counts:
            break  # every pre-token is a single symbol: nothing left to merge
        best = min(counts, key=lambda p: (-counts[p], key(p), p))  # highest count, then the tie rule
        merges.append(Merge(best, counts[best]))
        vocab.append(vocab[best[0]] + vocab[best[1]])
        new_id = N_BYTES + step
        words = [merge_pair(ids, best, new_id) for ids in words]
    return merges


def train_fast(texts: str | Iterable[str], vocab_size: int, special_tokens: Sequence[str] = (),
               pattern: str = GPT2_PATTERN, progress: bool = False, tie_break: str = "bytes") -> list[Merge]:
    """The same merges as :func:`train_naive` (same ``tie_break``), updating pair counts incrementally with a lazy
    max-heap."""
    vocab = [bytes([b]) for b in range(N_BYTES)]
    key = tie_key(tie_break, vocab)
    n_merges = number_of_merges(vocab_size, special_tokens)
    words, freqs = initial_words(texts, pattern, special_tokens)
    counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)  # pair -> indices of words that (may) contain it
    for w, (ids, freq) in enumerate(zip(words, freqs)):
        for pair in zip(ids, ids[1:]):
            counts[pair] += freq
            where[pair].add(w)
    heap = [(-count, key(pair), pair) for pair, count in counts.items()]  # min-heap: highest count, then tie rule
    heapq.heapify(heap)
    merges: list[Merge] = []
    bar = tqdm(total=n_merges, desc="fast BPE", disable=not progress, leave=False)
    while len(merges) < n_merges and heap:
        neg_count, _, pair = heapq.heappop(heap)
        current = counts.get(pair, 0)
        if current <= 0:
            continue  # the pair has disappeared
        if -neg_count != current:  # stale entry: counts only ever fall, so re-queue with the true count
            heapq.heappush(heap, (-current, key(pair), pair))
            continue
        new_id = N_BYTES + len(merges)
        merges.append(Merge(pair, current))
        vocab.append(vocab[pair[0]] + vocab[pair[1]])
        delta: dict[tuple[int, int], int] = defaultdict(int)
        for w in where.pop(pair):
            ids = words[w]
            merged = merge_pair(ids, pair, new_id)
            if len(merged) == len(ids):
                continue  # this word lost the pair in an earlier merge
            freq = freqs[w]
            for old in zip(ids, ids[1:]):
                delta[old] -= freq
            for new in zip(merged, merged[1:]):
                delta[new] += freq
                if new_id in new:
                    where[new].add(w)
            words[w] = merged
        for changed, d in delta.items():
            if d:
                counts[changed] += d
                if new_id in changed and counts[changed] > 0:  # brand-new pairs enter the heap once
                    heapq.heappush(heap, (-counts[changed], key(changed), changed))
        counts.pop(pair, None)
        bar.update(1)
    bar.close()
    return merges
