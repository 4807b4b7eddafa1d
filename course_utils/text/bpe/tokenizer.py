"""A byte-level BPE tokenizer built from a list of merges: encode, decode, merge-by-merge steps, save and load.

Encoding follows GPT-2 (Radford et al., 2019) and tiktoken: cut the text at special tokens, pre-tokenize the rest
with the same regular expression used in training, and inside each pre-token apply merges by rank, always the
lowest-ranked (earliest learned) adjacent pair first, leftmost occurrence first. That reproduces exactly the
segmentation training gave to every training word. Results are cached per distinct pre-token, since natural text
repeats its words constantly (Zipf's law).

Ids: 0-255 are the bytes, merge ``i`` is id ``256 + i``, and special tokens come last, in the order given.
``decode`` turns ids into bytes and then UTF-8 text; a model can emit an id sequence that is not valid UTF-8
(half a multi-byte character), which decodes to U+FFFD instead of raising. ``decode(encode(s)) == s`` for every
Python string, lone surrogates included.

The file format (``save``/``load``) is one JSON object with a format tag, version, pattern, special tokens, merges
and a SHA-256 checksum of the rest, so a truncated or edited file is reported instead of silently loaded.

Left out: byte fallback/unknown tokens (never needed at byte level), BPE-dropout, normalisation, offsets.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Sequence

from course_utils.text.bpe.train import (GPT2_PATTERN, N_BYTES, check_special_tokens, compile_pattern, merge_pair,
                        split_on_specials, to_bytes)

FORMAT = "course-utils-bpe"
VERSION = 1


class BPETokenizer:
    """Byte-level BPE from ``merges`` (pairs of ids, merge ``i`` -> id ``256 + i``) and optional special tokens."""

    def __init__(self, merges: Sequence[tuple[int, int]], special_tokens: Sequence[str] = (),
                 pattern: str = GPT2_PATTERN, cache_size: int = 200_000) -> None:
        self.pattern = pattern
        self._regex = compile_pattern(pattern)
        self.merges: list[tuple[int, int]] = []
        for i, pair in enumerate(merges):
            pair = getattr(pair, "pair", pair)  # accept Merge objects from the trainers
            if (not isinstance(pair, (tuple, list)) or len(pair) != 2
                    or not all(isinstance(x, int) and not isinstance(x, bool) for x in pair)):
                raise ValueError(f"merge {i} must be a pair of int ids, got {pair!r}")
            if not all(0 <= x < N_BYTES + i for x in pair):
                raise ValueError(f"merge {i} = {tuple(pair)} refers to an id outside [0, {N_BYTES + i}): a merge can "
                                 "only combine bytes and tokens created by earlier merges")
            self.merges.append((int(pair[0]), int(pair[1])))
        self.ranks = {pair: i for i, pair in enumerate(self.merges)}
        self.vocab: list[bytes] = [bytes([b]) for b in range(N_BYTES)]
        for a, b in self.merges:
            self.vocab.append(self.vocab[a] + self.vocab[b])
        specials = check_special_tokens(special_tokens)
        self.special_tokens = {t: len(self.vocab) + j for j, t in enumerate(specials)}
        self.vocab.extend(to_bytes(t) for t in specials)
        if not isinstance(cache_size, int) or cache_size < 0:
            raise ValueError(f"cache_size must be an int >= 0 (0 disables the cache), got {cache_size!r}")
        self.cache_size = cache_size
        self._cache: dict[str, tuple[int, ...]] = {}

    def __repr__(self) -> str:
        return (f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
                f"special_tokens={list(self.special_tokens)})")

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    # ---- encoding -------------------------------------------------------------------------------------------
    def bpe(self, ids: Sequence[int]) -> list[int]:
        """Apply the merges to one pre-token's byte ids, lowest rank first."""
        ids = list(ids)
        ranks = self.ranks
        while len(ids) > 1:
            best = min(zip(ids, ids[1:]), key=lambda p: ranks.get(p, 1 << 62))
            rank = ranks.get(best)
            if rank is None:
                break  # no adjacent pair is a known merge
            ids = merge_pair(ids, best, N_BYTES + rank)
        return ids

    def _encode_pretoken(self, piece: str) -> tuple[int, ...]:
        ids = self._cache.get(piece)
        if ids is None:
            ids = tuple(self.bpe(to_bytes(piece)))
            if self.cache_size:
                if len(self._cache) >= self.cache_size:
                    self._cache.clear()  # simple bound on memory; the cache refills with the frequent words
                self._cache[piece] = ids
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Ids of ``text`` treating any special-token strings in it as ordinary text."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        out: list[int] = []
        for piece in self._regex.findall(text):
            out.extend(self._encode_pretoken(piece))
        return out

    def encode(self, text: str, allow_special: bool = True) -> list[int]:
        """Ids of ``text``; with ``allow_special`` a special-token string becomes its single id."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if not allow_special or not self.special_tokens:
            return self.encode_ordinary(text)
        out: list[int] = []
        for piece, is_special in split_on_specials(text, list(self.special_tokens)):
            if is_special:
                out.append(self.special_tokens[piece])
            else:
                out.extend(self.encode_ordinary(piece))
        return out

    def merge_steps(self, text: str) -> list[tuple[int | None, list[list[int]]]]:
        """How ``text`` is split merge by merge: ``[(rank or None, [ids of each pre-token]), ...]``.

        Step 0 is the raw bytes; each later step applies the lowest-ranked merge present anywhere in the text.
        The last step equals :meth:`encode_ordinary` (merges in different pre-tokens do not interact).
        """
        pieces = [list(to_bytes(p)) for p in self._regex.findall(text)]
        steps: list[tuple[int | None, list[list[int]]]] = [(None, [list(p) for p in pieces])]
        while True:
            present = [self.ranks[p] for ids in pieces for p in zip(ids, ids[1:]) if p in self.ranks]
            if not present:
                return steps
            rank = min(present)
            pieces = [merge_pair(ids, self.merges[rank], N_BYTES + rank) for ids in pieces]
            steps.append((rank, [list(p) for p in pieces]))

    # ---- decoding -------------------------------------------------------------------------------------------
    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        if isinstance(ids, (str, bytes)):
            raise TypeError("decode takes a sequence of int ids, not a string")
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        n = self.vocab_size
        try:
            return b"".join(self.vocab[i] if 0 <= i else self.vocab[n] for i in ids)
        except (IndexError, TypeError):
            bad = [i for i in ids if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < n]
            raise ValueError(f"token ids must be ints in [0, {n}) for this {n}-token vocabulary; "
                             f"got {bad[:5]}") from None

    def decode(self, ids: Sequence[int], errors: str = "replace") -> str:
        """Text of ``ids``; invalid UTF-8 becomes U+FFFD (``errors="replace"``) or raises (``"strict"``)."""
        data = self.decode_bytes(ids)
        try:
            return data.decode("utf-8", errors="surrogatepass")  # lossless for every str encode accepted
        except UnicodeDecodeError:
            return data.decode("utf-8", errors=errors)

    def token_str(self, token_id: int) -> str:
        """A readable form of one token (invalid UTF-8 bytes shown as U+FFFD)."""
        return self.decode_bytes([token_id]).decode("utf-8", errors="replace")

    # ---- files ----------------------------------------------------------------------------------------------
    def _payload(self) -> dict:
        return {"pattern": self.pattern, "special_tokens": list(self.special_tokens),
                "merges": [list(p) for p in self.merges]}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the tokenizer as JSON, atomically (temporary file, then rename)."""
        path = Path(path)
        payload = self._payload()
        body = json.dumps(payload, sort_keys=True, ensure_ascii=True)
        record = {"format": FORMAT, "version": VERSION, "sha256": hashlib.sha256(body.encode()).hexdigest(),
                  **payload}
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(record, f, ensure_ascii=True)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BPETokenizer":
        """Read a file written by :meth:`save`; a truncated, corrupt or foreign file raises ``ValueError``."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer file at {path}")
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path} is not a readable tokenizer file (truncated or corrupt JSON: {err})") from None
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            raise ValueError(f"{path} is not a {FORMAT} file (missing or wrong 'format' field)")
        if record.get("version") != VERSION:
            raise ValueError(f"{path} has format version {record.get('version')!r}; this code reads {VERSION}")
        missing = [k for k in ("pattern", "special_tokens", "merges", "sha256") if k not in record]
        if missing:
            raise ValueError(f"{path} lacks the field(s) {missing}")
        payload = {k: record[k] for k in ("pattern", "special_tokens", "merges")}
        body = json.dumps(payload, sort_keys=True, ensure_ascii=True)
        if hashlib.sha256(body.encode()).hexdigest() != record["sha256"]:
            raise ValueError(f"{path} is corrupt: its checksum does not match its contents")
        merges = payload["merges"]
        if not isinstance(merges, list):
            raise ValueError(f"{path}: 'merges' must be a list of [left, right] id pairs")
        return cls([tuple(m) if isinstance(m, list) else m for m in merges], payload["special_tokens"],
                   payload["pattern"])
