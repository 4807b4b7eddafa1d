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


def pair_counts(ids: torch.Tensor, vocab_size: int, gap: int = 1) -> torch.Tensor:
    """(V, V) matrix whose entry [a, b] counts how often id b comes ``gap`` positions after id a (gap 1: b follows
    a, the bigram counts)."""
    ids = torch.as_tensor(ids).long()
    pairs = ids[:-gap] * vocab_size + ids[gap:]  # (N-gap,) flat index a * V + b of each (a, b) pair at that gap
    return torch.bincount(pairs, minlength=vocab_size * vocab_size).view(vocab_size, vocab_size)


def top_followers(counts: torch.Tensor, alphabet: str, char: str, k: int = 3) -> list[str]:
    """The ``k`` characters that most often follow ``char``, most frequent first, read from a (V, V) bigram count
    matrix whose row a counts what follows id a; ``alphabet[i]`` is the character of id i."""
    row = torch.as_tensor(counts)[alphabet.index(char)]  # (V,) how often each id follows char
    return [alphabet[i] for i in row.topk(k).indices.tolist()]


def bits_excluding_targets(table: torch.Tensor, ids: torch.Tensor, excluded_ids: Sequence[int]) -> float:
    """Mean bits per prediction of a bigram ``table`` over ``ids``, leaving out predictions of ``excluded_ids``.

    The answer to the exercise's question. Without the space and newline targets the mean goes **up**: letters and
    punctuation are *harder* than the average character, so the whitespace must be *cheaper* than average. Mostly
    because the space is the most common character (about 15% of the training text): even with no context (the
    unigram counts) it costs 2.7 bits, against 5.1 for an average letter of the evaluation text, in the cpu
    profile's run (smoke: 2.8 against 5.2). The bigram lowers both but keeps the gap: 2.0 bits per space against
    3.9 per letter in the cpu run (smoke: 2.1 against 4.1). After a sentence mark (``. , ; : ! ?``) the next
    character is a space or a line break nearly 9 times in 10, so each costs about 1 bit (roughly even odds between
    the two; 1.0 and 1.0 in the cpu run, 1.3 and 1.1 in smoke). After a letter a bigram cannot know that the word
    has ended, so a space there costs about 2 bits, and a line break after a letter is expensive (6.5 bits in the
    cpu run, 6.0 in smoke).
    One cpu-profile run measured 4.027 bits/char without whitespace targets against 3.664 overall (space targets
    2.0 bits at 14.5% of positions, newlines 2.2 bits at 3.8%); the smoke profile's run, 4.196 against 3.828. Your
    notebook prints its own pair of numbers.
    """
    ids = torch.as_tensor(ids).long()
    targets = ids[1:]  # (N-1,)
    keep = ~torch.isin(targets, torch.as_tensor(list(excluded_ids), dtype=torch.long))  # (N-1,)
    return (-table[ids[:-1], targets][keep].log2()).mean().item()
