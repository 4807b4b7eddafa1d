"""Adapters that give every model one calling convention: ``logits_fn(idx) -> logits``.

The course's :class:`course_utils.model.gpt.GPT` returns ``(logits, loss)``; a Hugging Face causal LM returns an
object with ``.logits``. Scoring (:mod:`course_utils.evaluate.scoring`) needs the logits at every position; search
(:mod:`course_utils.generate.beam_search`) needs only the last position's, which a Hugging Face model can compute
alone (``logits_to_keep=1``).

A Hugging Face model's KV cache changed its name: transformers 5.24 renamed the forward argument and the output field
``past_key_values`` to ``cache`` (the old names still work there, with a FutureWarning or a logged warning, until
their announced removal in 5.40). The course allows transformers from 5.18 (``pyproject.toml``), so its code never
spells either name: :func:`cache_keyword` says which one a model takes, :func:`returned_cache` reads the one an
output holds.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable

import torch

LogitsFn = Callable[[torch.Tensor], torch.Tensor]


def gpt_logits_fn(model: torch.nn.Module) -> LogitsFn:
    """``idx (B, T) -> logits (B, T, V)`` for the course's GPT."""
    return lambda idx: model(idx)[0]


def hf_logits_fn(model: torch.nn.Module) -> LogitsFn:
    """``idx (B, T) -> logits (B, T, V)`` for a Hugging Face causal LM."""
    return lambda idx: model(input_ids=idx).logits


def gpt_next_logits_fn(model: torch.nn.Module) -> LogitsFn:
    """``idx (B, T) -> last-position logits (B, V)`` for the course's GPT."""
    return lambda idx: model(idx)[0][:, -1, :]


def hf_next_logits_fn(model: torch.nn.Module) -> LogitsFn:
    """``idx (B, T) -> last-position logits (B, V)`` for a Hugging Face causal LM (computes only that position)."""
    return lambda idx: model(input_ids=idx, logits_to_keep=1).logits[:, -1, :]


def library_cache_name() -> str:
    """``"cache"`` where the installed transformers names the KV cache so (5.24 on), else ``"past_key_values"``."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    return "cache" if "cache" in {f.name for f in dataclasses.fields(CausalLMOutputWithPast)} else "past_key_values"


def cache_keyword(model: torch.nn.Module) -> str:
    """The keyword under which ``model``'s forward takes a KV cache, ``"cache"`` or ``"past_key_values"``, read from
    its signature; a forward that names neither (a wrapper that passes ``**kwargs`` on) gets the installed library's
    name. Ask once per decoding loop, not per token."""
    parameters = inspect.signature(model.forward).parameters
    for name in ("cache", "past_key_values"):
        if name in parameters:
            return name
    return library_cache_name()


def returned_cache(output: Any) -> Any:
    """The KV cache a Hugging Face forward pass returned (with ``use_cache=True``): ``output.cache`` from transformers
    5.24, ``output.past_key_values`` before."""
    fields = getattr(type(output), "__dataclass_fields__", {})
    return output.cache if "cache" in fields else output.past_key_values
