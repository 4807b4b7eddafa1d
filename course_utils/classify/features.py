"""Frozen hidden states of a causal LM as features for a linear probe: last token and mean-pooled, at chosen layers.

A linear probe (Alain & Bengio, 2016, "Understanding intermediate layers using linear classifier probes") asks what
a frozen network's representation makes linearly readable: train only a logistic regression on the hidden states.
``hidden_states[0]`` is the token embeddings and ``hidden_states[i]`` the output of block i; in ``transformers`` 5 the
last one, ``hidden_states[n_layer]``, is taken after the final RMSNorm (it is what the output head reads).

Two poolings of a passage's T vectors: the LAST token's (in a causal model the only position that has seen the whole
passage) and the MEAN over the real tokens (padding masked out, :func:`course_utils.model.pretrained.mean_pool`).
Passages are tokenized without special tokens, cut to their first ``max_tokens`` tokens, sorted by length and
right-padded in batches (right padding keeps each real token's position ids 0, 1, ...); only the decoder runs, not
the output head.

Left out: attention-weighted pooling, features from several layers concatenated, caching to disk (the notebook
caches with :mod:`course_utils.cache`).
"""

from __future__ import annotations

import numbers
from typing import Sequence

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from course_utils.arguments import check_int
from course_utils.lora.answers import pad_rows, pad_token_id
from course_utils.model.pretrained import mean_pool

POOLINGS = ("last", "mean")


def _check(model: object, texts: object, layers: object, batch_size: object, max_tokens: object) -> tuple:
    """``(layers, batch_size, max_tokens)`` as a list of Python ints and two Python ints (numpy ints accepted)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a transformers causal LM (an nn.Module), got {type(model).__name__}")
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)) or not texts:
        raise ValueError("texts must be a non-empty list of strings")
    if not all(isinstance(t, str) and t for t in texts):
        raise ValueError("every text must be a non-empty string")
    n_layer = model.config.num_hidden_layers
    if (isinstance(layers, (str, int)) or not isinstance(layers, (list, tuple)) or not layers
            or not all(isinstance(l, numbers.Integral) and not isinstance(l, bool) and 0 <= l <= n_layer
                       for l in layers)):
        raise ValueError(f"layers must be a non-empty list of ints in [0, {n_layer}] (0 = embeddings), got {layers!r}")
    batch_size = check_int(batch_size, "batch_size", minimum=1, allowed="a positive int")
    max_tokens = check_int(max_tokens, "max_tokens", minimum=1, allowed="a positive int")
    return [int(l) for l in layers], batch_size, max_tokens  # the layers key the returned dict


def right_pad(rows: Sequence[Sequence[int]], pad_id: int, device: torch.device | str = "cpu"
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), each (B, T): rows left-aligned, ``pad_id`` and mask 0 after them."""
    return pad_rows(rows, pad_id, "right", device)


@torch.no_grad()
def hidden_state_features(model: nn.Module, tokenizer, texts: Sequence[str], layers: Sequence[int],
                          batch_size: int = 16, max_tokens: int = 256,
                          progress: bool = True) -> dict[tuple[int, str], torch.Tensor]:
    """{(layer, pooling): (N, C) float32 tensor on the CPU} for every layer in ``layers`` and pooling in
    :data:`POOLINGS`, rows in the order of ``texts``."""
    layers, batch_size, max_tokens = _check(model, texts, layers, batch_size, max_tokens)
    device = next(model.parameters()).device
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
    ids = [list(tokenizer(t, add_special_tokens=False)["input_ids"])[:max_tokens] for t in texts]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    width = model.config.hidden_size
    out = {(layer, pool): torch.empty(len(ids), width) for layer in layers for pool in POOLINGS}
    pad_id = pad_token_id(tokenizer)
    was_training = model.training
    model.eval()
    try:
        for start in tqdm(range(0, len(order), batch_size), desc="hidden states", disable=not progress,
                          leave=False):
            rows = order[start:start + batch_size]
            input_ids, mask = right_pad([ids[i] for i in rows], pad_id, device)  # (B, T)
            hidden = decoder(input_ids=input_ids, attention_mask=mask, output_hidden_states=True).hidden_states
            last = mask.sum(1) - 1  # (B,): the last real token of each row
            for layer in layers:
                states = hidden[layer].float()  # (B, T, C)
                out[(layer, "last")][rows] = states[torch.arange(len(rows), device=device), last].cpu()
                out[(layer, "mean")][rows] = mean_pool(states, mask).cpu()
    finally:
        model.train(was_training)
    return out
