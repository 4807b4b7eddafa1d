"""FAISS indexes (course_utils.rag.ann): the exact flat index against a torch matrix product and hand-computed
values, HNSW and IVF-PQ recall and size on random unit vectors, recall@k by hand, and the argument errors."""

import math

import numpy as np
import pytest
import torch

from course_utils.device import make_generator
from course_utils.rag.ann import (IndexReport, build_faiss_index, default_nlist, exact_topk, faiss_search,
                                  format_bytes, index_bytes, measure_index, recall_against_exact)


def unit_vectors(n: int, dim: int, seed: int) -> torch.Tensor:
    x = torch.randn(n, dim, generator=make_generator(seed, "cpu"))  # (N, C)
    return torch.nn.functional.normalize(x, dim=-1)


@pytest.fixture(scope="module")
def data():
    return unit_vectors(2000, 64, 0), unit_vectors(50, 64, 1)  # (N, C), (Q, C)


def test_flat_hand_computed():
    s = 1 / math.sqrt(2)
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [s, s]])  # (3, 2)
    scores, indices = faiss_search(build_faiss_index(x), torch.tensor([[1.0, 0.0], [0.0, -1.0]]), k=2)
    # e1: itself (1), then the diagonal (s); -e2: e1 (0), then the diagonal (-s), never e2 itself (-1)
    assert indices.tolist() == [[0, 2], [0, 2]]
    assert torch.allclose(scores, torch.tensor([[1.0, s], [0.0, -s]]), atol=1e-6)
    assert scores.dtype == torch.float32 and indices.dtype == torch.int64 and scores.device.type == "cpu"


def test_flat_equals_torch_matmul_topk(data):
    x, q = data
    scores, indices = faiss_search(build_faiss_index(x, "flat"), q, k=10)
    ref_scores, ref_indices = torch.topk(q @ x.T, 10, dim=1)  # (Q, N) -> (Q, 10)
    assert torch.equal(indices, ref_indices)
    assert torch.allclose(scores, ref_scores, atol=1e-5)
    assert torch.equal(exact_topk(x, q, 10)[1], ref_indices)


def test_numpy_and_torch_inputs_agree(data):
    x, q = data
    a = faiss_search(build_faiss_index(x.numpy().astype(np.float64)), q.numpy(), 5)
    b = faiss_search(build_faiss_index(x), q, 5)
    assert torch.equal(a[1], b[1]) and torch.allclose(a[0], b[0])


def test_hnsw_recall_above_0_9(data):
    x, q = data
    index = build_faiss_index(x, "hnsw", hnsw_m=32, ef_construction=80, ef_search=64)
    assert index.hnsw.efSearch == 64 and index.hnsw.efConstruction == 80
    recall = recall_against_exact(faiss_search(index, q, 10)[1], exact_topk(x, q, 10)[1], 10)
    assert recall > 0.9


def test_ivfpq_builds_smaller_and_its_recall_is_a_fraction(data):
    x, q = data
    flat = build_faiss_index(x, "flat")
    ivfpq = build_faiss_index(x, "ivfpq", pq_m=8, nbits=6, nprobe=4, seed=0)  # 64 codes per sub-space: fast
    assert ivfpq.nlist == default_nlist(2000) == 51 and ivfpq.nprobe == 4 and ivfpq.ntotal == 2000
    assert ivfpq.pq.M == 8 and ivfpq.pq.nbits == 6
    exact = faiss_search(flat, q, 10)[1]
    recall = recall_against_exact(faiss_search(ivfpq, q, 10)[1], exact, 10)
    assert 0.0 <= recall <= 1.0
    assert index_bytes(ivfpq) < index_bytes(flat) / 4
    again = build_faiss_index(x, "ivfpq", pq_m=8, nbits=6, nprobe=4, seed=0)  # seeded k-means: the same index
    assert torch.equal(faiss_search(again, q, 10)[1], faiss_search(ivfpq, q, 10)[1])


def test_default_nlist():
    assert default_nlist(100) == 2  # 100 // 39
    assert default_nlist(1_000_000) == 4000  # 4 * sqrt(N)
    assert default_nlist(10) == 1


def test_flat_index_bytes_grow_by_four_bytes_per_float(data):
    x, _ = data
    assert index_bytes(build_faiss_index(x)) - index_bytes(build_faiss_index(x[:500])) == 1500 * 64 * 4


@pytest.mark.parametrize("n_bytes, shown", [
    (0, "0 bytes"), (1, "1 byte"), (999, "999 bytes"), (1000, "1 KB"), (43_921, "43.9 KB"), (921_600, "922 KB"),
    (999_499, "999 KB"), (999_500, "1 MB"),  # 999.5 KB rounds to 1,000 KB: one unit up, never "1e+03 KB"
    (1_083_392, "1.08 MB"), (15_360_000, "15.4 MB"), (26_953_662_464, "27 GB"), (2.5e15, "2,500 TB"),
    (np.int64(43_921), "43.9 KB"),
])
def test_format_bytes_picks_a_unit_that_fits(n_bytes, shown):
    assert format_bytes(n_bytes) == shown


def test_format_bytes_never_shows_a_real_size_as_zero():
    for n_bytes in (1, 7, 480, 5_000, 44_000, 61_000, 999_999, 1_500_000):  # IVF-PQ at 600 passages: ~44 KB
        number = float(format_bytes(n_bytes).split()[0].replace(",", ""))
        assert number >= 1


