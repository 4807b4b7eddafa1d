"""From logits to a next token: greedy, temperature, top-k, top-p, min-p and the repetition penalties.

Every function works on a batch of next-token ``logits`` of shape (B, V) and returns new logits of the same shape
(filters set removed tokens to ``-inf``), so processors compose in any order; :func:`process_logits` applies them in
the order ``transformers`` uses (penalties, temperature, top-k, top-p, min-p). Randomness only enters in
:func:`sample`, which takes an explicit ``torch.Generator``.

References
* Temperature and top-k: A. Fan, M. Lewis, Y. Dauphin, "Hierarchical Neural Story Generation", 2018.
* Top-p (nucleus): A. Holtzman et al., "The Curious Case of Neural Text Degeneration", 2019/2020.
* Min-p: M. Nguyen et al., "Turning Up the Heat: Min-p Sampling for Creative and Coherent LLM Outputs", 2024.
* Repetition penalty: N. S. Keskar et al., "CTRL: A Conditional Transformer Language Model for Controllable
  Generation", 2019 (divide a positive logit by the penalty, multiply a negative one, as ``transformers`` does).
* Frequency and presence penalties: the OpenAI API reference ("parameter details"): subtract
  ``count * frequency_penalty + [count > 0] * presence_penalty`` from each logit.

Conventions: top-k keeps every token tied with the k-th largest logit (as ``transformers`` does); top-p keeps the
shortest prefix of the tokens sorted by probability whose mass reaches ``top_p`` (a token is kept when the mass of
the tokens strictly before it in that order is below ``top_p``; ties are broken by a stable sort). Left out:
typical, epsilon and eta sampling, contrastive search, per-row (batched) settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def check_logits(logits: torch.Tensor) -> None:
    """Raise a clear error unless ``logits`` is a floating (B, V) tensor without NaN and with a finite entry per row."""
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (B, V), got {tuple(logits.shape)}; take logits[:, -1, :] first")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point tensor, got dtype {logits.dtype}")
    if torch.isnan(logits).any():
        raise ValueError("logits contain NaN; check the model's forward pass (overflow in half precision?)")
    if not (logits > -math.inf).any(dim=-1).all():
        raise ValueError("a row of logits is entirely -inf: every token was filtered out, nothing can be sampled")


def _check_ids(prev_ids: torch.Tensor, logits: torch.Tensor) -> None:
    if not isinstance(prev_ids, torch.Tensor) or prev_ids.dim() != 2 or prev_ids.shape[0] != logits.shape[0]:
        shape = tuple(prev_ids.shape) if isinstance(prev_ids, torch.Tensor) else type(prev_ids).__name__
        raise ValueError(f"prev_ids must be a (B, T) tensor of token ids with B={logits.shape[0]}, got {shape}")
    if prev_ids.numel() and (prev_ids.min() < 0 or prev_ids.max() >= logits.shape[1]):
        raise ValueError(f"prev_ids must lie in [0, {logits.shape[1]}), the vocabulary of the logits")


def greedy(logits: torch.Tensor) -> torch.Tensor:
    """The most likely token of each row: (B, V) -> (B,)."""
    check_logits(logits)
    return logits.argmax(dim=-1)


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide logits by ``temperature`` > 0: below 1 sharpens, above 1 flattens; T -> 0 is greedy, T -> inf uniform."""
    check_logits(logits)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(
            f"temperature must be a number > 0, got {temperature!r}; for argmax decoding use greedy=True instead of 0"
        )
    return logits / temperature


