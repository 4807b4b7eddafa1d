"""Dense search (by hand and against a full sort), the embeddings cache (reuse, key, corrupt files), reciprocal rank
fusion by hand, recall@k / MRR by hand, and the three retrievers on a tiny corpus (a fake encoder; one test with
the real MiniLM)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_utils.device import make_generator
from course_utils.rag.chunking import Chunk
from course_utils.rag.dense import DenseIndex, cached_embeddings, embeddings_cache_path, encoder_cache_key
from course_utils.rag.hybrid import reciprocal_rank_fusion
from course_utils.rag.retrieval_metrics import mean_reciprocal_rank, recall_at_k, recall_fraction_at_k
from course_utils.rag.retrievers import BM25Retriever, DenseRetriever, HybridRetriever, Hit

WORDS = ["cat", "dog", "sat", "mat", "bird", "sang", "tree", "ran"]


class FakeEncoder:
    """Bag-of-words over WORDS plus a constant, normalised: (n, 9) unit rows; counts its calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, texts):
        self.calls.append(list(texts))
        rows = [[t.lower().split().count(w) for w in WORDS] + [0.5] for t in texts]
        return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


CHUNKS = [Chunk(f"d{i}#0", f"d{i}", text) for i, text in enumerate(
    ["the cat sat on the mat", "the dog ran", "a bird sang in the tree", "the cat and the dog", "mat mat mat"])]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    return tmp_path


def test_dense_index_by_hand():
    s = 1 / math.sqrt(2)
    index = DenseIndex(torch.tensor([[1.0, 0.0], [0.0, 1.0], [s, s], [-1.0, 0.0]]))  # (N=4, C=2)
    scores, indices = index.search(torch.tensor([[1.0, 0.0], [0.6, 0.8]]), k=3)  # (Q=2, C=2)
    assert indices.tolist() == [[0, 2, 1], [2, 1, 0]]
    # cosines: q0 = (1, 0): 1, s, 0; q1 = (0.6, 0.8): (0.6 + 0.8) s = 0.9899, 0.8, 0.6
    torch.testing.assert_close(scores, torch.tensor([[1.0, s, 0.0], [1.4 * s, 0.8, 0.6]]))
    scores, indices = index.search(torch.tensor([0.0, -1.0]), k=10)  # a single (C,) query; k clipped to N
    assert scores.shape == (1, 4) and indices[0, -1].item() == 1


def test_dense_index_matches_full_sort_and_blocks():
    g = make_generator(0, "cpu")
    emb = F.normalize(torch.randn(200, 16, generator=g), dim=-1)
    queries = F.normalize(torch.randn(37, 16, generator=g), dim=-1)
    index = DenseIndex(emb)
    scores, indices = index.search(queries, k=5, block_size=8)
    full = queries @ emb.T  # (37, 200)
    expected = full.sort(dim=1, descending=True)
    torch.testing.assert_close(scores, expected.values[:, :5])
    assert torch.equal(indices, expected.indices[:, :5])
    scores_one_block, indices_one_block = index.search(queries, k=5)
    assert torch.equal(indices_one_block, indices)  # blocks change the matmul's summation order, not the ranking
    torch.testing.assert_close(scores_one_block, scores)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_dense_index_and_retriever_on_cuda(cache):
    g = make_generator(0, "cpu")
    emb = F.normalize(torch.randn(300, 16, generator=g), dim=-1)
    queries = F.normalize(torch.randn(9, 16, generator=g), dim=-1)  # on the CPU: moved to the index's device
    scores, indices = DenseIndex(emb.to("cuda")).search(queries, k=4, block_size=4)
    cpu_scores, cpu_indices = DenseIndex(emb).search(queries, k=4)
    assert scores.device.type == indices.device.type == "cuda"
    assert torch.equal(indices.cpu(), cpu_indices)
    torch.testing.assert_close(scores.cpu(), cpu_scores)
    retriever = DenseRetriever(CHUNKS, None, "tiny-chunks", embed=FakeEncoder(), progress=False, key="fake",
                               device="cuda")
    assert retriever.index.device.type == "cuda"
    assert [h.index for h in retriever.search(["dog ran"], k=2)[0]] == [1, 3]


