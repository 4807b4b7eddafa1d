"""Reference solutions to chapter 04's exercises (scaling laws): a Llama-style parameter count, the compute needed
to reach a target loss under a fitted Chinchilla law, and the effective size of repeated data."""

from __future__ import annotations

import math

from course_utils.scaling.fit import ChinchillaFit


def llama_parameter_count(config: dict) -> int:
    """Total parameters of a Llama-architecture decoder (no biases, RMSNorm, SwiGLU MLP, grouped-query attention)."""
    d, ff, V = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    head_dim = d // config["num_attention_heads"]
    kv = config["num_key_value_heads"] * head_dim
    attention = d * d + 2 * d * kv + d * d  # q, k, v, o
    mlp = 3 * d * ff  # gate, up, down
    per_layer = attention + mlp + 2 * d  # two RMSNorm gains
    embeddings = V * d * (1 if config["tie_word_embeddings"] else 2)
    return config["num_hidden_layers"] * per_layer + d + embeddings  # + the final RMSNorm


def _optimal_loss(fit: dict, compute: float) -> float:
    return float(ChinchillaFit(**fit, objective=0.0).optimal_loss(compute)[0])


def compute_to_reach(fit: dict, target_loss: float) -> float:
    """Smallest compute C (FLOPs) whose compute-optimal model reaches ``target_loss`` under ``fit``."""
    if not target_loss > fit["E"]:
        raise ValueError(f"target_loss {target_loss} is not above the irreducible loss E = {fit['E']}: unreachable")
    lo, hi = 0.0, 200.0  # log C; the optimal loss falls monotonically with C
    for _ in range(200):
        mid = (lo + hi) / 2
        if _optimal_loss(fit, math.exp(mid)) > target_loss:
            lo = mid
        else:
            hi = mid
    return math.exp(hi)


def effective_tokens(tokens_seen: float, unique_tokens: float, r_star: float = 15.4) -> float:
    """Muennighoff et al. (2023): repeated tokens are worth less; ``U + U R* (1 - exp(-R / R*))`` with R repetitions."""
    if tokens_seen <= unique_tokens:
        return float(tokens_seen)
    repetitions = tokens_seen / unique_tokens - 1
    return unique_tokens + unique_tokens * r_star * (1 - math.exp(-repetitions / r_star))
