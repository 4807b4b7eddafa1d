"""The pieces that turn a GPT-2 block into a 2023-24 LLM block (Llama, Mistral, SmolLM2), each a few lines.

* RMSNorm (B. Zhang & R. Sennrich, 2019, "Root Mean Square Layer Normalization"): LayerNorm without the mean
  subtraction and without a bias, ``x / sqrt(mean(x^2) + eps) * weight``; cheaper, and as good in practice.
* Rotary position embeddings, RoPE (J. Su et al., 2021, "RoFormer: Enhanced Transformer with Rotary Position
  Embedding"): instead of adding a position vector to the input, rotate each pair of query/key coordinates by an
  angle ``position * inv_freq[i]``. A rotation by angle a of q and by angle b of k leaves a dot product that depends
  only on ``a - b``, so attention scores see relative offsets only. We use the "rotate half" pairing of
  Llama/``transformers`` (coordinate i is paired with i + D/2, not with its neighbour), with frequencies
  ``inv_freq[i] = rope_theta^(-2i / D)``. A larger ``rope_theta`` (10,000 in RoFormer, 100,000 in SmolLM2,
  500,000 in Llama 3) slows the rotations, so distant positions stay distinguishable over long contexts; linear
  position interpolation (S. Chen et al., 2023, "Extending Context Window of Large Language Models via Positional
  Interpolation") divides every frequency by a ``scaling_factor`` to stretch a trained context further.
* SwiGLU MLP (N. Shazeer, 2020, "GLU Variants Improve Transformer"): ``down(silu(gate(x)) * up(x))``, a gated MLP
  with three matrices and no biases, in place of GPT-2's ``proj(gelu(fc(x)))``.
* Grouped-query attention, GQA (J. Ainslie et al., 2023, "GQA: Training Generalized Multi-Query Transformer Models
  from Multi-Head Checkpoints"): ``n_kv_head < n_head`` key/value heads, each shared by ``n_head // n_kv_head``
  query heads. :func:`repeat_kv` copies each key/value head to its group before ordinary attention. What it saves
  is KV-cache memory, ``n_layer x 2 x n_kv_head x head_size x tokens x bytes``: that formula already lives in
  :func:`course_utils.generate.kv_cache.kv_cache_bytes` (one copy; call it with ``n_kv_head`` = ``n_head`` for
  multi-head attention and with the smaller number for GQA).

Shapes use the package notation (B batch, T time, C n_embd, H heads, D head size). Left out: other RoPE scalings
(NTK-aware, YaRN, Llama 3's frequency bands), partial rotary dimensions, fused kernels.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from course_utils.arguments import check_int, check_real


class RMSNorm(nn.Module):
    """``x / sqrt(mean(x^2 over C) + eps) * weight``, computed in float32 as ``transformers``' LlamaRMSNorm does."""

    def __init__(self, n_embd: int, eps: float = 1e-6) -> None:
        super().__init__()
        check_real(eps, "eps", minimum=0, low_open=True)  # a finite number > 0
        self.weight = nn.Parameter(torch.ones(n_embd))  # (C,) a learned gain per channel, no bias
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()  # (B, T, C) in float32: the mean of squares overflows or loses precision in half types
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)  # (B, T, C), RMS = 1 per token
        return self.weight * normed.to(x.dtype)  # (B, T, C)


def rope_inverse_frequencies(head_size: int, rope_theta: float = 10000.0, scaling_factor: float = 1.0,
                             dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The D/2 rotation speeds ``rope_theta^(-2i/D) / scaling_factor``, i = 0 .. D/2 - 1: (D/2,).

    Pair 0 turns by one radian per position, the last pair almost not at all. ``scaling_factor`` > 1 is linear
    position interpolation (Chen et al., 2023): position p is treated as p / scaling_factor.
    """
    pairs = "RoPE rotates pairs of coordinates: head_size"
    size = check_int(head_size, pairs, minimum=2, allowed="an even int >= 2")
    if size % 2:
        raise ValueError(f"{pairs} must be an even int >= 2, got {head_size!r}")
    head_size = size
    rope_theta = check_real(rope_theta, "rope_theta", minimum=1, low_open=True,
                            allowed="> 1 and finite (inf froze every pair but the first)")
    scaling_factor = check_real(scaling_factor, "scaling_factor", minimum=1, allowed=">= 1 and finite (1 = no scaling)")
    exponents = torch.arange(0, head_size, 2, dtype=dtype) / head_size  # (D/2,) 2i/D
    return 1.0 / (rope_theta ** exponents) / scaling_factor  # (D/2,)


def rope_cos_sin(position_ids: torch.Tensor, inv_freq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the angles ``position * inv_freq``, each half repeated: (..., T) positions -> 2 x (..., T, D).

    The angles are computed in ``inv_freq``'s dtype (float32 in the model, as ``transformers`` does).
    """
    angles = position_ids[..., None].to(inv_freq.dtype) * inv_freq  # (..., T, D/2)
    angles = torch.cat((angles, angles), dim=-1)  # (..., T, D): coordinate i and i + D/2 share an angle
    return angles.cos(), angles.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dimension: the 90-degree turn of every pair."""
    x1, x2 = x.chunk(2, dim=-1)  # 2 x (..., D/2)
    return torch.cat((-x2, x1), dim=-1)  # (..., D)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate queries or keys ``x`` (B, H, T, D) by their positions' angles; ``cos``/``sin`` are (B, T, D) or (T, D).

    Pair (x_i, x_{i+D/2}) becomes (x_i cos - x_{i+D/2} sin, x_{i+D/2} cos + x_i sin): a 2-D rotation.
    """
    if x.shape[-1] != cos.shape[-1] or x.shape[-2] != cos.shape[-2]:
        raise ValueError(f"cos/sin of shape {tuple(cos.shape)} do not fit x of shape {tuple(x.shape)}: need the "
                         "same T and D")
    if cos.dim() == 3:
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # (B, 1, T, D): the same angles for every head
    return x * cos + rotate_half(x) * sin  # (B, H, T, D)


class SwiGLU(nn.Module):
    """The gated MLP of Llama-style models: ``down(silu(gate(x)) * up(x))``, no biases. (B, T, C) -> (B, T, C)."""

    def __init__(self, n_embd: int, intermediate_size: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(n_embd, intermediate_size, bias=False)
        self.up_proj = nn.Linear(n_embd, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = F.silu(self.gate_proj(x))  # (B, T, I), silu(z) = z * sigmoid(z), the "Swish" of SwiGLU
        return self.down_proj(gate * self.up_proj(x))  # (B, T, I) -> (B, T, C)


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """Grouped-query attention's sharing: (B, H_kv, T, D) -> (B, H_kv * n_rep, T, D), each head repeated in place.

    Query head h uses key/value head ``h // n_rep`` (heads 0..n_rep-1 share kv head 0, and so on).
    """
    n_rep = check_int(n_rep, "n_rep", minimum=1, allowed="an int >= 1 (query heads per key/value head)")
    if x.dim() != 4:
        raise ValueError(f"x must have shape (B, H_kv, T, D), got {tuple(x.shape)}")
    if n_rep == 1:
        return x
    B, H_kv, T, D = x.shape
    return x[:, :, None].expand(B, H_kv, n_rep, T, D).reshape(B, H_kv * n_rep, T, D)  # (B, H, T, D)
