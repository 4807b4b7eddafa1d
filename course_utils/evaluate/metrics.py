"""Units of language-model quality: cross-entropy, perplexity, bits per character and bits per byte.

A model's mean cross-entropy ``L`` (nats per token) converts to perplexity ``exp(L)`` and to bits per token
``L / ln 2``. Different tokenizers cut the same text into different numbers of tokens, so per-token numbers are
not comparable across models; dividing the *total* bits by the number of characters or UTF-8 bytes of the text is
(Shannon, 1951, "Prediction and Entropy of Printed English"; Gao et al., 2020, "The Pile", for bits per byte).
"""

from __future__ import annotations

import math

from course_utils.arguments import check_int


def _check_finite_nonneg(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite non-negative number, got {value}")
    return value


def perplexity(mean_nats_per_token: float) -> float:
    """exp of the mean cross-entropy in nats: the effective number of equally likely choices per token."""
    return math.exp(_check_finite_nonneg("mean_nats_per_token", mean_nats_per_token))


def nats_to_bits(nats: float) -> float:
    return _check_finite_nonneg("nats", nats) / math.log(2)


def bits_per_unit(total_nats: float, n_units: int) -> float:
    """Total negative log-likelihood (nats) of a text divided over its characters or bytes, in bits per unit."""
    n_units = check_int(n_units, "n_units (characters or bytes in the text)", minimum=1, allowed="a positive int")
    return nats_to_bits(total_nats) / n_units
