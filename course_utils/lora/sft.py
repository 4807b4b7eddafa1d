"""Supervised fine-tuning (SFT) on chat-formatted demonstrations, with the prompt masked out of the loss.

Step 1 of Ouyang et al., 2022 (InstructGPT): fine-tune a language model on (prompt, demonstration) pairs with the
ordinary next-token loss, counted only on the demonstration (the response). A prompt is the model's chat template
rendered up to the opening of the assistant turn; a response is the answer's tokens plus the end-of-turn token
``<|im_end|>``, so the model also learns to stop.

Conventions (Hugging Face's): ``labels`` are aligned with ``input_ids``, NOT shifted; -100 marks a position that
counts for nothing (padding and, with ``mask_prompt``, the prompt). The loss shifts: the logits at position t are
scored against the label at t + 1, exactly what ``model(input_ids, labels=labels).loss`` computes.

:func:`response_loss` gets the same number more cheaply: it runs the decoder, keeps the hidden states whose next
label counts, and applies the output head (for SmolLM2 a 49,152-way matrix, most of the cost of a short example) to
those rows only.

Left out: packing several examples into one row, multi-turn conversations, learning-rate decay (warm-up, then a
constant rate: the chapter's runs are a few dozen steps), mixed precision, gradient accumulation.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from course_utils.arguments import check_int, check_real


END_TOKEN = "<|im_end|>"
IGNORE_INDEX = -100  # the label of a position that does not count (PyTorch's and Hugging Face's convention)


@dataclass(frozen=True)
class SFTExample:
    prompt_ids: tuple[int, ...]  # the chat template up to and including the assistant turn's opening
    response_ids: tuple[int, ...]  # the answer's tokens + <|im_end|>; () for a prompt to be answered


def end_of_turn_id(tokenizer) -> int:
    """The id of ``<|im_end|>``, the ChatML end-of-turn token that closes a response."""
    token_id = tokenizer.convert_tokens_to_ids(END_TOKEN)
    if not isinstance(token_id, int) or token_id == tokenizer.unk_token_id:
        raise ValueError(f"the tokenizer has no {END_TOKEN!r} token; chat_example expects a ChatML template "
                         f"(as SmolLM2-Instruct's)")
    return token_id


def _encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def chat_example(tokenizer, user: str, answer: str | None = None, system: str | None = None) -> SFTExample:
    """One example in the tokenizer's chat template.

    ``prompt_ids``: the template rendered for [system?, user] with ``add_generation_prompt=True`` (ending in
    ``<|im_start|>assistant\\n``). With ``system=None`` no system message is passed and SmolLM2's template inserts its
    own default one ("You are a helpful AI assistant named SmolLM, trained by Hugging Face"): the prompt the model was
    instruction-tuned with, kept by default. It costs tokens: an empty system message (``system=""``) renders as a
    5-token turn, the default one as 21: 16 tokens more per example (chapter 06 prints its prompts' mean length).
    ``response_ids``: the tokens of ``answer`` followed by ``<|im_end|>``; () when ``answer`` is None.

    Rendering the whole conversation with the assistant message instead gives prompt_ids + response_ids followed by
    the tokens of one "\\n": the template closes every turn with ``<|im_end|>\\n``; the response stops at
    ``<|im_end|>``, the token the model must learn to emit (the newline after it is never generated)."""
    if not isinstance(user, str) or not user:
        raise ValueError(f"user must be a non-empty string, got {user!r}")
    for name, value in (("answer", answer), ("system", system)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{name} must be a string or None, got {type(value).__name__}")
    end_id = end_of_turn_id(tokenizer)
    messages = ([] if system is None else [{"role": "system", "content": system}]) + [{"role": "user", "content": user}]
    prompt_text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    prompt_ids = tuple(_encode(tokenizer, prompt_text))
    response_ids = () if answer is None else tuple(_encode(tokenizer, answer)) + (end_id,)
    return SFTExample(prompt_ids, response_ids)


def collate_sft(examples: list[SFTExample], pad_id: int, mask_prompt: bool = True,
                device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """A right-padded batch: ``input_ids``, ``attention_mask`` and ``labels``, each (B, T) with T the longest example.

    ``labels`` equal ``input_ids`` where they count and -100 elsewhere: at padding always, at the prompt when
    ``mask_prompt``. They are not shifted (the loss shifts). Right padding keeps every real token at positions
    0, 1, ...: the default position ids are right, and causal attention never lets a real token see the padding."""
    if not isinstance(examples, (list, tuple)) or not examples or not all(isinstance(e, SFTExample) for e in examples):
        raise TypeError("examples must be a non-empty list of SFTExample")
    pad_id = check_int(pad_id, "pad_id", minimum=0, allowed="a non-negative int (a token id)")
    if any(not e.prompt_ids for e in examples):
        raise ValueError("every example needs at least one prompt token")
    width = max(len(e.prompt_ids) + len(e.response_ids) for e in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)  # (B, T)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)  # (B, T)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)  # (B, T)
    for row, e in enumerate(examples):
        ids = torch.tensor(e.prompt_ids + e.response_ids, dtype=torch.long)
        n, start = len(ids), 0 if not mask_prompt else len(e.prompt_ids)
        input_ids[row, :n] = ids
        attention_mask[row, :n] = 1
        labels[row, start:n] = ids[start:]
    return {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device), "labels": labels.to(device)}


def _check_labels(labels: torch.Tensor, shape: tuple[int, ...]) -> None:
    if labels.dim() != 2 or tuple(labels.shape) != shape or labels.dtype != torch.long:
        raise ValueError(f"labels must be an int64 tensor of shape {shape}, got {labels.dtype} {tuple(labels.shape)}")
    if not (labels[:, 1:] != IGNORE_INDEX).any():
        raise ValueError("no position after the first has a label other than -100: the loss would be empty")


def masked_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``logits[:, :-1]`` (B, T-1, V) against ``labels[:, 1:]`` over the labels that are not
    -100: the loss of Hugging Face's ``model(input_ids, labels=labels)`` (computed in float32)."""
    if logits.dim() != 3:
        raise ValueError(f"logits must be (B, T, V), got shape {tuple(logits.shape)}")
    _check_labels(labels, tuple(logits.shape[:2]))
    vocab_size = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, vocab_size).float(), labels[:, 1:].reshape(-1),
                           ignore_index=IGNORE_INDEX)


