"""A Hugging Face causal LM (SmolLM2 and other Llama-family models) behind the small interface that chapter 05's
RLHF code drives, so the same rollouts, reward/value heads, PPO, GRPO and DPO run on a real pretrained model.

The interface is the one of :class:`course_utils.model.gpt.GPT`: ``config.block_size`` and ``config.n_embd``,
``policy(ids) -> (logits, None)``, ``policy.hidden_states(ids)`` (the final, normalised hidden states, which for a
Llama model are the base model's ``last_hidden_state``, after the last RMSNorm) and ``policy.generate(...)``, which
samples a fixed number of tokens with an explicit generator. Generation reuses keys and values (a KV cache, built
from scratch in chapter 07; here the model's own KV cache), so each new token costs one position.

Holding a 135M-parameter model four times over (policy, frozen reference, reward model, value model) and fine-tuning
two of them (policy and value model) is the memory bill of RLHF; :func:`train_last_layers` trains only the last
decoder layers and the final norm instead (LoRA, Hu et al., 2021, is the usual cheaper alternative; chapter 06 builds
it, :mod:`course_utils.lora`). The chat prompts follow the model's own chat template, with exactly ``k`` tokens of
text in each so that every prompt has one length and batches need no padding.

Left out: LoRA, padding and attention masks (every prompt has one length), stopping early at the end token (the
rollout code masks what follows it), mixed precision.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from course_utils.arguments import check_int
from course_utils.device import check_generator
from course_utils.model.gpt import check_temperature
from course_utils.model.logits_fns import cache_keyword, returned_cache

END_TOKEN = "<|im_end|>"
INSTRUCTION = "Continue with one line of verse:\n"
_PLACEHOLDER = "\u2063TEXT\u2063"  # a marker that no chapter text contains


@dataclass(frozen=True)
class HFPolicyConfig:
    block_size: int  # the longest prompt + response the policy is asked to handle
    n_embd: int  # the model's hidden size: what a scalar head reads


class HFPolicy(nn.Module):
    """A ``transformers`` causal LM (``model(input_ids=...).logits``, base model at ``model.base_model``) as a
    policy."""

    def __init__(self, model: nn.Module, block_size: int) -> None:
        super().__init__()
        config = getattr(model, "config", None)
        if config is None or not hasattr(config, "hidden_size") or not hasattr(model, "base_model"):
            raise TypeError(f"model must be a transformers causal LM with a config and a base model, "
                            f"got {type(model).__name__}")
        max_positions = getattr(config, "max_position_embeddings", None)
        block_size = check_int(block_size, "block_size", minimum=2, allowed="an int >= 2 (prompt + response tokens)")
        if max_positions is not None and block_size > max_positions:
            raise ValueError(f"block_size {block_size} exceeds the model's max_position_embeddings {max_positions}")
        self.model = model
        self.config = HFPolicyConfig(block_size=block_size, n_embd=int(config.hidden_size))

    def _check_ids(self, ids: torch.Tensor) -> None:
        if ids.dim() != 2 or ids.dtype != torch.long:
            raise ValueError(f"ids must be a (B, T) tensor of int64 token ids, got {tuple(ids.shape)} {ids.dtype}")
        if ids.shape[1] > self.config.block_size:
            raise ValueError(f"sequence length {ids.shape[1]} exceeds block_size {self.config.block_size}")

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, None]:
        """Next-token logits (B, T, V) in float32, and None where GPT would return a loss."""
        self._check_ids(ids)
        return self.model(input_ids=ids, use_cache=False).logits.float(), None  # (B, T, V)

    def hidden_states(self, ids: torch.Tensor) -> torch.Tensor:
        """The base model's last hidden state (B, T, C): for Llama models, after the final RMSNorm."""
        self._check_ids(ids)
        return self.model.base_model(input_ids=ids, use_cache=False).last_hidden_state  # (B, T, C)

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, generator: torch.Generator | None = None,
                 temperature: float = 1.0, greedy: bool = False) -> torch.Tensor:
        """Extend ``idx`` (B, T) by exactly ``max_new_tokens`` tokens (no early stop), sampled at ``temperature``
        with ``generator`` (on ``idx``'s device) or taken greedily; uses a KV cache. Returns (B, T + max_new_tokens)."""
        max_new_tokens = check_int(max_new_tokens, "max_new_tokens", minimum=0)
        if not greedy:
            temperature = check_temperature(temperature)
        self._check_ids(idx)
        if idx.shape[1] + max_new_tokens > self.config.block_size:
            raise ValueError(f"prompt ({idx.shape[1]}) + new ({max_new_tokens}) tokens exceed block_size "
                             f"{self.config.block_size}")
        check_generator(generator, idx, "idx")
        if max_new_tokens == 0:
            return idx
        was_training = self.model.training
        self.model.eval()
        try:
            out = self.model(input_ids=idx, use_cache=True, logits_to_keep=1)  # prefill the whole prompt
            cache_key = cache_keyword(self.model)
            pieces = [idx]
            for step in range(max_new_tokens):
                logits = out.logits[:, -1, :].float()  # (B, V)
                if greedy:
                    next_id = logits.argmax(dim=-1, keepdim=True)  # (B, 1)
                else:
                    probs = F.softmax(logits / temperature, dim=-1)  # (B, V)
                    next_id = torch.multinomial(probs, 1, generator=generator)  # (B, 1), drawn on idx's device
                pieces.append(next_id)
                if step < max_new_tokens - 1:  # one position at a time from here on
                    out = self.model(input_ids=next_id, **{cache_key: returned_cache(out)}, use_cache=True,
                                     logits_to_keep=1)
        finally:
            self.model.train(was_training)
        return torch.cat(pieces, dim=1)  # (B, T + max_new_tokens)


