"""Evaluating a chat model on a labelling task two ways: the answer it writes, and the label it finds most probable.

:func:`generate_answers` decodes greedily, many prompts at a time. Prompts of different lengths are padded on the
LEFT, so that every row's next token is predicted at the same last position; the attention mask hides the padding and
the position ids are counted from each row's first real token (``generate`` derives them from the attention mask for
Llama-family models), so a batched answer equals the answer to the prompt alone (tested token for token).

:func:`label_logprobs` is a constrained choice: the summed log-probability of each label's tokens right after the
prompt, so "which of these four words is most likely" does not depend on whether the model answers in one word, in a
sentence, or with a capital letter. It is how multiple-choice benchmarks are often scored (e.g. the Language Model
Evaluation Harness, Gao et al., 2021-), and it reads a base model more kindly than exact matching of its free text.

Left out: sampling, beam search, stop strings other than the end token, length normalisation of label scores.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from course_utils.arguments import check_int
from course_utils.lora.sft import SFTExample, end_of_turn_id
from course_utils.model.logits_fns import cache_keyword, returned_cache


def _check_common(model: nn.Module, examples: object, batch_size: object) -> int:
    """Raise unless the arguments are usable; returns ``batch_size`` as a Python int (numpy ints accepted)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module (a transformers causal LM), got {type(model).__name__}")
    if not isinstance(examples, (list, tuple)) or not examples or not all(isinstance(e, SFTExample) for e in examples):
        raise TypeError("examples must be a non-empty list of SFTExample (chat_example(tokenizer, user))")
    if any(not e.prompt_ids for e in examples):
        raise ValueError("every example needs at least one prompt token")
    return check_int(batch_size, "batch_size", minimum=1, allowed="a positive int")


def pad_token_id(tokenizer) -> int:
    """The id that pads a batch: the tokenizer's pad token, else ``<|im_end|>``."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end_of_turn_id(tokenizer)


def pad_rows(rows: Sequence[Sequence[int]], pad_id: int, side: str = "left",
             device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), each (B, T): ``pad_id`` and mask 0 before (``side="left"``, rows right-aligned,
    for generation) or after (``side="right"``, rows left-aligned, positions 0, 1, ... unchanged) each row."""
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # (B, T)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)  # (B, T)
    for i, row in enumerate(rows):
        cols = slice(width - len(row), width) if side == "left" else slice(0, len(row))
        input_ids[i, cols] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, cols] = 1
    return input_ids.to(device), attention_mask.to(device)


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int,
             device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), each (B, T): the prompts right-aligned, ``pad_id`` and mask 0 before them."""
    return pad_rows(prompts, pad_id, "left", device)


@torch.no_grad()
def generate_answers(model: nn.Module, tokenizer, examples: list[SFTExample], max_new_tokens: int = 6,
                     batch_size: int = 32, progress: bool = False) -> list[str]:
    """The greedy answer to each example's prompt (its response is ignored): at most ``max_new_tokens`` tokens, cut at
    the first ``<|im_end|>`` (or the tokenizer's eos when there is none), decoded without special tokens, stripped.

    Uses ``model.generate(do_sample=False)`` with left padding, an explicit attention mask and a fresh generation
    config (so a checkpoint's default sampling settings do not apply); the model is in eval mode during the call."""
    from transformers import GenerationConfig

    batch_size = _check_common(model, examples, batch_size)
    max_new_tokens = check_int(max_new_tokens, "max_new_tokens", minimum=1, allowed="a positive int")
    try:
        stop_id = end_of_turn_id(tokenizer)
    except ValueError:
        stop_id = tokenizer.eos_token_id
    if stop_id is None:
        raise ValueError("the tokenizer has neither <|im_end|> nor an eos token: generation could not stop")
    pad_id = pad_token_id(tokenizer)
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad_id,
                              eos_token_id=stop_id)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    answers = []
    try:
        for start in tqdm(range(0, len(examples), batch_size), desc="answers", disable=not progress, leave=False):
            chunk = examples[start:start + batch_size]
            input_ids, attention_mask = left_pad([e.prompt_ids for e in chunk], pad_id, device)  # (B, T)
            out = model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config)
            for row in out[:, input_ids.shape[1]:].tolist():  # the new tokens of each row
                if stop_id in row:
                    row = row[:row.index(stop_id)]
                answers.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    finally:
        model.train(was_training)
    return answers


