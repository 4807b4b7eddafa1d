"""FAISS indexes beside our from-scratch search: exact inner product, HNSW graphs and IVF-PQ, with their recall.

Dense retrieval over unit-length embeddings ranks by cosine similarity, which for unit vectors is the inner product,
so an exact search is one matrix product and a top-k (what ``course_utils.rag.dense`` does in torch). FAISS (J.
Johnson, M. Douze, H. Jegou, "Billion-scale similarity search with GPUs", 2017; M. Douze et al., "The Faiss
library", 2024) is the library production systems use for the same job, exact or approximate:

* ``"flat"``  -- ``IndexFlatIP``: every vector compared with every query, exact (the reference for recall);
* ``"hnsw"``  -- ``IndexHNSWFlat``: a hierarchical navigable small-world graph (Y. A. Malkov, D. A. Yashunin,
  "Efficient and robust approximate nearest neighbor search using Hierarchical Navigable Small World graphs", arXiv
  2016, IEEE TPAMI 2018);
  ``hnsw_m`` links per node, ``ef_construction`` / ``ef_search`` candidate-list sizes when building / searching;
* ``"ivfpq"`` -- ``IndexIVFPQ``: k-means splits the space into ``nlist`` cells (an inverted file), and each vector is
  stored as ``pq_m`` bytes-sized codes of a product quantiser (H. Jegou, M. Douze, C. Schmid, "Product Quantization
  for Nearest Neighbor Search", 2011); a search visits the ``nprobe`` nearest cells. Memory shrinks from 4*C bytes
  per vector to about ``pq_m * nbits / 8`` bytes, at the price of recall.

:func:`measure_index` builds one index and reports build time, serialised size, query time and recall@k against the
exact top-k from a torch matrix product, for the chapter's table; :func:`format_bytes` prints a size in a unit that
fits it (KB for a small index, MB or GB for a large one). Left out: GPU indexes, index persistence, other
metrics (L2), OPQ rotations, re-ranking of PQ candidates with the full vectors, and adding vectors after the build.
FAISS uses all OpenMP threads unless told otherwise (``faiss.omp_set_num_threads``); this module changes no global
settings, so a benchmark pins them itself.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from course_utils.arguments import check_int, check_real
from course_utils.rag.retrieval_metrics import recall_fraction_at_k

KINDS = ("flat", "hnsw", "ivfpq")
MIN_POINTS_PER_CENTROID = 39  # FAISS's k-means warns below 39 training points per centroid
UNIT_TOLERANCE = 1e-3


def _faiss():
    try:
        import faiss
    except ImportError as err:  # pragma: no cover - faiss-cpu is a package dependency
        raise ImportError("course_utils.rag.ann needs FAISS: pip install faiss-cpu") from err
    return faiss


def _as_matrix(x: object, what: str, unit: bool = True) -> np.ndarray:
    """``x`` (N, C) as a C-contiguous float32 numpy array on the CPU, checked (2-D, non-empty, finite, unit rows)."""
    if isinstance(x, torch.Tensor):
        if not x.is_floating_point():
            raise TypeError(f"{what} must be a floating-point tensor, got dtype {x.dtype}")
        x = x.detach().cpu().float().numpy()
    elif isinstance(x, np.ndarray):
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"{what} must be a floating-point array, got dtype {x.dtype}")
    else:
        raise TypeError(f"{what} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{what} must be a non-empty (N, C) matrix, got shape {tuple(x.shape)}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise ValueError(f"{what} contains NaN or inf")
    if unit:
        norms = np.linalg.norm(x, axis=1)  # (N,)
        worst = float(np.abs(norms - 1.0).max())
        if worst > UNIT_TOLERANCE:
            raise ValueError(f"{what} must have unit-length rows (cosine = inner product); a row's norm is off by "
                             f"{worst:.3g}: normalise first, e.g. torch.nn.functional.normalize(x, dim=-1)")
    return x


def default_nlist(n: int) -> int:
    """About 4*sqrt(N) inverted-file cells, capped at N // 39 so k-means has its 39 training points per cell."""
    return max(1, min(round(4 * math.sqrt(n)), n // MIN_POINTS_PER_CENTROID))


def build_faiss_index(embeddings: torch.Tensor | np.ndarray, kind: str = "flat", *, hnsw_m: int = 32,
                      ef_construction: int = 80, ef_search: int = 64, nlist: int | None = None, pq_m: int = 16,
                      nbits: int = 8, nprobe: int = 8, seed: int = 0):
    """A FAISS index of unit-length ``embeddings`` (N, C) for inner-product (cosine) search; see the module docstring
    for the kinds and their parameters. IVF-PQ is trained on ``embeddings`` themselves, k-means seeded by ``seed``;
    ``nlist`` defaults to :func:`default_nlist`. Returns the faiss index, vectors added, ready for searching."""
    if kind not in KINDS:
        raise ValueError(f"unknown index kind {kind!r}; allowed: {', '.join(KINDS)}")
    checked = [check_int(value, name, minimum=minimum) for name, value, minimum in (
        ("hnsw_m", hnsw_m, 2), ("ef_construction", ef_construction, 1), ("ef_search", ef_search, 1),
        ("pq_m", pq_m, 1), ("nbits", nbits, 1), ("nprobe", nprobe, 1), ("seed", seed, 0))]
    hnsw_m, ef_construction, ef_search, pq_m, nbits, nprobe, seed = checked  # Python ints, for FAISS
    x = _as_matrix(embeddings, "embeddings")  # (N, C)
    n, dim = x.shape
    faiss = _faiss()
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search
    else:
        index = _ivfpq(faiss, x, nlist, pq_m, nbits, nprobe, seed)
    index.add(x)
    return index


def _ivfpq(faiss, x: np.ndarray, nlist: int | None, pq_m: int, nbits: int, nprobe: int, seed: int):
    n, dim = x.shape
    if nbits > 16:
        raise ValueError(f"nbits must be in 1..16 bits per product-quantiser code, got {nbits}")
    if dim % pq_m != 0:
        raise ValueError(f"the embedding size C={dim} must be divisible by pq_m={pq_m} (sub-vectors of equal size); "
                         f"pick pq_m among the divisors of {dim}")
    if nlist is None:
        nlist = default_nlist(n)
    nlist = check_int(nlist, "nlist", minimum=1)
    need = max(MIN_POINTS_PER_CENTROID * nlist, 2 ** nbits)
    if n < need:
        raise ValueError(f"too few vectors to train IVF-PQ: N={n}, but FAISS's k-means needs about 39 training points "
                         f"per centroid (39*nlist = {MIN_POINTS_PER_CENTROID * nlist} for nlist={nlist}) and at "
                         f"least 2**nbits = {2 ** nbits} for the product quantiser; use a smaller nlist or nbits, "
                         f"more vectors, or kind='flat'")
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFPQ(quantizer, dim, nlist, pq_m, nbits, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed  # k-means of the inverted file
    index.pq.cp.seed = seed  # k-means of each product-quantiser sub-space
    index.train(x)
    index.nprobe = min(nprobe, nlist)
    return index


def faiss_search(index, queries: torch.Tensor | np.ndarray, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` inner products of ``queries`` (Q, C) in ``index``: (scores (Q, k) float32, indices (Q, k) int64),
    CPU torch tensors, best first."""
    faiss = _faiss()
    if not isinstance(index, faiss.Index):
        raise TypeError(f"index must be a faiss.Index (from build_faiss_index), got {type(index).__name__}")
    k = check_int(k, "k", minimum=1)
    q = _as_matrix(queries, "queries", unit=False)  # (Q, C)
    if q.shape[1] != index.d:
        raise ValueError(f"queries have C={q.shape[1]} columns but the index holds vectors of size {index.d}")
    if k > index.ntotal:
        raise ValueError(f"k={k} is larger than the {index.ntotal} vectors in the index")
    scores, indices = index.search(q, k)  # (Q, k), (Q, k)
    return torch.from_numpy(scores), torch.from_numpy(indices.astype(np.int64))


def index_bytes(index) -> int:
    """Bytes of ``faiss.serialize_index(index)``: the vectors, codes, graph links and centroids it stores. This
    approximates the resident memory of the index (allocator slack and search-time buffers are not counted)."""
    faiss = _faiss()
    if not isinstance(index, faiss.Index):
        raise TypeError(f"index must be a faiss.Index, got {type(index).__name__}")
    return int(faiss.serialize_index(index).size)


_BYTE_UNITS = ("bytes", "KB", "MB", "GB", "TB")


def format_bytes(n_bytes: int | float) -> str:
    """``n_bytes`` in the decimal unit that keeps three significant digits readable: ``"512 bytes"``, ``"43.9 KB"``,
    ``"1.08 MB"``, ``"15.4 GB"``. An index of a few hundred vectors takes tens of KB, so printing every index in MB
    would show ``0.0 MB`` for a real, non-zero size; a fitting unit never rounds a non-zero size to zero."""
    check_real(n_bytes, "n_bytes", minimum=0, allowed="a finite number of bytes >= 0")
    if round(n_bytes) < 1000:
        return f"{round(n_bytes)} byte{'' if round(n_bytes) == 1 else 's'}"
    value = float(n_bytes)
    for unit in _BYTE_UNITS[1:]:
        value /= 1000
        if float(f"{value:.3g}") < 1000:  # 999.7 KB rounds to 1e3: shown as 1 MB instead
            return f"{value:.3g} {unit}"
    return f"{value:,.0f} {_BYTE_UNITS[-1]}"  # 1,000 TB and more: every digit, no exponent


def _as_index_matrix(x: object, what: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray) or x.ndim != 2 or not np.issubdtype(x.dtype, np.integer):
        raise TypeError(f"{what} must be a 2-D integer tensor or array (Q, >= k), got "
                        f"{getattr(x, 'dtype', type(x).__name__)} of shape {getattr(x, 'shape', None)}")
    return x


def recall_against_exact(approx_indices: torch.Tensor | np.ndarray, exact_indices: torch.Tensor | np.ndarray,
                         k: int) -> float:
    """Mean over queries of |approximate top-k ∩ exact top-k| / k (recall@k of an approximate index)."""
    k = check_int(k, "k", minimum=1)
    a = _as_index_matrix(approx_indices, "approx_indices")  # (Q, >= k)
    e = _as_index_matrix(exact_indices, "exact_indices")  # (Q, >= k)
    if a.shape[0] != e.shape[0] or a.shape[0] == 0:
        raise ValueError(f"need the same non-zero number of queries; got {a.shape[0]} and {e.shape[0]} rows")
    if min(a.shape[1], e.shape[1]) < k:
        raise ValueError(f"k={k} but the index lists have only {a.shape[1]} and {e.shape[1]} columns")
    return recall_fraction_at_k(a[:, :k].tolist(), e[:, :k].tolist(), k)  # the exact top-k ids are distinct


def exact_topk(embeddings: torch.Tensor | np.ndarray, queries: torch.Tensor | np.ndarray,
               k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-``k`` by a torch matrix product: (scores (Q, k), indices (Q, k)) on the CPU, best first."""
    k = check_int(k, "k", minimum=1)
    x = torch.from_numpy(_as_matrix(embeddings, "embeddings"))  # (N, C)
    q = torch.from_numpy(_as_matrix(queries, "queries", unit=False))  # (Q, C)
    if q.shape[1] != x.shape[1] or k > x.shape[0]:
        raise ValueError(f"queries (Q, {q.shape[1]}) must match embeddings (N={x.shape[0]}, {x.shape[1]}) and "
                         f"k={k} must be <= N")
    return torch.topk(q @ x.T, k, dim=1)  # (Q, N) -> (Q, k), (Q, k)


@dataclass(frozen=True)
class IndexReport:
    """One index measured: build seconds, serialised bytes, seconds per query (searched as one batch), recall@k."""
    kind: str
    n: int
    dim: int
    k: int
    build_s: float
    bytes: int
    query_s_per_query: float
    recall: float
    params: dict = field(default_factory=dict)

    @property
    def queries_per_s(self) -> float:
        return 1.0 / self.query_s_per_query if self.query_s_per_query > 0 else math.inf

    @property
    def bytes_per_vector(self) -> float:
        return self.bytes / self.n


def measure_index(embeddings: torch.Tensor | np.ndarray, queries: torch.Tensor | np.ndarray, kind: str,
                  k: int = 10, exact_indices: torch.Tensor | None = None, **params) -> IndexReport:
    """Build a ``kind`` index of ``embeddings`` (N, C) with ``params`` (see :func:`build_faiss_index`), search all
    ``queries`` (Q, C) in one batch, and compare its top-``k`` with the exact top-k (``exact_indices`` (Q, >= k) if
    given, else computed by :func:`exact_topk`)."""
    x = _as_matrix(embeddings, "embeddings")  # (N, C); validated once here, not again per arm
    q = _as_matrix(queries, "queries", unit=False)  # (Q, C)
    k = check_int(k, "k", minimum=1)
    if exact_indices is None:
        exact_indices = exact_topk(x, q, k)[1]
    start = time.perf_counter()
    index = build_faiss_index(x, kind, **params)
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    _, found = faiss_search(index, q, k)  # (Q, k)
    query_s = (time.perf_counter() - start) / q.shape[0]
    return IndexReport(kind=kind, n=x.shape[0], dim=x.shape[1], k=k, build_s=build_s, bytes=index_bytes(index),
                       query_s_per_query=query_s, recall=recall_against_exact(found, exact_indices, k),
                       params=dict(params))
