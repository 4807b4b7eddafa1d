"""A Llama-style decoder (SmolLM2-135M's architecture) from scratch, loadable with ``transformers``' weights.

The architecture of Llama (H. Touvron et al., 2023, "LLaMA: Open and Efficient Foundation Language Models") as
SmolLM2 (L. Ben Allal et al., 2025, "SmolLM2: When Smol Goes Big") uses it: a token embedding, ``n_layer`` blocks
of pre-RMSNorm -> grouped-query self-attention with rotary positions -> residual -> pre-RMSNorm -> SwiGLU MLP ->
residual, a final RMSNorm and an output head (tied to the embedding when the config says so). No biases, no learned
positions, no dropout. The pieces are in :mod:`course_utils.model.modern`.

:func:`load_from_transformers` copies a ``transformers.LlamaForCausalLM`` into our module, name by name, checking
that every tensor is used and every shape agrees. :class:`Llama` can return each layer's attention weights (the
chapter's widget draws them) and decodes with a preallocated KV cache (:class:`LlamaKVCache`) holding keys after
RoPE, ``n_kv_head`` heads per layer. :meth:`Llama.generate` is greedy or plain temperature sampling with an explicit
``torch.Generator``; top-k/top-p and penalties live in :mod:`course_utils.generate.sampling` (a higher layer).

Left out: RoPE scaling types other than none, sliding-window attention, training utilities (loss, dropout), a
separate ``head_dim`` (we require head_dim = n_embd // n_head, as SmolLM2 and Llama have), quantisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from course_utils.arguments import check_int, check_real
from course_utils.device import check_generator
from course_utils.model.gpt import check_prompt_ids, check_temperature
from course_utils.model.modern import RMSNorm, SwiGLU, apply_rope, repeat_kv, rope_cos_sin, rope_inverse_frequencies


@dataclass
class LlamaConfig:
    vocab_size: int = 49152
    block_size: int = 8192  # max positions (transformers: max_position_embeddings)
    n_layer: int = 30
    n_head: int = 9
    n_kv_head: int = 3
    n_embd: int = 576
    intermediate_size: int = 1536
    rope_theta: float = 100000.0
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = True

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_kv_head", "n_embd", "intermediate_size"):
            # a numpy integer (from a grid) becomes a Python int, as in GPTConfig
            setattr(self, name, check_int(getattr(self, name), f"LlamaConfig.{name}", minimum=1,
                                          allowed="a positive int"))
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}) so every head gets "
                             "equal width")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_kv_head ({self.n_kv_head}) must divide n_head ({self.n_head}): each key/value head "
                             "serves a whole group of query heads (n_kv_head = n_head is multi-head attention)")
        if self.head_size % 2:
            raise ValueError(f"head size n_embd // n_head = {self.head_size} must be even: RoPE rotates pairs")
        check_real(self.rope_theta, "rope_theta", minimum=1, low_open=True)
        check_real(self.rms_norm_eps, "rms_norm_eps", minimum=0, low_open=True)

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @classmethod
    def from_hf(cls, hf_config) -> "LlamaConfig":
        """Our config from a ``transformers.LlamaConfig``; refuses features this module leaves out."""
        rope = getattr(hf_config, "rope_parameters", None) or {}
        rope_type = rope.get("rope_type", "default")
        head_dim = getattr(hf_config, "head_dim", None)
        problems = [f"{flag}=True" for flag in ("attention_bias", "mlp_bias") if getattr(hf_config, flag, False)]
        if rope_type != "default":
            problems.append(f"rope_type {rope_type!r} (only 'default')")
        if hf_config.hidden_act != "silu":
            problems.append(f"hidden_act {hf_config.hidden_act!r} (only 'silu')")
        if head_dim is not None and head_dim != hf_config.hidden_size // hf_config.num_attention_heads:
            problems.append(f"head_dim {head_dim} != hidden_size // num_attention_heads")
        if problems:
            raise ValueError("this Llama implementation does not support: " + ", ".join(problems))
        return cls(vocab_size=hf_config.vocab_size, block_size=hf_config.max_position_embeddings,
                   n_layer=hf_config.num_hidden_layers, n_head=hf_config.num_attention_heads,
                   n_kv_head=hf_config.num_key_value_heads, n_embd=hf_config.hidden_size,
                   intermediate_size=hf_config.intermediate_size,
                   rope_theta=float(rope.get("rope_theta", getattr(hf_config, "rope_theta", 10000.0))),
                   rms_norm_eps=hf_config.rms_norm_eps, tie_word_embeddings=bool(hf_config.tie_word_embeddings))


@dataclass
class LlamaKVCache:
    """Keys (after RoPE) and values of every layer, preallocated: ``k``, ``v`` (L, B, H_kv, T_max, D); ``length``."""

    k: torch.Tensor
    v: torch.Tensor
    length: int = 0

    @classmethod
    def empty(cls, config: LlamaConfig, batch_size: int, max_len: int, like: torch.Tensor) -> "LlamaKVCache":
        if not 1 <= max_len <= config.block_size or batch_size < 1:
            raise ValueError(f"need batch_size >= 1 and 1 <= max_len <= block_size={config.block_size}, got "
                             f"{batch_size}, {max_len}")
        shape = (config.n_layer, batch_size, config.n_kv_head, max_len, config.head_size)  # (L, B, H_kv, T_max, D)
        return cls(like.new_zeros(shape), like.new_zeros(shape))


def _attend(q, k, v, mask, n_rep: int, need_weights: bool):
    """softmax(q k^T / sqrt(D), masked) v with GQA; ``mask`` None = no mask, "causal", or boolean (B, 1, T, T_k)."""
    if not need_weights:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=None if isinstance(mask, str) else mask,
                                              is_causal=isinstance(mask, str), enable_gqa=n_rep > 1), None
    k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)  # (B, H, T_k, D)
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))  # (B, H, T, T_k)
    if isinstance(mask, str):
        mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()  # (T, T)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores.float(), dim=-1).to(q.dtype)  # (B, H, T, T_k)
    if mask is not None:
        weights = weights.masked_fill(~mask.any(-1, keepdim=True), 0.0)  # a query with no visible key: zeros
    return weights @ v, weights  # (B, H, T, D), (B, H, T, T_k)


class LlamaAttention(nn.Module):
    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.n_head, self.n_kv_head, self.head_size = config.n_head, config.n_kv_head, config.head_size
        self.q_proj = nn.Linear(config.n_embd, config.n_head * config.head_size, bias=False)
        self.k_proj = nn.Linear(config.n_embd, config.n_kv_head * config.head_size, bias=False)
        self.v_proj = nn.Linear(config.n_embd, config.n_kv_head * config.head_size, bias=False)
        self.o_proj = nn.Linear(config.n_head * config.head_size, config.n_embd, bias=False)

    def forward(self, x, cos, sin, mask, cache: LlamaKVCache | None = None, layer: int = 0,
                need_weights: bool = False):
        B, T, C = x.shape  # (B, T, C)
        q = self.q_proj(x).view(B, T, self.n_head, self.head_size).transpose(1, 2)  # (B, H, T, D)
        k = self.k_proj(x).view(B, T, self.n_kv_head, self.head_size).transpose(1, 2)  # (B, H_kv, T, D)
        v = self.v_proj(x).view(B, T, self.n_kv_head, self.head_size).transpose(1, 2)  # (B, H_kv, T, D)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)  # rotated by their absolute positions
        if cache is not None:  # write the new keys/values, then attend over everything cached so far
            start, end = cache.length, cache.length + T
            cache.k[layer, :, :, start:end], cache.v[layer, :, :, start:end] = k, v
            k, v = cache.k[layer, :, :, :end], cache.v[layer, :, :, :end]  # (B, H_kv, end, D)
        y, weights = _attend(q, k, v, mask, self.n_head // self.n_kv_head, need_weights)  # (B, H, T, D)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, C)), weights  # (B, T, C)


class LlamaBlock(nn.Module):
    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.norm_1 = RMSNorm(config.n_embd, config.rms_norm_eps)
        self.attn = LlamaAttention(config)
        self.norm_2 = RMSNorm(config.n_embd, config.rms_norm_eps)
        self.mlp = SwiGLU(config.n_embd, config.intermediate_size)

    def forward(self, x, cos, sin, mask, cache=None, layer=0, need_weights=False):
        attended, weights = self.attn(self.norm_1(x), cos, sin, mask, cache, layer, need_weights)
        x = x + attended  # (B, T, C)
        return x + self.mlp(self.norm_2(x)), weights  # (B, T, C)


class Llama(nn.Module):
    """Token ids ``idx`` (B, T) -> logits (B, T, V); optionally each layer's attention weights (B, H, T, T_k)."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.blocks = nn.ModuleList([LlamaBlock(config) for _ in range(config.n_layer)])
        self.norm_f = RMSNorm(config.n_embd, config.rms_norm_eps)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.tok_emb.weight
        self.register_buffer("inv_freq", rope_inverse_frequencies(config.head_size, config.rope_theta),
                             persistent=False)  # (D/2,)

    def _mask(self, B: int, T: int, start: int, attention_mask: torch.Tensor | None, device):
        """None, "causal" or a boolean (B, 1, T, start + T) mask: causal and, if given, no padded keys."""
        if attention_mask is None:
            if T == 1:
                return None  # one new query sees every cached key
            if start == 0:
                return "causal"
        elif tuple(attention_mask.shape) != (B, start + T):
            raise ValueError(f"attention_mask must be (B, cached + new) = ({B}, {start + T}), "
                             f"got {tuple(attention_mask.shape)}")
        mask = torch.ones(T, start + T, dtype=torch.bool, device=device).tril(diagonal=start)  # (T, T_k)
        if attention_mask is not None:
            mask = mask & attention_mask.bool()[:, None, None, :]  # (B, 1, T, T_k)
        return mask

    def hidden_states(self, idx, attention_mask=None, position_ids=None, cache: LlamaKVCache | None = None,
                      return_attention: bool = False):
        """Final normalised hidden states (B, T, C) and the list of per-layer attention weights (or None).

        ``attention_mask`` (B, cached + T): 1 = real token, 0 = padding. ``position_ids`` (B, T) or (T,) default to
        ``cache.length + arange(T)`` (as ``transformers``' forward; pass them for left-padded rows).
        """
        if idx.dim() != 2 or idx.shape[1] < 1:
            raise ValueError(f"idx must have shape (B, T) with T >= 1, got {tuple(idx.shape)}")
        B, T = idx.shape
        start = 0 if cache is None else cache.length
        if start + T > (self.config.block_size if cache is None else cache.k.shape[3]):
            raise ValueError(f"{start} cached + {T} new positions exceed the "
                             f"{'block_size' if cache is None else 'cache size'}; crop the context")
        if position_ids is None:
            position_ids = torch.arange(start, start + T, device=idx.device)  # (T,)
        cos, sin = rope_cos_sin(position_ids, self.inv_freq)  # (B, T, D) or (T, D)
        mask = self._mask(B, T, start, attention_mask, idx.device)
        x = self.tok_emb(idx)  # (B, T, C)
        attentions = [] if return_attention else None
        for layer, block in enumerate(self.blocks):
            x, weights = block(x, cos, sin, mask, cache, layer, return_attention)  # (B, T, C)
            if return_attention:
                attentions.append(weights)
        if cache is not None:
            cache.length += T
        return self.norm_f(x), attentions

    def forward(self, idx, attention_mask=None, position_ids=None, cache=None, return_attention: bool = False):
        """Logits (B, T, V); with ``return_attention`` also a list of n_layer weights (B, H, T, cached + T)."""
        x, attentions = self.hidden_states(idx, attention_mask, position_ids, cache, return_attention)
        logits = self.lm_head(x)  # (B, T, V)
        return (logits, attentions) if return_attention else logits

    @torch.no_grad()
    def generate(self, idx, max_new_tokens: int, generator: torch.Generator | None = None, temperature: float = 1.0,
                 greedy: bool = False, eos_token_id: int | None = None, attention_mask=None):
        """Extend ``idx`` (B, T) by up to ``max_new_tokens`` with the KV cache: greedy or temperature sampling.

        Left-padded batches pass ``attention_mask`` (B, T); positions then count real tokens only, as in
        ``transformers``' generate. Rows that produced ``eos_token_id`` continue with it; decoding stops when all have.
        """
        if isinstance(idx, torch.Tensor):
            check_generator(generator, idx, "idx")
        check_prompt_ids(idx, self.config.vocab_size, "idx")  # float, out-of-vocabulary or empty: a clear error
        max_new_tokens = check_int(max_new_tokens, "max_new_tokens", minimum=1)
        if not greedy:
            temperature = check_temperature(temperature)
            if generator is None:
                raise ValueError("sampling needs an explicit torch.Generator (or greedy=True)")
        B, T = idx.shape
        cache = LlamaKVCache.empty(self.config, B, T + max_new_tokens, self.tok_emb.weight)
        positions = None
        if attention_mask is not None:
            positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, T): real tokens count from 0
        x, _ = self.hidden_states(idx, attention_mask, positions, cache)
        finished = torch.zeros(B, dtype=torch.bool, device=idx.device)
        for step in range(max_new_tokens):
            logits = self.lm_head(x[:, -1, :])  # (B, V): only the last position is needed
            if greedy:
                new = logits.argmax(dim=-1)  # (B,)
            else:
                probs = F.softmax(logits / temperature, dim=-1)  # (B, V)
                new = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (B,) on idx's device
            if eos_token_id is not None:
                new = new.masked_fill(finished, eos_token_id)
                finished = finished | (new == eos_token_id)
            idx = torch.cat([idx, new[:, None]], dim=1)  # (B, T + step + 1)
            if step + 1 == max_new_tokens or bool(finished.all()):
                break
            if attention_mask is not None:
                attention_mask = torch.cat([attention_mask, attention_mask.new_ones(B, 1)], dim=1)
                positions = positions[:, -1:] + 1  # (B, 1)
            x, _ = self.hidden_states(new[:, None], attention_mask, positions, cache)
        return idx


