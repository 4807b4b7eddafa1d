"""Rollouts: sample response lines from a policy, and score the log-probabilities of responses under any model.

Every prompt has the same length P and every rollout generates exactly R tokens, so a batch is one rectangle
``(B, P + R)``; a response ends at its first end-of-response token (the newline), and ``mask`` marks the tokens
up to and including it. Tokens after the end are sampled but never scored, rewarded or trained on (causal
attention means they cannot change anything before them).

Left out: a KV cache for the course GPT (chapter 07 builds one; at P + R = 22 word tokens recomputing is cheap;
:class:`course_utils.rlhf.hf_policy.HFPolicy` uses the model's own), padding on the left.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from course_utils.arguments import check_int
from course_utils.device import check_generator
from course_utils.model.gpt import GPT
from course_utils.text.codecs import WordCodec


@dataclass
class Rollout:
    ids: torch.Tensor  # (B, P + R) prompt then sampled response tokens
    prompt_len: int  # P
    mask: torch.Tensor  # (B, R) bool, True for response tokens up to and including the first end token
    finished: torch.Tensor  # (B,) bool, True where the response ended within R tokens

    @property
    def response(self) -> torch.Tensor:
        return self.ids[:, self.prompt_len:]  # (B, R)

    @property
    def lengths(self) -> torch.Tensor:
        return self.mask.sum(dim=1)  # (B,) tokens in each response, the end token included

    @property
    def last_index(self) -> torch.Tensor:
        """Position in ``ids`` of each response's last real token: where a reward model reads its score."""
        return self.prompt_len + self.lengths - 1  # (B,)


def response_mask(response: torch.Tensor, eos_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mask, finished)`` for responses ``(B, R)``: the mask covers each row up to and including its first
    ``eos_id`` (the whole row if there is none)."""
    eos_id = check_int(eos_id, "eos_id", minimum=0, allowed="a token id (an int >= 0)")  # -1, 2.5: never matched
    is_eos = response == eos_id  # (B, R)
    before = is_eos.long().cumsum(dim=1) - is_eos.long()  # (B, R) end tokens strictly before each position
    return before == 0, is_eos.any(dim=1)  # (B, R), (B,)


@torch.no_grad()
def sample_rollout(policy: GPT, prompts: torch.Tensor, max_new_tokens: int, eos_id: int,
                   generator: torch.Generator, temperature: float = 1.0) -> Rollout:
    """Sample ``max_new_tokens`` tokens after each prompt ``(B, P)`` (on the policy's device) and mark the ends."""
    if not isinstance(prompts, torch.Tensor) or prompts.dim() != 2 or prompts.shape[0] == 0:
        shape = tuple(prompts.shape) if isinstance(prompts, torch.Tensor) else type(prompts).__name__
        raise ValueError(f"prompts must be a non-empty (B, P) tensor of ids, got {shape}")
    vocab_size = getattr(policy.config, "vocab_size", None)  # an HFPolicy's config has none
    eos_id = check_int(eos_id, "eos_id", minimum=0, maximum=None if vocab_size is None else vocab_size - 1,
                       allowed=f"a token id in [0, {vocab_size or 'vocab_size'})")  # one it cannot emit: never ends
    if prompts.shape[1] + max_new_tokens > policy.config.block_size:
        raise ValueError(f"prompt ({prompts.shape[1]}) + response ({max_new_tokens}) tokens exceed the policy's "
                         f"block_size {policy.config.block_size}")
    check_generator(generator, prompts, "prompts")
    ids = policy.generate(prompts, max_new_tokens, generator=generator, temperature=temperature)  # (B, P + R)
    mask, finished = response_mask(ids[:, prompts.shape[1]:], eos_id)
    return Rollout(ids, prompts.shape[1], mask, finished)


def response_logprobs(model: GPT, ids: torch.Tensor, prompt_len: int) -> torch.Tensor:
    """log p(token | everything before it) for the response tokens ``ids[:, prompt_len:]``: ``(B, R)``.

    Gradients flow when called outside ``torch.no_grad()``; sum over a mask for a sequence log-probability.
    """
    logits, _ = model(ids[:, :-1])  # (B, P + R - 1, V): position t predicts token t + 1
    logits = logits[:, prompt_len - 1:]  # (B, R, V): the predictions of the response tokens
    logp = F.log_softmax(logits.float(), dim=-1)  # (B, R, V)
    return logp.gather(-1, ids[:, prompt_len:, None]).squeeze(-1)  # (B, R)


def decode_responses(rollout: Rollout, codec: WordCodec) -> list[str]:
    """The response texts, each cut before its end token."""
    out = []
    for row, n, done in zip(rollout.response.tolist(), rollout.lengths.tolist(), rollout.finished.tolist()):
        out.append(codec.decode(row[:n - 1] if done else row[:n]))
    return out
