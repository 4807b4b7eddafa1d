"""Muon: momentum whose update is orthogonalised by a Newton-Schulz iteration, for a network's hidden matrices.

Muon (K. Jordan et al., 2024, "Muon: An optimizer for hidden layers in neural networks") keeps a Nesterov momentum
buffer per weight matrix, like SGD, but replaces the update ``M`` by (approximately) the nearest semi-orthogonal
matrix ``U V^T`` (from the SVD ``M = U S V^T``): directions that are weak but not tiny move the weights by about as
much as the dominant ones (the authors' hypothesis for why it helps). The SVD is too slow to run every step; a few
steps of the quintic Newton-Schulz iteration ``X <- a X + (b A + c A^2) X`` with ``A = X X^T`` and
``(a, b, c) = (3.4445, -4.7750, 2.0315)`` push the singular values of the normalised ``M`` towards 1 using matrix
products only. Five steps map every singular value above about 1/650 of ``M``'s Frobenius norm into about 0.68 to
1.20; smaller ones stay small (1e-3 of the norm ends near 0.47), so the step is only roughly orthogonal. The authors
describe the result as ``U S' V^T`` with ``S'`` roughly uniform in (0.5, 1.5) and found it does not hurt model
performance relative to ``U V^T``. The update of an ``(out, in)`` matrix is scaled by ``sqrt(max(1, out / in))``, as
in the original. The momentum is the sum form ``M <- mu M + G``; the moving-average form of ``torch.optim.Muon``
differs by a factor that the normalisation removes, so both give the same step.

Muon is for the hidden 2-D weights; embeddings, the output head, biases and LayerNorm gains keep AdamW
(:func:`hidden_matrices` splits a model's parameters that way; :class:`MuonWithAdamW` steps both as one optimiser).

Why not ``torch.optim.Muon``: it runs the iteration in bfloat16, which CPUs without native bf16 (no AVX512-BF16 or
AMX) emulate; on this course's 2-core AVX2 machine its step over the chapter-01 model's hidden matrices took about
25 times as long as this float32 version (``benchmarks/bench_char_training.py --muon-step``), because of the bf16
emulation. Here the iteration always runs in float32, whatever the parameters' dtype (float64 is rounded), and
matrices of the same shape are stacked into one batched product (fewer kernel launches).

Left out: weight decay inside Muon and the RMS-matched step scale ``0.2 sqrt(max(out, in))`` that J. Liu et al.
(2025, "Muon is Scalable for LLM Training") found necessary at scale; orthogonalising a fused qkv matrix's Q, K and V
separately (common practice; here the (3C, C) matrix is one matrix); distributing the iteration across ranks; and a
bfloat16 path (``torch.optim.Muon`` has one; ``TrainConfig`` always builds this float32 version).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn as nn

from course_utils.arguments import check_int, check_real

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def newton_schulz(matrices: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """Approximately orthogonalise ``matrices`` (..., m, n): the same singular vectors, singular values near 1.

    Each matrix is first divided by its Frobenius norm (so every singular value is at most 1), then ``steps``
    quintic Newton-Schulz iterations run on the wider orientation (the Gram matrix ``X X^T`` is the smaller one).
    """
    if matrices.dim() < 2:
        raise ValueError(f"newton_schulz needs matrices (..., m, n), got shape {tuple(matrices.shape)}")
    steps = check_int(steps, "steps", minimum=1, allowed="a positive int")
    a, b, c = NS_COEFFICIENTS
    x = matrices / (matrices.norm(dim=(-2, -1), keepdim=True) + eps)  # (..., m, n), spectral norm <= 1
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT  # (..., n, m): iterate on the wide orientation
    for _ in range(steps):
        gram = x @ x.mT  # (..., rows, rows)
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.mT if tall else x


class Muon(torch.optim.Optimizer):
    """Muon for 2-D parameters: Nesterov momentum, Newton-Schulz orthogonalised, shape-scaled steps (float32)."""

    def __init__(self, params: Iterable, lr: float = 0.02, momentum: float = 0.95, ns_steps: int = 5) -> None:
        check_real(lr, "lr", minimum=0, low_open=True)  # a bool or inf went through
        check_real(momentum, "momentum", minimum=0, maximum=1, high_open=True, allowed="in [0, 1)")
        ns_steps = check_int(ns_steps, "ns_steps", minimum=1, allowed="a positive int")
        super().__init__(params, dict(lr=lr, momentum=momentum, ns_steps=ns_steps))
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() != 2:
                    raise ValueError(f"Muon updates 2-D weight matrices only, got a parameter of shape "
                                     f"{tuple(p.shape)}; give embeddings, biases and gains to AdamW")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else torch.enable_grad()(closure)()
        for group in self.param_groups:
            by_shape: dict[tuple, list[torch.Tensor]] = {}
            for p in group["params"]:
                if p.grad is not None:
                    by_shape.setdefault((tuple(p.shape), p.device, p.dtype), []).append(p)
            for (shape, _, _), params in by_shape.items():
                grads = [p.grad for p in params]
                for p in params:
                    if "momentum_buffer" not in self.state[p]:
                        self.state[p]["momentum_buffer"] = torch.zeros_like(p)
                buffers = [self.state[p]["momentum_buffer"] for p in params]
                torch._foreach_mul_(buffers, group["momentum"])
                torch._foreach_add_(buffers, grads)
                nesterov = torch._foreach_add(grads, buffers, alpha=group["momentum"])
                update = newton_schulz(torch.stack(nesterov).float(), group["ns_steps"])  # (k, out, in)
                scale = max(1.0, shape[0] / shape[1]) ** 0.5
                torch._foreach_add_(params, [u.to(p.dtype) for u, p in zip(update.unbind(0), params)],
                                    alpha=-group["lr"] * scale)
        return loss


def hidden_matrices(model: nn.Module, output_names: Iterable[str] = ("lm_head",)) -> tuple[list, list]:
    """Split ``model``'s trainable parameters into (Muon's hidden matrices, the rest for AdamW).

    Hidden matrices are the weights of ``nn.Linear`` layers, except modules named in ``output_names`` and any
    weight that is also an ``nn.Embedding``'s table (a tied output head).
    """
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    excluded = set(output_names)
    hidden_ids: set[int] = set()
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and name.split(".")[-1] not in excluded \
                and id(module.weight) not in embedding_ids and module.weight.requires_grad:
            hidden_ids.add(id(module.weight))
    params = [p for p in model.parameters() if p.requires_grad]
    return [p for p in params if id(p) in hidden_ids], [p for p in params if id(p) not in hidden_ids]


class MuonWithAdamW:
    """Muon for the hidden matrices and AdamW for the rest, stepped as one optimiser by the training loop.

    ``param_groups`` lists Muon's groups, then AdamW's; :func:`course_utils.train.loop.make_optimizer` gives each
    group ``lr_ratio``, its peak learning rate over ``TrainConfig.lr``, which :func:`course_utils.train.loop.set_lr`
    multiplies by the schedule.
    """

    def __init__(self, muon: Muon, adamw: torch.optim.Optimizer) -> None:
        self.optimizers = (muon, adamw)

    @property
    def param_groups(self) -> list[dict]:
        return [group for opt in self.optimizers for group in opt.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()

    def state_dict(self) -> dict:
        return {"muon": self.optimizers[0].state_dict(), "adamw": self.optimizers[1].state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizers[0].load_state_dict(state["muon"])
        self.optimizers[1].load_state_dict(state["adamw"])
