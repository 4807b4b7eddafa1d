"""Zero-shot classification by scoring label words: log p(label | prompt) for each label, with the prompt run once.

A verbalizer (Schick & Schuetze, 2021, "Exploiting Cloze Questions for Few Shot Text Classification and Natural
Language Inference") maps each class to a word; the model's answer is the label whose tokens are most probable after
the prompt. A label of several tokens is scored by the SUM of its tokens' log-probabilities,
log p(l_1 | prompt) + log p(l_2 | prompt, l_1) + ..., i.e. the log-probability of the whole label text (as the
Language Model Evaluation Harness scores multiple choice; no length normalisation).

Sharing the prompt: the prompt's keys and values are computed once and copied to one row per label
(``DynamicCache.batch_repeat_interleave``), and only the label tokens run through the model again. With one-token
labels the scores are all read off the prompt's last position: one forward pass per prompt instead of one per label.
The cached pass itself lives in :func:`course_utils.lora.answers.label_logprobs` (chapter 06, which scores chat
answers the same way); this module adds raw-text prompts, the tokenization check at the prompt/label boundary and a
progress bar. :func:`label_logprobs_per_label` is the plain way, one full forward pass per prompt + label, kept as the
benchmark's baseline. :func:`label_logprobs_after_prefix` shares more: a prefix common to every prompt (the k
shots of a few-shot prompt) is run once and its cache copied to each batch, so a k-shot prompt costs about as much as
its last passage (one-token labels only); :func:`encode_prefix` keeps that pass for further calls with the same
shots.

The boundary convention: the label is scored as the text that follows the prompt, so ``prompt + label`` must
tokenize as ``tokens(prompt) + tokens(label)``. Byte-level BPE keeps a leading space with the word that follows it, so
end a raw-text prompt WITHOUT a trailing space and give the labels one (``"Genre:"`` + ``" comedy"``); after a chat
template's ``assistant\\n`` the labels carry no space. A pair that tokenizes differently (``"Genre: "`` +
``"comedy"``, or a label that merges with the prompt's last word) raises ``ValueError`` rather than scoring token
sequences the model would never produce for that text.

Memory: with multi-token labels the copied cache holds B * L rows of the prompts' keys and values; for SmolLM2-135M
(30 layers, 3 key/value heads of 64 in float32) that is 45 KiB per token per row, so 8 prompts of 1,000 tokens and 3
labels take about 1.1 GB. Lower ``batch_size`` for long few-shot prompts.

Prompts are tokenized without added special tokens (SmolLM2's tokenizer adds none anyway; a chat template writes
its own). Left out: length-normalised scores, per-prompt label sets, unconditional (PMI) normalisation, scoring under
sampling.
"""

from __future__ import annotations

import copy
import weakref
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from course_utils.arguments import check_int
from course_utils.lora.answers import label_logprobs as _cached_label_logprobs
from course_utils.lora.answers import pad_rows, pad_token_id
from course_utils.lora.sft import SFTExample
from course_utils.model.logits_fns import cache_keyword, returned_cache


def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def check_labels(tokenizer, labels: object) -> list[list[int]]:
    """The token ids of each label, after checking the labels: a non-empty list of distinct strings, each at least
    one token long."""
    if isinstance(labels, str) or not isinstance(labels, (list, tuple)):
        raise TypeError(f"labels must be a list of strings, e.g. [' comedy', ' history'], got {labels!r}")
    if not labels:
        raise ValueError("labels is empty: give at least one label string")
    if not all(isinstance(label, str) for label in labels):
        raise TypeError(f"every label must be a string, got {labels!r}")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels must be distinct, got duplicates in {list(labels)}")
    ids = [_ids(tokenizer, label) for label in labels]
    empty = [label for label, i in zip(labels, ids) if not i]
    if empty:
        raise ValueError(f"labels {empty!r} tokenize to no tokens: a label needs at least one token to be scored")
    return ids


def check_prompts(prompts: object) -> None:
    """Prompts must be a non-empty list of non-empty strings."""
    if isinstance(prompts, str) or not isinstance(prompts, (list, tuple)):
        raise TypeError("prompts must be a list of strings (wrap a single prompt in a list)")
    if not prompts:
        raise ValueError("prompts is empty")
    if not all(isinstance(p, str) and p for p in prompts):
        raise ValueError("every prompt must be a non-empty string")


