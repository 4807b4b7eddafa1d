"""Reference solutions to chapter 06's exercises (LoRA): LoRA's parameter count for a Llama-style config with
grouped-query attention, the best rank-r LoRA factors of a full fine-tuning change (Eckart-Young) and the fraction
of ||delta||_F^2 they capture, and DoRA's forward pass (Liu et al. 2024; norm per output feature, see
:mod:`course_utils.exercises.ch06` for why); :data:`WHY_DORA_AT_ZERO` answers exercise 3's question."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def lora_parameter_count(config: dict, r: int, targets: tuple[str, ...]) -> int:
    """r * (in + out) for every wrapped projection, times the number of decoder layers."""
    hidden, ffn = config["hidden_size"], config["intermediate_size"]
    head_dim = hidden // config["num_attention_heads"]
    kv_dim = config["num_key_value_heads"] * head_dim  # grouped-query attention: fewer key/value heads
    fan_in_plus_out = {
        "q_proj": hidden + hidden, "k_proj": hidden + kv_dim, "v_proj": hidden + kv_dim, "o_proj": hidden + hidden,
        "gate_proj": hidden + ffn, "up_proj": hidden + ffn, "down_proj": ffn + hidden,
    }
    per_layer = sum(r * fan_in_plus_out[name] for name in targets)
    return per_layer * config["num_hidden_layers"]


def best_rank_r_update(delta: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B (out, r), A (r, in)) with B @ A the truncated SVD of ``delta``: the best rank-r approximation in Frobenius
    norm (Eckart-Young 1936). The singular values go into B; any split between B and A gives the same product."""
    u, s, vh = torch.linalg.svd(delta, full_matrices=False)  # s in descending order
    return u[:, :r] * s[:r], vh[:r]  # (out, r), (r, in)


def captured_fraction(delta: torch.Tensor, r: int) -> float:
    """Sum of the r largest squared singular values over the sum of all of them (= ||delta||_F^2)."""
    energy = torch.linalg.svdvals(delta) ** 2  # descending
    return float(energy[:r].sum() / energy.sum())


def dora_forward(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                 magnitude: torch.Tensor, scaling: float) -> torch.Tensor:
    """DoRA: W' = magnitude * V / ||V||_row with V = W + scaling * B @ A, one norm per output feature; y = x W'^T + b.
    (..., in) -> (..., out)."""
    adapted = W + scaling * (B @ A)  # (out, in)
    norms = torch.linalg.norm(adapted, dim=1, keepdim=True)  # (out, 1)
    return F.linear(x, magnitude.unsqueeze(1) * adapted / norms, b)


#: Exercise 3's question, answered.
WHY_DORA_AT_ZERO = ("At B = 0 the adapted weight W + s B A is W itself, so W' = m * W / ||W|| row by row; with m at "
                    "its initial value, the row norms of W, each row is multiplied and divided by its own norm, so "
                    "W' = W and the function returns x W^T + b: exactly the frozen layer's output, up to "
                    "floating-point rounding (dividing by a norm and multiplying by it again need not give back the "
                    "last bit). So DoRA, like LoRA with B = 0 (section 2), starts training from the pretrained "
                    "model's function. One exception: a row of W that is all zeros has norm 0, and the formula gives "
                    "0/0 there (NaN), where the frozen layer gives 0.")
