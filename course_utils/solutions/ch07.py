"""Reference solutions for chapter 07 (sampling and decoding). Try the exercises before reading these."""

from __future__ import annotations

import math

import torch


def epsilon_filter(logits: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Epsilon sampling (Hewitt et al., 2022): drop tokens with probability < epsilon, never the most likely one."""
    probs = logits.softmax(dim=-1)  # (B, V)
    remove = probs < epsilon
    remove.scatter_(-1, probs.argmax(dim=-1, keepdim=True), False)  # (B, V) the top token of each row stays
    return logits.masked_fill(remove, -math.inf)


def decaying_repetition_penalty(logits: torch.Tensor, prev_ids: torch.Tensor, penalty: float,
                                window: int) -> torch.Tensor:
    """CTRL sign rule for the tokens among the last ``window`` ids of each row, with a strength that fades with
    distance: ``penalty ** (1 - d / window)``, ``d`` = how many ids ago the token last occurred (0 = the last id)."""
    out = logits.clone()
    for b in range(logits.shape[0]):
        recent = prev_ids[b, -window:].tolist()
        distance = {token: len(recent) - 1 - pos for pos, token in enumerate(recent)}  # later occurrences win
        for token, d in distance.items():
            theta = penalty ** (1 - d / window)
            z = out[b, token]
            out[b, token] = z / theta if z > 0 else z * theta
    return out


def mistral_kv_cache() -> tuple[int, float]:
    """Mistral-7B v0.1, float16: 32 layers, 8 KV heads (GQA) of 128, a rolling buffer of 4,096 positions (the sliding
    window), so an 8,192-token sequence caches only 4,096 of them: (positions kept, GiB)."""
    positions = 4096
    return positions, 32 * 2 * 8 * 128 * positions * 2 / 2**30


def novel_ngram_fraction(sample: list[int], reference: list[int], n: int) -> float:
    """Share of the sample's n-grams (with repeats) that never occur in the reference."""
    grams = [tuple(sample[i:i + n]) for i in range(len(sample) - n + 1)]
    known = {tuple(reference[i:i + n]) for i in range(len(reference) - n + 1)}
    return sum(g not in known for g in grams) / len(grams) if grams else 0.0
