"""A tiny mixture of experts (MoE) for the course GPT: top-k routing, load balancing, utilisation, active parameters.

A sparsely-gated MoE layer (N. Shazeer et al., 2017, "Outrageously Large Neural Networks: The Sparsely-Gated
Mixture-of-Experts Layer") replaces one MLP by ``n_expert`` MLPs and a router: a linear map from each token's hidden
state to one logit per expert. Each token goes to its ``top_k`` most probable experts (softmax over all experts,
keep the k largest, renormalise those k gates to sum to 1, as Mixtral does), and the layer's output is the
gate-weighted sum of those experts' outputs. Parameters grow with ``n_expert``; compute per token grows only with
``top_k`` (:func:`moe_parameter_counts`).

Left alone, a router collapses onto a few experts. The Switch Transformer's load-balancing loss (W. Fedus, B. Zoph,
N. Shazeer, 2021, "Switch Transformers: Scaling to Trillion Parameter Models with Simple and Efficient Sparsity",
equation 4) adds ``alpha * E * sum_i f_i P_i``, where ``f_i`` is the fraction of routing assignments that went to
expert i and ``P_i`` the mean router probability of expert i. With top-k routing we count all N x k assignments in
``f_i`` (so sum_i f_i = 1, and k = 1 is exactly Switch). The loss is exactly 1 whenever either f or P is uniform, so a
value near 1 shows balance only if the router's probabilities are not near-uniform themselves (as they are at
initialisation): the spread of f is the direct measure. It reaches its largest value, E / k, when every token goes
to the same k experts with all the router's probability on them (E for k = 1); in a small batch where the
assignments and the mean probabilities disagree it can dip a little below 1. ``f`` is not differentiable; the
gradient flows through ``P``.

:func:`use_moe` swaps every block's MLP of a :class:`course_utils.model.gpt.GPT` for a :class:`MoEMLP` whose experts
are the GPT's own :class:`~course_utils.model.gpt.MLP` (4 x n_embd wide). After a forward pass each MoE layer holds
``aux_loss`` (its balancing loss) and ``expert_counts`` (E,) (how many assignments each expert received); add
``alpha * moe_aux_loss(model)`` to the language-model loss when training. Left out: expert capacity and token
dropping, router z-loss, expert parallelism, shared experts, noisy gating.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from course_utils.arguments import check_int
from course_utils.model.gpt import GPT, MLP, GPTConfig


@dataclass
class Routing:
    """One router decision for N tokens: ``probs`` (N, E) over all experts, ``experts`` and ``gates`` (N, k)."""

    probs: torch.Tensor
    experts: torch.Tensor
    gates: torch.Tensor


def route(router_logits: torch.Tensor, top_k: int) -> Routing:
    """Softmax over experts, keep the ``top_k`` largest, renormalise their gates to sum to 1: (N, E) -> Routing."""
    if router_logits.dim() != 2:
        raise ValueError(f"router_logits must have shape (N, E), got {tuple(router_logits.shape)}")
    n_expert = router_logits.shape[1]
    top_k = check_int(top_k, "top_k", minimum=1, maximum=n_expert, allowed=f"an int in [1, n_expert={n_expert}]")
    probs = F.softmax(router_logits.float(), dim=-1)  # (N, E)
    top_probs, experts = probs.topk(top_k, dim=-1)  # (N, k), (N, k)
    gates = top_probs / top_probs.sum(dim=-1, keepdim=True)  # (N, k), each row sums to 1
    return Routing(probs, experts, gates.to(router_logits.dtype))


def expert_counts(experts: torch.Tensor, n_expert: int) -> torch.Tensor:
    """How many (token, slot) assignments each expert received: (N, k) expert ids -> (E,), summing to N x k."""
    return torch.bincount(experts.flatten(), minlength=n_expert)


def load_balancing_loss(probs: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """Switch Transformer's ``E * sum_i f_i * P_i`` (without alpha): 1 if f or P is uniform, at most E / k.

    ``probs`` (N, E) router probabilities, ``experts`` (N, k) chosen experts. ``f_i`` = share of the N x k
    assignments that went to expert i, ``P_i`` = mean of ``probs[:, i]``.
    """
    if probs.dim() != 2 or experts.dim() != 2 or probs.shape[0] != experts.shape[0]:
        raise ValueError(f"need probs (N, E) and experts (N, k) with the same N, got {tuple(probs.shape)} and "
                         f"{tuple(experts.shape)}")
    n_expert = probs.shape[1]
    fraction = expert_counts(experts, n_expert).to(probs.dtype) / experts.numel()  # (E,) f_i, sums to 1
    mean_prob = probs.mean(dim=0)  # (E,) P_i, sums to 1
    return n_expert * (fraction * mean_prob).sum()


class MoEMLP(nn.Module):
    """``n_expert`` GPT MLPs and a linear router; each token is processed by its ``top_k`` experts. (B, T, C) in/out."""

    def __init__(self, config: GPTConfig, n_expert: int = 4, top_k: int = 2) -> None:
        super().__init__()
        n_expert = check_int(n_expert, "n_expert", minimum=2, allowed="an int >= 2 (one expert is a plain MLP)")
        top_k = check_int(top_k, "top_k", minimum=1, maximum=n_expert, allowed=f"an int in [1, n_expert={n_expert}]")
        self.n_expert, self.top_k = n_expert, top_k
        self.router = nn.Linear(config.n_embd, n_expert, bias=False)
        self.experts = nn.ModuleList([MLP(config) for _ in range(n_expert)])
        self.aux_loss: torch.Tensor | None = None  # set by forward: this layer's load-balancing loss
        self.expert_counts: torch.Tensor | None = None  # set by forward: (E,) assignments per expert

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        tokens = x.reshape(B * T, C)  # (N, C), N = B * T
        routing = route(self.router(tokens), self.top_k)  # probs (N, E), experts/gates (N, k)
        out = torch.zeros_like(tokens)  # (N, C)
        for e, expert in enumerate(self.experts):
            rows, slot = torch.nonzero(routing.experts == e, as_tuple=True)  # tokens that chose expert e
            if rows.numel():
                gate = routing.gates[rows, slot].unsqueeze(-1)  # (n_e, 1)
                out.index_add_(0, rows, gate * expert(tokens[rows]))  # (n_e, C) added to those tokens
        self.aux_loss = load_balancing_loss(routing.probs, routing.experts)
        self.expert_counts = expert_counts(routing.experts.detach(), self.n_expert)
        return out.view(B, T, C)  # (B, T, C)


def use_moe(model: GPT, n_expert: int = 4, top_k: int = 2) -> GPT:
    """Replace every block's MLP of ``model`` by a fresh :class:`MoEMLP` (in place; returns the model)."""
    if not isinstance(model, GPT):
        raise TypeError(f"model must be a course_utils.model.gpt.GPT, got {type(model).__name__}")
    device = model.tok_emb.weight.device
    for block in model.blocks:
        moe = MoEMLP(model.config, n_expert, top_k)
        moe.apply(GPT._init_weights)  # the GPT's own initialisation (a near-uniform router at the start) ...
        for name, p in moe.named_parameters():
            if name.endswith("proj.weight"):  # ... including its scaled residual projections
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * model.config.n_layer))
        block.mlp = moe.to(device)
    return model


