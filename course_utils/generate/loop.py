"""Our own decoding loop for a Hugging Face causal LM (e.g. SmolLM2), using our processors and its KV cache.

The loop is what ``model.generate`` does for greedy and multinomial sampling, written out: one *prefill* forward
over the prompt that fills a ``transformers.DynamicCache`` and returns only the last position's logits
(``logits_to_keep=1``), then one forward per new token that feeds just that token and reuses the cache (passed as
``past_key_values`` before transformers 5.24, ``cache`` from then: :func:`course_utils.model.logits_fns.cache_keyword`).
Each step's logits go through :func:`course_utils.generate.sampling.choose_next`; the inputs (prompt, config,
generator device) are validated once at entry, not on every token. A finished row
(one that produced ``eos_token_id``) keeps receiving ``pad_token_id``, and the loop stops when every row is
finished, as in ``generate``. With the same seed (our explicit generator vs. the global one ``generate`` uses) the
two draw the same tokens on CPU. Frequency/presence penalties see only the generated tokens (the loop passes the
prompt length), the CTRL penalty the whole context, as in ``transformers``.

Also here: :func:`continuation_nll`, the mean negative log-likelihood of generated tokens under a fixed judge
model, our quality measure for samples; and :func:`check_same_tokens`, which asserts that two decoders agree (exactly
on the CPU; elsewhere up to the first near-tie, where two numerical paths may legitimately round apart).
Reference: T. Wolf et al., "Transformers: State-of-the-Art Natural Language Processing", 2020 (the ``generate``
API). Left out: padded batches of prompts of different lengths (every row here has the same prompt length, so no
attention mask or position ids are needed), stopping strings, streaming.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from course_utils.arguments import check_int
from course_utils.device import check_generator
from course_utils.generate.sampling import SamplingConfig, choose_next
from course_utils.model.gpt import check_prompt_ids
from course_utils.model.logits_fns import cache_keyword


@dataclass
class Generated:
    ids: torch.Tensor  # (B, T_prompt + n_new) prompt and continuation, pad after EOS
    prompt_length: int
    steps: int  # forward passes after the prefill

    @property
    def new_ids(self) -> torch.Tensor:
        return self.ids[:, self.prompt_length:]  # (B, n_new)


def check_generation_inputs(input_ids: torch.Tensor, max_new_tokens: int, config: SamplingConfig,
                            generator: torch.Generator | None, vocab_size: int | None = None) -> None:
    """Validate a decoding loop's inputs once: generator device, prompt shape/dtype/range, length, config."""
    if isinstance(input_ids, torch.Tensor):
        check_generator(generator, input_ids, "input_ids")
    check_prompt_ids(input_ids, vocab_size, "input_ids")
    check_int(max_new_tokens, "max_new_tokens", minimum=1)
    if not isinstance(config, SamplingConfig):
        raise TypeError(f"config must be a SamplingConfig, got {type(config).__name__}")
    if not config.greedy and generator is None:
        raise ValueError("sampling needs an explicit torch.Generator (or SamplingConfig(greedy=True))")


@torch.no_grad()
def generate(model, input_ids: torch.Tensor, max_new_tokens: int, config: SamplingConfig,
             generator: torch.Generator | None = None, eos_token_id: int | None = None,
             pad_token_id: int | None = None) -> Generated:
    """Decode up to ``max_new_tokens`` tokens after ``input_ids`` (B, T) with our processors and the model's cache."""
    from transformers import DynamicCache

    check_generation_inputs(input_ids, max_new_tokens, config, generator, getattr(model.config, "vocab_size", None))
    if eos_token_id is not None and pad_token_id is None:
        pad_token_id = eos_token_id
    cache = {cache_keyword(model): DynamicCache(config=model.config)}  # the model's name for it: see logits_fns
    out = model(input_ids=input_ids, **cache, use_cache=True, logits_to_keep=1)  # prefill
    ids, prompt_length = input_ids, input_ids.shape[1]
    unfinished = torch.ones(ids.shape[0], dtype=torch.bool, device=ids.device)  # (B,)
    steps = 0
    while True:
        logits = out.logits[:, -1, :].float()  # (B, V)
        new = choose_next(logits, ids, config, generator, prompt_length)  # (B,)
        if eos_token_id is not None:
            new = torch.where(unfinished, new, torch.full_like(new, pad_token_id))
            unfinished = unfinished & (new != eos_token_id)
        ids = torch.cat([ids, new[:, None]], dim=1)  # (B, T + 1)
        if ids.shape[1] - input_ids.shape[1] >= max_new_tokens or not unfinished.any():
            break
        out = model(input_ids=new[:, None], **cache, use_cache=True)  # only the new token
        steps += 1
    return Generated(ids, input_ids.shape[1], steps)


