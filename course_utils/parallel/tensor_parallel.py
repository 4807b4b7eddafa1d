"""Megatron-LM tensor parallelism: a linear layer's weight split across ranks (Shoeybi et al. 2019,
"Megatron-LM: Training Multi-Billion Parameter Language Models Using Model Parallelism").

A linear layer Y = X W^T + b with W of shape (out, in) can be split two ways across p ranks:
- column parallel (:class:`ColumnParallelLinear`): rank r keeps the rows r*out/p ... of W (its output features).
  Each rank needs the whole input X and produces its slice of Y, no communication in forward.
- row parallel (:class:`RowParallelLinear`): rank r keeps the columns r*in/p ... of W (its input features), reads
  its slice of X, and produces a *partial sum* of Y; an all-reduce adds the p partial sums.
An MLP column-then-row (:class:`TensorParallelMLP`) needs no communication between its two matmuls (GELU acts
element-wise on each rank's slice) and exactly one all-reduce in forward, after the second; attention splits by
heads the same way (:class:`TensorParallelAttention`: Q, K, V column-parallel, heads local, the output projection
row-parallel). In backward the roles swap: the gradient of the replicated input X is a sum over ranks, so the
column-parallel layer's input needs one all-reduce in backward. Megatron calls the two conjugate operators f
(identity forward, all-reduce backward) and g (all-reduce forward, identity backward); they are written out below
as autograd functions, and every all-reduce they issue is recorded in a :class:`CommLog`.

Per transformer layer that is 2 all-reduces in forward and 2 in backward, each of B*T*C activations.
Left out: sequence parallelism (Korthikanti et al. 2022), the vocabulary-parallel embedding and cross-entropy,
dropout, initialising the shards directly (here they are cut from an unsplit layer, so the result can be compared).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from course_utils.arguments import check_int
from course_utils.model.gpt import MLP, CausalSelfAttention, GPTConfig
from course_utils.parallel.ddp import ring_allreduce_bytes_per_rank
from course_utils.parallel.launch import RankContext


@dataclass
class CommLog:
    """Every all-reduce a tensor-parallel layer issued: (layer name, "forward" or "backward", bytes)."""

    events: list[tuple[str, str, int]] = field(default_factory=list)

    def record(self, name: str, phase: str, tensor: torch.Tensor) -> None:
        self.events.append((name, phase, tensor.numel() * tensor.element_size()))

    def summary(self) -> dict[str, dict[str, int]]:
        """Per phase: the number of all-reduces and their total bytes."""
        out = {phase: {"count": 0, "bytes": 0} for phase in ("forward", "backward")}
        for _, phase, nbytes in self.events:
            out[phase]["count"] += 1
            out[phase]["bytes"] += nbytes
        return out


class _CopyToParallel(torch.autograd.Function):
    """Megatron's f: identity in forward; all-reduce (sum) of the input's gradient in backward."""

    @staticmethod
    def forward(ctx, x, log, name):
        ctx.log, ctx.name = log, name
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad)
        if ctx.log is not None:
            ctx.log.record(ctx.name, "backward", grad)
        return grad, None, None


class _ReduceFromParallel(torch.autograd.Function):
    """Megatron's g: all-reduce (sum) of the partial outputs in forward; identity for the gradient in backward."""

    @staticmethod
    def forward(ctx, x, log, name):
        out = x.contiguous().clone()
        dist.all_reduce(out)
        if log is not None:
            log.record(name, "forward", out)
        return out

    @staticmethod
    def backward(ctx, grad):
        return grad, None, None


def check_divisible(what: str, size: int, world_size: int) -> None:
    """Tensor parallelism splits ``size`` into ``world_size`` equal parts: refuse sizes that do not divide."""
    world_size = check_int(world_size, "world_size", minimum=1, allowed="a positive int")  # True was 1
    if size % world_size:
        divisors = [d for d in range(1, size + 1) if size % d == 0]
        raise ValueError(f"{what} ({size}) is not divisible by the tensor-parallel world size {world_size}; "
                         f"choose a world size among {divisors}")