def moe_layers(model: nn.Module) -> list[MoEMLP]:
    return [m for m in model.modules() if isinstance(m, MoEMLP)]


def moe_aux_loss(model: nn.Module) -> torch.Tensor:
    """Mean load-balancing loss over the MoE layers, from the last forward pass (1 if f or P is uniform)."""
    layers = moe_layers(model)
    if not layers or any(layer.aux_loss is None for layer in layers):
        raise ValueError("no MoE layer has run a forward pass yet; call the model first (and use_moe before that)")
    return torch.stack([layer.aux_loss for layer in layers]).mean()


def expert_utilisation(model: nn.Module) -> torch.Tensor:
    """(n_layers, E) share of routing assignments per expert in the last forward pass; each row sums to 1."""
    layers = moe_layers(model)
    if not layers or any(layer.expert_counts is None for layer in layers):
        raise ValueError("no MoE layer has run a forward pass yet; call the model first (and use_moe before that)")
    counts = torch.stack([layer.expert_counts for layer in layers]).float()  # (L, E)
    return counts / counts.sum(dim=1, keepdim=True)


def moe_parameter_counts(model: nn.Module) -> dict[str, int]:
    """Total parameters and parameters *active per token*: a token uses top_k of each layer's n_expert experts.

    ``active = total - sum over MoE layers of (n_expert - top_k) x parameters of one expert``; the router, attention,
    norms and embeddings are used by every token (an embedding lookup touches one row, but we count the usual way).
    """
    total = sum(p.numel() for p in model.parameters())
    idle = 0
    for layer in moe_layers(model):
        per_expert = sum(p.numel() for p in layer.experts[0].parameters())
        idle += (layer.n_expert - layer.top_k) * per_expert
    return {"total": total, "active_per_token": total - idle}