@pytest.mark.parametrize("call,exc,message", [
    (lambda: DenseIndex(torch.ones(3, 2)), ValueError, r"row 0 has norm 1.414.*normalize"),
    (lambda: DenseIndex(torch.zeros(0, 4)), ValueError, r"non-empty \(N, C\)"),
    (lambda: DenseIndex([[1.0, 0.0]]), TypeError, "must be a torch.Tensor"),
    (lambda: DenseIndex(torch.eye(2)).search(torch.ones(1, 3) / 3 ** 0.5, 1), ValueError, r"queries must be \(Q, 2\)"),
    (lambda: DenseIndex(torch.eye(2)).search(torch.tensor([[2.0, 0.0]]), 1), ValueError, "queries must have unit"),
    (lambda: DenseIndex(torch.eye(2)).search(torch.eye(2), 0), ValueError, "k must be an int >= 1"),
    (lambda: DenseIndex(torch.eye(2, dtype=torch.long)), TypeError, "floating-point"),
])
def test_dense_index_errors(call, exc, message):
    with pytest.raises(exc, match=message):
        call()


def test_cached_embeddings_reuses_and_rebuilds(cache, capsys):
    texts = [c.text for c in CHUNKS]
    enc = FakeEncoder()
    first = cached_embeddings(None, texts, "tiny", batch_size=2, progress=False, embed=enc, key="fake")
    assert [len(c) for c in enc.calls] == [2, 2, 1]  # batches of 2
    assert first.shape == (5, 9) and first.dtype == torch.float32 and first.device.type == "cpu"
    torch.testing.assert_close(first, FakeEncoder()(texts))
    path = embeddings_cache_path(texts, "tiny", "fake")
    assert path.parent == cache / "rag" and path.name.startswith("tiny-") and path.exists()
    again = cached_embeddings(None, texts, "tiny", batch_size=2, progress=False, embed=enc, key="fake")
    assert len(enc.calls) == 3 and torch.equal(again, first)  # loaded, not re-embedded
    # another text list or another model key is another file
    assert embeddings_cache_path(texts[:4], "tiny", "fake") != path != embeddings_cache_path(texts, "tiny", "other")
    assert embeddings_cache_path(["ab", "c"], "t", "k") != embeddings_cache_path(["a", "bc"], "t", "k")
    for bad in (b"not a torch file", None):
        if bad is None:
            torch.save(torch.ones(5, 9), path)  # loads, but rows are not unit length
        else:
            path.write_bytes(bad)
        rebuilt = cached_embeddings(None, texts, "tiny", batch_size=8, progress=False, embed=enc, key="fake")
        assert torch.equal(rebuilt, first) and "rebuilding" in capsys.readouterr().out
    assert torch.equal(torch.load(path, weights_only=True), first)


def test_encoder_cache_key_names_the_truncation(tmp_path):
    """Embeddings truncated at another length are another cache file (the key carries sentence-transformers'
    max_seq_length, read beside the tokenizer's files)."""
    from types import SimpleNamespace

    def loaded(folder):  # the same model name every time; only the tokenizer's folder (and its config) differs
        model = SimpleNamespace(config=SimpleNamespace(name_or_path="pkg/model"))
        return SimpleNamespace(model=model, tokenizer=SimpleNamespace(name_or_path=str(folder)))

    keys = {}
    for length in (256, 128, None):
        folder = tmp_path / str(length) / "model"
        folder.mkdir(parents=True)
        if length is not None:
            (folder / "sentence_bert_config.json").write_text(f'{{"max_seq_length": {length}}}')
        keys[length] = encoder_cache_key(loaded(folder))
    assert keys[256] == "pkg/model max_length=256" and keys[None] == "pkg/model max_length=None"
    assert len(set(keys.values())) == 3


def test_retriever_and_cached_embeddings_share_the_default_encoders_cache(cache, monkeypatch, tmp_path):
    """Chapter 08 embeds its chunks with cached_embeddings, then builds a DenseRetriever on the same texts: with the
    default encoder both must use one cache file (the key with the truncation length), so the second call embeds
    nothing."""
    from types import SimpleNamespace

    import course_utils.model.pretrained as pretrained

    enc = FakeEncoder()
    monkeypatch.setattr(pretrained, "embed_sentences", lambda loaded, texts, batch_size=32: enc(texts))
    folder = tmp_path / "pkg" / "model"
    folder.mkdir(parents=True)
    (folder / "sentence_bert_config.json").write_text('{"max_seq_length": 256}')
    loaded = SimpleNamespace(model=SimpleNamespace(config=SimpleNamespace(name_or_path=str(folder))),
                             tokenizer=SimpleNamespace(name_or_path=str(folder)))
    first = cached_embeddings(loaded, [c.text for c in CHUNKS], "kb", progress=False)
    calls = len(enc.calls)
    retriever = DenseRetriever(CHUNKS, loaded, "kb", progress=False)
    assert len(enc.calls) == calls and torch.equal(retriever.index.embeddings, first)  # loaded, not re-embedded
    assert len(list((cache / "rag").glob("kb-*.pt"))) == 1