def _decoder_layers(policy: HFPolicy) -> tuple[nn.ModuleList, nn.Module]:
    base = policy.model.base_model
    layers, norm = getattr(base, "layers", None), getattr(base, "norm", None)
    if not isinstance(layers, nn.ModuleList) or not isinstance(norm, nn.Module):
        raise TypeError(f"train_last_layers needs a Llama-style base model with .layers and .norm, "
                        f"got {type(base).__name__}")
    return layers, norm


def train_last_layers(policy: HFPolicy, n_layers: int) -> int:
    """Freeze everything except the last ``n_layers`` decoder layers and the final norm (the embeddings and a tied
    output head stay frozen); returns the number of trainable parameters."""
    if not isinstance(policy, HFPolicy):
        raise TypeError(f"policy must be an HFPolicy, got {type(policy).__name__}")
    layers, norm = _decoder_layers(policy)
    n_layers = check_int(n_layers, "n_layers", minimum=1, maximum=len(layers),
                         allowed=f"an int in [1, {len(layers)}] (the model's decoder layers)")
    policy.requires_grad_(False)
    for module in (*layers[len(layers) - n_layers:], norm):
        module.requires_grad_(True)
    return sum(p.numel() for p in policy.parameters() if p.requires_grad)


def end_token_id(tokenizer) -> int:
    """The id of the chat template's end-of-turn token ``<|im_end|>``: the end of a response."""
    vocab = tokenizer.get_vocab()
    if END_TOKEN not in vocab:
        raise ValueError(f"the tokenizer has no {END_TOKEN!r} token; this helper expects a ChatML template "
                         f"(as SmolLM2-Instruct has)")
    return int(vocab[END_TOKEN])


def make_chat_prompts(tokenizer, texts: list[str], prompt_tokens: int) -> torch.Tensor:
    """Chat prompts (B, P), one per text, all of one length: the chat template for the user message
    ``"Continue with one line of verse:\\n<TEXT>"`` plus the assistant turn's opening, where <TEXT> is the last
    ``prompt_tokens`` (= k) tokens of each text. P = len(template prefix) + k + len(template suffix); int64, on the CPU.
    """
    if isinstance(texts, str) or not texts or not all(isinstance(t, str) for t in texts):
        raise TypeError("texts must be a non-empty list of strings (wrap a single text in a list)")
    prompt_tokens = check_int(prompt_tokens, "prompt_tokens (tokens of text per prompt)", minimum=1,
                              allowed="a positive int")
    messages = [{"role": "user", "content": INSTRUCTION + _PLACEHOLDER}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if not isinstance(rendered, str) or rendered.count(_PLACEHOLDER) != 1:
        raise ValueError("the tokenizer's chat template did not render the user message verbatim exactly once")
    prefix_text, suffix_text = rendered.split(_PLACEHOLDER)
    prefix = tokenizer(prefix_text, add_special_tokens=False)["input_ids"]
    suffix = tokenizer(suffix_text, add_special_tokens=False)["input_ids"]
    rows = []
    for i, text in enumerate(texts):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) < prompt_tokens:
            raise ValueError(f"texts[{i}] has {len(ids)} tokens, fewer than prompt_tokens={prompt_tokens}: "
                             f"{text[:60]!r}")
        rows.append(prefix + ids[len(ids) - prompt_tokens:] + suffix)
    return torch.tensor(rows, dtype=torch.long)  # (B, P)


def decode_hf_responses(rollout, tokenizer) -> list[str]:
    """The response texts of a :class:`course_utils.rlhf.rollout.Rollout`, each cut before its end token."""
    out = []
    for row, n, done in zip(rollout.response.tolist(), rollout.lengths.tolist(), rollout.finished.tolist()):
        out.append(tokenizer.decode(row[:n - 1] if done else row[:n]))
    return out