@torch.no_grad()
def continuation_nll(model, ids: torch.Tensor, prompt_length: int, pad_token_id: int | None = None) -> torch.Tensor:
    """Mean negative log-likelihood (nats/token) of ``ids[:, prompt_length:]`` under ``model``, per row: (B,).

    Positions equal to ``pad_token_id`` after the first one in the continuation (i.e. padding after EOS) are skipped.
    ``exp`` of the result is the perplexity of the sample under this judge.
    """
    check_prompt_ids(ids, getattr(getattr(model, "config", None), "vocab_size", None), "ids")  # any callable model
    prompt_length = check_int(prompt_length, "prompt_length", minimum=1, maximum=ids.shape[1] - 1,
                              allowed=f"an int with 0 < prompt_length < T = {ids.shape[1]} (ids (B, T) "
                                      f"{tuple(ids.shape)})")
    logits = model(input_ids=ids).logits[:, prompt_length - 1:-1, :].float()  # (B, N, V) predicts ids[:, P:]
    targets = ids[:, prompt_length:]  # (B, N)
    nll = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")  # (B, N)
    keep = torch.ones_like(targets, dtype=torch.bool)
    if pad_token_id is not None:  # keep the first pad/EOS, drop the padding that follows it
        is_pad = targets == pad_token_id
        keep = ~(is_pad & (is_pad.long().cumsum(dim=1) > 1))
    return (nll * keep).sum(dim=1) / keep.sum(dim=1)


@torch.no_grad()
def check_same_tokens(ours: torch.Tensor, theirs: torch.Tensor, prompt_length: int, logits_fn, exact: bool,
                      eos_token_id: int | None = None, tie_margin: float = 1e-4) -> list[tuple[int, int]]:
    """Assert that two decoders continued the same prompt alike; per row, (tokens compared, tokens generated).

    ``ours``, ``theirs``: (B, T) ids, prompt included. A row's generated tokens are counted up to and including its
    first ``eos_token_id`` (what follows is padding). ``exact=True`` (for runs on the CPU): the two must be identical.
    ``exact=False`` (other devices, where e.g. a cached and a recomputed forward round differently): a row must agree
    up to the first generated step whose top-2 logit margin along ``ours`` (one full forward, ``logits_fn(ids (B, T))
    -> (B, T, V)``) is below ``tie_margin``; that step may flip, and what follows it is not compared. For sampled rows
    the margin is a proxy: ``torch.multinomial`` draws one sample as the argmax of ``p_i / q_i`` with ``q_i ~ Exp(1)``
    (an exponential race), so a draw whose two largest ``p_i / q_i`` lie within rounding of each other fails the
    check instead of being excused."""
    if (ours.dim() != 2 or theirs.dim() != 2 or ours.shape[0] != theirs.shape[0]
            or not 0 < prompt_length < ours.shape[1]):
        raise ValueError(f"need ids (B, T) and (B, T') and 0 < prompt_length < T, got {tuple(ours.shape)}, "
                         f"{tuple(theirs.shape)} and {prompt_length}")
    generated = []
    for row in ours[:, prompt_length:].tolist():
        generated.append(row.index(eos_token_id) + 1 if eos_token_id in row else len(row))
    if exact:
        if not torch.equal(ours, theirs):
            raise AssertionError("the two decoders produced different tokens")
        return [(n, n) for n in generated]
    top2 = logits_fn(ours[:, :-1])[:, prompt_length - 1:, :].float().topk(2, dim=-1).values  # (B, N, 2)
    near_tie = (top2[..., 0] - top2[..., 1]) < tie_margin  # (B, N): step t predicts ours[:, prompt_length + t]
    result = []
    for b, n in enumerate(generated):
        ties = near_tie[b, :n].nonzero().flatten().tolist()
        k = ties[0] if ties else n
        end = prompt_length + k
        if theirs.shape[1] < end or not torch.equal(ours[b, :end], theirs[b, :end]):
            raise AssertionError(f"row {b}: the two decoders differ before the first near-tie (step {k} of {n})")
        result.append((k, n))
    return result