def test_cached_embeddings_errors(cache):
    enc = FakeEncoder()
    with pytest.raises(ValueError, match="name must be a non-empty file-name part"):
        cached_embeddings(None, ["a"], "../x", embed=enc, key="k")
    with pytest.raises(TypeError, match="wrap a single text in a list"):
        cached_embeddings(None, "a text", "x", embed=enc, key="k")
    with pytest.raises(ValueError, match="texts is empty"):
        cached_embeddings(None, [], "x", embed=enc, key="k")
    with pytest.raises(ValueError, match="not all finite and unit length; normalise"):
        cached_embeddings(None, ["a"], "x", progress=False, embed=lambda t: torch.ones(len(t), 3), key="k")


def test_reciprocal_rank_fusion_by_hand():
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 1]], k=60)
    # 1: 1/61 + 1/62; 3: 1/63 + 1/61; 2: 1/62 only
    assert [d for d, _ in fused] == [1, 3, 2]
    assert [s for _, s in fused] == pytest.approx([1 / 61 + 1 / 62, 1 / 63 + 1 / 61, 1 / 62], rel=1e-15)
    assert reciprocal_rank_fusion([[7], [5]], k=60) == [(5, 1 / 61), (7, 1 / 61)]  # tie: lower id first
    assert reciprocal_rank_fusion([[7, 5]]) == [(7, 1 / 61), (5, 1 / 62)]  # the default k is the paper's 60
    assert reciprocal_rank_fusion([[4, 9, 8], []], k=0, top=2) == [(4, 1.0), (9, 0.5)]
    # k matters: with k = 0 one first place beats two second places; with k = 60 agreement wins
    rankings = [[1, 2], [3, 2], [4, 2]]
    assert reciprocal_rank_fusion(rankings, k=0)[0][0] == 2  # 3 * 1/2 > 1
    assert reciprocal_rank_fusion(rankings, k=60)[0][0] == 2
    assert reciprocal_rank_fusion([[1, 2], [3, 2]], k=0)[0][0] == 1  # 1/1 = 1 = 2 * 1/2: tie, lower id
    assert reciprocal_rank_fusion([[1, 2], [3, 2]], k=60)[0][0] == 2  # 2/62 > 1/61


@pytest.mark.parametrize("call,exc,message", [
    (lambda: reciprocal_rank_fusion([]), ValueError, "non-empty sequence of ranked id lists"),
    (lambda: reciprocal_rank_fusion([[1, 2, 1]]), ValueError, "id 1 appears twice in ranking 0"),
    (lambda: reciprocal_rank_fusion([[1]], k=-1), ValueError, "k must be a finite number >= 0"),
    (lambda: reciprocal_rank_fusion([[1]], top=0), ValueError, "top must be None or an int >= 1"),
    (lambda: reciprocal_rank_fusion([["a"]]), TypeError, "ids must be ints"),
])
def test_rrf_errors(call, exc, message):
    with pytest.raises(exc, match=message):
        call()


def test_metrics_by_hand():
    retrieved = [["a", "b", "c"], ["x", "y", "z"], ["p", "q", "r"]]
    relevant = [{"b"}, {"z", "y"}, {"nothing"}]
    assert recall_at_k(retrieved, relevant, 1) == 0.0
    assert recall_at_k(retrieved, relevant, 2) == pytest.approx(2 / 3)  # b at 2, y at 2
    assert recall_fraction_at_k(retrieved, relevant, 2) == pytest.approx((1 + 1 / 2 + 0) / 3)
    assert recall_fraction_at_k(retrieved, relevant, 3) == pytest.approx((1 + 1 + 0) / 3)
    assert mean_reciprocal_rank(retrieved, relevant) == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)
    assert mean_reciprocal_rank(retrieved, relevant, k=1) == 0.0
    assert mean_reciprocal_rank([[3, 1]], [[1, 3]]) == 1.0  # relevant may be any collection
    assert recall_fraction_at_k([[1, 5]], [[1, 1, 2]], 2) == 0.5  # a gold id listed twice counts once: 1 of {1, 2}


