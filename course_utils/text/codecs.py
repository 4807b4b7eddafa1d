"""Character and byte encodings: the two tokenizer-free ways to turn text into integer ids.

* :class:`CharCodec`: one id per distinct character of an alphabet fixed when the codec is built.
* :class:`ByteCodec`: one id per UTF-8 byte, ``vocab_size = 256``; it can encode any string, which is why
  byte-level BPE (chapter 03) starts from it.
* :class:`WordCodec`: one id per lower-cased word or punctuation mark among the most frequent ones of a corpus,
  everything else ``<unk>``; chapter 05 uses it so that every token a tiny model writes is a readable word.

Left out: subword tokenizers (chapter 03), case (WordCodec lower-cases), detokenisation beyond spacing punctuation.
"""

from __future__ import annotations

import numbers
import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch


def _check_ids(ids: Sequence[int] | torch.Tensor, vocab_size: int) -> list[int]:
    """``ids`` (a list, a 1-D tensor or numpy array, numpy ints included) as a list of Python ints in range."""
    if hasattr(ids, "tolist") and hasattr(ids, "shape"):
        if len(ids.shape) != 1:
            raise ValueError(f"decode takes a 1-D sequence of ids, got shape {tuple(ids.shape)}")
        ids = ids.tolist()
    ids = list(ids)
    bad = [i for i in ids if isinstance(i, bool) or not isinstance(i, numbers.Integral) or not 0 <= i < vocab_size]
    if bad:
        raise ValueError(f"ids must be ints in [0, {vocab_size}); got {bad[:5]}")
    return [int(i) for i in ids]


@dataclass(frozen=True)
class CharCodec:
    alphabet: str  # sorted distinct characters; the id of a character is its index

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> "CharCodec":
        chars: set[str] = set()
        for text in texts:
            chars.update(text)
        if not chars:
            raise ValueError("cannot build a character codec from empty text")
        return cls("".join(sorted(chars)))

    @property
    def vocab_size(self) -> int:
        return len(self.alphabet)

    def encode(self, text: str) -> list[int]:
        lookup = {c: i for i, c in enumerate(self.alphabet)}
        try:
            return [lookup[c] for c in text]
        except KeyError as err:
            raise ValueError(
                f"character {err.args[0]!r} is not in this codec's {self.vocab_size}-character alphabet; "
                "build the codec from texts that contain it, or use ByteCodec"
            ) from None

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        return "".join(self.alphabet[i] for i in _check_ids(ids, self.vocab_size))


@dataclass(frozen=True)
class ByteCodec:
    vocab_size: int = 256

    def __post_init__(self) -> None:
        if self.vocab_size != 256:
            raise ValueError("a byte codec has exactly 256 ids")

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Bytes back to text; an invalid UTF-8 sequence (a model can emit one) becomes U+FFFD, not an error."""
        return bytes(_check_ids(ids, 256)).decode("utf-8", errors="replace")


WORD_PIECES = re.compile(r"[a-z]+(?:'[a-z]+)*|[.,;:!?\[\]]|\n")
NO_SPACE_BEFORE = set(".,;:!?]")
UNK = "<unk>"


@dataclass(frozen=True)
class WordCodec:
    """Words and punctuation marks as tokens: ``"\\n"`` has id 0, ``<unk>`` id 1, then the vocabulary by frequency.

    Encoding lower-cases the text and keeps only words (letters with inner apostrophes), the marks ``.,;:!?[]``
    and newlines; words outside the vocabulary become ``<unk>``. Decoding joins tokens with spaces, none before a
    punctuation mark or around a newline, so ``decode(encode(text))`` is a normalised, lower-case ``text``.
    """
    vocabulary: tuple[str, ...]

    @classmethod
    def from_texts(cls, texts: Iterable[str], vocab_size: int) -> "WordCodec":
        if not isinstance(vocab_size, int) or vocab_size < 3:
            raise ValueError(f"vocab_size must be an int >= 3 (newline, <unk> and one word), got {vocab_size!r}")
        if isinstance(texts, (str, bytes)):
            raise TypeError("texts must be an iterable of strings, e.g. [text], not one string (its items would be "
                            "single characters)")
        counts: Counter = Counter()
        for text in texts:
            counts.update(t for t in WORD_PIECES.findall(text.lower()) if t != "\n")
        if not counts:
            raise ValueError("cannot build a word codec from text without words or punctuation marks")
        return cls(("\n", UNK) + tuple(w for w, _ in counts.most_common(vocab_size - 2)))

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary)

    @property
    def unk_id(self) -> int:
        return 1

    def encode(self, text: str) -> list[int]:
        lookup = {w: i for i, w in enumerate(self.vocabulary)}
        return [lookup.get(t, 1) for t in WORD_PIECES.findall(text.lower())]

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        out = ""
        for i in _check_ids(ids, self.vocab_size):
            token = self.vocabulary[i]
            glue = not out or out.endswith("\n") or token == "\n" or token in NO_SPACE_BEFORE
            out += token if glue else " " + token
        return out
