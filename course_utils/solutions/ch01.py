"""Reference solutions for chapter 01 (language modelling). Try the exercises before reading these."""

from __future__ import annotations

import math
from typing import Sequence

import torch


def perplexity_from_probs(probs: Sequence[float]) -> float:
    """Perplexity of a sequence given the probability the model gave each actual next token."""
    return math.exp(-sum(math.log(p) for p in probs) / len(probs))


def bits_per_byte(mean_nats_per_token: float, n_tokens: int, n_bytes: int) -> float:
    """Convert a per-token loss into the tokenizer-independent bits per byte."""
    return mean_nats_per_token * n_tokens / math.log(2) / n_bytes


def bigram_counts(ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """(V, V) matrix whose entry [a, b] counts how often id b follows id a."""
    pairs = ids[:-1].long() * vocab_size + ids[1:].long()  # (N-1,) flat index of each (a, b) pair
    return torch.bincount(pairs, minlength=vocab_size * vocab_size).view(vocab_size, vocab_size)


def causal_loss_positions(n_tokens: int) -> list[int]:
    """Positions (0-based, as targets) at which a causal LM is trained on a sequence of n_tokens: all but the first."""
    return list(range(1, n_tokens))