@pytest.mark.parametrize("call,exc,message", [
    (lambda: recall_at_k([["a"]], [{"a"}, {"b"}], 1), ValueError, "got 1 and 2"),
    (lambda: recall_at_k([["a"]], [set()], 1), ValueError, r"relevant\[0\] is empty"),
    (lambda: recall_at_k([["a"]], ["a"], 1), TypeError, r"relevant\[0\] must be a collection"),
    (lambda: recall_at_k([["a"]], [{"a"}], 0), ValueError, "k must be an int >= 1, got 0"),
    (lambda: mean_reciprocal_rank([["a"]], [{"a"}], k=0), ValueError, "k must be an int >= 1 or None"),
    (lambda: recall_fraction_at_k([], [], 1), ValueError, "no queries"),
])
def test_metric_errors(call, exc, message):
    with pytest.raises(exc, match=message):
        call()


def test_bm25_retriever():
    retriever = BM25Retriever(CHUNKS)
    (hits,) = retriever.search(["Which cat sat?"], k=3)
    assert retriever.name == "BM25" and all(isinstance(h, Hit) for h in hits)
    assert hits[0].chunk is CHUNKS[0] and hits[0].index == 0
    # zero-score chunks are left out: only chunks 0 and 3 contain cat or sat
    assert [h.index for h in hits] == [0, 3]
    scores = retriever.index.scores(["which", "cat", "sat"])
    assert [h.score for h in hits] == [scores[0], scores[3]]
    assert retriever.search(["?!", "bird"], k=2)[0] == [] and retriever.search([], k=2) == []


def test_dense_retriever_batches_queries_and_ranks_by_cosine(cache):
    enc = FakeEncoder()
    retriever = DenseRetriever(CHUNKS, None, "tiny-chunks", embed=enc, progress=False, key="fake")
    enc.calls.clear()
    results = retriever.search(["dog ran", "bird tree", "mat"], k=2)
    assert len(enc.calls) == 1 and len(enc.calls[0]) == 3  # one embed call for all queries
    # "bird tree" shares no word with chunks 0, 1, 3, 4: the constant 0.5 decides, the shortest vector (chunk 1,
    # norm sqrt(2.25) against sqrt(3.25) for chunk 0) wins second place
    assert [[h.index for h in hits] for hits in results] == [[1, 3], [2, 1], [4, 0]]
    expected = (enc(["bird tree"]) @ enc([c.text for c in CHUNKS]).T)[0]  # (5,)
    assert [h.score for h in results[1]] == pytest.approx(expected.sort(descending=True).values[:2].tolist())
    assert retriever.name == "dense" and retriever.search([], k=2) == []


