"""Three retrievers behind one interface: BM25 (lexical), dense (MiniLM cosine) and hybrid (RRF of the two).

Each takes a list of :class:`~course_utils.rag.chunking.Chunk` once and answers ``.search(queries, k)`` with one
list of :class:`Hit` per query, best first; ``.name`` labels it in tables and plots. The pieces are
:mod:`~course_utils.rag.bm25`, :mod:`~course_utils.rag.dense` and :mod:`~course_utils.rag.hybrid`; see their
docstrings for the maths and references.

Conventions: the BM25 retriever leaves out chunks that score exactly 0 (they share no weighted word with the query),
so a query can get fewer than k hits, and a query without any word token gets none; the dense retriever embeds all
queries of a call in one batch; the hybrid retriever fuses each retriever's top ``depth`` (RRF with k = ``rrf_k``),
so it needs k <= depth, and its ``score`` is the RRF score.

Left out: metadata filters, re-ranking, query rewriting, incremental indexing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from course_utils.arguments import check_int, check_real
from course_utils.rag.bm25 import BM25Index, tokenize
from course_utils.rag.chunking import Chunk
from course_utils.rag.dense import DenseIndex, cached_embeddings, encoder_cache_key
from course_utils.rag.hybrid import reciprocal_rank_fusion


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk: its position in the retriever's chunk list, the chunk, and the retriever's score."""

    index: int
    chunk: Chunk
    score: float


def _check_chunks(chunks: object) -> list[Chunk]:
    if isinstance(chunks, (str, bytes)) or not isinstance(chunks, Sequence) or len(chunks) == 0:
        raise ValueError("chunks must be a non-empty sequence of Chunk (see chunking.chunk_documents)")
    if not all(isinstance(c, Chunk) for c in chunks):
        raise TypeError("chunks must all be course_utils.rag.chunking.Chunk")
    return list(chunks)


def _check_search(queries: object, k: object) -> int:
    """``k`` as a Python int (numpy ints too, e.g. from np.arange), after checking the queries."""
    if isinstance(queries, str) or not isinstance(queries, Sequence) or not all(isinstance(q, str) for q in queries):
        raise TypeError("queries must be a sequence of str (wrap a single query in a list)")
    return check_int(k, "k", minimum=1)


class BM25Retriever:
    """BM25 over the chunks' texts, tokenized with :func:`~course_utils.rag.bm25.tokenize`."""

    name = "BM25"

    def __init__(self, chunks: Sequence[Chunk], k1: float = 1.5, b: float = 0.75, variant: str = "okapi",
                 epsilon: float = 0.25, stopwords: frozenset | None = None):
        self.chunks = _check_chunks(chunks)
        self.stopwords = stopwords
        self.index = BM25Index([tokenize(c.text, stopwords) for c in self.chunks], k1=k1, b=b, epsilon=epsilon,
                               variant=variant)

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        k = _check_search(queries, k)
        out = []
        for query in queries:
            tokens = tokenize(query, self.stopwords)
            if not tokens:
                out.append([])
                continue
            indices, scores = self.index.search(tokens, k)
            out.append([Hit(int(i), self.chunks[i], float(s)) for i, s in zip(indices, scores) if s != 0])
        return out


class DenseRetriever:
    """Cosine similarity between MiniLM embeddings of the query and of every chunk (chunks embedded once, cached
    under ``name``). ``embed`` (texts -> unit (n, C) tensor) replaces MiniLM, e.g. in tests; ``device`` is where
    the index lives (default CPU)."""

    name = "dense"

    def __init__(self, chunks: Sequence[Chunk], loaded_minilm: object, name: str,
                 embed: Callable[[Sequence[str]], torch.Tensor] | None = None, batch_size: int = 64,
                 progress: bool = True, device: torch.device | str | None = None, key: str | None = None):
        self.chunks = _check_chunks(chunks)
        if embed is None:
            from course_utils.model.pretrained import embed_sentences

            if key is None:  # the default encoder's key, as cached_embeddings gives it: one cache file for both
                key = encoder_cache_key(loaded_minilm)

            def embed(texts: Sequence[str]) -> torch.Tensor:
                return embed_sentences(loaded_minilm, texts, batch_size=batch_size)

        self.embed = embed
        embeddings = cached_embeddings(loaded_minilm, [c.text for c in self.chunks], name, batch_size=batch_size,
                                       progress=progress, embed=embed, key=key)  # (N, C)
        self.index = DenseIndex(embeddings.to(device) if device is not None else embeddings)

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        k = _check_search(queries, k)
        if len(queries) == 0:
            return []
        scores, indices = self.index.search(self.embed(list(queries)), k)  # (Q, k), (Q, k)
        scores, indices = scores.cpu().tolist(), indices.cpu().tolist()
        return [[Hit(i, self.chunks[i], s) for i, s in zip(row_i, row_s)] for row_i, row_s in zip(indices, scores)]


class HybridRetriever:
    """Reciprocal rank fusion of a BM25 and a dense retriever over the same chunks."""

    name = "hybrid"

    def __init__(self, bm25: BM25Retriever, dense: DenseRetriever, rrf_k: float = 60, depth: int = 50):
        if not isinstance(bm25, BM25Retriever) or not isinstance(dense, DenseRetriever):
            raise TypeError("HybridRetriever(bm25, dense) needs a BM25Retriever and a DenseRetriever")
        if [c.chunk_id for c in bm25.chunks] != [c.chunk_id for c in dense.chunks]:
            raise ValueError("bm25 and dense must index the same chunks in the same order")
        depth = check_int(depth, "depth", minimum=1)  # numpy ints too
        self.rrf_k = check_real(rrf_k, "rrf_k", minimum=0, keep_int=True,  # as reciprocal_rank_fusion's k
                                allowed="a finite number >= 0 (60 in Cormack et al., 2009)")
        self.bm25, self.dense, self.depth = bm25, dense, depth
        self.chunks = bm25.chunks

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        k = _check_search(queries, k)
        if k > self.depth:
            raise ValueError(f"k must be <= depth (the hybrid fuses each retriever's top {self.depth}), got k={k}")
        lexical, dense = self.bm25.search(queries, self.depth), self.dense.search(queries, self.depth)
        out = []
        for lex_hits, dense_hits in zip(lexical, dense):
            fused = reciprocal_rank_fusion([[h.index for h in lex_hits], [h.index for h in dense_hits]],
                                           k=self.rrf_k, top=k)
            out.append([Hit(i, self.chunks[i], score) for i, score in fused])
        return out
