"""GRPO: PPO's clipped objective with group-relative advantages and no value model.

Shao et al., 2024, "DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language Models", used for
DeepSeek-R1 (DeepSeek-AI, 2025) and most open reasoning models since: for each prompt sample a group of G responses,
score each with a reward (often a verifiable one: a checker, not a learned model), and use each response's reward
minus its group's mean, divided by the group's standard deviation, as the advantage of every one of its tokens. The
KL to the reference enters the loss directly (the k3 estimator, which is never negative), not the reward; the
gradient of that term is, in expectation, the gradient of the forward KL(ref || policy) per token (Tang and Munos,
2025; see :func:`course_utils.rlhf.losses.kl_estimate`), not of the KL(policy || ref) that the logs record.

The loss here averages over all response tokens of the batch (as DAPO, Yu et al., 2025, recommends) rather than
first within each response as DeepSeekMath writes it; the notebook says so. Left out: the length-normalisation
variants (Dr. GRPO), dynamic sampling, clip-higher.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
from tqdm.auto import tqdm

from course_utils.arguments import check_int
from course_utils.model.gpt import GPT, check_temperature
from course_utils.rlhf.losses import (check_number, group_relative_advantages, kl_estimate, masked_mean,
                                      ppo_clip_fraction, ppo_clip_loss)
from course_utils.rlhf.ppo import PromptFn, RewardFn, RLHistory, record, sequence_kl
from course_utils.rlhf.rollout import Rollout, response_logprobs, sample_rollout


@dataclass
class GRPOConfig:
    iterations: int = 60
    prompts_per_iteration: int = 8
    group_size: int = 8  # responses per prompt; batch = prompts_per_iteration * group_size
    epochs: int = 2  # passes over each batch (1 epoch of 1 minibatch makes the ratio exactly 1: no clipping)
    minibatch_groups: int = 4  # groups per minibatch
    lr: float = 1e-4
    beta: float = 0.04  # KL coefficient in the loss (DeepSeekMath's value)
    clip_eps: float = 0.2
    grad_clip: float = 1.0
    temperature: float = 1.0
    max_new_tokens: int = 14
    sample_every: int = 10

    def __post_init__(self) -> None:
        for name in ("iterations", "prompts_per_iteration", "epochs", "minibatch_groups", "max_new_tokens",
                     "sample_every"):
            setattr(self, name, check_int(getattr(self, name), f"GRPOConfig.{name}", minimum=1,
                                          allowed="a positive int"))  # True was one; numpy ints become ints
        self.group_size = check_int(self.group_size, "group_size", minimum=2,
                                    allowed="an int >= 2 (advantages compare responses within a group)")
        if self.prompts_per_iteration % self.minibatch_groups:
            raise ValueError("prompts_per_iteration must be a multiple of minibatch_groups")
        check_number("beta (the KL coefficient)", self.beta, 0.0, math.inf, closed=True)
        check_number("clip_eps", self.clip_eps, 0.0, 1.0)
        check_number("lr", self.lr, 0.0, math.inf)
        check_number("grad_clip", self.grad_clip, 0.0, math.inf)
        self.temperature = check_temperature(self.temperature)

    @property
    def batch_size(self) -> int:
        return self.prompts_per_iteration * self.group_size


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor, advantages: torch.Tensor,
              mask: torch.Tensor, clip_eps: float, beta: float) -> torch.Tensor:
    """Clipped surrogate with per-sequence advantages (B,) on every token, plus beta * k3 KL, averaged over the
    response tokens ``mask`` (B, R)."""
    surrogate = ppo_clip_loss(logp, old_logp, advantages, clip_eps, mask=mask)
    return surrogate + beta * masked_mean(kl_estimate(logp, ref_logp, "k3"), mask)


def train_grpo(policy: GPT, reference: GPT, reward_fn: RewardFn, true_fn: RewardFn, prompt_fn: PromptFn,
               eos_id: int, config: GRPOConfig, generator: torch.Generator,
               decode: Callable[[Rollout], list[str]] | None = None, progress: bool = True) -> RLHistory:
    """Optimise ``policy`` in place with GRPO against ``reward_fn``; ``true_fn`` only measures."""
    device = next(policy.parameters()).device
    reference.eval()
    opt = torch.optim.AdamW(policy.parameters(), lr=config.lr, weight_decay=0.0)
    history = RLHistory()
    start = time.perf_counter()
    G = config.group_size
    bar = tqdm(range(config.iterations), desc=f"GRPO beta={config.beta:g}", disable=not progress, leave=False)
    for it in bar:
        prompts = prompt_fn(config.prompts_per_iteration, generator).to(device)  # (n, P)
        prompts = prompts.repeat_interleave(G, dim=0)  # (n * G, P): consecutive rows form one group
        rollout = sample_rollout(policy, prompts, config.max_new_tokens, eos_id, generator, config.temperature)
        P, mask = rollout.prompt_len, rollout.mask  # (B, R)
        with torch.no_grad():
            policy.eval()
            old_logp = response_logprobs(policy, rollout.ids, P)  # (B, R)
            ref_logp = response_logprobs(reference, rollout.ids, P)  # (B, R)
            rewards = reward_fn(rollout).to(device).float()  # (B,)
            true = true_fn(rollout)  # (B,)
            advantages = group_relative_advantages(rewards, G)  # (B,)
            kl = sequence_kl(old_logp, ref_logp, mask.float())  # (B,)
        policy.train()
        clipped = []
        groups = config.prompts_per_iteration
        for _ in range(config.epochs):
            order = torch.randperm(groups, generator=generator, device=generator.device).to(device)
            for mb_groups in order.split(config.minibatch_groups):
                rows = (mb_groups[:, None] * G + torch.arange(G, device=device)).flatten()  # whole groups
                logp = response_logprobs(policy, rollout.ids[rows], P)  # (b, R)
                loss = grpo_loss(logp, old_logp[rows], ref_logp[rows], advantages[rows], mask[rows],
                                 config.clip_eps, config.beta)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(policy.parameters(), config.grad_clip)
                opt.step()
                clipped.append(ppo_clip_fraction(logp.detach(), old_logp[rows], config.clip_eps,
                                                 mask=mask[rows]).item())
        record(history, rollout, rewards, true, kl, sum(clipped) / len(clipped), it, config.sample_every, decode)
        bar.set_postfix(reward=f"{history.reward[-1]:.2f}", kl=f"{history.kl[-1]:.1f}")
    history.seconds = time.perf_counter() - start
    policy.eval()
    return history
