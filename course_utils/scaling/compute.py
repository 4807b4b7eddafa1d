"""Counting parameters and training compute for the course GPT, as scaling-law papers count them.

* Non-embedding parameters ``N`` (Kaplan et al., 2020, "Scaling Laws for Neural Language Models", section 2.1):
  per layer ``12 C^2`` weights (``3 C^2`` for q, k, v; ``C^2`` for the output projection; ``8 C^2`` for the 4x MLP)
  plus biases and LayerNorm parameters, which :func:`gpt_parameter_count` counts exactly.
* Training compute ``C ~ 6 N D`` FLOPs for ``D`` tokens: each weight does one multiply-add (2 FLOPs) per token in
  the forward pass and two in the backward pass (gradients for activations and for weights).
* :func:`gpt_train_flops_per_token` adds what ``6 N`` leaves out: the output head (``6 C V``) and attention's
  ``Q K^T`` and ``A V`` products (``12 n_layer T C``, with ``T`` the sequence length), counted for the full ``T x T``
  product with no causal halving, as Hoffmann et al.'s appendix F and torch's FLOP counter count them: the manual
  attention path computes all of it and masks it, while a fused causal kernel (SDPA, flash attention) skips the key
  blocks wholly above the diagonal and so executes somewhat fewer. ``tests/test_scaling_compute.py`` checks it against
  ``torch.utils.flop_counter.FlopCounterMode`` on a real forward and backward pass (the counter does not see inside
  the fused CPU attention kernel, so the attention products are checked on the same shapes written as matmuls).

Left out: element-wise FLOPs (softmax, GELU, LayerNorm, the optimizer), which are small next to the matmuls.
"""

from __future__ import annotations

from course_utils.arguments import check_int, check_real
from course_utils.model.gpt import GPTConfig


def _check_config(config: GPTConfig) -> None:
    if not isinstance(config, GPTConfig):
        raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")


def gpt_parameter_count(config: GPTConfig, non_embedding: bool = True) -> int:
    """Exact parameter count of ``GPT(config)`` from its shapes alone (the same rule as ``GPT.num_parameters``)."""
    _check_config(config)
    C, V, T, L = config.n_embd, config.vocab_size, config.block_size, config.n_layer
    bias = 1 if config.bias else 0
    attention = 3 * C * C + 3 * C * bias + C * C + C * bias  # qkv and output projection
    mlp = 4 * C * C + 4 * C * bias + 4 * C * C + C * bias  # up and down projection
    norms = 2 * (C + C * bias)  # two LayerNorms per block
    final_norm = C + C * bias
    n = L * (attention + mlp + norms) + final_norm
    if not config.tie_weights:
        n += V * C  # an untied output head is a separate matrix and counts as non-embedding
    if not non_embedding:
        n += V * C + T * C  # token and position embeddings
    return n


def training_flops(n_params: float, n_tokens: float) -> float:
    """The standard estimate ``C = 6 N D`` FLOPs of training ``n_params`` parameters on ``n_tokens`` tokens."""
    n_params, n_tokens = (check_real(value, name, minimum=0, low_open=True, finite=False, allowed="a positive number")
                          for name, value in (("n_params", n_params), ("n_tokens", n_tokens)))  # numpy scalars too
    return 6.0 * n_params * n_tokens


def gpt_train_flops_per_token(config: GPTConfig, seq_len: int | None = None) -> dict[str, int]:
    """Matmul FLOPs per training token (forward + backward) of ``GPT(config)`` at sequence length ``seq_len``.

    Returns the parts, ``"weights"`` (6 x the non-embedding weight matrices' entries), ``"head"`` (6 C V),
    ``"attention"`` (12 n_layer T C) and their ``"total"``.
    """
    _check_config(config)
    T = check_int(config.block_size if seq_len is None else seq_len, "seq_len", minimum=1,
                  maximum=config.block_size, allowed=f"an int in [1, block_size={config.block_size}]")
    C, V, L = config.n_embd, config.vocab_size, config.n_layer
    parts = {"weights": 6 * L * 12 * C * C, "head": 6 * C * V, "attention": 6 * L * 2 * T * C}
    parts["total"] = sum(parts.values())
    return parts
