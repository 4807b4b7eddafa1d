"""A key-value (KV) cache for the course's tiny GPT, without touching :mod:`course_utils.model.gpt`.

During generation the keys and values of earlier positions never change (attention is causal), so recomputing
them for the whole sequence at every step is wasted work. :func:`cached_forward` runs the *same* weights as a
:class:`course_utils.model.gpt.GPT` (it walks ``model.blocks`` and calls their submodules) but feeds only the new
tokens, writes their keys and values into a preallocated :class:`KVCache` and lets the new queries attend to all
cached keys. Cost per new token: O(T) attention instead of a full O(T) * (everything) forward.

Memory: ``n_layer x 2 (K and V) x n_kv_head x head_size x tokens x bytes_per_value`` per sequence
(:func:`kv_cache_bytes`); with grouped-query attention (Ainslie et al., 2023, "GQA") ``n_kv_head < n_head``.

Follows the incremental decoding of fairseq/GPT-2 implementations (Radford et al., 2019) and the analysis in
R. Pope et al., "Efficiently Scaling Transformer Inference", 2022. Left out: sliding the window once the cache is
full (we refuse to go past ``block_size``), paged/quantised caches, dropout during cached decoding (eval only).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from course_utils.arguments import check_int
from course_utils.model.gpt import GPT
from course_utils.device import check_generator
from course_utils.generate.sampling import SamplingConfig, choose_next


def kv_cache_bytes(n_layer: int, n_kv_head: int, head_size: int, n_tokens: int, bytes_per_value: int = 4,
                   batch_size: int = 1) -> int:
    """Size of a KV cache in bytes: layers x 2 x kv heads x head size x tokens x bytes (x batch)."""
    values = dict(n_layer=n_layer, n_kv_head=n_kv_head, head_size=head_size, n_tokens=n_tokens,
                  bytes_per_value=bytes_per_value, batch_size=batch_size)
    product = 2  # as Python ints: a product of numpy int64s can overflow silently
    for name, value in values.items():
        product *= check_int(value, name, minimum=0 if name == "n_tokens" else 1,
                             allowed="a positive int (n_tokens may be 0)")
    return product


@dataclass
class KVCache:
    """Preallocated keys and values for every layer: ``k``, ``v`` of shape (L, B, H, T_max, D); ``length`` filled."""

    k: torch.Tensor
    v: torch.Tensor
    length: int = 0

    @classmethod
    def empty(cls, model: GPT, batch_size: int, max_len: int | None = None) -> "KVCache":
        cfg = model.config
        max_len = cfg.block_size if max_len is None else max_len
        max_len = check_int(max_len, "max_len", minimum=1, maximum=cfg.block_size,
                            allowed=f"an int in [1, block_size={cfg.block_size}]")
        batch_size = check_int(batch_size, "batch_size", minimum=1)  # 2.5 failed inside torch.zeros
        weight = model.tok_emb.weight
        shape = (cfg.n_layer, batch_size, cfg.n_head, max_len, cfg.head_size)  # (L, B, H, T_max, D)
        return cls(torch.zeros(shape, dtype=weight.dtype, device=weight.device),
                   torch.zeros(shape, dtype=weight.dtype, device=weight.device))

    @property
    def max_len(self) -> int:
        return self.k.shape[3]

    def nbytes(self, filled_only: bool = True) -> int:
        """Bytes held (``filled_only``: just the ``length`` positions in use, as in the formula)."""
        per_position = 2 * self.k[:, :, :, :1].numel() * self.k.element_size()
        return per_position * (self.length if filled_only else self.max_len)


def _cached_attention(attn, x: torch.Tensor, cache: KVCache, layer: int) -> torch.Tensor:
    """One CausalSelfAttention step with the cache; ``x`` (B, T_new, C) holds only the new positions."""
    B, T, C = x.shape
    start, end = cache.length, cache.length + T
    q, k, v = attn.qkv(x).split(C, dim=2)  # 3 x (B, T, C)
    q = q.view(B, T, attn.n_head, attn.head_size).transpose(1, 2)  # (B, H, T, D)
    cache.k[layer, :, :, start:end] = k.view(B, T, attn.n_head, attn.head_size).transpose(1, 2)
    cache.v[layer, :, :, start:end] = v.view(B, T, attn.n_head, attn.head_size).transpose(1, 2)
    keys = cache.k[layer, :, :, :end]  # (B, H, end, D)
    values = cache.v[layer, :, :, :end]  # (B, H, end, D)
    if T == 1:  # one new query sees every cached position: no mask needed
        y = F.scaled_dot_product_attention(q, keys, values)
    elif start == 0:  # prefill of an empty cache: ordinary causal attention
        y = F.scaled_dot_product_attention(q, keys, values, is_causal=True)
    else:  # several new tokens after a prefix: query i (absolute start + i) may see keys 0..start + i
        mask = torch.ones(T, end, dtype=torch.bool, device=x.device).tril(diagonal=start)  # (T, end)
        y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
    y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
    return attn.resid_dropout(attn.proj(y))


def cached_forward(model: GPT, idx: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """Logits (B, T_new, V) for the new tokens ``idx`` (B, T_new), appended after the ``cache.length`` cached ones.

    Uses exactly the submodules of ``model`` (embeddings, each block's LayerNorms, qkv/proj and MLP, final
    LayerNorm and head) and advances ``cache.length`` by T_new.
    """
    if idx.dim() != 2:
        raise ValueError(f"idx must have shape (B, T), got {tuple(idx.shape)}")
    B, T = idx.shape
    if B != cache.k.shape[1]:
        raise ValueError(f"batch size {B} does not match the cache's batch size {cache.k.shape[1]}")
    if cache.length + T > cache.max_len:
        raise ValueError(f"cache holds {cache.max_len} positions; {cache.length} used + {T} new would overflow it "
                         f"(block_size {model.config.block_size}); start a new cache or crop the context")
    pos = torch.arange(cache.length, cache.length + T, device=idx.device)  # (T,) absolute positions
    x = model.drop(model.tok_emb(idx) + model.pos_emb(pos))  # (B, T, C)
    for layer, block in enumerate(model.blocks):
        x = x + _cached_attention(block.attn, block.ln_1(x), cache, layer)  # (B, T, C)
        x = x + block.mlp(block.ln_2(x))  # (B, T, C)
    cache.length += T
    return model.lm_head(model.ln_f(x))  # (B, T, V)


def _check_generation(model: GPT, idx: torch.Tensor, max_new_tokens: int, config: SamplingConfig,
                      generator: torch.Generator | None) -> None:
    """Validate once, before any work: the generator's device first, then model, prompt, length and config."""
    if isinstance(idx, torch.Tensor):
        check_generator(generator, idx, "idx")
    if not isinstance(idx, torch.Tensor):
        raise TypeError(f"idx must be a (B, T) tensor of token ids, got {type(idx).__name__}")
    if not isinstance(config, SamplingConfig):
        raise TypeError(f"config must be a SamplingConfig, got {type(config).__name__}")
    if not config.greedy and generator is None:
        raise ValueError("sampling needs an explicit torch.Generator (or SamplingConfig(greedy=True))")
    if not isinstance(model, GPT):
        raise TypeError(f"model must be a course_utils.model.gpt.GPT, got {type(model).__name__}")
    if idx.dim() != 2 or 0 in idx.shape:
        raise ValueError(f"idx must be a non-empty (B, T) prompt, B and T >= 1, got {tuple(idx.shape)}")
    if idx.is_floating_point() or idx.is_complex() or idx.dtype == torch.bool:
        raise TypeError(f"idx must hold integer token ids (torch.long), got {idx.dtype}")
    vocab_size = model.config.vocab_size  # out-of-range ids fail deep in the embedding (a device-side assert on GPUs)
    if idx.device.type != "meta" and (idx.min() < 0 or idx.max() >= vocab_size):
        raise ValueError(f"idx must lie in [0, {vocab_size}), the model's vocabulary")
    max_new_tokens = check_int(max_new_tokens, "max_new_tokens", minimum=0)
    total = idx.shape[1] + max_new_tokens
    if total > model.config.block_size:
        raise ValueError(f"prompt ({idx.shape[1]}) + max_new_tokens ({max_new_tokens}) = {total} exceeds block_size "
                         f"{model.config.block_size}; both generators need the whole sequence to fit")