def _shard_index(features: int, rank: int, world_size: int, groups: int = 1) -> torch.Tensor:
    """Indices of rank's share: each of ``groups`` equal blocks of features (Q, K, V) split into world_size parts."""
    per_group = features // groups
    part = per_group // world_size
    return torch.cat([torch.arange(g * per_group + rank * part, g * per_group + (rank + 1) * part)
                      for g in range(groups)])


class _ShardedLinear(nn.Module):
    """A linear layer's shard on one rank; ``split_dim`` of the (out, in) weight is the split one."""

    split_dim = 0

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, log: CommLog | None = None,
                 name: str = "linear") -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias) if bias is not None else None
        self.log, self.name = log, name

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int, world_size: int, groups: int = 1,
                    log: CommLog | None = None, name: str = "linear") -> "_ShardedLinear":
        """Cut rank's shard out of an unsplit ``nn.Linear`` (``groups`` > 1: Q, K and V are split each)."""
        features = linear.weight.shape[cls.split_dim]
        kind = "output" if cls.split_dim == 0 else "input"
        check_divisible(f"{name}: {kind} features per group", features // groups, world_size)
        index = _shard_index(features, rank, world_size, groups).to(linear.weight.device)  # index_select: same device
        bias = None
        if linear.bias is not None:  # a column shard owns its outputs' biases; a row shard adds the whole bias
            bias = (linear.bias.detach()[index] if cls.split_dim == 0 else linear.bias.detach()).clone()
        layer = cls(linear.weight.detach().index_select(cls.split_dim, index).clone(), bias, log, name)
        layer.source_index = index  # which rows (column parallel) or columns (row parallel) of the weight it holds
        return layer


class ColumnParallelLinear(_ShardedLinear):
    """Rank ``rank``'s output features: weight (out/p, in), bias (out/p,); input replicated, output (B, T, out/p)."""

    split_dim = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _CopyToParallel.apply(x, self.log, self.name)  # f: all-reduce of dL/dx in backward
        return F.linear(x, self.weight, self.bias)  # (B, T, out/p)


class RowParallelLinear(_ShardedLinear):
    """Rank ``rank``'s input features: weight (out, in/p), bias (out,) added once after the sum; input
    (B, T, in/p) local, output (B, T, out) summed over ranks."""

    split_dim = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        partial = F.linear(x, self.weight)  # (B, T, out): this rank's partial sum
        y = _ReduceFromParallel.apply(partial, self.log, self.name)  # g: all-reduce in forward
        return y + self.bias if self.bias is not None else y


class TensorParallelMLP(nn.Module):
    """The GPT's MLP split across ranks: fc column-parallel, GELU local, proj row-parallel (one all-reduce each
    way)."""

    def __init__(self, mlp: MLP, rank: int, world_size: int, log: CommLog | None = None) -> None:
        super().__init__()
        check_divisible("the MLP's hidden size (4 * n_embd)", mlp.fc.out_features, world_size)
        self.fc = ColumnParallelLinear.from_linear(mlp.fc, rank, world_size, log=log, name="mlp.fc")
        self.proj = RowParallelLinear.from_linear(mlp.proj, rank, world_size, log=log, name="mlp.proj")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))  # (B, T, C); (B, T, 4C/p) in between


class TensorParallelAttention(nn.Module):
    """Causal multi-head attention with the heads split across ranks: rank r computes n_head/p heads."""

    def __init__(self, attn: CausalSelfAttention, rank: int, world_size: int, log: CommLog | None = None) -> None:
        super().__init__()
        check_divisible("the number of attention heads", attn.n_head, world_size)
        self.n_head, self.head_size = attn.n_head // world_size, attn.head_size  # local heads
        self.qkv = ColumnParallelLinear.from_linear(attn.qkv, rank, world_size, groups=3, log=log, name="attn.qkv")
        self.proj = RowParallelLinear.from_linear(attn.proj, rank, world_size, log=log, name="attn.proj")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape  # (B, T, C)
        local = self.n_head * self.head_size
        q, k, v = self.qkv(x).split(local, dim=2)  # 3 x (B, T, C/p)
        q, k, v = (t.view(B, T, self.n_head, self.head_size).transpose(1, 2) for t in (q, k, v))  # (B, H/p, T, D)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H/p, T, D)
        return self.proj(y.transpose(1, 2).reshape(B, T, local))  # (B, T, C)


