"""Chunking: word windows with overlap (exact chunks by hand, the tail kept once), documents into ids, line windows,
argument checks."""

from dataclasses import FrozenInstanceError, dataclass

import numpy as np
import pytest

from course_utils.rag.chunking import Chunk, chunk_documents, chunk_lines, chunk_words

TEN = "w0 w1 w2 w3 w4 w5 w6 w7 w8 w9"


@dataclass
class Doc:
    doc_id: str
    text: str


def test_chunk_words_by_hand():
    assert chunk_words(TEN, 4) == ["w0 w1 w2 w3", "w4 w5 w6 w7", "w8 w9"]
    # step 4 - 2 = 2: starts 0, 2, 4, 6; the window at 6 reaches the end, so no window starts at 8
    assert chunk_words(TEN, 4, overlap=2) == ["w0 w1 w2 w3", "w2 w3 w4 w5", "w4 w5 w6 w7", "w6 w7 w8 w9"]
    assert chunk_words(TEN, 5, overlap=1) == ["w0 w1 w2 w3 w4", "w4 w5 w6 w7 w8", "w8 w9"]
    assert chunk_words(TEN, 10, overlap=3) == [TEN]


def test_chunk_words_short_empty_and_whitespace():
    assert chunk_words("  a\n b\tc ", 80, overlap=20) == ["a b c"]  # shorter than size: one chunk, spaces normalised
    assert chunk_words("", 5) == [] and chunk_words(" \n ", 5, 1) == []


@pytest.mark.parametrize("n_words,size,overlap", [(1, 1, 0), (7, 3, 2), (23, 5, 2), (100, 80, 20), (81, 80, 79)])
def test_chunk_words_covers_every_word_and_overlaps_exactly(n_words, size, overlap):
    words = [f"w{i}" for i in range(n_words)]
    chunks = [c.split() for c in chunk_words(" ".join(words), size, overlap)]
    step = size - overlap
    assert all(c == words[i * step:i * step + size] for i, c in enumerate(chunks))
    assert chunks[-1][-1] == words[-1] and (len(chunks) == 1 or chunks[-2][-1] != words[-1])


def test_chunk_documents_ids_and_order():
    docs = [Doc("alpha", TEN), Doc("beta", "one two"), Doc("empty", "")]
    chunks = chunk_documents(docs, size=6, overlap=2)
    assert chunks == [Chunk("alpha#0", "alpha", "w0 w1 w2 w3 w4 w5"), Chunk("alpha#1", "alpha", "w4 w5 w6 w7 w8 w9"),
                      Chunk("beta#0", "beta", "one two")]
    with pytest.raises(FrozenInstanceError):
        chunks[0].text = "x"


def test_chunk_documents_errors():
    with pytest.raises(ValueError, match="duplicate doc_id 'a'"):
        chunk_documents([Doc("a", "x"), Doc("a", "y")])
    with pytest.raises(TypeError, match=r"\.doc_id and \.text"):
        chunk_documents(["just a string"])
    with pytest.raises(ValueError, match="overlap must be smaller than size"):
        chunk_documents([Doc("a", "x")], size=5, overlap=5)


def test_chunk_lines_skips_empty_lines_and_strides():
    text = "l0\n\n  l1  \nl2\n   \nl3\nl4\n"
    assert chunk_lines(text, 2, 2) == ["l0\nl1", "l2\nl3", "l4"]
    assert chunk_lines(text, 3, 1) == ["l0\nl1\nl2", "l1\nl2\nl3", "l2\nl3\nl4"]
    assert chunk_lines(text, 10, 4) == ["l0\nl1\nl2\nl3\nl4"]
    assert chunk_lines("\n \n", 3, 1) == []


@pytest.mark.parametrize("call,exc,message", [
    (lambda: chunk_words(TEN, 0), ValueError, "size must be an int >= 1, got 0"),
    (lambda: chunk_words(TEN, 4, overlap=4), ValueError, r"0 <= overlap < size\), got overlap=4, size=4"),
    (lambda: chunk_words(TEN, 4, overlap=-1), ValueError, "overlap must be an int >= 0, got -1"),
    (lambda: chunk_words(TEN, 4.0), TypeError, "size must be an int >= 1, got 4.0"),
    (lambda: chunk_words(["a", "b"], 4), TypeError, "text must be a str, got list"),
    (lambda: chunk_lines(TEN, 2, 3), ValueError, "stride must be <= lines_per_chunk"),
    (lambda: chunk_lines(TEN, 2, 0), ValueError, "stride must be an int >= 1, got 0"),
    (lambda: chunk_lines(TEN, 0, 1), ValueError, "lines_per_chunk must be an int >= 1, got 0"),
])
def test_argument_errors(call, exc, message):
    with pytest.raises(exc, match=message):
        call()


def test_no_documents_or_only_blank_ones_is_an_error_not_an_empty_list():
    with pytest.raises(ValueError, match="no chunks: documents is empty"):
        chunk_documents([])  # returned [] and failed later, in a retriever
    with pytest.raises(ValueError, match="no chunks: every document text is blank"):
        chunk_documents([Doc("a", ""), Doc("b", "  \n")])
    assert [c.text for c in chunk_documents([Doc("a", ""), Doc("b", TEN)],
                                            size=np.int64(20), overlap=np.int64(2))] == [TEN]
    assert chunk_words(TEN, np.int64(5), np.int64(0)) == chunk_words(TEN, 5)
