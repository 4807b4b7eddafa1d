"""Hybrid retrieval by reciprocal rank fusion (RRF).

Follows G. V. Cormack, C. L. A. Clarke and S. Buettcher, "Reciprocal Rank Fusion outperforms Condorcet and
individual Rank Learning Methods", SIGIR 2009: a document's fused score is

    RRF(d) = sum over rankings r that contain d of 1 / (k + rank_r(d)),   rank starting at 1,

with k = 60 in the paper. Only ranks are used, never scores, so a BM25 list (scores 0-30) and a cosine list
(scores -1..1) fuse without any calibration; k damps the weight of the very top ranks, so agreement between
rankings counts more than one ranking's first place.

Left out: weighted fusion, score-based fusion (CombSUM/CombMNZ), learned fusion.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from course_utils.arguments import check_int, check_real


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: float = 60, top: int | None = None
                           ) -> list[tuple[int, float]]:
    """Fuse ranked lists of document ids (best first) into one: [(id, RRF score), ...] by score descending, ties
    by the lower id; the first ``top`` only if given. A ranking may be empty; an id may appear once per ranking."""
    if isinstance(rankings, (str, bytes)) or not isinstance(rankings, Sequence) or len(rankings) == 0:
        raise ValueError("rankings must be a non-empty sequence of ranked id lists (one per retriever)")
    k = check_real(k, "k", minimum=0, allowed="a finite number >= 0 (60 in Cormack et al., 2009)")  # numpy too
    top = None if top is None else check_int(top, "top", minimum=1, allowed="None or an int >= 1")
    fused: dict[int, float] = {}
    for r, ranking in enumerate(rankings):
        if isinstance(ranking, (str, bytes)) or not isinstance(ranking, (Sequence, np.ndarray)):
            raise TypeError(f"ranking {r} must be a sequence of int ids, got {type(ranking).__name__}")
        seen: set[int] = set()
        for rank, doc in enumerate(ranking, start=1):
            if isinstance(doc, bool) or not isinstance(doc, (int, np.integer)):
                raise TypeError(f"ranking {r} holds {doc!r} ({type(doc).__name__}); ids must be ints")
            doc = int(doc)
            if doc in seen:
                raise ValueError(f"id {doc} appears twice in ranking {r}; each id may appear once per ranking")
            seen.add(doc)
            fused[doc] = fused.get(doc, 0.0) + 1.0 / (k + rank)
    order = sorted(fused.items(), key=lambda item: (-item[1], item[0]))
    return order if top is None else order[:top]
