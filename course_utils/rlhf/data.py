"""Prompts and supervised fine-tuning (SFT) examples for chapter 05: "continue this text with one line".

Text is tokenised into words (:class:`course_utils.text.codecs.WordCodec`). A prompt is the last ``prompt_tokens``
tokens before a line break, the break included (so every prompt has the same length and batches need no padding);
the response is the next line, ended by the newline token, which acts as the end-of-response token. Only lines of
``min_line`` to ``max_line`` tokens that start with a word and hold no stage direction are used.

SFT (Ouyang et al., 2022, step 1) trains on prompt + response with the prompt positions labelled -100, so the loss
counts only the response (label masking; chapter 06 measures what it changes). Left out: chat templates (the tiny
model has none; the notebook shows SmolLM2's), multi-turn data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from course_utils.arguments import check_int
from course_utils.text.codecs import WordCodec

EOS = "\n"


@dataclass(frozen=True)
class LineTask:
    """The shape of the task, in tokens: prompt length and the longest response (end token included)."""
    prompt_tokens: int = 8
    max_response: int = 14
    min_line: int = 4
    max_line: int = 12  # < max_response: an SFT line with its end token always fits

    def __post_init__(self) -> None:
        for name in ("prompt_tokens", "max_response", "min_line", "max_line"):
            object.__setattr__(self, name, check_int(getattr(self, name), f"LineTask.{name}", minimum=1,
                                                     allowed="a positive int"))  # frozen; True was one token
        if not self.min_line <= self.max_line < self.max_response:
            raise ValueError(f"need min_line <= max_line < max_response, got {self.min_line}, {self.max_line}, "
                             f"{self.max_response}")

    @property
    def length(self) -> int:
        """Tokens in prompt + longest response: the context the model needs (its block_size must be >= this)."""
        return self.prompt_tokens + self.max_response


Example = tuple[list[int], list[int]]  # (prompt ids, line ids without the end token)


def line_examples(ids: list[int], codec: WordCodec, task: LineTask, limit: int | None = None) -> list[Example]:
    """(prompt, line) id lists from a tokenised text: each usable line and the ``prompt_tokens`` tokens before it."""
    limit = None if limit is None else check_int(limit, "limit", minimum=1)  # 0 and -1 returned one example, NaN all
    eos = codec.encode(EOS)[0]
    bracket = {i for i, w in enumerate(codec.vocabulary) if w in ("[", "]")}
    breaks = [i for i, t in enumerate(ids) if t == eos]
    examples = []
    for a, b in zip(breaks, breaks[1:]):
        line = ids[a + 1:b]
        if (a + 1 >= task.prompt_tokens and task.min_line <= len(line) <= task.max_line
                and codec.vocabulary[line[0]].isalpha() and not bracket.intersection(line)):
            examples.append((ids[a + 1 - task.prompt_tokens:a + 1], line))
            if limit is not None and len(examples) >= limit:
                break
    return examples


def encode_prompts(prompts: list[list[int]], task: LineTask, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(B, prompt_tokens)`` int64 ids of equal-length prompts."""
    bad = [p for p in prompts if len(p) != task.prompt_tokens]
    if bad:
        raise ValueError(f"every prompt must have exactly {task.prompt_tokens} tokens; got one of {len(bad[0])}")
    return torch.tensor(prompts, dtype=torch.long, device=device)  # (B, P)


def sft_tensors(examples: list[Example], eos_id: int, task: LineTask,
                device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """``(idx, targets)``, each ``(N, P + R - 1)``: next-token inputs and targets with the prompt and padding
    positions of the targets set to -100, so only the response line and its end token are learned."""
    if not examples:
        raise ValueError("no SFT examples")
    eos_id = check_int(eos_id, "eos_id", minimum=0)  # -1 or 2.5 went into the tensors as ids
    P, R = task.prompt_tokens, task.max_response
    rows, labels = [], []
    for prompt, line in examples:
        response = list(line) + [eos_id]
        if len(prompt) != P or len(response) > R:
            raise ValueError(f"an example with a {len(prompt)}-token prompt and {len(line)}-token line does not fit "
                             f"the task's lengths {P} and {R}")
        rows.append(list(prompt) + response + [eos_id] * (R - len(response)))  # (P + R,)
        labels.append([-100] * P + response + [-100] * (R - len(response)))  # (P + R,)
    ids = torch.tensor(rows, dtype=torch.long, device=device)  # (N, P + R)
    target = torch.tensor(labels, dtype=torch.long, device=device)  # (N, P + R)
    return ids[:, :-1], target[:, 1:]  # (N, P + R - 1) each


def make_sft_batch_fn(train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
                      batch_size: int):
    """A ``get_batch(split, generator)`` for :func:`course_utils.train.loop.train` over SFT tensors."""
    splits = {"train": train, "val": val}

    def get_batch(split: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx, targets = splits[split]
        rows = torch.randint(len(idx), (batch_size,), generator=generator, device=generator.device)
        rows = rows.to(idx.device)  # (B,)
        return idx[rows], targets[rows]

    return get_batch


def sample_prompts(examples: list[Example], n: int, generator: torch.Generator) -> list[list[int]]:
    """``n`` prompts drawn uniformly (with replacement) from ``examples`` with ``generator`` (on any device)."""
    if not examples:
        raise ValueError("no examples to draw prompts from")
    n = check_int(n, "n", minimum=1)  # 0 returned [], -1 failed inside torch.randint
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    rows = torch.randint(len(examples), (n,), generator=generator, device=generator.device).tolist()
    return [examples[i][0] for i in rows]
