"""Where training memory goes: model shapes, parameter counts, and the bytes of weights, gradients and AdamW states.

A :class:`ModelShape` holds the numbers that decide a decoder-only transformer's memory: layers, hidden size, query
and key/value heads, MLP width and kind, vocabulary, tied or untied embeddings. Constructors read the course's
``GPTConfig`` and a ``transformers`` Llama-style config (SmolLM2-135M's); presets give Llama-2-7B and Llama-2-70B
(H. Touvron et al., 2023, "Llama 2: Open Foundation and Fine-Tuned Chat Models"; the numbers of their released
``config.json``: 32 x 4096 with 32 heads, FFN 11,008; 80 x 8192 with 64 query and 8 key/value heads, FFN 28,672;
vocabulary 32,000, untied). :meth:`ModelShape.n_params` counts every weight from the shape alone.

Bytes per parameter of a training recipe (:class:`TrainingRecipe`): float32 AdamW keeps the weight (4), its
gradient (4) and Adam's two moments (4 + 4) = 16 bytes; mixed-precision AdamW keeps a 16-bit weight (2) and
gradient (2) plus a float32 master copy (4) and the two moments (4 + 4) = 16 bytes too, the "2 + 2 + 12" of
S. Rajbhandari et al., 2020, "ZeRO: Memory Optimizations Toward Training Trillion Parameter Models" (K = 12
bytes of optimizer state; :mod:`course_utils.parallel.zero` shards them). Mixed precision saves activation memory
and time, not state memory. For a real ``nn.Module`` the count is
:func:`course_utils.lora.memory.training_memory` (chapter 06), which :func:`model_state_memory` calls with a
recipe's byte sizes; :func:`state_memory` is the same arithmetic for a shape, with no module at all.
:func:`measured_state_bytes` adds up the real tensors after an optimizer step, which must equal the formula; it counts
a sharded ``DTensor`` (FSDP2's parameters, :mod:`course_utils.parallel.fsdp`) by the shard this rank holds.

Activations are in :mod:`course_utils.parallel.activations`. Left out: buffers, the optimizer's temporary buffers,
allocator fragmentation, the CUDA context, quantised weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from course_utils.arguments import check_int, check_str
from course_utils.lora.memory import TrainingMemory, training_memory
from course_utils.model.gpt import GPTConfig

MLP_KINDS = ("gelu", "swiglu")  # 2 matrices (up, down) or 3 (gate, up, down)
NORM_KINDS = ("layernorm", "rmsnorm")  # gain and bias, or gain only


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a decoder-only transformer that decide its memory (our glossary's names in brackets).

    ``hidden`` (n_embd) is h, ``n_head`` is a, ``n_kv_head`` < ``n_head`` is grouped-query attention,
    ``ffn_hidden`` the MLP width (4h for GPT-2, 8h/3-ish for SwiGLU), ``positions`` the rows of a learned position
    embedding (0 for rotary positions), ``bias`` whether linear layers and LayerNorms carry biases."""
    name: str
    n_layer: int
    hidden: int
    n_head: int
    n_kv_head: int
    ffn_hidden: int
    vocab_size: int
    tied_embeddings: bool
    mlp: str = "swiglu"
    norm: str = "rmsnorm"
    bias: bool = False
    positions: int = 0

    def __post_init__(self) -> None:
        check_str(self.name, "name")
        for field in ("n_layer", "hidden", "n_head", "n_kv_head", "ffn_hidden", "vocab_size"):  # stored as ints
            object.__setattr__(self, field, check_int(getattr(self, field), field, minimum=1))
        object.__setattr__(self, "positions", check_int(self.positions, "positions", minimum=0,
                                                        allowed="an int >= 0 (0 = rotary, no position table)"))
        if self.hidden % self.n_head:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by n_head ({self.n_head})")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_kv_head ({self.n_kv_head}) must divide n_head ({self.n_head})")
        if self.mlp not in MLP_KINDS:
            raise ValueError(f"mlp must be one of {MLP_KINDS}, got {self.mlp!r}")
        if self.norm not in NORM_KINDS:
            raise ValueError(f"norm must be one of {NORM_KINDS}, got {self.norm!r}")

    @property
    def head_size(self) -> int:
        return self.hidden // self.n_head

    @classmethod
    def from_gpt_config(cls, config: GPTConfig, name: str = "tiny GPT") -> "ModelShape":
        """The course GPT (chapter 01): multi-head attention, 4h GELU MLP, LayerNorm, learned positions."""
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
        return cls(name, config.n_layer, config.n_embd, config.n_head, config.n_head, 4 * config.n_embd,
                   config.vocab_size, config.tie_weights, mlp="gelu", norm="layernorm", bias=config.bias,
                   positions=config.block_size)

    @classmethod
    def from_hf_config(cls, hf_config, name: str | None = None) -> "ModelShape":
        """A ``transformers`` Llama-architecture config (SmolLM2, Llama 2): SwiGLU, RMSNorm, no biases, RoPE."""
        needed = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size", "vocab_size")
        missing = [key for key in needed if not hasattr(hf_config, key)]
        if missing:
            raise TypeError(f"hf_config must be a transformers Llama-style config; it lacks {missing}")
        if getattr(hf_config, "hidden_act", "silu") != "silu" or getattr(hf_config, "attention_bias", False):
            raise ValueError("only Llama-style configs (hidden_act='silu', no attention bias) are supported")
        kv = getattr(hf_config, "num_key_value_heads", None) or hf_config.num_attention_heads
        return cls(name or getattr(hf_config, "_name_or_path", "") or "transformers model",
                   hf_config.num_hidden_layers, hf_config.hidden_size, hf_config.num_attention_heads, kv,
                   hf_config.intermediate_size, hf_config.vocab_size, bool(hf_config.tie_word_embeddings))

    def block_params(self) -> int:
        """Parameters of one transformer block: attention, MLP and its two norms."""
        h, kv_width, f = self.hidden, self.n_kv_head * self.head_size, self.ffn_hidden
        attention = 2 * h * h + 2 * h * kv_width + (2 * h + 2 * kv_width if self.bias else 0)  # q, o; k, v
        mlp = (2 if self.mlp == "gelu" else 3) * h * f + ((f + h) if self.bias and self.mlp == "gelu" else 0)
        return attention + mlp + 2 * self.norm_params()

    def norm_params(self) -> int:
        return self.hidden * (2 if self.norm == "layernorm" and self.bias else 1)

    def n_params(self) -> int:
        """Every parameter, a tied embedding/output matrix counted once."""
        embeddings = self.vocab_size * self.hidden * (1 if self.tied_embeddings else 2)
        return self.n_layer * self.block_params() + self.norm_params() + embeddings + self.positions * self.hidden


