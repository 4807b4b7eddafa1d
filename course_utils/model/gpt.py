"""A small decoder-only transformer (GPT) with an explicit attention mask.

Follows the GPT-2 layout (Radford et al., 2019, "Language Models are Unsupervised Multitask Learners"): learned
token and position embeddings, pre-LayerNorm blocks of multi-head self-attention and a 4x MLP with GELU, a final
LayerNorm and a linear head, optionally tied to the token embedding (Press & Wolf, 2017, "Using the Output
Embedding to Improve Language Models").

The attention mask is an argument, not a hard-wired property: ``attn_mask=None`` means causal (GPT); chapter 02
passes boolean "may attend" masks of shape ``(T, T)`` or ``(B, 1, T, T)`` for bidirectional, prefix-LM, padding or
sliding-window attention. By default (``GPTConfig.attention="sdpa"``) the computation uses
``torch.nn.functional.scaled_dot_product_attention``; chapter 02 derives it from scratch and tests the two against
each other. ``attention="manual"`` computes the same thing explicitly, softmax(Q K^T / sqrt(D), blocked scores at
-inf) V, with the same mask semantics and attention dropout. It exists for speed, not teaching: on CPU under bf16
``torch.autocast`` SDPA is slow, slower than float32 training on the course machine, while the explicit version runs
its two matmuls as bf16 GEMMs; ``benchmarks/RESULTS.md`` (chapter 01, "Char-level training") has the measured
throughput of both paths.

Deliberately left out: dropout on residual paths beyond a single rate, rotary positions, KV caching (chapter 07),
mixed precision (callers use ``torch.autocast``, as ``TrainConfig(precision="bf16")`` of the training loop does).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from course_utils.arguments import check_int, check_real
from course_utils.device import check_generator
from course_utils.model.masks import check_mask


ATTENTION_IMPLS = ("manual", "sdpa")


def check_prompt_ids(ids: object, vocab_size: int | None, what: str = "idx") -> None:
    """Validate a decoding prompt once, before any work: a non-empty (B, T) ``torch.long`` tensor whose ids lie in
    ``[0, vocab_size)`` (range not checked when ``vocab_size`` is None or on the meta device). An id outside the
    vocabulary would otherwise fail deep in the embedding, and as a device-side assert on a GPU."""
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or 0 in ids.shape:
        shape = tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise ValueError(f"{what} must be a non-empty (B, T) tensor of token ids, B and T >= 1, got {shape}")
    if ids.dtype != torch.long:
        raise TypeError(f"{what} must be torch.long token ids, got {ids.dtype}")
    if vocab_size is not None and ids.device.type != "meta" and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"{what} must lie in [0, {vocab_size}), the model's vocabulary; got ids from "
                         f"{int(ids.min())} to {int(ids.max())}")


MIN_TEMPERATURE = 1e-4  # at 1e-4 a float32 logit 0.0104 under the top already gets p = 0; far below, logits overflow


def check_temperature(temperature: float) -> float:
    """A sampling temperature as a float, or a clear error: a finite number >= 1e-4 (numpy numbers accepted)."""
    # compared as a Python float: numpy 1.x compared np.float32(1e-4) with 1e-4 in float64 (below), numpy 2 in float32
    value = float(temperature) if isinstance(temperature, numbers.Real) and not isinstance(temperature, bool) else None
    if value is None or not MIN_TEMPERATURE <= value < math.inf:
        shown = repr(temperature) if value is None or type(temperature) in (int, float) else \
            f"{temperature!r} (= {value!r})"
        raise ValueError(f"temperature must be a finite number >= 1e-4 (near 0, logits / temperature overflows to "
                         f"inf); for argmax decoding use greedy=True, got {shown}")
    return value


@dataclass
class GPTConfig:
    vocab_size: int = 65
    block_size: int = 64
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True
    tie_weights: bool = True
    attention: str = "sdpa"  # "sdpa" (PyTorch's fused kernel) or "manual" (explicit matmuls; faster under CPU bf16)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            # a numpy integer (from a grid) becomes a Python int
            setattr(self, name, check_int(getattr(self, name), f"GPTConfig.{name}", minimum=1,
                                          allowed="a positive integer"))
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}) so every head gets equal width"
            )
        check_real(self.dropout, "dropout", minimum=0, maximum=1, high_open=True, allowed="in [0, 1)")
        if self.attention not in ATTENTION_IMPLS:
            raise ValueError(f"attention must be one of {sorted(ATTENTION_IMPLS)}, got {self.attention!r}")

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head


def check_attn_mask(attn_mask: torch.Tensor, B: int, T: int) -> None:
    """Raise a clear error unless ``attn_mask`` is a boolean (T, T), (B, T, T) or (B, 1, T, T) "may attend" mask."""
    check_mask(attn_mask, "attn_mask")  # a boolean tensor ending in a square block (chapter 02's masks module)
    allowed = {(T, T), (B, T, T), (B, 1, T, T), (1, 1, T, T)}
    if tuple(attn_mask.shape) not in allowed:
        raise ValueError(
            f"attn_mask has shape {tuple(attn_mask.shape)}; for B={B}, T={T} allowed shapes are (T, T), (B, T, T), "
            "(B, 1, T, T)"
        )


def manual_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None,
                     dropout_p: float) -> torch.Tensor:
    """softmax(Q K^T / sqrt(D) with blocked positions at -inf) V, written out; same result as SDPA's.

    ``attn_mask`` is None (causal) or a boolean "may attend" mask broadcastable to (B, H, T, T). As in SDPA, a
    query row with every key blocked gets zero weights (not NaN). Why it exists: under CPU bf16 autocast SDPA is
    slower than these two explicit matmuls (measured in ``benchmarks/RESULTS.md``).
    """
    T, D = q.shape[-2], q.shape[-1]
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(D))  # (B, H, T, T)
    causal = attn_mask is None
    if causal:
        attn_mask = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()  # (T, T)
    scores = scores.masked_fill(~attn_mask, float("-inf"))  # (B, H, T, T)
    weights = F.softmax(scores, dim=-1)  # (B, H, T, T); NaN on rows with every key blocked
    if not causal:  # (a causal row always sees itself) rows with every key blocked -> 0, as SDPA does
        weights = weights.masked_fill(~attn_mask.any(dim=-1, keepdim=True), 0.0)
    if dropout_p > 0:
        weights = F.dropout(weights, p=dropout_p)  # (B, H, T, T), the same attention dropout SDPA applies
    return weights @ v  # (B, H, T, D)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention; causal unless a mask is given (the name says what the GPT uses by default)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.head_size = config.head_size
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)
        self.attention = config.attention

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, T, C = x.shape  # (B, T, C)
        q, k, v = self.qkv(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, self.n_head, self.head_size).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, T, self.n_head, self.head_size).transpose(1, 2)  # (B, H, T, D)
        v = v.view(B, T, self.n_head, self.head_size).transpose(1, 2)  # (B, H, T, D)
        if attn_mask is not None and attn_mask.dim() == 3:
            attn_mask = attn_mask.unsqueeze(1)  # (B, 1, T, T), broadcast over heads
        dropout_p = self.dropout if self.training else 0.0
        if self.attention == "manual":
            y = manual_attention(q, k, v, attn_mask, dropout_p)  # (B, H, T, D)
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, is_causal=attn_mask is None, dropout_p=dropout_p,
            )  # (B, H, T, D)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))  # (B, T, C)


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), attn_mask)  # (B, T, C)
        x = x + self.mlp(self.ln_2(x))  # (B, T, C)
        return x


class GPT(nn.Module):
    """Token ids ``idx`` (B, T) -> ``logits`` (B, T, V), plus the mean cross-entropy ``loss`` when targets are given.

    ``targets`` equal to ``ignore_index`` (-100) are skipped, which is how masked-LM and SFT losses are restricted
    to chosen positions.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos_emb = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.tok_emb.weight
        self.apply(self._init_weights)
        # GPT-2: scale the residual projections by 1/sqrt(2 * n_layer) so the residual stream does not grow.
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_parameters(self, non_embedding: bool = True) -> int:
        """Parameter count; by default the *non-embedding* count N of Kaplan et al. (2020).

        ``non_embedding=True`` leaves out the token-embedding matrix and the position embeddings. With tied weights
        the token embedding is also the output head, one tensor counted once in the total (``parameters()`` yields a
        shared tensor once) and so subtracted once; an untied output head is a separate matrix and stays counted.
        """
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.pos_emb.weight.numel() + self.tok_emb.weight.numel()
        return n

    def hidden_states(self, idx: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The final, normalised hidden states (B, T, C) that the output head reads; scalar heads (a reward model,
        a value function) read them too."""
        if idx.dim() != 2:
            raise ValueError(f"idx must have shape (B, T), got {tuple(idx.shape)}")
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size {self.config.block_size}; crop the context")
        if attn_mask is not None:
            check_attn_mask(attn_mask, B, T)
        pos = torch.arange(T, device=idx.device)  # (T,)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))  # (B, T, C)
        for block in self.blocks:
            x = block(x, attn_mask)  # (B, T, C)
        return self.ln_f(x)  # (B, T, C)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits = self.lm_head(self.hidden_states(idx, attn_mask))  # (B, T, V)
        loss = None
        if targets is not None:
            if targets.shape != idx.shape:
                raise ValueError(f"targets shape {tuple(targets.shape)} must equal idx shape {tuple(idx.shape)}")
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
        return logits, loss

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        greedy: bool = False,
    ) -> torch.Tensor:
        """Extend ``idx`` (B, T) by ``max_new_tokens`` sampled tokens (plain temperature sampling, or greedy).

        Sampling draws only from ``generator`` (on ``idx``'s device), which it therefore requires; ``greedy=True``
        needs none. Chapter 07 replaces this loop with one that takes logits processors and a KV cache.
        """
        if isinstance(idx, torch.Tensor):
            check_generator(generator, idx, "idx")  # first, before any work
        check_prompt_ids(idx, self.config.vocab_size, "idx")
        max_new_tokens = check_int(max_new_tokens, "max_new_tokens", minimum=1)
        if not greedy:
            temperature = check_temperature(temperature)
        if not greedy and generator is None:
            raise ValueError("sampling needs an explicit torch.Generator (or greedy=True)")
        was_training = self.training
        self.eval()
        for _ in range(max_new_tokens):
            context = idx[:, -self.config.block_size:]  # (B, <=block_size)
            logits = self.lm_head(self.hidden_states(context)[:, -1, :])  # (B, V): only the last position's
            if greedy:
                next_id = logits.argmax(dim=-1, keepdim=True)  # (B, 1)
            else:
                probs = F.softmax(logits / temperature, dim=-1)  # (B, V)
                next_id = torch.multinomial(probs, 1, generator=generator)  # (B, 1), drawn on idx's device
            idx = torch.cat([idx, next_id], dim=1)
        self.train(was_training)
        return idx