def tensor_parallel_bytes_per_layer(batch: int, seq_len: int, n_embd: int, world_size: int,
                                    bytes_per_element: int = 4) -> dict[str, float]:
    """Megatron's communication per transformer layer: 2 all-reduces in forward and 2 in backward, each of
    B*T*C elements; with a ring, each rank sends 2 (p - 1) / p times that."""
    batch, seq_len, n_embd, world_size, bytes_per_element = (check_int(value, name, minimum=1) for name, value in (
        ("batch", batch), ("seq_len", seq_len), ("n_embd", n_embd), ("world_size", world_size),
        ("bytes_per_element", bytes_per_element)))  # NaN and 2.5 went through, 0 bytes too
    per_all_reduce = batch * seq_len * n_embd * bytes_per_element
    return {"all_reduces_forward": 2, "all_reduces_backward": 2, "bytes_per_all_reduce": per_all_reduce,
            "sent_per_rank_per_step": 4 * ring_allreduce_bytes_per_rank(per_all_reduce, world_size)}


def _shard_of_full_grad(layer: _ShardedLinear, name: str, full_grad: torch.Tensor) -> torch.Tensor:
    """The part of the unsplit layer's gradient that ``layer`` holds (a row shard's bias is whole)."""
    if name == "bias" and layer.split_dim == 1:
        return full_grad
    return full_grad.index_select(layer.split_dim if name == "weight" else 0, layer.source_index)


def tensor_parallel_check_rank(ctx: RankContext, config: GPTConfig, batch_size: int, seed: int) -> dict:
    """Worker (for :func:`launch`): the GPT's MLP and attention, unsplit and tensor-parallel, on the same input and
    upstream gradient; returns per part the largest |difference| of the output, the input's gradient and every
    weight gradient (against the matching slice of the unsplit gradient) in ``max_abs_diff``, the same divided by
    the largest |value| of the unsplit tensor in ``max_rel_diff`` (rounding scales with the values compared: a bias
    gradient sums B * T tokens and grows with the batch), and the all-reduces counted."""
    if config.dropout != 0:
        raise ValueError(f"dropout must be 0 to compare outputs (ranks would draw different masks), "
                         f"got {config.dropout}")
    with torch.random.fork_rng(devices=[]):  # drawn on the CPU (the same numbers on every rank), then moved
        torch.manual_seed(seed)
        parts = {"mlp": MLP(config).to(ctx.device), "attention": CausalSelfAttention(config).to(ctx.device)}
        x = torch.randn(batch_size, config.block_size, config.n_embd).to(ctx.device)  # (B, T, C)
        upstream = torch.randn(batch_size, config.block_size, config.n_embd).to(ctx.device)  # (B, T, C): dL/dy
    builders = {"mlp": TensorParallelMLP, "attention": TensorParallelAttention}
    results = {}
    for name, full in parts.items():
        log = CommLog()
        parallel = builders[name](full, ctx.rank, ctx.world_size, log)
        x_full, x_tp = x.clone().requires_grad_(), x.clone().requires_grad_()
        y_full, y_tp = full(x_full), parallel(x_tp)  # (B, T, C) each
        (y_full * upstream).sum().backward()
        (y_tp * upstream).sum().backward()
        pairs = {"output": (y_full, y_tp), "input_grad": (x_full.grad, x_tp.grad)}  # (unsplit, split)
        full_modules = dict(full.named_modules())
        for path, layer in parallel.named_children():
            for pname, p in layer.named_parameters():
                reference = getattr(full_modules[path], pname).grad
                pairs[f"{path}.{pname}.grad"] = (_shard_of_full_grad(layer, pname, reference), p.grad)
        diffs = {k: (a - b).abs().max().item() for k, (a, b) in pairs.items()}
        relative = {k: diffs[k] / max(a.abs().max().item(), torch.finfo(a.dtype).tiny) for k, (a, _) in pairs.items()}
        shapes = {f"{path}.weight": tuple(layer.weight.shape) for path, layer in parallel.named_children()}
        results[name] = {"max_abs_diff": diffs, "max_rel_diff": relative, "comm": log.summary(),
                         "local_weight_shapes": shapes}
    return results
