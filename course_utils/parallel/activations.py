"""Activation memory: what the forward pass keeps for the backward pass, by formula and by measurement.

**The paper's formula.** V. Korthikanti et al., 2022, "Reducing Activation Recomputation in Large Transformer
Models" count, for one GPT-style block (multi-head attention, a 4h GELU MLP, LayerNorm, dropout) with 16-bit
activations and 1-byte dropout masks, ``s b h (34 + 5 a s / h)`` bytes (s sequence length, b micro-batch, h hidden,
a heads): attention 11 sbh + 5 a s^2 b (Q, K, V, the softmax output, its dropout mask and output), MLP 19 sbh,
two LayerNorm inputs 4 sbh. Their Table 2 gives the variants :func:`korthikanti_layer_bytes` implements: tensor
parallel over t ranks ``sbh (10 + 24/t + 5as/(ht))`` (the LayerNorms' inputs, the dropout masks and the inputs of
the column-parallel matmuls, QKV and the MLP's first layer, stay whole on every rank), plus sequence parallelism
``sbh (34/t + 5as/(ht))``, selective recomputation (drop the ``5as/h`` attention-score term, recomputed in the
backward pass) and full recomputation ``2 sbh`` (only each layer's input is kept).

**The same count for any block** (:func:`layer_activation_bytes`), in *values* per token of ``h``: the two norm
inputs and outputs (4), Q (1), K and V (``n_kv_head / n_head`` each: grouped-query attention keeps smaller K and V),
the attention output (1), and the MLP: GELU keeps its input and output (2 f / h), SwiGLU keeps the gate, its SiLU,
the up projection and their product (4 f / h). For the paper's block (f = 4h, a = n_kv) that is 16 values = 32
bytes in 16 bit, plus 2 one-byte dropout masks = 34. Attention scores (``a s^2 b`` softmax output, with dropout its
mask and output too) are kept unless the attention kernel recomputes them in backward: FlashAttention (T. Dao et
al., 2022, "FlashAttention: Fast and Memory-Efficient Exact Attention with IO-Awareness") keeps only the output and
one log-sum-exp per query and head, which is why PyTorch's ``scaled_dot_product_attention`` has no ``s^2`` term. A
test checks that this count reproduces the paper's formula for the paper's block.

**Measurement** (:class:`SavedTensorMeter`): ``torch.autograd.graph.saved_tensors_hooks`` sees every tensor autograd
saves for backward; counting each storage once and leaving out the parameters gives the activation bytes of a
forward pass on any device. :func:`gpt_activation_bytes` is the count above for the course GPT in float32 plus its
output layer and the small tensors the formula ignores, which the chapter compares with the meter.

Left out: pipeline and context parallelism (:mod:`course_utils.parallel.planner` divides by them), temporary
buffers freed during the forward pass, the allocator's rounding, tensors kept alive outside autograd's saved-tensor
mechanism (references the caller holds). A non-reentrant ``torch.utils.checkpoint`` region's input does go through
it, so the meter counts what checkpointing keeps.
"""

from __future__ import annotations

from collections import defaultdict

import torch
import torch.nn as nn

from course_utils.arguments import check_int
from course_utils.model.gpt import GPTConfig
from course_utils.parallel.memory import ModelShape

RECOMPUTE = ("none", "selective", "full")


def _positive_ints(**values: object) -> tuple[int, ...]:
    """The values as Python ints (numpy ints accepted), in order, or a ValueError naming the first bad one."""
    return tuple(check_int(value, name, minimum=1, allowed="a positive int") for name, value in values.items())


def _check_recompute(recompute: str) -> None:
    if recompute not in RECOMPUTE:
        raise ValueError(f"recompute must be one of {RECOMPUTE}, got {recompute!r}")


def korthikanti_layer_bytes(seq_len: int, micro_batch: int, hidden: int, n_head: int, tp: int = 1,
                            sequence_parallel: bool = False, recompute: str = "none") -> float:
    """Bytes of activations of one GPT-style block per GPU, Korthikanti et al. 2022, Table 2 (16-bit values)."""
    s, b, h, a, t = _positive_ints(seq_len=seq_len, micro_batch=micro_batch, hidden=hidden, n_head=n_head, tp=tp)
    _check_recompute(recompute)
    sbh = s * b * h
    if recompute == "full":
        return 2.0 * sbh
    linear = 34 / t if sequence_parallel else 10 + 24 / t
    scores = 0.0 if recompute == "selective" else 5 * a * s / (h * t)
    return sbh * (linear + scores)