SMOLLM2_135M = ModelShape("SmolLM2-135M", n_layer=30, hidden=576, n_head=9, n_kv_head=3, ffn_hidden=1536,
                          vocab_size=49152, tied_embeddings=True)
LLAMA2_7B = ModelShape("Llama-2-7B", n_layer=32, hidden=4096, n_head=32, n_kv_head=32, ffn_hidden=11008,
                       vocab_size=32000, tied_embeddings=False)
LLAMA2_70B = ModelShape("Llama-2-70B", n_layer=80, hidden=8192, n_head=64, n_kv_head=8, ffn_hidden=28672,
                        vocab_size=32000, tied_embeddings=False)
PRESETS = {shape.name: shape for shape in (SMOLLM2_135M, LLAMA2_7B, LLAMA2_70B)}  # e.g. a widget's model choice


@dataclass(frozen=True)
class TrainingRecipe:
    """Bytes per parameter: the weight the forward pass reads, its gradient, a float32 master copy (mixed
    precision only) and the optimizer's states (AdamW: two moments)."""
    name: str
    weight_bytes: int
    grad_bytes: int
    master_bytes: int
    optimizer_bytes: int

    def __post_init__(self) -> None:
        for field in ("weight_bytes", "grad_bytes", "master_bytes", "optimizer_bytes"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"TrainingRecipe.{field} must be an int >= 0, got {value!r}")

    @property
    def bytes_per_param(self) -> int:
        return self.weight_bytes + self.grad_bytes + self.master_bytes + self.optimizer_bytes

    @property
    def optimizer_state_bytes(self) -> int:
        """K of the ZeRO paper: everything the optimizer keeps per parameter (master copy included)."""
        return self.master_bytes + self.optimizer_bytes


