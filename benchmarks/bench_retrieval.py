"""Retrieval speed at 10k and 100k chunks of Shakespeare: BM25 (ours vs bm25s) and dense search (exact vs FAISS).

Corpus: the non-empty lines of the 42 works (``course_utils.text.corpus``, in ``list_works()`` order), cut by
``course_utils.rag.chunking.chunk_lines`` into windows of ``lines_per_chunk`` lines, a new window every ``stride``
lines, restarting at each work; the first N windows form the corpus of size N:
  * 10k:  windows of 10 lines, stride 10 (no overlap; about 62 words a chunk);
  * 100k: windows of 10 lines, stride 1 (overlapping: each line is in up to 10 chunks) if MiniLM would embed them in
    under ``--max-embed-minutes`` at the rate measured on 2,000 random 10-line windows, else windows of 1 line,
    stride 1 (one line per chunk, no overlap); the printed header says which.
Queries: ``--queries`` lines of at least 4 words, drawn with a seeded generator from the lines the corpus covers (so
every query has a chunk containing it, which gives a sanity measure "source@10": the share of queries for which a
chunk containing the query line is in the top 10).

BM25 arms (k1 = 1.5, b = 0.75, both single-threaded, each query searched on its own):
  * ours:  ``course_utils.rag.bm25.tokenize`` + ``BM25Index(variant="lucene")``;
  * bm25s: ``bm25s.tokenize`` with our token pattern ``[^\\W_]+``, lowercase, no stop words, no stemmer (the script
    checks that it gives the same tokens as ours) + ``bm25s.BM25(method="lucene")``, numpy backend, n_threads=0.
  Build = tokenise + index, in documents/s; queries = tokenise + top-10, in queries/s; agreement = mean overlap of
  the two top-10 sets and the share of queries whose top-10 lists are identical (ties may be ordered differently:
  with 1-line chunks many lines are repeated word for word).
Dense arms (MiniLM embeddings, unit length, 384 floats; cached under the course cache, keyed by a hash of the
texts; texts are embedded sorted by length so that batches carry little padding):
  * exact: torch ``queries @ embeddings.T`` + ``topk`` (what ``course_utils.rag.dense`` does), 256 queries a batch;
  * FAISS flat (exact), HNSW (M=32, efConstruction=80; searched at efSearch 16/64/256) and IVF-PQ (nlist from
    ``default_nlist``, 16 sub-quantisers of 8 bits = 16 bytes a vector; searched at nprobe 1/8/64), via
    ``course_utils.rag.ann``. All 1,000 queries are searched as one batch; recall@10 is against the exact top-10's
    indices, "with ties" counts a returned chunk as a hit if its exact score reaches the exact 10th-best score
    (a chunk whose text is a duplicate of an exact hit is not a miss).
Times are the median of ``--repeats`` repetitions (builds once), with torch, OpenMP and FAISS pinned to ``--threads``.

    flock /tmp/course-heavy.lock nice -n 5 env OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_retrieval.py
    .venv/bin/python benchmarks/bench_retrieval.py --quick     # 500 and 15k chunks, 100 queries: a fast check

Left out: GPU search, query latency one at a time for the dense arms, the quality of retrieval on real questions
(chapter 08's notebook measures that on its knowledge base), bm25s' numba backend and multi-threaded retrieval.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import time

import numpy as np
import torch

K = 10


def work_lines() -> list[list[str]]:
    from course_utils.text.corpus import list_works, load_work

    return [[line.strip() for line in load_work(key).splitlines() if line.strip()] for key in list_works()]


def make_corpus(works: list[list[str]], n: int, lines_per_chunk: int, stride: int):
    """The first ``n`` windows and their spans (work, first line, last line + 1)."""
    from course_utils.rag.chunking import chunk_lines

    texts, spans = [], []
    for w, lines in enumerate(works):
        for i, text in enumerate(chunk_lines("\n".join(lines), lines_per_chunk, stride)):
            start = i * stride
            texts.append(text)
            spans.append((w, start, min(start + lines_per_chunk, len(lines))))
            if len(texts) == n:
                return texts, np.array(spans)
    raise SystemExit(f"only {len(texts)} windows of {lines_per_chunk} lines (stride {stride}); asked for {n}")


def sample_queries(works, spans: np.ndarray, n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """``n`` distinct covered lines of >= 4 words, as (texts, (work, line) pairs)."""
    from course_utils.device import make_generator

    covered = [(w, i) for w in np.unique(spans[:, 0]) for i in range(spans[spans[:, 0] == w, 2].max())
               if len(works[w][i].split()) >= 4]
    order = torch.randperm(len(covered), generator=make_generator(seed, "cpu"))[:n].tolist()
    picked = np.array([covered[j] for j in order])  # (Q, 2)
    return [works[w][i] for w, i in picked], picked


def source_at_k(found: np.ndarray, spans: np.ndarray, where: np.ndarray) -> float:
    """Share of queries with a chunk containing the query line among ``found`` (Q, k)."""
    s = spans[found]  # (Q, k, 3)
    hit = (s[..., 0] == where[:, None, 0]) & (s[..., 1] <= where[:, None, 1]) & (where[:, None, 1] < s[..., 2])
    return float(hit.any(axis=1).mean())


def median_seconds(fn, repeats: int):
    """(median seconds of ``repeats`` calls of ``fn``, the last call's output); each call timed by
    :func:`course_utils.device.timed`, the course's one timer."""
    from course_utils.device import timed

    seconds, out = [], None
    for _ in range(repeats):
        out, s = timed(fn)
        seconds.append(s)
    return statistics.median(seconds), out


def embed(minilm, texts: list[str], seed: int, batch: int = 64) -> tuple[torch.Tensor, float]:
    """Unit MiniLM embeddings (N, 384) in input order, and the embeddings/s measured on a random sample of 2,000
    of them, embedded first (so the rate costs nothing extra). Blocks are embedded in order of text length (less
    padding)."""
    from course_utils.device import make_generator
    from course_utils.model.pretrained import embed_sentences

    perm = torch.randperm(len(texts), generator=make_generator(seed, "cpu")).tolist()
    sample, rest = perm[:2000], perm[2000:]
    out = torch.empty(len(texts), 384)
    rate = 0.0
    for block_no, lo in enumerate([0] + list(range(0, len(rest), 8192))):
        idx = sorted(sample if block_no == 0 else rest[lo:lo + 8192], key=lambda i: len(texts[i]))
        start = time.perf_counter()
        out[idx] = embed_sentences(minilm, [texts[i] for i in idx], batch_size=batch).cpu()
        if block_no == 0:
            rate = len(idx) / (time.perf_counter() - start)
            print(f"    MiniLM: {rate:.0f} embeddings/s on a sample of {len(idx):,}", flush=True)
        elif len(rest) > 8192:
            print(f"    embedded {len(sample) + min(lo + 8192, len(rest)):,} / {len(texts):,}", flush=True)
    return out, rate


def cached_embeddings(minilm, texts: list[str], seed: int) -> tuple[torch.Tensor, float, float | None]:
    """Embeddings from the course cache (keyed by a hash of the texts) or computed and saved atomically; the rate
    measured when they were computed; the seconds spent now (None if they came from the cache)."""
    from course_utils.cache import atomic_torch_save, cache_dir

    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:20]
    path = cache_dir("rag") / f"minilm_{len(texts)}_{digest}.pt"
    if path.exists():
        saved = torch.load(path)
        if saved["embeddings"].shape == (len(texts), 384):
            return saved["embeddings"], saved["rate"], None
    start = time.perf_counter()
    x, rate = embed(minilm, texts, seed)
    seconds = time.perf_counter() - start
    atomic_torch_save({"embeddings": x, "rate": rate}, path)
    return x, rate, seconds


