"""Reference solutions to chapter 09's exercises: rotary position embeddings in the "rotate half" pairing of
``transformers``' Llama, grouped-query attention with consecutive query heads sharing a key/value head, and the Switch
Transformer's load-balancing loss counted over all top-k assignments. The conventions are spelt out in
:mod:`course_utils.exercises.ch09`. Try the exercises before reading these."""

from __future__ import annotations

import math

import torch


def apply_rotary(x: torch.Tensor, positions: torch.Tensor, theta: float = 10000.0) -> torch.Tensor:
    """Turn pair (x_i, x_{i+D/2}) of row t by angle positions[t] * theta^(-2i/D): (..., T, D) -> (..., T, D)."""
    D = x.shape[-1]
    frequencies = theta ** (-torch.arange(0, D, 2, dtype=torch.float32, device=x.device) / D)  # (D/2,) theta^(-2i/D)
    angles = positions.to(x.device).float()[:, None] * frequencies  # (T, D/2)
    cos, sin = angles.cos(), angles.sin()
    a, b = x[..., : D // 2], x[..., D // 2:]  # (..., T, D/2) each: the two coordinates of every pair
    return torch.cat((a * cos - b * sin, a * sin + b * cos), dim=-1)  # (..., T, D)


def grouped_query_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal attention where query head h reads key/value head h // (H // H_kv): (B, H, T, D) out."""
    group = q.shape[1] // k.shape[1]  # query heads per key/value head
    k = k.repeat_interleave(group, dim=1)  # (B, H, T, D): kv head 0 for heads 0..group-1, and so on
    v = v.repeat_interleave(group, dim=1)
    T = q.shape[2]
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, T, T)
    causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()  # (T, T) True where attending is allowed
    return scores.masked_fill(~causal, float("-inf")).softmax(dim=-1) @ v  # (B, H, T, D)


def load_balancing_loss(router_logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """E * sum_i f_i * P_i: f_i = share of the N * k assignments to expert i, P_i = mean router probability."""
    probs = router_logits.softmax(dim=-1)  # (N, E)
    n_expert = probs.shape[-1]
    experts = probs.topk(top_k, dim=-1).indices  # (N, k)
    fraction = torch.bincount(experts.flatten(), minlength=n_expert) / experts.numel()  # (E,) f_i, a count
    return n_expert * (fraction * probs.mean(dim=0)).sum()  # gradient flows through P only
