"""Retrieval metrics: recall@k (hit rate), set recall@k and mean reciprocal rank.

Each query comes with its retrieved ids (best first) and the set of its relevant (gold) ids; tensors and numpy arrays
are read as lists (``torch.topk(scores, k).indices`` (N, k) can be passed as ``retrieved``).

- :func:`recall_at_k` is the fraction of queries with at least one relevant id among the first k: the "hit rate",
  which is what RAG and open-domain QA papers report as recall@k or top-k accuracy when each question has one gold
  passage (e.g. Karpukhin et al., "Dense Passage Retrieval for Open-Domain Question Answering", 2020).
- :func:`recall_fraction_at_k` is the information-retrieval textbook recall: the fraction of a query's relevant
  ids found in the first k, averaged over queries (C. D. Manning, P. Raghavan and H. Schuetze, "Introduction to
  Information Retrieval", 2008, ch. 8). With one gold id per query the two are equal.
- :func:`mean_reciprocal_rank` averages 1 / (rank of the first relevant id), 0 when none is retrieved (within k
  if given): E. M. Voorhees, "The TREC-8 Question Answering Track Report", 1999.

A query without any relevant id is an error (it would count as a miss no retriever can avoid): drop it first.
Left out: precision, nDCG and graded relevance, MAP.
"""

from __future__ import annotations

from typing import Collection, Hashable, Sequence

from course_utils.arguments import check_int


def _plain(value: object) -> object:
    """A tensor or numpy array (or 0-d one) as a (nested) list (or number): a tensor's elements are 0-d tensors,
    which hash by identity, so ``3 in set(torch.tensor([3]))`` is False. Everything else unchanged."""
    return value.tolist() if hasattr(value, "tolist") and hasattr(value, "ndim") else value


def _check(retrieved: object, relevant: object, k: object, k_optional: bool = False) -> tuple[list, list]:
    """The checked arguments as lists of lists, tensors and numpy arrays (at any level) converted."""
    retrieved, relevant = _plain(retrieved), _plain(relevant)
    for name, value in (("retrieved", retrieved), ("relevant", relevant)):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise TypeError(f"{name} must be a sequence with one entry per query, got {type(value).__name__}")
    if len(retrieved) != len(relevant):
        raise ValueError(f"retrieved and relevant must have one entry per query; got {len(retrieved)} and "
                         f"{len(relevant)}")
    if len(retrieved) == 0:
        raise ValueError("no queries: retrieved and relevant are empty")
    if not (k_optional and k is None):
        check_int(k, "k", minimum=1, allowed=f"an int >= 1{' or None' if k_optional else ''}")
    retrieved, relevant = [_plain(ids) for ids in retrieved], [_plain(gold) for gold in relevant]
    for q, (ids, gold) in enumerate(zip(retrieved, relevant)):
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
            raise TypeError(f"retrieved[{q}] must be a list of ids (best first), got {type(ids).__name__}")
        if isinstance(gold, (str, bytes)) or not isinstance(gold, Collection):
            raise TypeError(f"relevant[{q}] must be a collection of ids (e.g. a set), got {type(gold).__name__} "
                            f"{gold!r} (wrap a single id in a set)")
        if len(gold) == 0:
            raise ValueError(f"relevant[{q}] is empty: a query without a relevant id cannot be scored; drop it")
    return [[_plain(i) for i in ids] for ids in retrieved], [[_plain(i) for i in gold] for gold in relevant]


def _first_relevant_rank(ids: Sequence[Hashable], gold: set, k: int | None) -> int | None:
    for rank, item in enumerate(ids[:k] if k is not None else ids, start=1):
        if item in gold:
            return rank
    return None


def recall_at_k(retrieved: Sequence[Sequence[Hashable]], relevant: Sequence[Collection[Hashable]], k: int) -> float:
    """Hit rate: the fraction of queries with at least one relevant id among their first k retrieved."""
    retrieved, relevant = _check(retrieved, relevant, k)
    hits = sum(_first_relevant_rank(ids, set(gold), k) is not None for ids, gold in zip(retrieved, relevant))
    return hits / len(retrieved)


def recall_fraction_at_k(retrieved: Sequence[Sequence[Hashable]], relevant: Sequence[Collection[Hashable]],
                         k: int) -> float:
    """Set recall: |relevant ∩ first k retrieved| / |relevant| per query, averaged over queries."""
    retrieved, relevant = _check(retrieved, relevant, k)
    fractions = [len(set(ids[:k]) & set(gold)) / len(set(gold)) for ids, gold in zip(retrieved, relevant)]
    return sum(fractions) / len(fractions)


def mean_reciprocal_rank(retrieved: Sequence[Sequence[Hashable]], relevant: Sequence[Collection[Hashable]],
                         k: int | None = None) -> float:
    """MRR: 1 / (rank of the first relevant id), ranks from 1, 0 if none (among the first k if k is given),
    averaged over queries."""
    retrieved, relevant = _check(retrieved, relevant, k, k_optional=True)
    total = 0.0
    for ids, gold in zip(retrieved, relevant):
        rank = _first_relevant_rank(ids, set(gold), k)
        total += 0.0 if rank is None else 1.0 / rank
    return total / len(retrieved)