def label_token_ids(tokenizer, labels: Sequence[str]) -> list[tuple[int, ...]]:
    """The tokens of each label word as it starts an answer (right after ``assistant\\n``: no leading space)."""
    if isinstance(labels, str) or not labels or not all(isinstance(x, str) and x for x in labels):
        raise TypeError("labels must be a non-empty sequence of non-empty strings")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels must be distinct, got {list(labels)}")
    return [tuple(tokenizer(label, add_special_tokens=False)["input_ids"]) for label in labels]


@torch.no_grad()
def label_logprobs(model: nn.Module, tokenizer, examples: list[SFTExample], labels: Sequence[str],
                   batch_size: int = 32, progress: bool = False) -> torch.Tensor:
    """(N, L) float32 tensor, on the CPU: log p(label tokens | prompt) summed over each label's tokens, for every
    example's prompt and every label. The label words alone are scored (not the ``<|im_end|>`` after them), so the
    argmax over a row is the label the model would most likely START its answer with; labels are case-sensitive
    ("Sadness" and "sadness" are different tokens).

    Each prompt is run once (``batch_size`` prompts at a time, left-padded) and its keys and values are reused for
    all L labels, so scoring costs about one forward pass per prompt rather than L. ``progress`` shows a bar over
    the batches."""
    batch_size = _check_common(model, examples, batch_size)
    label_ids = label_token_ids(tokenizer, labels)
    n_labels, longest = len(label_ids), max(len(ids) for ids in label_ids)
    pad_id, device = pad_token_id(tokenizer), next(model.parameters()).device
    label_tokens = torch.full((n_labels, longest), pad_id, dtype=torch.long)  # (L, K), right-padded
    label_mask = torch.zeros((n_labels, longest))  # (L, K): 1 where a label token counts
    for k, ids in enumerate(label_ids):
        label_tokens[k, :len(ids)], label_mask[k, :len(ids)] = torch.tensor(ids), 1.0
    label_tokens, label_mask = label_tokens.to(device), label_mask.to(device)
    was_training = model.training
    model.eval()
    scores = []
    try:
        for start in tqdm(range(0, len(examples), batch_size), desc="label scores", disable=not progress,
                          leave=False):
            scores.append(_score_chunk(model, examples[start:start + batch_size], label_tokens, label_mask,
                                       pad_id).cpu())
    finally:
        model.train(was_training)
    return torch.cat(scores)  # (N, L)


def _score_chunk(model: nn.Module, chunk: list[SFTExample], label_tokens: torch.Tensor, label_mask: torch.Tensor,
                 pad_id: int) -> torch.Tensor:
    """(B, L) summed label log-probabilities for B prompts: one cached pass over the prompts, one over the labels."""
    n_labels, longest = label_tokens.shape
    input_ids, attention_mask = left_pad([e.prompt_ids for e in chunk], pad_id, label_tokens.device)  # (B, P)
    positions = (attention_mask.cumsum(1) - 1).clamp(min=0)  # (B, P): 0 at each row's first real token
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, use_cache=True,
                logits_to_keep=1)
    first = F.log_softmax(out.logits[:, -1].float(), dim=-1)[:, label_tokens[:, 0]]  # (B, L): each label's 1st token
    if longest == 1:
        return first
    batch = len(chunk)
    cache = returned_cache(out)
    cache.batch_repeat_interleave(n_labels)  # row b*L + k holds prompt b, for label k
    follow = label_tokens[:, :-1].repeat(batch, 1)  # (B*L, K-1): the label tokens that predict the next one
    mask = torch.cat([attention_mask.repeat_interleave(n_labels, 0), torch.ones_like(follow)], dim=1)  # (B*L, P+K-1)
    start = attention_mask.sum(1).repeat_interleave(n_labels)[:, None]  # (B*L, 1): each prompt's real length
    follow_positions = start + torch.arange(longest - 1, device=follow.device)  # (B*L, K-1)
    logits = model(input_ids=follow, attention_mask=mask, position_ids=follow_positions,
                   **{cache_keyword(model): cache}, use_cache=True).logits.float()  # (B*L, K-1, V)
    targets = label_tokens[:, 1:].repeat(batch, 1)  # (B*L, K-1)
    rest = F.log_softmax(logits, dim=-1).gather(2, targets[..., None])[..., 0]  # (B*L, K-1)
    rest = (rest * label_mask[:, 1:].repeat(batch, 1)).sum(1).view(batch, n_labels)  # (B, L)
    return first + rest
