"""Chunking: documents into the passages that a retriever indexes.

A retriever returns passages, not whole documents: a passage short enough to sit in a prompt beside the question,
long enough to hold a fact with its context. Two splitters, both over whitespace-separated units:

- :func:`chunk_words` cuts a text into windows of ``size`` words that start every ``size - overlap`` words. The
  overlap keeps a fact that straddles a boundary whole in at least one chunk (the usual default of RAG toolkits,
  e.g. LangChain's text splitters, here counted in words instead of characters or tokens).
- :func:`chunk_lines` cuts verse (Shakespeare) into windows of non-empty lines, to build large corpora (10k-100k
  chunks) for the vector-index part of the chapter.

The last window always reaches the end of the text and no window lies wholly inside the one before it: the tail
is never dropped, and never repeated on its own.

Left out: splitting on sentences, paragraphs or tokenizer tokens, and "semantic" chunking by embedding similarity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from course_utils.arguments import check_int, check_str


@dataclass(frozen=True)
class Chunk:
    """One passage: ``chunk_id`` is ``f"{doc_id}#{i}"`` for the i-th chunk (from 0) of document ``doc_id``."""

    chunk_id: str
    doc_id: str
    text: str


def _windows(units: Sequence[str], size: int, step: int) -> list[Sequence[str]]:
    """Windows units[start:start + size] for start = 0, step, 2 step, ... until a window reaches the end."""
    if not units:
        return []
    out = []
    for start in range(0, len(units), step):
        out.append(units[start:start + size])
        if start + size >= len(units):
            break
    return out


def chunk_words(text: str, size: int, overlap: int = 0) -> list[str]:
    """Windows of ``size`` whitespace-separated words, a new one every ``size - overlap`` words, joined by single
    spaces. A text of at most ``size`` words gives one chunk; an empty (or all-whitespace) text gives none.
    Requires size >= 1 and 0 <= overlap < size."""
    check_str(text, "text")
    size = check_int(size, "size", minimum=1)
    overlap = check_int(overlap, "overlap", minimum=0)
    if overlap >= size:
        raise ValueError(f"overlap must be smaller than size (0 <= overlap < size), got overlap={overlap}, "
                         f"size={size}")
    return [" ".join(w) for w in _windows(text.split(), size, size - overlap)]


def chunk_documents(documents: Iterable, size: int = 80, overlap: int = 20) -> list[Chunk]:
    """Chunk every document (any object with ``.doc_id`` and ``.text``, e.g. ``knowledge.Document``) with
    :func:`chunk_words`; chunk ids are ``f"{doc_id}#{i}"``. Document ids must be unique (else two chunks would share
    an id)."""
    size = check_int(size, "size", minimum=1)
    overlap = check_int(overlap, "overlap", minimum=0)
    chunks: list[Chunk] = []
    seen: set[str] = set()
    for doc in documents:
        if not (hasattr(doc, "doc_id") and hasattr(doc, "text")):
            raise TypeError(f"each document needs .doc_id and .text attributes, got {type(doc).__name__}")
        doc_id = str(doc.doc_id)
        if doc_id in seen:
            raise ValueError(f"duplicate doc_id {doc_id!r}: document ids must be unique")
        seen.add(doc_id)
        for i, text in enumerate(chunk_words(doc.text, size, overlap)):
            chunks.append(Chunk(chunk_id=f"{doc_id}#{i}", doc_id=doc_id, text=text))
    if not chunks:  # an empty list looked like success and failed later, in a retriever
        raise ValueError(f"no chunks: {'documents is empty' if not seen else 'every document text is blank'}")
    return chunks


def chunk_lines(text: str, lines_per_chunk: int, stride: int) -> list[str]:
    """Windows of ``lines_per_chunk`` non-empty lines (stripped), a new one every ``stride`` lines, joined by
    newlines. Requires 1 <= stride <= lines_per_chunk (a larger stride would skip lines)."""
    check_str(text, "text")
    lines_per_chunk = check_int(lines_per_chunk, "lines_per_chunk", minimum=1)
    stride = check_int(stride, "stride", minimum=1)
    if stride > lines_per_chunk:
        raise ValueError(f"stride must be <= lines_per_chunk (1 <= stride <= lines_per_chunk, else lines are "
                         f"skipped), got stride={stride}, lines_per_chunk={lines_per_chunk}")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return ["\n".join(w) for w in _windows(lines, lines_per_chunk, stride)]