def test_hybrid_is_rrf_of_the_two(cache):
    bm25 = BM25Retriever(CHUNKS)
    dense = DenseRetriever(CHUNKS, None, "tiny-chunks", embed=FakeEncoder(), progress=False, key="fake")
    hybrid = HybridRetriever(bm25, dense, rrf_k=60, depth=5)
    query = "the cat ran"
    lex = [h.index for h in bm25.search([query], 5)[0]]
    den = [h.index for h in dense.search([query], 5)[0]]
    (hits,) = hybrid.search([query], k=3)
    expected = {}
    for ranking in (lex, den):
        for rank, i in enumerate(ranking, start=1):
            expected[i] = expected.get(i, 0) + 1 / (60 + rank)
    best = sorted(expected.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    assert [(h.index, h.score) for h in hits] == [(i, pytest.approx(s)) for i, s in best]
    assert hybrid.name == "hybrid" and hits[0].chunk is CHUNKS[hits[0].index]
    with pytest.raises(ValueError, match="k must be <= depth"):
        hybrid.search([query], k=6)
    with pytest.raises(ValueError, match="same chunks"):
        HybridRetriever(BM25Retriever(CHUNKS[:4]), dense)


def test_retriever_argument_errors():
    with pytest.raises(ValueError, match="non-empty sequence of Chunk"):
        BM25Retriever([])
    with pytest.raises(TypeError, match="must all be course_utils.rag.chunking.Chunk"):
        BM25Retriever(["text"])
    with pytest.raises(TypeError, match="wrap a single query in a list"):
        BM25Retriever(CHUNKS).search("cat", 2)
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        BM25Retriever(CHUNKS).search(["cat"], 0)


@pytest.mark.slow  # loads MiniLM: about 8 s on 2 shared cores
def test_real_minilm_retrieves_the_paraphrased_sentence(cache):
    from course_utils.model.pretrained import load_minilm

    sentences = ["The capital of France is Paris.", "Penguins cannot fly but swim very well.",
                 "Photosynthesis turns sunlight into chemical energy in plants.",
                 "The stock market fell sharply on Monday.", "She plays the violin in an orchestra."]
    chunks = [Chunk(f"s{i}#0", f"s{i}", s) for i, s in enumerate(sentences)]
    retriever = DenseRetriever(chunks, load_minilm(), "minilm-five", progress=False)
    queries = ["Which city is France's capital?", "birds that swim instead of flying",
               "how do plants make energy from light", "shares dropped at the start of the week",
               "a musician with a string instrument"]
    results = retriever.search(queries, k=2)
    assert [hits[0].index for hits in results] == [0, 1, 2, 3, 4]
    assert all(hits[0].score > hits[1].score for hits in results)
    assert retriever.index.embeddings.shape == (5, 384)


def test_retrieval_metrics_read_tensors_as_lists():
    import numpy as np

    # set(torch.tensor([3])) holds a 0-d tensor hashed by identity: 3 was never found (recall 0.0)
    assert recall_at_k([[3, 5]], [torch.tensor([3])], 2) == 1.0 == recall_at_k([[3, 5]], [{3}], 2)
    assert mean_reciprocal_rank([[3, 5]], [torch.tensor([5])]) == 0.5 == mean_reciprocal_rank([[3, 5]], [{5}])
    top = torch.tensor([[3, 5, 1], [1, 2, 0]])  # e.g. torch.topk(scores, 3).indices
    gold = [{5}, {0, 7}]
    as_lists = [[3, 5, 1], [1, 2, 0]]
    for retrieved in (top, top.numpy(), list(top), [np.array(r) for r in as_lists], [[torch.tensor(i) for i in r]
                                                                                     for r in as_lists]):
        assert recall_at_k(retrieved, gold, 2) == recall_at_k(as_lists, gold, 2) == 0.5
        assert recall_fraction_at_k(retrieved, gold, 3) == recall_fraction_at_k(as_lists, gold, 3)
        assert mean_reciprocal_rank(retrieved, gold) == mean_reciprocal_rank(as_lists, gold)
    with pytest.raises(TypeError, match="wrap a single id in a set"):
        recall_at_k([[3, 5]], torch.tensor([3]), 2)  # one id per query: each entry must be a collection


def test_bm25_retriever_passes_epsilon_to_its_index():
    # "the" is in 4 of the 5 chunks: its Okapi idf is negative and floored at epsilon * mean idf
    assert BM25Retriever(CHUNKS, epsilon=0.0).search(["the"], 5) == [[]]  # floor 0: every score is 0
    assert len(BM25Retriever(CHUNKS).search(["the"], 5)[0]) == 4  # default epsilon 0.25: a positive floor


def test_hybrid_uses_rrf_k_and_fuses_the_full_depth(cache):
    bm25 = BM25Retriever(CHUNKS)
    dense = DenseRetriever(CHUNKS, None, "tiny-chunks", embed=FakeEncoder(), progress=False, key="fake")
    for rrf_k in (1, 60):
        hybrid = HybridRetriever(bm25, dense, rrf_k=rrf_k, depth=5)
        for query in ("the cat ran", "the", "sat", "mat dog"):
            lex = [h.index for h in bm25.search([query], 5)[0]]
            den = [h.index for h in dense.search([query], 5)[0]]
            expected = {}
            for ranking in (lex, den):
                for rank, i in enumerate(ranking, start=1):
                    expected[i] = expected.get(i, 0) + 1 / (rrf_k + rank)
            best = sorted(expected.items(), key=lambda kv: (-kv[1], kv[0]))
            for k in (1, 2, 5):  # each k from the same depth-5 lists: the top k of one fused ranking
                hits = hybrid.search([query], k=k)[0]
                assert [(h.index, h.score) for h in hits] == [(i, pytest.approx(s)) for i, s in best[:k]], (query, k)


def test_hybrid_refuses_other_chunks_of_the_same_number_and_bad_depth(cache):
    dense = DenseRetriever(CHUNKS, None, "tiny-chunks", embed=FakeEncoder(), progress=False, key="fake")
    with pytest.raises(ValueError, match="same chunks"):
        HybridRetriever(BM25Retriever(CHUNKS[::-1]), dense)  # same length, another order
    with pytest.raises(ValueError, match="depth must be an int >= 1"):
        HybridRetriever(BM25Retriever(CHUNKS), dense, depth=0)
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        BM25Retriever(CHUNKS).search(["cat"], True)


def test_nan_embeddings_are_refused_and_numpy_counts_accepted(cache):
    nan_row = torch.tensor([[1.0, 0.0], [math.nan, math.nan]])
    with pytest.raises(ValueError, match="row 1 has norm nan"):  # NaN passed the unit-length test: NaN scores
        DenseIndex(nan_row)
    index = DenseIndex(torch.eye(2))
    with pytest.raises(ValueError, match="queries must have unit-length rows"):
        index.search(nan_row, 1)
    assert torch.equal(index.search(torch.eye(2), np.int64(1), np.int64(1))[1], index.search(torch.eye(2), 1)[1])
    bm25 = BM25Retriever(CHUNKS)
    dense = DenseRetriever(CHUNKS, None, "tiny-chunks", embed=FakeEncoder(), progress=False, key="fake")
    for retriever in (bm25, dense, HybridRetriever(bm25, dense)):  # 'k must be an int >= 1, got np.int64(2)' before
        assert retriever.search(["cat sat"], k=np.int64(2)) == retriever.search(["cat sat"], k=2)
    retrieved, relevant = [[0, 1, 2], [2, 1, 0]], [{1}, {5}]
    assert recall_at_k(retrieved, relevant, np.int64(2)) == recall_at_k(retrieved, relevant, 2)
    assert mean_reciprocal_rank(retrieved, relevant, k=np.int64(3)) == mean_reciprocal_rank(retrieved, relevant, k=3)


def test_numpy_fusion_and_retriever_settings_give_the_same_hits(cache):
    rankings = [[1, 2, 3], [3, 1]]
    assert reciprocal_rank_fusion(rankings, k=np.int64(60), top=np.int64(2)) == \
        reciprocal_rank_fusion(rankings, k=60, top=2)
    assert reciprocal_rank_fusion(rankings, k=np.float32(0.5)) == reciprocal_rank_fusion(rankings, k=0.5)
    bm25 = BM25Retriever(CHUNKS, k1=np.float32(1.5), b=np.float64(0.75), epsilon=np.float32(0.25))
    plain_bm25 = BM25Retriever(CHUNKS)
    assert bm25.search(["cat sat"], 3) == plain_bm25.search(["cat sat"], 3)
    dense = DenseRetriever(CHUNKS, None, "tiny-chunks", embed=FakeEncoder(), progress=False, key="fake")
    hybrid = HybridRetriever(bm25, dense, rrf_k=np.int64(60), depth=np.int64(5))
    assert (type(hybrid.rrf_k), type(hybrid.depth)) == (int, int)
    assert hybrid.search(["cat sat"], 3) == HybridRetriever(plain_bm25, dense, rrf_k=60, depth=5).search(["cat sat"], 3)
    for kwargs in ({"rrf_k": np.float32(np.nan)}, {"depth": np.float64(5.0)}):
        with pytest.raises(ValueError, match="must be"):
            HybridRetriever(bm25, dense, **kwargs)
    for bad in (-1, True, "60"):  # the message names the constructor's own argument
        with pytest.raises(ValueError, match=r"^rrf_k must be a finite number >= 0 \(60 in Cormack et al., 2009\)"):
            HybridRetriever(bm25, dense, rrf_k=bad)
    assert type(HybridRetriever(bm25, dense, rrf_k=np.float32(0.5)).rrf_k) is float
    with pytest.raises(ValueError, match="top must be None or an int >= 1"):
        reciprocal_rank_fusion(rankings, top=True)