def encode_prompt(tokenizer, prompt: str, labels: Sequence[str], label_ids: list[list[int]]) -> tuple[int, ...]:
    """The prompt's token ids, after checking that ``prompt + label`` tokenizes as prompt tokens then label tokens
    for every label (the boundary convention in the module docstring)."""
    prompt_ids = _ids(tokenizer, prompt)
    for label, ids in zip(labels, label_ids):
        joint = _ids(tokenizer, prompt + label)
        if joint != prompt_ids + ids:
            raise ValueError(
                f"prompt + {label!r} does not tokenize as prompt tokens followed by label tokens (the last prompt "
                f"tokens become {joint[max(0, len(prompt_ids) - 2):][:6]}, not {prompt_ids[-2:]} + {ids}); end the "
                f"prompt without a trailing space and start raw-text labels with one (' comedy')")
    return tuple(prompt_ids)


@torch.no_grad()
def label_logprobs_many(model: nn.Module, tokenizer, prompts: Sequence[str], labels: Sequence[str],
                        batch_size: int = 8, progress: bool = True) -> torch.Tensor:
    """(N, L) float32 on the CPU: summed log-probability of each label's tokens after each prompt.

    Prompts are sorted by length and run ``batch_size`` at a time (left-padded; less padding when lengths are
    alike); each batch's prompt cache is shared by all L labels. The result is in the order of ``prompts``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a transformers causal LM (an nn.Module), got {type(model).__name__}")
    check_prompts(prompts)
    label_ids = check_labels(tokenizer, labels)
    batch_size = check_int(batch_size, "batch_size", minimum=1, allowed="a positive int")  # numpy ints too
    examples = [SFTExample(encode_prompt(tokenizer, p, labels, label_ids), ()) for p in prompts]
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].prompt_ids))
    scores = torch.empty(len(examples), len(labels))  # (N, L)
    starts = range(0, len(order), batch_size)
    for start in tqdm(starts, desc="label scores", disable=not progress, leave=False):
        rows = order[start:start + batch_size]
        scores[rows] = _cached_label_logprobs(model, tokenizer, [examples[i] for i in rows], list(labels),
                                              batch_size=len(rows))
    return scores


def _suffix_ids(tokenizer, prefix: str, suffixes: Sequence[str], labels: Sequence[str],
                label_ids: list[list[int]]) -> tuple[list[int], list[list[int]]]:
    """The prefix's ids and each suffix's ids, after checking that prefix + suffix + label tokenizes as the three
    parts one after another (else a cached prefix would score token sequences the model never sees)."""
    prefix_ids = _ids(tokenizer, prefix)
    rows = []
    for suffix in suffixes:
        full = list(encode_prompt(tokenizer, prefix + suffix, labels, label_ids))
        if full[:len(prefix_ids)] != prefix_ids or len(full) == len(prefix_ids):
            raise ValueError(f"prefix + {suffix[:20]!r}... does not tokenize as the prefix's tokens followed by the "
                             f"suffix's: cut the prompt where a token ends (e.g. after a label word, before '\\n\\n')")
        rows.append(full[len(prefix_ids):])
    return prefix_ids, rows


@dataclass(frozen=True)
class EncodedPrefix:
    """A prefix run once through one model (:func:`encode_prefix`): its text, token ids and keys and values, (1, P)
    per layer. :func:`label_logprobs_after_prefix` takes it in place of the prefix's text, so that several calls
    (the passages, then calibration's content-free prompts) share one pass over the shots. It stays valid while
    the model's weights are unchanged."""
    text: str
    ids: tuple[int, ...]
    cache: object = field(repr=False)  # the model's Cache; copied per batch, never changed
    model: weakref.ref = field(repr=False)  # the model that ran it (valid while its weights are unchanged)


@torch.no_grad()
def encode_prefix(model: nn.Module, tokenizer, prefix: str) -> EncodedPrefix:
    """Run ``prefix`` through ``model`` once (in eval mode) and keep its keys and values for
    :func:`label_logprobs_after_prefix`."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a transformers causal LM (an nn.Module), got {type(model).__name__}")
    check_prompts([prefix])
    ids = _ids(tokenizer, prefix)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        cache = returned_cache(model(input_ids=torch.tensor([ids], device=device), use_cache=True,
                                     logits_to_keep=1))  # holds (1, P) keys and values
    finally:
        model.train(was_training)
    return EncodedPrefix(prefix, tuple(ids), cache, weakref.ref(model))


@torch.no_grad()
def label_logprobs_after_prefix(model: nn.Module, tokenizer, prefix: str | EncodedPrefix, suffixes: Sequence[str],
                                labels: Sequence[str], batch_size: int = 8) -> torch.Tensor:
    """(N, L) float32 on the CPU: the scores :func:`label_logprobs_many` gives for the prompts ``prefix + suffix``,
    with the shared prefix run once. Its keys and values are copied to each batch of suffixes, which are right-padded
    (a padded position comes after every real one, so causal attention never reads it) and scored at each row's last
    real token. One-token labels only: a label of several tokens would need a second pass per row. ``prefix``: its
    text, or an :class:`EncodedPrefix` of this model (from :func:`encode_prefix`), whose pass is then reused."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a transformers causal LM (an nn.Module), got {type(model).__name__}")
    encoded = prefix if isinstance(prefix, EncodedPrefix) else None
    if encoded is not None:
        if encoded.model() is not model:
            raise ValueError("this EncodedPrefix was run through another model: encode the prefix with this one")
        prefix = encoded.text
    check_prompts([prefix])
    check_prompts(suffixes)
    label_ids = check_labels(tokenizer, labels)
    if any(len(ids) != 1 for ids in label_ids):
        raise ValueError(f"label_logprobs_after_prefix scores one-token labels only; {list(labels)} tokenize to "
                         f"{label_ids}: use label_logprobs_many")
    batch_size = check_int(batch_size, "batch_size", minimum=1, allowed="a positive int")  # numpy ints too
    prefix_ids, rows = _suffix_ids(tokenizer, prefix, suffixes, labels, label_ids)
    if encoded is not None and list(encoded.ids) != prefix_ids:
        raise ValueError("this EncodedPrefix's token ids differ from the prefix tokenized by this tokenizer: encode "
                         "the prefix with the tokenizer used here")
    prefix_cache = (encoded or encode_prefix(model, tokenizer, prefix)).cache
    device = next(model.parameters()).device
    first_tokens = torch.tensor([ids[0] for ids in label_ids], device=device)  # (L,)
    cache_key = cache_keyword(model)
    was_training = model.training
    model.eval()
    scores = []
    try:
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(len(chunk))  # (B, P) copies of the prefix
            input_ids, mask = pad_rows(chunk, pad_token_id(tokenizer), "right", device)  # (B, S) each
            positions = len(prefix_ids) + torch.arange(input_ids.shape[1], device=device).expand_as(input_ids)
            full_mask = torch.cat([torch.ones(len(chunk), len(prefix_ids), dtype=mask.dtype, device=device), mask],
                                  dim=1)  # (B, P + S)
            ends = mask.sum(1) - 1  # (B,) each row's last real position
            keep, column = torch.unique(ends, return_inverse=True)  # the output head runs at these positions only
            logits = model(input_ids=input_ids, attention_mask=full_mask, position_ids=positions,
                           **{cache_key: cache}, use_cache=True, logits_to_keep=keep).logits  # (B, len(keep), V)
            last = logits[torch.arange(len(chunk), device=device), column].float()  # (B, V)
            scores.append(F.log_softmax(last, dim=-1)[:, first_tokens].cpu())  # (B, L)
    finally:
        model.train(was_training)
    return torch.cat(scores)  # (N, L)


