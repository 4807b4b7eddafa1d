"""LoRALinear: a frozen ``nn.Linear`` plus a trainable low-rank update, W x + (alpha / r) B A x.

Follows E. J. Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", 2021 (ICLR 2022): the pretrained
weight W (out, in) stays frozen and the update is factored as B (out, r) @ A (r, in) with r much smaller than in and
out. A starts random and B at zero, so the wrapped layer computes exactly what the base layer does at step 0.
The update is scaled by alpha / r (Hu et al.) or, with ``rslora=True``, by alpha / sqrt(r): D. Kalajdzievski,
"A Rank Stabilization Scaling Factor for Fine-Tuning with LoRA" (rsLoRA), 2023, which keeps the update's size
stable as r grows.

Conventions shared with Hugging Face peft (which the tests compare against): A is initialised like ``nn.Linear``'s
default (Kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in))), dropout acts on the input of the LoRA
path only, and merging twice (or unmerging an unmerged layer) is a no-op with a warning.

The unmerged forward never forms the (out, in) matrix B @ A: it computes (x A^T) B^T, which costs r (in + out)
multiply-adds per token instead of in * out. On the ``meta`` device (shapes only, no memory) A is created empty
instead of drawn: there are no values to draw, and the generator is left untouched.

Left out: several adapters per layer, LoRA on embeddings and convolutions, DoRA, quantised base weights (QLoRA),
fan-in/fan-out transposed weights (GPT-2's Conv1D).
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

from course_utils.arguments import check_int, check_real


def check_lora_hyperparameters(r: object, alpha: object, dropout: object,
                               max_rank: int | None = None) -> tuple[int, float, float]:
    """Raise TypeError/ValueError unless r is an int >= 1, alpha a finite number > 0 and dropout a number in
    [0, 1). (The upper bound of r depends on the layer, ``max_rank`` if known: see :func:`check_rank_fits`.)
    Numpy numbers are accepted; returns ``(r, alpha, dropout)`` as Python numbers (an int alpha stays an int)."""
    r = check_int(r, "r (the LoRA rank)", allowed="an int")
    if r < 1:  # the range by hand: the message ends with the layer's allowed ranks
        allowed = "r >= 1" if max_rank is None else f"1 <= r <= {max_rank} = min(in_features, out_features)"
        raise ValueError(f"r (the LoRA rank) must be >= 1, got {r}; allowed: {allowed}")
    alpha = check_real(alpha, "alpha", minimum=0, low_open=True, keep_int=True)
    dropout = check_real(dropout, "dropout", minimum=0, maximum=1, high_open=True, allowed="in [0, 1)", keep_int=True)
    return r, alpha, dropout


def check_rank_fits(r: int, in_features: int, out_features: int, what: str = "the layer") -> None:
    """Raise ValueError unless 1 <= r <= min(in_features, out_features) (a larger rank adds parameters but no
    expressive power: B @ A already has full rank)."""
    high = min(in_features, out_features)
    if not 1 <= r <= high:
        raise ValueError(f"r={r} does not fit {what} (in_features={in_features}, out_features={out_features}); "
                         f"allowed: 1 <= r <= {high}")


def lora_scaling(r: int, alpha: float, rslora: bool) -> float:
    """alpha / r (Hu et al., 2021) or alpha / sqrt(r) (rsLoRA, Kalajdzievski, 2023)."""
    return alpha / math.sqrt(r) if rslora else alpha / r


class LoRALinear(nn.Module):
    """``base(x) + scaling * (dropout(x) A^T) B^T`` with ``base`` frozen; x (..., in) -> (..., out)."""

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0, rslora: bool = False,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"base must be an nn.Linear, got {type(base).__name__}")
        r, alpha, dropout = check_lora_hyperparameters(r, alpha, dropout,
                                                       max_rank=min(base.in_features, base.out_features))
        check_rank_fits(r, base.in_features, base.out_features)
        if not isinstance(rslora, bool):
            raise TypeError(f"rslora must be a bool, got {type(rslora).__name__}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.r, self.alpha, self.rslora = r, alpha, rslora
        self.scaling = lora_scaling(r, alpha, rslora)
        weight = base.weight  # (out, in)
        self.lora_A = nn.Parameter(self._init_A(weight, generator))  # (r, in)
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, r, dtype=weight.dtype, device=weight.device))
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    def _init_A(self, weight: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """U(-1/sqrt(in), 1/sqrt(in)), nn.Linear's default (Kaiming-uniform, a = sqrt(5)); drawn in float32 on the
        generator's device (or with torch's default RNG on the weight's device), then cast and moved."""
        shape = (self.r, self.in_features)
        if weight.device.type == "meta":
            return torch.empty(shape, dtype=weight.dtype, device="meta")  # shapes only: nothing to draw
        bound = 1.0 / math.sqrt(self.in_features)
        device = generator.device if generator is not None else weight.device
        A = torch.empty(shape, dtype=torch.float32, device=device).uniform_(-bound, bound, generator=generator)
        return A.to(device=weight.device, dtype=weight.dtype)  # (r, in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base(x)  # (..., out)
        if self.merged:
            return result
        h = F.linear(self.lora_dropout(x).to(self.lora_A.dtype), self.lora_A)  # (..., r)
        update = F.linear(h, self.lora_B)  # (..., out)
        return result + (self.scaling * update).to(result.dtype)

    def _delta_float32(self) -> torch.Tensor:
        return self.scaling * (self.lora_B.float() @ self.lora_A.float())  # (out, in)

    def delta_weight(self) -> torch.Tensor:
        """scaling * B @ A, the (out, in) change that merging adds to the base weight; computed in float32 and
        returned in the LoRA parameters' dtype."""
        return self._delta_float32().to(self.lora_A.dtype)

    @torch.no_grad()
    def merge(self) -> None:
        """W <- W + scaling * B @ A (in float32, cast back to W's dtype); then forward is base(x) alone."""
        if self.merged:
            warnings.warn("LoRALinear.merge(): already merged, nothing to do (call unmerge() first)", UserWarning,
                          stacklevel=2)
            return
        W = self.base.weight
        W.copy_((W.float() + self._delta_float32()).to(W.dtype))
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """W <- W - scaling * B @ A: the base weight back (up to rounding), LoRA path active again."""
        if not self.merged:
            warnings.warn("LoRALinear.unmerge(): not merged, nothing to do", UserWarning, stacklevel=2)
            return
        W = self.base.weight
        W.copy_((W.float() - self._delta_float32()).to(W.dtype))
        self.merged = False

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, r={self.r}, alpha={self.alpha}, "
                f"scaling={self.scaling:g}, rslora={self.rslora}, merged={self.merged}")