@pytest.mark.parametrize("bad, error", [(-1, ValueError), (float("nan"), ValueError), (float("inf"), ValueError),
                                        (True, TypeError), ("3 MB", TypeError), (None, TypeError)])
def test_format_bytes_rejects_what_is_not_a_size(bad, error):
    with pytest.raises(error, match="n_bytes must be"):
        format_bytes(bad)


def test_recall_against_exact_by_hand():
    approx = torch.tensor([[1, 2, 3], [4, 5, 6]])
    exact = np.array([[3, 2, 9], [7, 8, 9]])
    assert recall_against_exact(approx, exact, 3) == pytest.approx((2 / 3 + 0) / 2)
    assert recall_against_exact(approx, exact, 2) == pytest.approx((1 / 2 + 0) / 2)
    assert recall_against_exact(approx, approx, 3) == 1.0


def test_measure_index_reports(data):
    x, q = data
    report = measure_index(x, q, "flat", k=10)
    assert isinstance(report, IndexReport)
    assert (report.kind, report.n, report.dim, report.k, report.recall) == ("flat", 2000, 64, 10, 1.0)
    assert report.bytes == index_bytes(build_faiss_index(x)) and report.bytes_per_vector > 4 * 64
    assert report.build_s >= 0 and report.query_s_per_query > 0 and report.queries_per_s > 0
    hnsw = measure_index(x, q, "hnsw", k=10, exact_indices=exact_topk(x, q, 10)[1], ef_search=16)
    assert hnsw.params == {"ef_search": 16} and 0.0 <= hnsw.recall <= 1.0


def test_errors(data):
    x, q = data
    with pytest.raises(ValueError, match="unknown index kind 'lsh'; allowed: flat, hnsw, ivfpq"):
        build_faiss_index(x, "lsh")
    with pytest.raises(ValueError, match=r"non-empty \(N, C\) matrix, got shape \(64,\)"):
        build_faiss_index(x[0])
    with pytest.raises(ValueError, match="queries have C=32 columns but the index holds vectors of size 64"):
        faiss_search(build_faiss_index(x), q[:, :32], 5)
    with pytest.raises(ValueError, match=r"too few vectors to train IVF-PQ: N=2000.*39 training points.*nlist=100"):
        build_faiss_index(x, "ivfpq", nlist=100)
    with pytest.raises(ValueError, match="C=64 must be divisible by pq_m=12"):
        build_faiss_index(x, "ivfpq", pq_m=12)
    with pytest.raises(ValueError, match="unit-length rows"):
        build_faiss_index(x * 2)
    with pytest.raises(TypeError, match="floating-point tensor"):
        build_faiss_index(torch.ones(3, 4, dtype=torch.int64))
    with pytest.raises(TypeError, match="torch.Tensor or numpy array, got list"):
        build_faiss_index([[1.0, 0.0]])
    with pytest.raises(TypeError, match="hnsw_m must be an int"):
        build_faiss_index(x, "hnsw", hnsw_m=True)
    with pytest.raises(ValueError, match="k=3000 is larger than the 2000 vectors"):
        faiss_search(build_faiss_index(x), q, 3000)
    with pytest.raises(TypeError, match="index must be a faiss.Index"):
        faiss_search("index", q, 5)
    with pytest.raises(ValueError, match="NaN or inf"):
        faiss_search(build_faiss_index(x), torch.full((1, 64), float("nan")), 5)
    with pytest.raises(ValueError, match="k=4 but the index lists have only 3 and 3 columns"):
        recall_against_exact(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long), 4)
    with pytest.raises(ValueError, match="same non-zero number of queries; got 2 and 1"):
        recall_against_exact(torch.zeros(2, 3, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long), 3)
    with pytest.raises(TypeError, match="2-D integer"):
        recall_against_exact(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long), 3)


def test_numpy_ints_reach_faiss_as_python_ints(data):
    x, q = data
    ivfpq = build_faiss_index(x, "ivfpq", pq_m=np.int64(8), nbits=np.int32(6), nprobe=np.int64(4), seed=np.int64(0),
                              nlist=np.int64(40))
    plain = build_faiss_index(x, "ivfpq", pq_m=8, nbits=6, nprobe=4, seed=0, nlist=40)
    assert (ivfpq.nlist, ivfpq.nprobe, ivfpq.pq.M, ivfpq.pq.nbits) == (40, 4, 8, 6)
    assert torch.equal(faiss_search(ivfpq, q, np.int64(10))[1], faiss_search(plain, q, 10)[1])
    hnsw = build_faiss_index(x, "hnsw", hnsw_m=np.int64(16), ef_construction=np.int64(40), ef_search=np.int64(32))
    assert (hnsw.hnsw.efSearch, hnsw.hnsw.efConstruction) == (32, 40)
    approx, exact = torch.tensor([[1, 2, 3], [4, 5, 6]]), np.array([[3, 2, 9], [7, 8, 9]])
    assert recall_against_exact(approx, exact, np.int64(2)) == recall_against_exact(approx, exact, 2)
    report = measure_index(x, q, "flat", k=np.int64(5))
    assert type(report.k) is int and report.recall == 1.0
    with pytest.raises(TypeError, match="k must be an int"):
        faiss_search(plain, q, np.float64(10.0))