def _decoder(model: nn.Module) -> nn.Module:
    """The transformer body of a causal LM (LlamaModel for LlamaForCausalLM), seen through wrappers such as peft's."""
    for get in (lambda: model.get_decoder(), lambda: model.base_model):
        try:
            decoder = get()
        except (AttributeError, NotImplementedError):
            continue
        if isinstance(decoder, nn.Module) and decoder is not model:
            return decoder
    raise TypeError(f"model must be a transformers causal LM with a decoder (get_decoder() or .base_model), "
                    f"got {type(model).__name__}")


def labelled_logits(model: nn.Module,
                    batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits (N, V), targets (N,), rows (N,)) at the N positions whose NEXT label counts: the decoder's last hidden
    states (B, T, C) at those positions through the output head, the labels they predict, and the batch row of each."""
    input_ids, attention_mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    _check_labels(labels, tuple(input_ids.shape))
    hidden = _decoder(model)(input_ids=input_ids, attention_mask=attention_mask,
                             use_cache=False).last_hidden_state  # (B, T, C)
    keep = labels[:, 1:] != IGNORE_INDEX  # (B, T-1): position t predicts label t + 1
    head = model.get_output_embeddings()
    logits = head(hidden[:, :-1][keep]).float()  # (N, V)
    rows = torch.arange(labels.shape[0], device=labels.device)[:, None].expand_as(keep)[keep]  # (N,)
    return logits, labels[:, 1:][keep], rows


def response_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """:func:`masked_lm_loss` of the model's logits on ``batch``, with the output head applied only where a label
    counts (the same value up to float rounding; much cheaper when responses are short)."""
    logits, targets, _ = labelled_logits(model, batch)
    return F.cross_entropy(logits, targets)


def response_nll_per_row(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed negative log-likelihood (B,), counted tokens (B,)) of each row's labelled tokens, on the batch's device:
    per row what :func:`response_loss` averages over the whole batch (its value is ``nll.sum() / tokens.sum()``), so
    that rows can be compared one by one, or a row's total log-probability read as ``-nll``."""
    logits, targets, rows = labelled_logits(model, batch)
    nll = F.cross_entropy(logits, targets, reduction="none")  # (N,) one per labelled token
    n_rows = batch["labels"].shape[0]
    summed = torch.zeros(n_rows, device=nll.device, dtype=nll.dtype).index_add_(0, rows, nll)  # (B,)
    return summed, torch.bincount(rows, minlength=n_rows)