@torch.no_grad()
def generate_cached(model: GPT, idx: torch.Tensor, max_new_tokens: int, config: SamplingConfig,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Prefill the prompt once, then feed one token per step through the cache. Returns (B, T + max_new_tokens)."""
    _check_generation(model, idx, max_new_tokens, config, generator)
    was_training, prompt_length = model.training, idx.shape[1]
    model.eval()
    cache = KVCache.empty(model, idx.shape[0], idx.shape[1] + max_new_tokens)
    logits = cached_forward(model, idx, cache)[:, -1, :]  # (B, V)
    for step in range(max_new_tokens):
        new = choose_next(logits, idx, config, generator, prompt_length)  # (B,)
        idx = torch.cat([idx, new[:, None]], dim=1)  # (B, T + step + 1)
        if step + 1 < max_new_tokens:
            logits = cached_forward(model, new[:, None], cache)[:, -1, :]  # (B, V)
    model.train(was_training)
    return idx


@torch.no_grad()
def generate_uncached(model: GPT, idx: torch.Tensor, max_new_tokens: int, config: SamplingConfig,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """The baseline: run the full forward over the whole sequence at every step, same processors and sampling."""
    _check_generation(model, idx, max_new_tokens, config, generator)
    was_training, prompt_length = model.training, idx.shape[1]
    model.eval()
    for _ in range(max_new_tokens):
        logits = model(idx)[0][:, -1, :]  # (B, V): recomputes every key and value of every earlier position
        new = choose_next(logits, idx, config, generator, prompt_length)  # (B,)
        idx = torch.cat([idx, new[:, None]], dim=1)
    model.train(was_training)
    return idx
