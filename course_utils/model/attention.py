"""Scaled dot-product attention from scratch, with a boolean "may attend" mask.

Follows Vaswani et al., 2017, "Attention Is All You Need", equation (1):

    Attention(Q, K, V) = softmax(Q K^T / sqrt(D) + M) V,

where the additive mask ``M`` is 0 where a query may attend to a key and ``-inf`` where it may not. Because
``exp(-inf) = 0``, blocked keys receive exactly zero weight and the remaining weights still sum to one. We take the
mask in boolean form (True = may attend; see :mod:`course_utils.model.masks`) and apply it with ``masked_fill``
before the softmax, which is the same computation.

A query row whose keys are all blocked (a left-padding position under a causal mask) has no defined softmax:
``softmax([-inf, ..., -inf])`` is 0/0 = NaN. Like ``torch.nn.functional.scaled_dot_product_attention`` (PyTorch 2.5
and later, on CPU and CUDA; the MPS backend returned NaN in some releases) we return zero weights and a zero output
for such rows.

This version materialises the full ``(..., T_q, T_k)`` score matrix; that is the point of the chapter's cost section.
With a mask it keeps at most two such float tensors alive at once (the scores are freed after the softmax), so a
call needs about twice the memory of one ``(..., T_q, T_k)`` tensor of the inputs' dtype.
Left out: dropout on the weights, ``is_causal`` fast paths, grouped-query attention, memory-efficient kernels.
"""

from __future__ import annotations

import math

import torch

from course_utils.arguments import check_real


def _check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.dim() < 2:
            raise ValueError(f"{name} must be a tensor of shape (..., T, D), got {getattr(t, 'shape', type(t))}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be floating point, got {t.dtype}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k need the same head size D, got {q.shape[-1]} and {k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v need the same number of positions, got {k.shape[-2]} and {v.shape[-2]}")


def attention_weights(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None = None,
                      scale: float | None = None) -> torch.Tensor:
    """Softmax attention weights ``(..., T_q, T_k)`` of queries ``q (..., T_q, D)`` over keys ``k (..., T_k, D)``.

    ``mask`` is boolean, True = may attend, broadcastable to ``(..., T_q, T_k)``; None = no mask. Rows sum to 1,
    except rows with no allowed key, which are all zero. ``scale``: a finite number > 0; None = 1 / sqrt(D).
    """
    _check_qkv(q, k, k)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else \
        check_real(scale, "scale", minimum=0, low_open=True, allowed="a finite number > 0 (None = 1/sqrt(D))")
    scores = (q @ k.transpose(-2, -1)) * scale  # (..., T_q, T_k)
    if mask is None:
        return torch.softmax(scores, dim=-1)
    _check_mask(mask)
    try:
        scores = scores.masked_fill(~mask, float("-inf"))  # blocked pairs: -inf, so exp() gives exactly 0
    except RuntimeError as err:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to the scores' shape "
                         f"{tuple(scores.shape)}") from err
    weights = torch.softmax(scores, dim=-1)  # (..., T_q, T_k); all-blocked rows are NaN here
    del scores  # at most two (..., T_q, T_k) float tensors alive at once, not three (matters at long T)
    empty = ~mask.any(dim=-1, keepdim=True)  # (..., T_q, 1) rows with nothing to attend to
    return weights.masked_fill(empty, 0.0)


def _check_mask(mask: torch.Tensor) -> None:
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        raise TypeError(f"mask must be a boolean tensor (True = may attend), got "
                        f"{mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__}")
    if mask.dim() < 2:
        raise ValueError(f"mask must have at least 2 dimensions (..., T_q, T_k), got shape {tuple(mask.shape)}")


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 mask: torch.Tensor | None = None, scale: float | None = None,
                                 return_weights: bool = False):
    """``softmax(q k^T / sqrt(D), masked) v``: ``(..., T_q, D_v)``, plus the weights if ``return_weights``.

    Same arguments and result as ``torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)``
    with a boolean mask (tested against it for every mask kind in :mod:`course_utils.model.masks`).
    """
    _check_qkv(q, k, v)
    weights = attention_weights(q, k, mask, scale)  # (..., T_q, T_k)
    out = weights @ v  # (..., T_q, D_v)
    return (out, weights) if return_weights else out
