"""Memory of training a model with AdamW, counted from its real parameter shapes (weights, gradients, Adam states).

Full fine-tuning in float32 with AdamW keeps, per parameter, the weight (4 bytes), its gradient (4 bytes) and Adam's
two moment estimates (I. Loshchilov, F. Hutter, "Decoupled Weight Decay Regularization", 2019; D. P. Kingma, J. Ba,
"Adam", 2015): 16 bytes per parameter. With LoRA (E. J. Hu et al., 2021) every weight is still held, but gradients
and optimizer states exist only for the small A and B matrices, which is where most of LoRA's memory saving comes
from (Hu et al. report 1.2 TB -> 350 GB of VRAM for GPT-3 175B).

:func:`meta_model` builds a transformers ``LlamaForCausalLM`` on the ``meta`` device: every tensor has its real
shape and dtype but no storage, so a 7-billion-parameter model can be counted (and LoRA-wrapped) in a few MB.
:data:`LLAMA2_7B_CONFIG` is Llama-2-7B's configuration (H. Touvron et al., "Llama 2: Open Foundation and Fine-Tuned
Chat Models", 2023; the values of its Hugging Face ``config.json``), which gives 6,738,415,616 parameters.

Left out: activations (they depend on batch size, sequence length and checkpointing; chapter 11), buffers,
temporary buffers of the optimizer step, framework and allocator overhead, mixed-precision master copies (pass the
byte sizes you use instead), quantised weights below one byte.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import torch
import torch.nn as nn

from course_utils.arguments import check_int

LLAMA2_7B_CONFIG: dict = dict(
    vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
    num_key_value_heads=32, max_position_embeddings=4096, tie_word_embeddings=False, rms_norm_eps=1e-5,
    hidden_act="silu",
)


@dataclass(frozen=True)
class TrainingMemory:
    """Bytes for weights (all parameters), gradients and optimizer states (trainable parameters only)."""
    weights: int
    gradients: int
    optimizer_states: int
    trainable_params: int
    total_params: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer_states


def _check_bytes(name: str, value: object, minimum: int) -> int:
    """``value`` as a Python int (numpy ints accepted), or an error naming what is allowed."""
    return check_int(value, name, minimum=minimum, allowed=f"an int >= {minimum} (bytes per parameter)")


def training_memory(model: nn.Module, weight_bytes: int = 4, grad_bytes: int = 4,
                    adam_state_bytes: int = 8, trainable_weight_bytes: int | None = None) -> TrainingMemory:
    """Memory to train ``model`` with AdamW: ``weight_bytes`` for every parameter (tied ones once), ``grad_bytes``
    and ``adam_state_bytes`` (both moments together: 8 = two float32 tensors;
    12 with a float32 master copy of bf16 weights, ZeRO's K) for each parameter with
    ``requires_grad``. The defaults are float32 full precision. ``trainable_weight_bytes`` (default: ``weight_bytes``)
    stores the trainable parameters' weights at another size: with frozen weights in bf16 and a float32 adapter
    (peft's default, ``autocast_adapter_dtype=True``), ``weight_bytes=2, trainable_weight_bytes=4``. Works on a model
    on the meta device."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    weight_bytes = _check_bytes("weight_bytes", weight_bytes, 1)
    grad_bytes = _check_bytes("grad_bytes", grad_bytes, 0)
    adam_state_bytes = _check_bytes("adam_state_bytes", adam_state_bytes, 0)  # 0: plain SGD without momentum
    if trainable_weight_bytes is None:
        trainable_weight_bytes = weight_bytes
    trainable_weight_bytes = _check_bytes("trainable_weight_bytes", trainable_weight_bytes, 1)
    params = list(model.parameters())  # deduplicated: a tied tensor appears once
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    return TrainingMemory(weights=(total - trainable) * weight_bytes + trainable * trainable_weight_bytes,
                          gradients=trainable * grad_bytes,
                          optimizer_states=trainable * adam_state_bytes, trainable_params=trainable,
                          total_params=total)


def _check_known_keys(config_kwargs: dict, config, known: dict) -> None:
    """Refuse keys that LlamaConfig kept as bare attributes without using them (a misspelt ``hiden_size`` built the
    default 4096-wide model without a word). Legacy keys it converts (``rope_theta``) are not kept and pass, and so
    do the keys transformers itself writes into a saved config: ``_``-prefixed bookkeeping, special-token ids and
    a quantisation record."""
    kept = config.to_dict()
    unknown = [k for k in config_kwargs if k in kept and k not in known and not str(k).startswith("_")
               and not str(k).endswith("_token_id") and k != "quantization_config"]
    if unknown:
        hints = [f"{k!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(str(k), known, n=1))
                 else repr(k) for k in unknown]
        raise ValueError(f"config_kwargs has keys that LlamaConfig does not use: {', '.join(hints)}; it would have "
                         f"built its default for them. Known keys include {', '.join(sorted(known)[:12])}, ...")


def meta_model(config_kwargs: dict) -> nn.Module:
    """A ``transformers.LlamaForCausalLM(LlamaConfig(**config_kwargs))`` built under ``torch.device("meta")``: real
    shapes, no memory, no values (it can be counted and wrapped, not run). A key that LlamaConfig does not know is
    refused, with the closest known key named; any dict ``config.to_dict()`` writes is accepted."""
    if not isinstance(config_kwargs, dict):
        raise TypeError(f"config_kwargs must be a dict of LlamaConfig arguments, got {type(config_kwargs).__name__}")
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**config_kwargs)
    _check_known_keys(config_kwargs, config, LlamaConfig().to_dict())
    with torch.device("meta"):
        return LlamaForCausalLM(config)