def bench_bm25(texts, queries, spans, where, repeats: int) -> dict:
    import bm25s

    from course_utils.rag.bm25 import BM25Index, tokenize

    n = len(texts)
    pattern = r"[^\W_]+"
    t_ours, index = median_seconds(lambda: BM25Index([tokenize(t) for t in texts], variant="lucene"), 1)

    def bm25s_build():
        tokens = bm25s.tokenize(texts, lower=True, token_pattern=pattern, stopwords=None, stemmer=None,
                                show_progress=False)
        retriever = bm25s.BM25(method="lucene", k1=1.5, b=0.75)
        retriever.index(tokens, show_progress=False)
        return retriever

    t_theirs, retriever = median_seconds(bm25s_build, 1)
    same_tokens = sum(a == tokenize(t) for a, t in zip(
        bm25s.tokenize(texts, lower=True, token_pattern=pattern, stopwords=None, stemmer=None, return_ids=False,
                       show_progress=False), texts))
    q_ours, ours_found = median_seconds(lambda: [index.search(tokenize(q), K) for q in queries], repeats)
    ours, top1_ours = np.stack([i for i, _ in ours_found]), np.array([s[0] for _, s in ours_found])

    def bm25s_query():
        qt = bm25s.tokenize(queries, lower=True, token_pattern=pattern, stopwords=None, stemmer=None,
                            return_ids=False, show_progress=False)
        return retriever.retrieve(qt, k=K, show_progress=False, n_threads=0)

    q_theirs, (theirs, theirs_scores) = median_seconds(bm25s_query, repeats)
    overlap = np.mean([len(set(a) & set(b)) / K for a, b in zip(ours, theirs)])
    return dict(n=n, build_ours=n / t_ours, build_theirs=n / t_theirs, qps_ours=len(queries) / q_ours,
                qps_theirs=len(queries) / q_theirs, overlap=float(overlap),
                identical=float(np.mean([list(a) == list(b) for a, b in zip(ours, theirs)])),
                top1_diff=float(np.abs(top1_ours - theirs_scores[:, 0]).max()), same_tokens=same_tokens,
                source_ours=source_at_k(ours, spans, where), source_theirs=source_at_k(theirs, spans, where))