def top_k_filter(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """Keep the ``top_k`` largest logits of each row (and anything tied with the k-th); the rest become -inf."""
    check_logits(logits)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be an int >= 1, got {top_k!r} (leave it None to disable)")
    k = min(top_k, logits.shape[-1])
    kth = torch.topk(logits, k, dim=-1).values[:, -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, -math.inf)


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Nucleus filter: keep the most likely tokens until their probability mass reaches ``top_p`` in (0, 1]."""
    check_logits(logits)
    if isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r} (1 keeps every token)")
    if top_p == 1.0:
        return logits.clone()
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True, stable=True)  # (B, V)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)  # (B, V) mass up to and including each token
    mass_before = F.pad(cumulative[:, :-1], (1, 0))  # (B, V) mass strictly before each token; 0 for the first
    remove_sorted = mass_before >= top_p  # the first token is always kept since top_p > 0
    remove = remove_sorted.scatter(-1, order, remove_sorted)  # back to vocabulary order
    return logits.masked_fill(remove, -math.inf)


def min_p_filter(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    """Keep tokens whose probability is at least ``min_p`` (in [0, 1)) times the top token's probability."""
    check_logits(logits)
    if isinstance(min_p, bool) or not isinstance(min_p, (int, float)) or not 0.0 <= min_p < 1.0:
        raise ValueError(f"min_p must be in [0, 1), got {min_p!r} (0 keeps every token)")
    probs = logits.softmax(dim=-1)  # (B, V)
    threshold = min_p * probs.amax(dim=-1, keepdim=True)  # (B, 1)
    return logits.masked_fill(probs < threshold, -math.inf)


def apply_repetition_penalty(logits: torch.Tensor, prev_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL penalty: for every token already in ``prev_ids`` (B, T), divide a positive logit by ``penalty``, multiply
    a negative one. ``penalty`` > 1 discourages repeats, 1 does nothing, < 1 encourages them."""
    check_logits(logits)
    _check_ids(prev_ids, logits)
    if isinstance(penalty, bool) or not isinstance(penalty, (int, float)) or not penalty > 0:
        raise ValueError(f"repetition penalty must be > 0 (1 = off, > 1 discourages repeats), got {penalty!r}")
    seen = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, prev_ids, True)  # (B, V)
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)


def token_counts(prev_ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """How often each token occurs in each row of ``prev_ids`` (B, T) -> (B, V) float counts."""
    counts = torch.zeros(prev_ids.shape[0], vocab_size, device=prev_ids.device)
    return counts.scatter_add_(1, prev_ids, torch.ones_like(prev_ids, dtype=counts.dtype))


def apply_frequency_presence(logits: torch.Tensor, prev_ids: torch.Tensor, frequency_penalty: float = 0.0,
                             presence_penalty: float = 0.0) -> torch.Tensor:
    """OpenAI form: ``logit - count * frequency_penalty - [count > 0] * presence_penalty`` (additive, unlike CTRL)."""
    check_logits(logits)
    _check_ids(prev_ids, logits)
    for name, value in (("frequency_penalty", frequency_penalty), ("presence_penalty", presence_penalty)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number (OpenAI allows -2 to 2), got {value!r}")
    counts = token_counts(prev_ids, logits.shape[-1]).to(logits.dtype)  # (B, V)
    return logits - counts * frequency_penalty - (counts > 0).to(logits.dtype) * presence_penalty


def constrain(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Structured output: keep only tokens where ``allowed`` (V,) or (B, V) is True (e.g. digits, valid JSON)."""
    check_logits(logits)
    if not isinstance(allowed, torch.Tensor) or allowed.dtype != torch.bool or allowed.shape[-1] != logits.shape[-1]:
        raise ValueError(f"allowed must be a boolean tensor of shape (V,) or (B, V) with V={logits.shape[-1]}")
    out = logits.masked_fill(~allowed.expand_as(logits), -math.inf)
    check_logits(out)  # fails clearly if no allowed token is left
    return out


@dataclass
class SamplingConfig:
    """Decoding settings. ``None`` (or 1.0 for top_p / repetition_penalty, 0 for the additive penalties) = off."""

    greedy: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0

    def __post_init__(self) -> None:
        if not self.greedy and (isinstance(self.temperature, bool) or not isinstance(self.temperature, (int, float))
                                or not self.temperature > 0):
            raise ValueError(f"temperature must be > 0, got {self.temperature!r}; use greedy=True for argmax decoding")
        if self.top_k is not None and (isinstance(self.top_k, bool) or not isinstance(self.top_k, int)
                                       or self.top_k < 1):
            raise ValueError(f"top_k must be an int >= 1 or None, got {self.top_k!r}")
        if self.top_p is not None and not (isinstance(self.top_p, (int, float)) and 0.0 < self.top_p <= 1.0):
            raise ValueError(f"top_p must be in (0, 1] or None, got {self.top_p!r}")
        if self.min_p is not None and not (isinstance(self.min_p, (int, float)) and 0.0 <= self.min_p < 1.0):
            raise ValueError(f"min_p must be in [0, 1) or None, got {self.min_p!r}")
        if not (isinstance(self.repetition_penalty, (int, float)) and self.repetition_penalty > 0):
            raise ValueError(f"repetition_penalty must be > 0 (1 = off), got {self.repetition_penalty!r}")


def process_logits(logits: torch.Tensor, prev_ids: torch.Tensor | None, config: SamplingConfig) -> torch.Tensor:
    """Apply the penalties, then (unless greedy) temperature, top-k, top-p and min-p: (B, V) -> (B, V)."""
    check_logits(logits)
    logits = logits.float()
    if prev_ids is not None and prev_ids.numel():
        if config.repetition_penalty != 1.0:
            logits = apply_repetition_penalty(logits, prev_ids, config.repetition_penalty)
        if config.frequency_penalty or config.presence_penalty:
            logits = apply_frequency_presence(logits, prev_ids, config.frequency_penalty, config.presence_penalty)
    if config.greedy:
        return logits
    if config.temperature != 1.0:
        logits = apply_temperature(logits, config.temperature)
    if config.top_k is not None:
        logits = top_k_filter(logits, config.top_k)
    if config.top_p is not None:
        logits = top_p_filter(logits, config.top_p)
    if config.min_p is not None:
        logits = min_p_filter(logits, config.min_p)
    return logits


def sample(logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Draw one token per row from softmax(logits) with an explicit ``generator``: (B, V) -> (B,)."""
    check_logits(logits)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    probs = logits.softmax(dim=-1)  # (B, V)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)  # (B,)


def next_token(logits: torch.Tensor, prev_ids: torch.Tensor | None, config: SamplingConfig,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Processors then greedy or sampling: the single decision a decoding loop makes each step. (B, V) -> (B,)."""
    processed = process_logits(logits, prev_ids, config)
    if config.greedy:
        return processed.argmax(dim=-1)
    if generator is None:
        raise ValueError("sampling needs an explicit torch.Generator (or SamplingConfig(greedy=True))")
    return sample(processed, generator)