@dataclass
class SFTConfig:
    steps: int
    batch_size: int
    lr: float
    warmup_steps: int = 0  # linear warm-up from lr / warmup_steps to lr, then constant
    weight_decay: float = 0.0  # AdamW's decoupled weight decay
    grad_clip: float = 1.0  # max global gradient norm; math.inf turns clipping off
    mask_prompt: bool = True  # False: the loss counts every non-padding position, prompt included

    def __post_init__(self) -> None:
        # numpy ints and floats too, stored as Python ints and floats
        self.steps = check_int(self.steps, "steps", minimum=1, allowed="a positive int")
        self.batch_size = check_int(self.batch_size, "batch_size", minimum=1, allowed="a positive int")
        self.warmup_steps = check_int(self.warmup_steps, "warmup_steps", minimum=0)
        self.lr = check_real(self.lr, "lr", minimum=0, low_open=True)
        self.weight_decay = check_real(self.weight_decay, "weight_decay", minimum=0)
        self.grad_clip = check_real(self.grad_clip, "grad_clip", minimum=0, low_open=True, finite=False,
                                    allowed="> 0 (math.inf for no clipping)")
        if not isinstance(self.mask_prompt, bool):
            raise TypeError(f"mask_prompt must be a bool, got {self.mask_prompt!r}")


@dataclass
class SFTHistory:
    steps: list[int]  # 1, 2, ..., config.steps
    loss: list[float]  # the training objective of each step's batch, before that step's update
    seconds: float  # wall time of the whole run


def train_sft(model: nn.Module, examples: list[SFTExample], config: SFTConfig, generator: torch.Generator,
              pad_id: int, progress: bool = True) -> SFTHistory:
    """Fine-tune the parameters of ``model`` that require grad (LoRA factors, say) with AdamW on ``examples``.

    Each step draws ``config.batch_size`` distinct examples with ``generator`` (on its own device; the indices are then
    moved to the CPU), collates them on the model's device and minimises :func:`response_loss` (with
    ``mask_prompt=False`` the same loss over every non-padding position). The learning rate rises linearly over
    ``warmup_steps`` and then stays constant. The model is in train mode during the run and in eval mode after."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(config, SFTConfig):
        raise TypeError(f"config must be an SFTConfig, got {type(config).__name__}")
    if not isinstance(examples, (list, tuple)) or not all(isinstance(e, SFTExample) for e in examples):
        raise TypeError("examples must be a list of SFTExample")
    if any(not e.response_ids for e in examples):
        raise ValueError("every training example needs a response (chat_example(..., answer=...))")
    if config.batch_size > len(examples):
        raise ValueError(f"batch_size {config.batch_size} exceeds the {len(examples)} examples (a batch holds "
                         f"distinct examples)")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    collate_sft(list(examples[:1]), pad_id)  # validates pad_id once
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no parameter with requires_grad=True: nothing to train (add LoRA layers or "
                         "unfreeze some parameters)")
    device = trainable[0].device
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    warmup = max(config.warmup_steps, 1)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
    history = SFTHistory(steps=[], loss=[], seconds=0.0)
    start = time.perf_counter()
    model.train()
    try:
        bar = tqdm(range(1, config.steps + 1), desc="SFT", disable=not progress, leave=False)
        for step in bar:
            order = torch.randperm(len(examples), generator=generator, device=generator.device)
            batch = collate_sft([examples[i] for i in order[:config.batch_size].tolist()], pad_id,
                                mask_prompt=config.mask_prompt, device=device)
            loss = response_loss(model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip < math.inf:
                torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip)
            optimizer.step()
            schedule.step()
            history.steps.append(step)
            history.loss.append(loss.item())
            bar.set_postfix(loss=f"{history.loss[-1]:.3f}")
    finally:
        model.eval()
    history.seconds = time.perf_counter() - start
    return history