def bench_dense(x: torch.Tensor, q: torch.Tensor, spans, where, repeats: int) -> list[tuple]:
    from course_utils.rag.ann import build_faiss_index, faiss_search, index_bytes, recall_against_exact

    def exact():
        return torch.cat([torch.topk(qb @ x.T, K, dim=1).indices for qb in q.split(256)])  # (Q, N) -> (Q, K)

    t, ref = median_seconds(exact, repeats)
    kth = (x[ref[:, -1]] * q).sum(-1)  # (Q,) the exact 10th-best score

    def tie_recall(found: torch.Tensor) -> float:  # a duplicate of an exact hit (same score) counts as a hit
        true = (x[found.clamp(min=0)] * q[:, None]).sum(-1)  # (Q, K, C) -> (Q, K)
        return float(((true >= kth[:, None] - 1e-5) & (found >= 0)).float().mean())

    rows = [("torch exact", "", 0.0, x.numel() * 4, len(q) / t, 1.0, 1.0, source_at_k(ref.numpy(), spans, where))]
    for kind, knob, values, params in (("flat", "", [None], {}),
                                       ("hnsw", "efSearch", [16, 64, 256], dict(hnsw_m=32, ef_construction=80)),
                                       ("ivfpq", "nprobe", [1, 8, 64], dict(pq_m=16, nbits=8, seed=0))):
        start = time.perf_counter()
        index = build_faiss_index(x, kind, **params)
        build_s = time.perf_counter() - start
        for value in values:
            if kind == "hnsw":
                index.hnsw.efSearch = value
            elif kind == "ivfpq":
                index.nprobe = value
            t, (_, found) = median_seconds(lambda: faiss_search(index, q, K), repeats)
            label = f"faiss {kind}" + (f" {knob}={value}" if value else "")
            if kind == "ivfpq" and value == values[0]:
                label += f" (nlist={index.nlist})"
            rows.append((label, knob, build_s, index_bytes(index), len(q) / t,
                         recall_against_exact(found, ref, K), tie_recall(found),
                         source_at_k(found.numpy(), spans, where)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--lines-per-chunk", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-embed-minutes", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true",
                        help="sizes 500 and 15k (1-line chunks: the fallback), 100 queries, 1 repeat")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.queries, args.repeats, args.max_embed_minutes = [500, 15_000], 100, 1, 0.2
    import faiss

    from course_utils.device import cpu_description
    from course_utils.model.pretrained import load_minilm

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    print(f"CPU: {cpu_description()}")
    print(f"torch {torch.__version__}, faiss {faiss.__version__}, {args.threads} threads (OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS')}), {args.queries} queries, median of {args.repeats}, load average "
          f"before: {os.getloadavg()[0]:.2f}")
    works = work_lines()
    minilm = load_minilm()
    L = args.lines_per_chunk
    rates: dict[int, float] = {}  # lines per chunk -> embeddings/s, measured on a 2k sample
    for n in args.sizes:
        stride = L if n * L <= sum(map(len, works)) else 1
        texts, spans = make_corpus(works, n, L, stride)
        note = ""
        if stride == 1 and L > 1:
            if L not in rates:
                rates[L] = embed(minilm, texts[:2000], args.seed)[1]
            if n / rates[L] > 60 * args.max_embed_minutes:
                note = (f" (windows of {L} lines: {rates[L]:.0f} embeddings/s on a 2k sample, {n / rates[L] / 60:.0f} "
                        f"min for {n:,} > {args.max_embed_minutes:g} min, so 1-line chunks)")
                texts, spans = make_corpus(works, n, 1, 1)
        lines_now = int(spans[0, 2] - spans[0, 1])
        queries, where = sample_queries(works, spans, args.queries, args.seed + 1)
        print(f"\n=== {n:,} chunks: windows of {lines_now} line(s), stride {stride if lines_now > 1 else 1}, from "
              f"{len(np.unique(spans[:, 0]))} works, {np.mean([len(t.split()) for t in texts]):.1f} words a "
              f"chunk{note}", flush=True)
        b = bench_bm25(texts, queries, spans, where, args.repeats)
        print(f"BM25 build (docs/s): ours {b['build_ours']:,.0f}, bm25s {b['build_theirs']:,.0f} "
              f"(bm25s / ours {b['build_theirs'] / b['build_ours']:.2f}); tokens identical in "
              f"{b['same_tokens']:,} of {n:,} chunks")
        print(f"BM25 queries/s: ours {b['qps_ours']:,.0f}, bm25s {b['qps_theirs']:,.0f} "
              f"(bm25s / ours {b['qps_theirs'] / b['qps_ours']:.2f}); top-10 overlap {b['overlap']:.4f}, identical "
              f"lists {b['identical']:.3f}, top-1 score difference <= {b['top1_diff']:.2g}; source@10 ours "
              f"{b['source_ours']:.3f}, bm25s {b['source_theirs']:.3f}")
        x, rate, seconds = cached_embeddings(minilm, texts, args.seed)
        rates.setdefault(lines_now, rate)
        qx = cached_embeddings(minilm, queries, args.seed)[0]
        print(f"embeddings: {'from the cache' if seconds is None else f'{seconds:.0f} s ({n / seconds:.0f}/s)'}; "
              f"{rate:.0f} embeddings/s on a 2k sample when computed", flush=True)
        rows = bench_dense(x, qx, spans, where, args.repeats)
        print(f"{'dense arm':<34s} | build s | MiB     | queries/s | vs exact | recall@10 | with ties | source@10")
        exact_qps = rows[0][4]
        for label, _, build_s, nbytes, qps, recall, ties, source in rows:
            print(f"{label:<34s} | {build_s:7.2f} | {nbytes / 2**20:7.2f} | {qps:9,.0f} | {qps / exact_qps:8.2f} "
                  f"| {recall:9.3f} | {ties:9.3f} | {source:9.3f}", flush=True)
        flat_bytes = rows[1][3]
        for label, _, _, nbytes, *_ in rows[2:]:
            if "efSearch=16" in label or "nprobe=1 " in label:
                print(f"  bytes {label.split()[1]} / flat: {nbytes / flat_bytes:.3f}")
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
