"""BM25 against hand-computed scores (rank-bm25's BM25Okapi convention and Lucene's), the negative-idf floor, an idf
of exactly 0, empty documents, BM25Index == bm25_scores on random corpora, search order and ties, argument checks;
and against rank-bm25 and bm25s where they are installed."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from course_utils.rag.bm25 import BM25Index, bm25_scores, tokenize, top_k

# N = 4 documents, 12 tokens, avgdl = 3. Document frequencies: the 3, cat 2, sat 2, dog/down/a/bird 1.
CORPUS = [["the", "cat", "sat"], ["the", "dog", "sat", "down"], ["the", "cat", "cat"], ["a", "bird"]]
K1, B = 1.5, 0.75
# length norm k1 (1 - b + b |D| / avgdl): |D| = 3 -> 1.5 (0.25 + 0.75) = 1.5; |D| = 4 -> 1.5 (0.25 + 1) = 1.875;
# |D| = 2 -> 1.5 (0.25 + 0.5) = 1.125
RARE = math.log(4 - 1 + 0.5) - math.log(1 + 0.5)  # ln(3.5 / 1.5) = ln(7/3) for n = 1
THE_RAW = math.log(4 - 3 + 0.5) - math.log(3 + 0.5)  # ln(1.5 / 3.5) = -ln(7/3) < 0
# cat and sat: ln(2.5) - ln(2.5) = 0 exactly. Mean idf over the 7 words = (-ln(7/3) + 0 + 0 + 4 ln(7/3)) / 7
FLOOR = 0.25 * (THE_RAW + 4 * RARE) / 7


def test_okapi_idf_floor_and_scores_by_hand():
    # "the" (in 3 of 4 documents) has a negative idf, floored at 0.25 * mean idf = 0.25 * 3 ln(7/3) / 7 > 0
    # tf-part tf (k1 + 1) / (tf + norm): d0, d2: 2.5 / (1 + 1.5) = 1; d1: 2.5 / (1 + 1.875) = 2.5 / 2.875
    expected = np.array([FLOOR * 1.0, FLOOR * 2.5 / 2.875, FLOOR * 1.0, 0.0])
    np.testing.assert_allclose(bm25_scores(CORPUS, ["the"]), expected, rtol=1e-13, atol=0)
    assert FLOOR > 0 and THE_RAW < 0
    # without the floor (epsilon = 0) "the" adds nothing, and never lowers a score
    assert np.array_equal(bm25_scores(CORPUS, ["the"], epsilon=0.0), np.zeros(4))


def test_okapi_repeated_unknown_and_zero_idf_words():
    # "cat" is in exactly half of the documents: idf = ln(2.5) - ln(2.5) = 0, not negative, so no floor: it adds 0
    assert np.array_equal(bm25_scores(CORPUS, ["cat"]), np.zeros(4))
    # "dog" only in d1: ln(7/3) * 2.5 / 2.875, counted twice; "zebra" is unknown and adds 0
    dog = RARE * 2.5 / 2.875
    expected = np.array([FLOOR, FLOOR * 2.5 / 2.875 + 2 * dog, FLOOR, 0.0])
    np.testing.assert_allclose(bm25_scores(CORPUS, ["the", "dog", "zebra", "dog"]), expected, rtol=1e-13)
    # "bird" in the 2-token document: ln(7/3) * 2.5 / (1 + 1.125)
    np.testing.assert_allclose(bm25_scores(CORPUS, ["bird"]), [0, 0, 0, RARE * 2.5 / 2.125], rtol=1e-13)


def test_word_in_every_document_gets_a_negative_floor_when_the_mean_idf_is_negative():
    corpus = [["x", "y"], ["x"], ["x", "z"]]  # N = 3, avgdl = 5 / 3
    raw_x = math.log(0.5) - math.log(3.5)  # in all 3 documents: ln(1/7)
    raw_yz = math.log(2.5) - math.log(1.5)  # ln(5/3)
    floor = 0.25 * (raw_x + 2 * raw_yz) / 3  # the mean ln(25/63) / 3 is negative, so is the floor
    assert floor < 0
    norm = [K1 * (1 - B + B * n / (5 / 3)) for n in (2, 1, 2)]
    expected = [floor * 2.5 / (1 + m) for m in norm]
    np.testing.assert_allclose(bm25_scores(corpus, ["x"]), expected, rtol=1e-13)


def test_empty_document_counts_in_n_and_avgdl_and_scores_zero():
    corpus = [["a"], [], ["b", "a"]]  # N = 3, avgdl = 1; b: idf ln(2.5 / 1.5); a: floor 0.25 * mean = 0
    expected = [0.0, 0.0, math.log(2.5 / 1.5) * 2.5 / (1 + K1 * (0.25 + 0.75 * 2))]
    np.testing.assert_allclose(bm25_scores(corpus, ["b", "a"]), expected, rtol=1e-13)
    # b = 1: the empty document's norm is 0 and 0 / 0 would be NaN (rank-bm25 returns NaN); an absent word adds 0
    assert np.array_equal(bm25_scores(corpus, ["b"], b=1.0), BM25Index(corpus, b=1.0).scores(["b"]))
    assert bm25_scores(corpus, ["b"], b=1.0)[1] == 0.0


def test_lucene_variant_by_hand():
    # idf ln(1 + (N - n + 0.5) / (n + 0.5)): the ln(1 + 1.5 / 3.5) = ln(10/7), dog ln(1 + 3.5 / 1.5) = ln(10/3);
    # tf-part tf / (tf + norm), no (k1 + 1): d0, d2 1 / 2.5, d1 1 / 2.875
    the, dog = math.log(10 / 7), math.log(10 / 3)
    expected = np.array([the / 2.5, (the + dog) / 2.875, the / 2.5, 0.0])
    np.testing.assert_allclose(bm25_scores(CORPUS, ["the", "dog"], variant="lucene"), expected, rtol=1e-13)
    np.testing.assert_allclose(BM25Index(CORPUS, variant="lucene").scores(["the", "dog"]), expected, rtol=1e-13)
    # idf ln 2 > 0: no word ever has a zero or negative Lucene idf; d2: tf 2, 2 / (2 + 1.5)
    cat = math.log(1 + 2.5 / 2.5)
    np.testing.assert_allclose(bm25_scores(CORPUS, ["cat"], variant="lucene"),
                               [cat / 2.5, 0, cat * 2 / 3.5, 0], rtol=1e-13)


corpora = st.lists(st.lists(st.sampled_from("abcdefgh"), max_size=12), min_size=1, max_size=12).filter(any)
queries = st.lists(st.sampled_from("abcdefghz"), min_size=1, max_size=6)


@settings(max_examples=150, deadline=None)
@given(corpora, queries, st.sampled_from([0.0, 0.9, 1.5]), st.sampled_from([0.0, 0.5, 0.75, 1.0]),
       st.sampled_from([0.0, 0.25, 1.0]), st.sampled_from(["okapi", "lucene"]))
def test_index_equals_reference_on_random_corpora(corpus, query, k1, b, epsilon, variant):
    reference = bm25_scores(corpus, query, k1=k1, b=b, epsilon=epsilon, variant=variant)
    index = BM25Index(corpus, k1=k1, b=b, epsilon=epsilon, variant=variant)
    assert np.isfinite(reference).all()
    np.testing.assert_allclose(index.scores(query), reference, rtol=0, atol=1e-12)
    assert index.weights.shape == (len(corpus), len(index.vocab))
    assert index.weights.nnz == sum(len(set(doc)) for doc in corpus)


def test_search_order_ties_and_k_larger_than_n():
    corpus = [["b"], ["a"], ["c"], ["a"], ["a", "a"]]  # d1 and d3 tie
    index = BM25Index(corpus)
    scores = index.scores(["a"])
    assert scores[1] == scores[3] > 0 and scores[4] > scores[1]
    indices, top = index.search(["a"], k=3)
    assert indices.tolist() == [4, 1, 3] and np.array_equal(top, scores[[4, 1, 3]])
    indices, _ = index.search(["a"], k=10)
    assert indices.tolist() == [4, 1, 3, 0, 2]  # the zero-score documents by index


def test_tokenize():
    assert tokenize("The King's 2 horses -- and_Hamlet!") == ["the", "king", "s", "2", "horses", "and", "hamlet"]
    assert tokenize("To be, or not to be", stopwords=frozenset({"to", "or"})) == ["be", "not", "be"]
    assert tokenize("Élan über ÇA") == ["élan", "über", "ça"] and tokenize("...") == []


@pytest.mark.parametrize("call,exc,message", [
    (lambda: BM25Index([]), ValueError, "tokenized_corpus is empty"),
    (lambda: BM25Index([[], []]), ValueError, "no tokens at all"),
    (lambda: BM25Index(["the cat", "a dog"]), TypeError, "document 0 is str"),
    (lambda: BM25Index("the cat"), TypeError, "list of token lists"),
    (lambda: bm25_scores([["a", 1]], ["a"]), TypeError, "document 0 is list"),
    (lambda: BM25Index(CORPUS, k1=-0.1), ValueError, "k1 must be >= 0"),
    (lambda: BM25Index(CORPUS, b=1.5), ValueError, r"b must be in \[0, 1\]"),
    (lambda: BM25Index(CORPUS, epsilon=-1), ValueError, "epsilon must be >= 0"),
    (lambda: BM25Index(CORPUS, k1=float("nan")), ValueError, "k1 must be a finite number"),
    (lambda: BM25Index(CORPUS, variant="bm25+"), ValueError, "unknown variant 'bm25\\+'; allowed: okapi, lucene"),
    (lambda: bm25_scores(CORPUS, []), ValueError, "query has no tokens"),
    (lambda: BM25Index(CORPUS).scores([]), ValueError, "query has no tokens"),
    (lambda: BM25Index(CORPUS).search("the cat", 2), TypeError, "tokenize the query first"),
    (lambda: BM25Index(CORPUS).search(["the"], 0), ValueError, "k must be >= 1, got 0"),
    (lambda: tokenize(b"bytes"), TypeError, "text must be a str"),
])
def test_argument_errors(call, exc, message):
    with pytest.raises(exc, match=message):
        call()


def test_matches_rank_bm25_when_installed():
    rank_bm25 = pytest.importorskip("rank_bm25")
    rng = np.random.default_rng(0)
    for _ in range(50):
        corpus = [list(rng.choice(list("abcdefg"), size=rng.integers(1, 15))) for _ in range(rng.integers(1, 20))]
        query = list(rng.choice(list("abcdefgz"), size=rng.integers(1, 5)))
        expected = rank_bm25.BM25Okapi(corpus, k1=1.2, b=0.6, epsilon=0.3).get_scores(query)
        np.testing.assert_allclose(BM25Index(corpus, k1=1.2, b=0.6, epsilon=0.3).scores(query), expected,
                                   rtol=0, atol=1e-12)


def test_lucene_matches_bm25s_when_installed():
    bm25s = pytest.importorskip("bm25s")
    rng = np.random.default_rng(1)
    for _ in range(20):
        corpus = [list(rng.choice(list("abcdefg"), size=rng.integers(1, 15))) for _ in range(rng.integers(2, 20))]
        query = list(dict.fromkeys(rng.choice(list("abcdefg"), size=rng.integers(1, 5))))
        retriever = bm25s.BM25(method="lucene", k1=1.2, b=0.6, dtype="float64")
        retriever.index(corpus, show_progress=False)
        np.testing.assert_allclose(BM25Index(corpus, k1=1.2, b=0.6, variant="lucene").scores(query),
                                   retriever.get_scores(query), rtol=1e-10, atol=1e-12)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=30), st.integers(1, 35))
def test_top_k_equals_a_stable_full_sort(values, k):
    scores = np.array(values, dtype=np.float64) / 2  # few distinct values: many ties
    indices, top = top_k(scores, k)
    expected = np.argsort(-scores, kind="stable")[:k]
    assert indices.tolist() == expected.tolist() and np.array_equal(top, scores[expected])


def test_numpy_parameters_give_the_same_scores_in_float64():
    ours = bm25_scores(CORPUS, ["the", "dog"], k1=np.float32(1.5), b=np.float32(0.75), epsilon=np.int64(0))
    plain = bm25_scores(CORPUS, ["the", "dog"], k1=1.5, b=0.75, epsilon=0)
    assert ours.dtype == np.float64 and np.array_equal(ours, plain)
    index = BM25Index(CORPUS, k1=np.int64(2), b=np.float64(0.5))
    assert np.array_equal(index.scores(["dog"]), BM25Index(CORPUS, k1=2, b=0.5).scores(["dog"]))
    for kwargs, error in (({"k1": np.float32(np.inf)}, ValueError), ({"b": True}, TypeError)):
        with pytest.raises(error, match="must be a finite number"):
            bm25_scores(CORPUS, ["the"], **kwargs)