FP32_ADAMW = TrainingRecipe("fp32 AdamW", weight_bytes=4, grad_bytes=4, master_bytes=0, optimizer_bytes=8)
MIXED_ADAMW = TrainingRecipe("mixed-precision AdamW", weight_bytes=2, grad_bytes=2, master_bytes=4, optimizer_bytes=8)


def _check_recipe(recipe: object) -> None:
    if not isinstance(recipe, TrainingRecipe):
        raise TypeError(f"recipe must be a TrainingRecipe (e.g. FP32_ADAMW, MIXED_ADAMW), got {type(recipe).__name__}")


def state_memory(n_params: int, recipe: TrainingRecipe = MIXED_ADAMW) -> TrainingMemory:
    """Weights, gradients and optimizer states (master copy included) of ``n_params`` trainable parameters."""
    n_params = check_int(n_params, "n_params", minimum=1)
    _check_recipe(recipe)
    return TrainingMemory(weights=n_params * recipe.weight_bytes, gradients=n_params * recipe.grad_bytes,
                          optimizer_states=n_params * recipe.optimizer_state_bytes, trainable_params=n_params,
                          total_params=n_params)


def model_state_memory(model: nn.Module, recipe: TrainingRecipe = FP32_ADAMW) -> TrainingMemory:
    """The same for a real (or meta-device) module, counted by chapter 06's ``training_memory``."""
    _check_recipe(recipe)
    return training_memory(model, weight_bytes=recipe.weight_bytes, grad_bytes=recipe.grad_bytes,
                           adam_state_bytes=recipe.optimizer_state_bytes)


def _tensor_bytes(tensors) -> int:
    """Bytes of the tensors this process holds: a sharded ``DTensor`` counts its local shard (``to_local()``)."""
    total = 0
    for t in tensors:
        if t is None:
            continue
        local = t.to_local() if hasattr(t, "to_local") else t  # DTensor, without importing torch.distributed here
        total += local.numel() * local.element_size()
    return total


def measured_state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Bytes of the real tensors after at least one optimizer step: ``weights``, ``gradients``, ``adam_moments``
    (AdamW's ``exp_avg`` and ``exp_avg_sq``) and ``step_counters`` (one scalar per parameter tensor, which the
    per-parameter formula leaves out: bytes per *tensor*, not per parameter). A sharded ``DTensor`` (FSDP2) counts
    the shard this rank holds. Call it before the gradients are zeroed."""
    if not isinstance(model, nn.Module) or not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError("need an nn.Module and a torch.optim.Optimizer")
    params = list(model.parameters())
    if not optimizer.state:
        raise ValueError("the optimizer has no state yet: call optimizer.step() once before measuring")
    states = [optimizer.state[p] for p in params if p in optimizer.state]
    return {"weights": _tensor_bytes(params), "gradients": _tensor_bytes(p.grad for p in params),
            "adam_moments": _tensor_bytes(s[k] for s in states for k in ("exp_avg", "exp_avg_sq") if k in s),
            "step_counters": _tensor_bytes(s["step"] for s in states if torch.is_tensor(s.get("step")))}