def label_logprobs(model: nn.Module, tokenizer, prompt: str, labels: Sequence[str]) -> torch.Tensor:
    """(L,) float32 on the CPU: log p(label | prompt) summed over each label's tokens, the prompt run once."""
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a string, got {type(prompt).__name__} (many prompts: label_logprobs_many)")
    return label_logprobs_many(model, tokenizer, [prompt], labels, batch_size=1, progress=False)[0]


@torch.no_grad()
def label_logprobs_per_label(model: nn.Module, tokenizer, prompt: str, labels: Sequence[str]) -> torch.Tensor:
    """(L,) the same scores the plain way: one full forward pass over prompt + label for every label (the baseline
    the shared cache is measured against). Only the logits at the label positions go through the output head."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a transformers causal LM (an nn.Module), got {type(model).__name__}")
    check_prompts([prompt])
    label_ids = check_labels(tokenizer, labels)
    prompt_ids = encode_prompt(tokenizer, prompt, labels, label_ids)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    scores = []
    try:
        for ids in label_ids:
            full = torch.tensor([list(prompt_ids) + ids], device=device)  # (1, P + K)
            logits = model(input_ids=full, logits_to_keep=len(ids) + 1).logits[0, :-1].float()  # (K, V)
            targets = torch.tensor(ids, device=device)  # (K,)
            scores.append(F.log_softmax(logits, dim=-1).gather(1, targets[:, None]).sum().cpu())
    finally:
        model.train(was_training)
    return torch.stack(scores)  # (L,)


def label_probabilities(logprobs: torch.Tensor) -> torch.Tensor:
    """Normalise label log-probabilities (..., L) into a distribution over the L labels (softmax on the last axis):
    the model's probability of each label GIVEN that it answers with one of them."""
    if not isinstance(logprobs, torch.Tensor) or logprobs.dim() == 0 or logprobs.shape[-1] == 0:
        raise ValueError("logprobs must be a tensor (..., L) with at least one label")
    return torch.softmax(logprobs.float(), dim=-1)
