"""A byte-level BPE tokenizer: encode (by merges or by tiktoken ranks), stream, decode, save and load.

Encoding follows GPT-2 (Radford et al., 2019) and tiktoken: cut the text at the allowed special tokens, pre-tokenize
the rest with the same regular expression used in training, and inside each pre-token merge adjacent pairs:

* built from a **merge list** (our trainers, or someone else's ``vocab`` and ``merges`` via
  :meth:`BPETokenizer.from_vocab_merges`): the adjacent pair with the lowest merge rank (earliest learned) is merged,
  all its left-to-right occurrences at once, as in GPT-2's ``encoder.py``. That reproduces exactly the segmentation
  training gave to every training word;
* built from **tiktoken ranks** (:meth:`BPETokenizer.from_ranks`, e.g. cl100k_base): a pre-token that is itself a
  token is one id; otherwise the adjacent pair whose *concatenation* has the lowest rank is merged, leftmost first,
  one occurrence at a time (tiktoken's ``_byte_pair_merge``), and a token's id is its rank.

Results are cached per distinct pre-token, since natural text repeats its words constantly (Zipf's law).

Ids: trained tokenizers number bytes 0-255 in byte order, merge ``i`` is id ``256 + i`` and special tokens come
last. Tokenizers built from someone else's files keep *their* ids (GPT-2's byte ids are not 0-255 in byte order;
cl100k_base leaves id 100256 unused), so ``vocab`` is a list indexed by id in which unused ids are ``None``.
``decode`` joins bytes then decodes UTF-8 once, with ``errors="replace"`` by default as in tiktoken: bytes that are not
valid UTF-8 (half a multi-byte character, or the bytes of a surrogate) become U+FFFD instead of raising.
``decode(encode(s), errors="surrogatepass") == s`` for every Python string, lone surrogates included. Special tokens
are handled as in tiktoken (:mod:`course_utils.text.bpe.specials`): their text raises ``ValueError`` unless allowed
or disallowed explicitly. :meth:`BPETokenizer.encode_iterable` streams (:mod:`course_utils.text.bpe.stream`).

The file format (``save``/``load``, trained tokenizers only) is one JSON object with a format tag, version, pattern,
special tokens, merges and a SHA-256 checksum of the rest, so a truncated or edited file is reported.

Left out: byte fallback/unknown tokens (never needed at byte level), BPE-dropout, normalisation, offsets, tiktoken's
faster algorithm for very long pre-tokens (ours is quadratic in a pre-token's length, as tiktoken's default is).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Collection, Iterable, Iterator, Mapping, Sequence

from course_utils.arguments import check_int, check_str
from course_utils.text.bpe.specials import check_disallowed, resolve_specials, split_allowed
from course_utils.text.bpe.train import (GPT2_PATTERN, N_BYTES, check_special_tokens, compile_pattern, merge_pair,
                                         to_bytes)
from course_utils.text.bpe.vocab_files import load_merges, save_merges, special_ids, vocab_list
_NO_RANK = 1 << 62
DECODE_ERRORS = ("replace", "strict", "surrogatepass", "ignore", "backslashreplace", "surrogateescape")


class BPETokenizer:
    """Byte-level BPE from ``merges`` (pairs of ids, merge ``i`` -> id ``256 + i``) and optional special tokens.

    Other constructors: :meth:`from_vocab_merges` (someone else's vocabulary and merges, their ids) and
    :meth:`from_ranks` (tiktoken's mergeable ranks, e.g. cl100k_base)."""

    def __init__(self, merges: Sequence[tuple[int, int]], special_tokens: Sequence[str] = (),
                 pattern: str = GPT2_PATTERN, cache_size: int = 200_000) -> None:
        pairs: list[tuple[int, int]] = []
        for i, pair in enumerate(merges):
            pair = getattr(pair, "pair", pair)  # accept Merge objects from the trainers
            if (not isinstance(pair, (tuple, list)) or len(pair) != 2
                    or not all(isinstance(x, int) and not isinstance(x, bool) for x in pair)):
                raise ValueError(f"merge {i} must be a pair of int ids, got {pair!r}")
            if not all(0 <= x < N_BYTES + i for x in pair):
                raise ValueError(f"merge {i} = {tuple(pair)} refers to an id outside [0, {N_BYTES + i}): a merge can "
                                 "only combine bytes and tokens created by earlier merges")
            pairs.append((int(pair[0]), int(pair[1])))
        vocab: list[bytes | None] = [bytes([b]) for b in range(N_BYTES)]
        for a, b in pairs:
            vocab.append(vocab[a] + vocab[b])
        specials = check_special_tokens(special_tokens)
        special_ids = {t: len(vocab) + j for j, t in enumerate(specials)}
        vocab.extend(to_bytes(t) for t in specials)
        self._setup(vocab, list(range(N_BYTES)), pairs, [N_BYTES + i for i in range(len(pairs))], special_ids,
                    pattern, cache_size, kind="trained")

    def _setup(self, vocab, byte_ids, merges, merged_ids, special_tokens, pattern, cache_size, kind,
               ranked: dict[bytes, int] | None = None) -> None:
        self.pattern = pattern
        self._regex = compile_pattern(pattern)
        self.vocab: list[bytes | None] = vocab
        self.merges: list[tuple[int, int]] = merges
        self.ranks = {pair: i for i, pair in enumerate(merges)}
        self._merged_ids = merged_ids  # rank -> id of the token the merge creates
        self._byte_ids = byte_ids  # byte value -> id
        self._identity_bytes = byte_ids == list(range(N_BYTES))
        self._ranked = ranked  # tiktoken ranks (bytes -> id), or None for merge lists
        self.special_tokens: dict[str, int] = dict(special_tokens)
        self.kind = kind
        self.cache_size = check_int(cache_size, "cache_size", minimum=0, allowed="an int >= 0 (0 disables the cache)")
        self._cache: dict[str, tuple[int, ...]] = {}

    @classmethod
    def from_vocab_merges(cls, vocab: Mapping[int, bytes], merges: Sequence[tuple[bytes, bytes]],
                          special_tokens: Sequence[str] | Mapping[str, int] = (), pattern: str = GPT2_PATTERN,
                          cache_size: int = 200_000) -> "BPETokenizer":
        """A tokenizer from another implementation's files, keeping **their** ids (the CS336 interface).

        ``vocab``: id -> token bytes (all 256 single bytes included); ``merges``: pairs of byte strings in the order
        learned, each pair and its concatenation in ``vocab``. ``special_tokens``: strings (their id in ``vocab`` if
        present, else the next free ids) or a mapping string -> id."""
        table = vocab_list(vocab)
        id_of = {t: i for i, t in enumerate(table) if t is not None}
        missing = [b for b in range(N_BYTES) if bytes([b]) not in id_of]
        if missing:
            raise ValueError(f"vocab lacks the single-byte tokens {missing[:8]}: byte-level BPE needs all 256")
        pairs, merged = [], []
        for i, merge in enumerate(merges):
            if not (isinstance(merge, (tuple, list)) and len(merge) == 2 and all(isinstance(x, bytes) for x in merge)):
                raise ValueError(f"merge {i} must be a pair of byte strings, got {merge!r}")
            a, b = merge
            absent = [t for t in (a, b, a + b) if t not in id_of]
            if absent:
                raise ValueError(f"merge {i} = {merge!r}: {absent[0]!r} is not in vocab")
            pairs.append((id_of[a], id_of[b]))
            merged.append(id_of[a + b])
        specials = special_ids(special_tokens, table, id_of)
        tok = cls.__new__(cls)
        tok._setup(table, [id_of[bytes([b])] for b in range(N_BYTES)], pairs, merged, specials, pattern, cache_size,
                   kind="vocab+merges")
        return tok

    @classmethod
    def from_ranks(cls, ranks: Mapping[bytes, int], pattern: str, special_tokens: Mapping[str, int] = {},
                   cache_size: int = 200_000) -> "BPETokenizer":
        """A tokenizer from tiktoken's mergeable ranks (token bytes -> rank = id), e.g. read by
        :func:`course_utils.text.bpe.vocab_files.load_tiktoken_ranks`. Merges are implied by the ranks."""
        if not isinstance(ranks, Mapping) or not all(isinstance(t, bytes) and isinstance(r, int)
                                                     for t, r in ranks.items()):
            raise TypeError("ranks must map token bytes to int ranks, e.g. {b'a': 64, ...}")
        table = vocab_list({r: t for t, r in ranks.items()})
        if len(ranks) != sum(t is not None for t in table):
            raise ValueError("ranks must be distinct: two tokens share a rank")
        missing = [b for b in range(N_BYTES) if bytes([b]) not in ranks]
        if missing:
            raise ValueError(f"ranks lack the single-byte tokens {missing[:8]}: byte-level BPE needs all 256")
        specials = special_ids(special_tokens, table, dict(ranks))
        tok = cls.__new__(cls)
        tok._setup(table, [ranks[bytes([b])] for b in range(N_BYTES)], [], [], specials, pattern, cache_size,
                   kind="tiktoken ranks", ranked=dict(ranks))
        return tok

    def __repr__(self) -> str:
        return (f"BPETokenizer({self.kind}, vocab_size={self.vocab_size}, merges={len(self.merges)}, "
                f"special_tokens={list(self.special_tokens)})")

    @property
    def vocab_size(self) -> int:
        """One more than the largest id (tiktoken's ``n_vocab``)."""
        return len(self.vocab)

    # ---- encoding -------------------------------------------------------------------------------------------
    def bpe(self, ids: Sequence[int]) -> list[int]:
        """Apply the merges to one pre-token's byte ids, lowest rank first (merge-list tokenizers)."""
        ids = list(ids)
        ranks, merged_ids = self.ranks, self._merged_ids
        while len(ids) > 1:
            best = min(zip(ids, ids[1:]), key=lambda p: ranks.get(p, _NO_RANK))
            rank = ranks.get(best)
            if rank is None:
                break  # no adjacent pair is a known merge
            ids = merge_pair(ids, best, merged_ids[rank])
        return ids

    def _bpe_ranked(self, data: bytes) -> list[int]:
        """tiktoken's algorithm: merge the leftmost adjacent pair whose concatenation has the lowest rank."""
        ranks = self._ranked
        whole = ranks.get(data)
        if whole is not None:
            return [whole]
        parts = [data[i:i + 1] for i in range(len(data))]
        while len(parts) > 1:
            best_rank, best = _NO_RANK, -1
            for i in range(len(parts) - 1):
                rank = ranks.get(parts[i] + parts[i + 1], _NO_RANK)
                if rank < best_rank:
                    best_rank, best = rank, i
            if best < 0:
                break
            parts[best:best + 2] = [parts[best] + parts[best + 1]]
        return [ranks[p] for p in parts]

    def _encode_pretoken(self, piece: str) -> tuple[int, ...]:
        ids = self._cache.get(piece)
        if ids is None:
            data = to_bytes(piece)
            if self._ranked is not None:
                ids = tuple(self._bpe_ranked(data))
            else:
                ids = tuple(self.bpe(data if self._identity_bytes else [self._byte_ids[b] for b in data]))
            if self.cache_size:
                if len(self._cache) >= self.cache_size:
                    self._cache.clear()  # simple bound on memory; the cache refills with the frequent words
                self._cache[piece] = ids
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Ids of ``text`` treating any special-token strings in it as ordinary text."""
        check_str(text, "text")
        out: list[int] = []
        encode_pretoken = self._encode_pretoken
        for piece in self._regex.findall(text):
            out.extend(encode_pretoken(piece))
        return out

    def encode(self, text: str, *, allowed_special: str | Collection[str] = (),
               disallowed_special: str | Collection[str] = "all") -> list[int]:
        """Ids of ``text``, special tokens as in tiktoken: an allowed special token's text becomes its id; a
        disallowed one's raises ``ValueError`` (by default all are disallowed); others are ordinary text."""
        check_str(text, "text")
        allowed, disallowed = resolve_specials(self.special_tokens, allowed_special, disallowed_special)
        check_disallowed(text, disallowed)
        if not allowed:
            return self.encode_ordinary(text)
        out: list[int] = []
        for piece, is_special in split_allowed(text, allowed):
            if is_special:
                out.append(self.special_tokens[piece])
            else:
                out.extend(self.encode_ordinary(piece))
        return out

    def encode_iterable(self, chunks: Iterable[str], *, allowed_special: str | Collection[str] = (),
                        disallowed_special: str | Collection[str] = "all") -> Iterator[int]:
        """Lazily the ids of ``"".join(chunks)`` (e.g. an open file, line by line), in memory bounded by the longest
        pre-token, not by the text. Same ids and special-token rules as :meth:`encode`."""
        from course_utils.text.bpe.stream import encode_chunks

        if isinstance(chunks, (str, bytes)):
            raise TypeError("encode_iterable takes an iterable of strings (e.g. an open text file); "
                            "for one string use encode")
        allowed, disallowed = resolve_specials(self.special_tokens, allowed_special, disallowed_special)
        return encode_chunks(self, chunks, allowed, disallowed)

    def merge_steps(self, text: str) -> list[tuple[int | None, list[list[int]]]]:
        """How ``text`` is split merge by merge: ``[(rank or None, [ids of each pre-token]), ...]``.

        Step 0 is the raw bytes; each later step applies the lowest-ranked merge present anywhere in the text.
        The last step equals :meth:`encode_ordinary` (merges in different pre-tokens do not interact).
        """
        if self._ranked is not None:
            raise ValueError("merge_steps needs a merge list; this tokenizer was built from tiktoken ranks")
        pieces = [[self._byte_ids[b] for b in to_bytes(p)] for p in self._regex.findall(text)]
        steps: list[tuple[int | None, list[list[int]]]] = [(None, [list(p) for p in pieces])]
        while True:
            present = [self.ranks[p] for ids in pieces for p in zip(ids, ids[1:]) if p in self.ranks]
            if not present:
                return steps
            rank = min(present)
            pieces = [merge_pair(ids, self.merges[rank], self._merged_ids[rank]) for ids in pieces]
            steps.append((rank, [list(p) for p in pieces]))

    # ---- decoding -------------------------------------------------------------------------------------------
    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        if isinstance(ids, (str, bytes)):
            raise TypeError("decode takes a sequence of int ids, not a string")
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        vocab = self.vocab
        n = len(vocab)
        try:
            if any(isinstance(i, bool) for i in ids):   # True would index vocab[1]: refused, as by _check_ids
                raise TypeError
            return b"".join(vocab[i] if 0 <= i else vocab[n] for i in ids)
        except (IndexError, TypeError):
            bad = [i for i in ids if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < n
                   or vocab[i] is None]
            raise ValueError(f"token ids must be ints in [0, {n}) that this vocabulary uses; got {bad[:5]}") from None

    def decode(self, ids: Sequence[int], errors: str = "replace") -> str:
        """Text of ``ids``: the tokens' bytes joined, then decoded as UTF-8 with ``errors``, as tiktoken does.

        ``"replace"`` (the default): bytes that are not valid UTF-8 become U+FFFD, half a character as well as the
        bytes of a surrogate (ED A0 80 for U+D800), which a byte-level model can emit token by token. ``"strict"``
        raises instead. ``"surrogatepass"`` is the lossless round trip for Python strings: the bytes of a lone
        surrogate come back as that surrogate, so ``decode(encode(s), errors="surrogatepass") == s`` for every
        string ``s`` (other invalid UTF-8 raises); such a string cannot be printed or written as UTF-8.
        ``"ignore"``, ``"backslashreplace"`` and ``"surrogateescape"`` are Python's handlers of those names.
        """
        if errors not in DECODE_ERRORS:
            raise ValueError(f"errors must be one of {', '.join(map(repr, DECODE_ERRORS))}; got {errors!r}")
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    def token_str(self, token_id: int) -> str:
        """A readable form of one token (invalid UTF-8 bytes shown as U+FFFD)."""
        return self.decode_bytes([token_id]).decode("utf-8", errors="replace")

    # ---- files ----------------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write a trained tokenizer as checksummed JSON, atomically (see :mod:`course_utils.text.bpe.vocab_files`)."""
        if self.kind != "trained":
            raise ValueError(f"save writes trained tokenizers only; this one was built from {self.kind}: keep the "
                             "original files instead")
        return save_merges(path, self.pattern, list(self.special_tokens), self.merges)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BPETokenizer":
        """Read a file written by :meth:`save`; a truncated, corrupt or foreign file raises ``ValueError``."""
        pattern, special_tokens, merges = load_merges(path)
        return cls(merges, special_tokens, pattern)
