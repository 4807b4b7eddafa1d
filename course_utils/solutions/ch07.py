"""Reference solutions for chapter 07 (sampling and decoding). Try the exercises before reading these."""

from __future__ import annotations

import math

import torch


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row of (B, V) (ties with the k-th included); set the rest to -inf."""
    kth = logits.topk(min(k, logits.shape[-1]), dim=-1).values[:, -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, -math.inf)


def repetition_penalty(logits: torch.Tensor, prev_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL: seen tokens get logit / penalty if positive, logit * penalty otherwise."""
    out = logits.clone()
    for b in range(logits.shape[0]):
        for token in set(prev_ids[b].tolist()):
            z = out[b, token]
            out[b, token] = z / penalty if z > 0 else z * penalty
    return out


def mistral_kv_cache_gib() -> float:
    """KV cache of one 32,768-token sequence for Mistral-7B in float16: 32 layers, 8 KV heads of 128 (GQA)."""
    return 32 * 2 * 8 * 128 * 32_768 * 2 / 2**30  # = 4.0 GiB


def distinct_n(sequences: list[list[int]], n: int) -> float:
    """Unique n-grams / all n-grams, pooled over the sequences."""
    grams = [tuple(s[i:i + n]) for s in sequences for i in range(len(s) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0