def layer_activation_bytes(shape: ModelShape, seq_len: int, micro_batch: int, bytes_per_value: int = 2,
                           flash_attention: bool = True, dropout: bool = False, tp: int = 1,
                           recompute: str = "none") -> dict[str, float]:
    """Bytes one block of ``shape`` keeps for backward, per GPU, by part (``"linear"``, ``"scores"``,
    ``"dropout masks"``) and ``"total"``. With ``tp`` > 1 every part is divided by ``tp``: tensor parallelism with
    sequence parallelism. ``recompute="selective"`` drops the scores, ``"full"`` keeps only the layer input."""
    if not isinstance(shape, ModelShape):
        raise TypeError(f"shape must be a ModelShape, got {type(shape).__name__}")
    s, b, bytes_per_value, tp = _positive_ints(seq_len=seq_len, micro_batch=micro_batch,
                                               bytes_per_value=bytes_per_value, tp=tp)
    _check_recompute(recompute)
    h, a = shape.hidden, shape.n_head
    if recompute == "full":
        parts = {"linear": s * b * h * bytes_per_value, "scores": 0.0, "dropout masks": 0.0}
    else:
        mlp_values = (2 if shape.mlp == "gelu" else 4) * shape.ffn_hidden / h
        values_per_token = 4 + 1 + 2 * shape.n_kv_head / a + 1 + mlp_values  # norms, Q, K+V, attention out, MLP
        keep_scores = not flash_attention and recompute == "none"
        score_bytes = bytes_per_value + (1 + bytes_per_value if dropout else 0)  # softmax out (+ mask + dropped)
        parts = {"linear": s * b * h * values_per_token * bytes_per_value,
                 "scores": a * s * s * b * score_bytes if keep_scores else 0.0,
                 "dropout masks": 2 * s * b * h if dropout else 0.0}  # 1 byte each after attention and MLP
    parts = {name: value / tp for name, value in parts.items()}
    parts["total"] = sum(parts.values())
    return parts


def gpt_activation_bytes(config: GPTConfig, batch: int, seq_len: int | None = None) -> dict[str, float]:
    """Activation bytes of the course GPT (float32, dropout 0) for one forward pass with a loss, by part:
    ``"blocks"`` and ``"scores"`` (:func:`layer_activation_bytes` x n_layer; scores only for
    ``attention="manual"``), ``"output"`` (final LayerNorm input and output, the float32 log-probabilities of the
    cross-entropy), ``"small"`` (what the formula ignores: two float32 statistics per token per LayerNorm, SDPA's
    log-sum-exp per query and head or the manual path's boolean causal mask per block, the int64 token ids, targets
    and positions), ``"formula"`` (all but small) and ``"total"``."""
    if not isinstance(config, GPTConfig):
        raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
    if config.dropout != 0:
        raise ValueError(f"the float32 count assumes dropout 0 (no masks), got dropout={config.dropout}")
    batch, T = _positive_ints(batch=batch, seq_len=config.block_size if seq_len is None else seq_len)
    if T > config.block_size:
        raise ValueError(f"seq_len {T} exceeds block_size {config.block_size}")
    shape = ModelShape.from_gpt_config(config)
    flash = config.attention == "sdpa"
    layer = layer_activation_bytes(shape, T, batch, bytes_per_value=4, flash_attention=flash)
    L, tokens, a = config.n_layer, batch * T, config.n_head
    norm_stats = 2 * 4 * tokens * (2 * L + 1)  # mean and 1/std per token, two LayerNorms per block and the final
    attention_extra = L * (4 * a * tokens if flash else T * T)  # log-sum-exp (float32) or the (T, T) bool mask
    parts = {"blocks": L * layer["linear"], "scores": L * layer["scores"],
             "output": 2 * 4 * tokens * config.n_embd + 4 * tokens * config.vocab_size,
             "small": norm_stats + attention_extra + 8 * (2 * tokens + T) + 4}  # ids, targets, positions; a scalar
    parts["formula"] = parts["blocks"] + parts["scores"] + parts["output"]
    parts["total"] = parts["formula"] + parts["small"]
    return parts


class SavedTensorMeter:
    """Context manager counting the bytes autograd saves for backward, each storage once, parameters excluded.

    ``with SavedTensorMeter(model) as meter: loss = model(idx, targets)[1]`` then ``meter.bytes``,
    ``meter.by_dtype`` and ``meter.n_tensors``. The tensors pass through unchanged, so ``loss.backward()`` works
    afterwards. Views share their base's storage, so Q, K and V split from one matmul output count once."""

    def __init__(self, model: nn.Module | None = None) -> None:
        if model is not None and not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module or None, got {type(model).__name__}")
        self._exclude = {_storage_key(p) for p in model.parameters()} if model is not None else set()
        self._seen: dict[tuple, tuple[int, torch.dtype]] = {}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda saved: saved)

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        key = _storage_key(tensor)
        if key not in self._exclude and key not in self._seen:
            self._seen[key] = (tensor.untyped_storage().nbytes(), tensor.dtype)
        return tensor

    def __enter__(self) -> "SavedTensorMeter":
        self._seen.clear()
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)

    @property
    def bytes(self) -> int:
        return sum(nbytes for nbytes, _ in self._seen.values())

    @property
    def n_tensors(self) -> int:
        return len(self._seen)

    @property
    def by_dtype(self) -> dict[str, int]:
        totals: dict[str, int] = defaultdict(int)
        for nbytes, dtype in self._seen.values():
            totals[str(dtype).removeprefix("torch.")] += nbytes
        return dict(totals)


def _storage_key(tensor: torch.Tensor) -> tuple:
    return (tensor.device.type, tensor.device.index, tensor.untyped_storage().data_ptr())
