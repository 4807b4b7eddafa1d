"""BM25 from scratch: the lexical retriever that dense retrieval is measured against.

Follows S. Robertson, S. Walker et al., "Okapi at TREC-3", 1994, and S. Robertson and H. Zaragoza, "The
Probabilistic Relevance Framework: BM25 and Beyond", 2009. For a query q_1..q_m and a document D of |D| tokens,

    score(D, q) = sum_i idf(q_i) * tf(q_i, D) (k1 + 1) / (tf(q_i, D) + k1 (1 - b + b |D| / avgdl))

k1 says how fast repeated occurrences of a word saturate, b how much long documents are penalised.

Two conventions, as A. Kamphuis et al., "Which BM25 Do You Mean? A Large-Scale Reproducibility Study of Scoring
Variants", 2020, list them:

- ``"okapi"`` reproduces rank-bm25's ``BM25Okapi`` exactly (tested to 1e-12):
  idf(w) = ln(N - n_w + 0.5) - ln(n_w + 0.5) for a word in n_w of the N documents. This idf is NEGATIVE for a word
  in more than half of the documents, so a document containing such a word would score LOWER than one without it.
  rank-bm25 therefore floors every negative idf at epsilon * (mean idf over the vocabulary, negative ones included,
  computed before flooring). An idf of exactly 0 (n_w = N / 2) is not negative and stays 0; a word in every
  document gets the floor. If the mean idf is itself negative (most words in most documents), so is the floor.
- ``"lucene"`` is Lucene's BM25Similarity (Lucene >= 8) and bm25s' default: idf(w) = ln(1 + (N - n_w + 0.5) /
  (n_w + 0.5)), always positive, so no floor; and the constant factor (k1 + 1) is dropped from the numerator (it
  scales every score alike and changes no ranking).

Repeated query tokens count once per occurrence; query words absent from the corpus add 0. Empty documents count
in N and in avgdl. Where rank-bm25 divides 0 by 0 (k1 = 0, or b = 1 with an empty document, for a word the document
lacks) it returns NaN; here a word a document lacks adds exactly 0 to it.

:func:`bm25_scores` is the readable reference (a loop over query words, vectorised over documents).
:class:`BM25Index` precomputes the per-(document, word) weights once in a sparse matrix (scipy CSC, one column per
word), so scoring a query costs O(N + postings of its words) instead of O(N * len(query)): it adds up the
postings of its words into N scores allocated for the query, and :func:`top_k` makes one pass over them.

Left out: stemming, stop-word lists (``tokenize`` takes your own), BM25L/BM25+/BM25F, Lucene's lossy one-byte
document-length encoding, query-term weighting.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Sequence

import numpy as np
import scipy.sparse

from course_utils.arguments import check_int, check_real, check_str

VARIANTS = ("okapi", "lucene")
# Runs of Unicode letters and digits: punctuation, apostrophes and underscores split words ("don't" -> don, t;
# "3.5" -> 3, 5). No stemming, so "kings" and "king" are different words.
TOKEN_RE = re.compile(r"[^\W_]+")


def tokenize(text: str, stopwords: frozenset | None = None) -> list[str]:
    """Lowercase word tokens: the runs of letters and digits of ``text`` (regex ``[^\\W_]+``), minus
    ``stopwords`` (lowercase words) if given."""
    check_str(text, "text")
    tokens = TOKEN_RE.findall(text.lower())
    if stopwords is not None:
        if not isinstance(stopwords, (set, frozenset)):
            raise TypeError(f"stopwords must be a frozenset of lowercase words or None, got {type(stopwords).__name__}")
        tokens = [t for t in tokens if t not in stopwords]
    return tokens


def check_corpus(tokenized_corpus: object) -> None:
    """TypeError unless a list/tuple of lists/tuples of str; ValueError if empty or without a single token."""
    if isinstance(tokenized_corpus, (str, bytes)) or not isinstance(tokenized_corpus, (list, tuple)):
        raise TypeError(f"tokenized_corpus must be a list of token lists (list[list[str]]), got "
                        f"{type(tokenized_corpus).__name__}")
    if len(tokenized_corpus) == 0:
        raise ValueError("tokenized_corpus is empty: need at least one document")
    for i, doc in enumerate(tokenized_corpus):
        if not isinstance(doc, (list, tuple)) or not all(isinstance(t, str) for t in doc):
            raise TypeError(f"tokenized_corpus must be a list of token lists (list[list[str]]); document {i} is "
                            f"{type(doc).__name__} {str(doc)[:40]!r} (tokenize texts first, e.g. with bm25.tokenize)")
    if not any(tokenized_corpus):
        raise ValueError("tokenized_corpus has no tokens at all (every document is empty): avgdl would be 0")


def check_parameters(k1: float, b: float, epsilon: float, variant: str = "okapi") -> tuple[float, float, float]:
    """ValueError unless k1 >= 0, 0 <= b <= 1, epsilon >= 0 (all finite) and variant in VARIANTS; returns
    ``(k1, b, epsilon)`` as Python floats (numpy numbers accepted)."""
    k1, b, epsilon = (check_real(value, name) for name, value in (("k1", k1), ("b", b), ("epsilon", epsilon)))
    k1 = check_real(k1, "k1", minimum=0, allowed=">= 0 (term-frequency saturation; 1.2-2.0 is usual)")
    b = check_real(b, "b", minimum=0, maximum=1, allowed="in [0, 1] (0: no length normalisation, 1: full)")
    epsilon = check_real(epsilon, "epsilon", minimum=0,
                         allowed=">= 0 (the floor of negative idfs, as a fraction of the mean idf)")
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; allowed: {', '.join(VARIANTS)}")
    return k1, b, epsilon


def check_query(query_tokens: object) -> None:
    if isinstance(query_tokens, str) or not isinstance(query_tokens, (list, tuple)):
        raise TypeError(f"query_tokens must be a list of str (tokenize the query first), got "
                        f"{type(query_tokens).__name__}")
    if len(query_tokens) == 0:
        raise ValueError("query has no tokens (an empty query, or one made only of stop words or punctuation)")
    if not all(isinstance(t, str) for t in query_tokens):
        raise TypeError("query_tokens must be a list of str")


def document_frequencies(tokenized_corpus: Sequence[Sequence[str]]) -> dict[str, int]:
    """word -> number of documents containing it, in order of first appearance (rank-bm25's order, which fixes
    the order of the idf sum, hence the floor's last bits)."""
    df: dict[str, int] = {}
    for doc in tokenized_corpus:
        for word in dict.fromkeys(doc):
            df[word] = df.get(word, 0) + 1
    return df


def idf_table(df: dict[str, int], n_docs: int, epsilon: float, variant: str) -> dict[str, float]:
    """word -> idf under ``variant`` (see the module docstring for the okapi floor)."""
    if variant == "lucene":
        return {w: math.log(1 + (n_docs - n + 0.5) / (n + 0.5)) for w, n in df.items()}
    idf = {w: math.log(n_docs - n + 0.5) - math.log(n + 0.5) for w, n in df.items()}
    idf_sum = 0.0
    for value in idf.values():  # sequential sum in vocabulary order, as rank-bm25 does
        idf_sum += value
    floor = epsilon * (idf_sum / len(idf))
    return {w: (floor if v < 0 else v) for w, v in idf.items()}


def _tf_part(tf: np.ndarray, norm: np.ndarray, k1: float, variant: str) -> np.ndarray:
    """tf (k1 + 1) / (tf + norm) (okapi) or tf / (tf + norm) (lucene), and exactly 0 where tf == 0."""
    numerator = tf * (k1 + 1) if variant == "okapi" else tf
    out = np.zeros_like(tf, dtype=np.float64)
    np.divide(numerator, tf + norm, out=out, where=tf > 0)
    return out


def length_norm(doc_len: np.ndarray, k1: float, b: float) -> np.ndarray:
    """k1 (1 - b + b |D| / avgdl) for every document: (N,)."""
    avgdl = int(doc_len.sum()) / len(doc_len)
    return k1 * (1 - b + b * doc_len / avgdl)


def bm25_scores(tokenized_corpus: Sequence[Sequence[str]], query_tokens: Sequence[str], k1: float = 1.5,
                b: float = 0.75, epsilon: float = 0.25, variant: str = "okapi") -> np.ndarray:
    """BM25 score of every document for the query: float64 (N,). With variant="okapi" this equals rank-bm25's
    ``BM25Okapi(tokenized_corpus, k1=k1, b=b, epsilon=epsilon).get_scores(query_tokens)``."""
    check_corpus(tokenized_corpus)
    k1, b, epsilon = check_parameters(k1, b, epsilon, variant)
    check_query(query_tokens)
    idf = idf_table(document_frequencies(tokenized_corpus), len(tokenized_corpus), epsilon, variant)
    counts = [Counter(doc) for doc in tokenized_corpus]
    norm = length_norm(np.array([len(doc) for doc in tokenized_corpus], dtype=np.float64), k1, b)  # (N,)
    scores = np.zeros(len(tokenized_corpus))  # (N,)
    for word in query_tokens:  # a repeated query word counts each time
        if word not in idf:
            continue  # unknown word: adds 0
        tf = np.array([c.get(word, 0) for c in counts], dtype=np.float64)  # (N,)
        scores += idf[word] * _tf_part(tf, norm, k1, variant)
    return scores


class BM25Index:
    """BM25 over a fixed tokenized corpus, with the weight of every (document, word) pair precomputed.

    ``weights`` is a scipy CSC matrix (N, V): column j holds idf(w_j) * tf-part for the documents containing word
    w_j (``vocab`` maps words to columns). Scoring a query adds up the columns of its words.
    """

    def __init__(self, tokenized_corpus: Sequence[Sequence[str]], k1: float = 1.5, b: float = 0.75,
                 epsilon: float = 0.25, variant: str = "okapi"):
        check_corpus(tokenized_corpus)
        check_parameters(k1, b, epsilon, variant)
        self.k1, self.b, self.epsilon, self.variant = float(k1), float(b), float(epsilon), variant
        self.n_docs = len(tokenized_corpus)
        df = document_frequencies(tokenized_corpus)
        self.vocab = {word: j for j, word in enumerate(df)}
        self.doc_freq = np.array(list(df.values()), dtype=np.int64)  # (V,)
        self.doc_len = np.array([len(doc) for doc in tokenized_corpus], dtype=np.int64)  # (N,)
        self.avgdl = int(self.doc_len.sum()) / self.n_docs
        self.idf = idf_table(df, self.n_docs, epsilon, variant)
        rows, cols, tfs = [], [], []
        for i, doc in enumerate(tokenized_corpus):
            for word, tf in Counter(doc).items():
                rows.append(i)
                cols.append(self.vocab[word])
                tfs.append(tf)
        rows_a, cols_a = np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64)  # (P,) postings
        tf_a = np.array(tfs, dtype=np.float64)  # (P,)
        norm = length_norm(self.doc_len.astype(np.float64), self.k1, self.b)  # (N,)
        idf_col = np.array(list(self.idf.values()), dtype=np.float64)  # (V,)
        data = idf_col[cols_a] * _tf_part(tf_a, norm[rows_a], self.k1, variant)  # (P,)
        self.weights = scipy.sparse.csc_array((data, (rows_a, cols_a)), shape=(self.n_docs, len(self.vocab)))
        self.weights.sort_indices()

    def __repr__(self) -> str:
        return (f"BM25Index(n_docs={self.n_docs}, vocab={len(self.vocab)}, postings={self.weights.nnz}, "
                f"k1={self.k1}, b={self.b}, variant={self.variant!r})")

    def scores(self, query_tokens: Sequence[str]) -> np.ndarray:
        """BM25 score of every document: float64 (N,), equal to :func:`bm25_scores` with the same settings."""
        check_query(query_tokens)
        scores = np.zeros(self.n_docs)  # (N,)
        indptr, indices, data = self.weights.indptr, self.weights.indices, self.weights.data
        for word in query_tokens:  # same order of additions as bm25_scores
            j = self.vocab.get(word)
            if j is None:
                continue
            lo, hi = indptr[j], indptr[j + 1]
            scores[indices[lo:hi]] += data[lo:hi]  # row indices within a column are distinct
        return scores

    def search(self, query_tokens: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """The top-k documents: (indices (k',), scores (k',)) with k' = min(k, N), best first, ties broken by the
        lower index."""
        k = check_int(k, "k", allowed="an int")  # the kind first: "k must be an int, got 2.5"
        k = check_int(k, "k", minimum=1, allowed=">= 1")  # then the range: "k must be >= 1, got 0"
        scores = self.scores(query_tokens)  # (N,)
        return top_k(scores, k)


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k' = min(k, N) largest scores (indices (k',), scores (k',)), best first, ties by the lower index, in
    O(N + c log c): a partition finds the k-th largest score, then only the c candidates at or above it are sorted."""
    if k < len(scores):
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]  # the k-th largest score
        candidates = np.flatnonzero(scores >= kth)  # (c,), c >= k (more with ties at the k-th score)
    else:
        candidates = np.arange(len(scores))
    order = candidates[np.lexsort((candidates, -scores[candidates]))][:k]  # by score desc, then index asc
    return order, scores[order]