def parameter_groups(model: Llama) -> dict[str, int]:
    """Where the parameters are: embedding, attention, MLP, norms, and an untied output head (0 when tied)."""
    groups = {"embedding": 0, "attention": 0, "mlp": 0, "norms": 0, "output head": 0}
    for name, p in model.named_parameters():  # a tied head is the embedding tensor, yielded once
        kind = ("embedding" if name.startswith("tok_emb") else "attention" if ".attn." in name else
                "mlp" if ".mlp." in name else "output head" if name.startswith("lm_head") else "norms")
        groups[kind] += p.numel()
    return groups


def _hf_name(ours: str) -> str:
    """Our parameter name -> the name in ``transformers.LlamaForCausalLM.state_dict()``."""
    for a, b in (("tok_emb.", "model.embed_tokens."), ("blocks.", "model.layers."), ("norm_f.", "model.norm."),
                 (".norm_1.", ".input_layernorm."), (".norm_2.", ".post_attention_layernorm."),
                 (".attn.", ".self_attn.")):
        ours = ours.replace(a, b)
    return ours


@torch.no_grad()
def load_from_transformers(hf_model) -> Llama:
    """A :class:`Llama` holding copies of ``hf_model``'s (a ``LlamaForCausalLM``) weights, on its device and dtype.

    Every tensor of the source must be used and every shape must agree (else ValueError); a tied output head is
    checked to be the embedding itself.
    """
    config = LlamaConfig.from_hf(hf_model.config)
    source = dict(hf_model.state_dict())
    weight = next(iter(source.values()))
    model = Llama(config).to(device=weight.device, dtype=weight.dtype)
    unused = set(source)
    for name, param in model.state_dict().items():  # tied weights appear once per name, the same tensor
        hf_name = _hf_name(name)
        if hf_name == "lm_head.weight" and config.tie_word_embeddings and hf_name not in source:
            continue  # tied: the same tensor as the embedding, copied under its own name
        if hf_name not in source:
            raise ValueError(f"{hf_name} (our {name}) is missing from the transformers model")
        if source[hf_name].shape != param.shape:
            raise ValueError(f"shape mismatch for {name}: ours {tuple(param.shape)}, {hf_name} "
                             f"{tuple(source[hf_name].shape)}")
        param.copy_(source[hf_name])
        unused.discard(hf_name)
    if config.tie_word_embeddings and "lm_head.weight" in source and not torch.equal(
            source["lm_head.weight"], source["model.embed_tokens.weight"]):
        raise ValueError("config says tie_word_embeddings but lm_head.weight differs from the embedding")
    if unused:
        raise ValueError(f"tensors of the transformers model left unused: {sorted(unused)}")
    return model.eval()
