"""PPO for language models, from scratch: rollouts, a per-token KL penalty against the frozen SFT policy, GAE
advantages from a value model, and the clipped surrogate objective.

Follows Schulman et al., 2017, "Proximal Policy Optimization Algorithms", as applied to language models by Ziegler
et al., 2019, "Fine-Tuning Language Models from Human Preferences", and Ouyang et al., 2022 (InstructGPT): each
response token t gets reward -beta * (log pi(t) - log pi_ref(t)) (the sampled estimate of the KL to the reference),
and the last token also gets the reward model's score. Advantages come from generalised advantage estimation
(Schulman et al., 2016) with a separate value model initialised from the reward model, and are whitened per batch.
Each batch of rollouts is reused for ``epochs`` passes of minibatch updates, which is why the ratio is clipped.

Left out: an adaptive KL controller, reward whitening, entropy bonus, mixing in pretraining gradients (PPO-ptx).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from tqdm.auto import tqdm

from course_utils.arguments import check_int
from course_utils.model.gpt import GPT, check_temperature
from course_utils.rlhf.losses import (check_number, gae_advantages, kl_estimate, ppo_clip_fraction, ppo_clip_loss,
                                     value_loss, whiten)
from course_utils.rlhf.reward_model import ScalarHeadModel
from course_utils.rlhf.rollout import Rollout, response_logprobs, sample_rollout

RewardFn = Callable[[Rollout], torch.Tensor]  # a batch of rollouts -> (B,) sequence rewards
PromptFn = Callable[[int, torch.Generator], torch.Tensor]  # (n, generator) -> (n, P) prompt ids


@dataclass
class PPOConfig:
    iterations: int = 60
    batch_size: int = 64  # rollouts per iteration
    minibatch_size: int = 32
    epochs: int = 4  # passes over each batch of rollouts
    lr: float = 1e-4
    value_lr: float = 3e-4
    beta: float = 0.05  # KL coefficient
    clip_eps: float = 0.2
    value_clip: float = 0.2
    gamma: float = 1.0
    lam: float = 0.95
    grad_clip: float = 1.0
    temperature: float = 1.0
    max_new_tokens: int = 48
    sample_every: int = 10  # keep decoded samples every this many iterations

    def __post_init__(self) -> None:
        for name in ("iterations", "batch_size", "minibatch_size", "epochs", "max_new_tokens", "sample_every"):
            setattr(self, name, check_int(getattr(self, name), f"PPOConfig.{name}", minimum=1,
                                          allowed="a positive int"))  # True was one; numpy ints become ints
        if self.batch_size % self.minibatch_size:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of minibatch_size "
                             f"({self.minibatch_size})")
        check_number("beta (the KL coefficient)", self.beta, 0.0, math.inf, closed=True)
        check_number("clip_eps", self.clip_eps, 0.0, 1.0)
        for name in ("lr", "value_lr", "value_clip", "grad_clip"):
            check_number(name, getattr(self, name), 0.0, math.inf)
        check_number("gamma", self.gamma, 0.0, 1.0, closed=True)
        check_number("lam", self.lam, 0.0, 1.0, closed=True)
        self.temperature = check_temperature(self.temperature)


@dataclass
class RLHistory:
    """Per-iteration means over the training rollouts; ``samples`` maps an iteration to a few decoded responses."""
    samples_seen: list[int] = field(default_factory=list)
    reward: list[float] = field(default_factory=list)  # the reward being optimised (before the KL penalty)
    true_score: list[float] = field(default_factory=list)  # the hidden preference, never seen by the learner
    kl: list[float] = field(default_factory=list)  # mean over responses of sum_t (log pi - log pi_ref)
    length: list[float] = field(default_factory=list)
    clip_fraction: list[float] = field(default_factory=list)
    samples: dict = field(default_factory=dict)
    seconds: float = 0.0


@torch.no_grad()
def sequence_kl(policy_logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-response KL estimate (B,): the sum over response tokens of log pi - log pi_ref (k1, unbiased)."""
    return (kl_estimate(policy_logp, ref_logp, "k1") * mask).sum(dim=1)  # (B,)


def kl_shaped_rewards(scores: torch.Tensor, policy_logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor,
                      beta: float) -> torch.Tensor:
    """Per-token rewards (B, R): -beta * KL estimate on every response token, plus the score on the last one."""
    check_number("beta", beta, 0.0, math.inf, closed=True)  # NaN or inf made every reward NaN
    if not isinstance(scores, torch.Tensor) or scores.shape != mask.shape[:1]:
        raise ValueError(f"scores must be ({mask.shape[0]},), one per response, got "
                         f"{tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__}")
    if not bool((mask != 0).any(dim=1).all()):  # the score would land at index -1, or fail there
        raise ValueError("mask must select at least one token of every response (a row of mask is all False)")
    rewards = -beta * kl_estimate(policy_logp, ref_logp, "k1") * mask  # (B, R)
    last = mask.long().sum(dim=1) - 1  # (B,)
    return rewards.scatter_add(1, last[:, None], scores[:, None].to(rewards.dtype))  # (B, R)


def record(history: RLHistory, rollout: Rollout, reward: torch.Tensor, true: torch.Tensor, kl: torch.Tensor,
           clip_fraction: float, iteration: int, every: int, decode: Callable[[Rollout], list[str]] | None) -> None:
    history.samples_seen.append((history.samples_seen[-1] if history.samples_seen else 0) + len(rollout.ids))
    history.reward.append(reward.float().mean().item())
    history.true_score.append(true.float().mean().item())
    history.kl.append(kl.float().mean().item())
    history.length.append(rollout.lengths.float().mean().item())
    history.clip_fraction.append(clip_fraction)
    if decode is not None and iteration % every == 0:
        history.samples[iteration] = decode(rollout)[:4]


def train_ppo(policy: GPT, reference: GPT, value_model: ScalarHeadModel, reward_fn: RewardFn, true_fn: RewardFn,
              prompt_fn: PromptFn, eos_id: int, config: PPOConfig, generator: torch.Generator,
              decode: Callable[[Rollout], list[str]] | None = None, progress: bool = True) -> RLHistory:
    """Optimise ``policy`` in place against ``reward_fn`` with a KL penalty to ``reference``; returns the history.

    ``true_fn`` only measures (the hidden preference); ``generator`` lives on the policy's device.
    """
    device = next(policy.parameters()).device
    reference.eval()
    opt = torch.optim.AdamW(policy.parameters(), lr=config.lr, weight_decay=0.0)
    value_opt = torch.optim.AdamW(value_model.parameters(), lr=config.value_lr, weight_decay=0.0)
    history = RLHistory()
    start = time.perf_counter()
    bar = tqdm(range(config.iterations), desc=f"PPO beta={config.beta:g}", disable=not progress, leave=False)
    for it in bar:
        prompts = prompt_fn(config.batch_size, generator).to(device)  # (B, P)
        rollout = sample_rollout(policy, prompts, config.max_new_tokens, eos_id, generator, config.temperature)
        P, mask = rollout.prompt_len, rollout.mask.float()  # (B, R)
        with torch.no_grad():
            policy.eval()
            old_logp = response_logprobs(policy, rollout.ids, P)  # (B, R)
            ref_logp = response_logprobs(reference, rollout.ids, P)  # (B, R)
            old_values = value_model(rollout.ids)[:, P - 1:-1] * mask  # (B, R): value of the state before each token
            scores = reward_fn(rollout).to(device)  # (B,)
            true = true_fn(rollout)  # (B,)
            rewards = kl_shaped_rewards(scores, old_logp, ref_logp, mask, config.beta)  # (B, R)
            advantages, returns = gae_advantages(rewards, old_values, mask, config.gamma, config.lam)  # (B, R) x 2
            advantages = whiten(advantages, mask.bool()) * mask  # (B, R)
            kl = sequence_kl(old_logp, ref_logp, mask)  # (B,)
        policy.train()
        clipped = []
        for _ in range(config.epochs):
            order = torch.randperm(config.batch_size, generator=generator, device=generator.device).to(device)
            for mb in order.split(config.minibatch_size):
                ids, m = rollout.ids[mb], mask[mb]  # (b, P + R), (b, R)
                logp = response_logprobs(policy, ids, P)  # (b, R)
                loss = ppo_clip_loss(logp, old_logp[mb], advantages[mb], config.clip_eps, mask=m)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(policy.parameters(), config.grad_clip)
                opt.step()
                values = value_model(ids)[:, P - 1:-1]  # (b, R)
                v_loss = value_loss(values, old_values[mb], returns[mb], config.value_clip, mask=m)
                value_opt.zero_grad(set_to_none=True)
                v_loss.backward()
                torch.nn.utils.clip_grad_norm_(value_model.parameters(), config.grad_clip)
                value_opt.step()
                clipped.append(ppo_clip_fraction(logp.detach(), old_logp[mb], config.clip_eps, mask=m).item())
        record(history, rollout, scores, true, kl, sum(clipped) / len(clipped), it, config.sample_every, decode)
        bar.set_postfix(reward=f"{history.reward[-1]:.2f}", true=f"{history.true_score[-1]:.2f}",
                        kl=f"{history.kl[-1]:.1f}")
    history.seconds = time.perf_counter() - start
    policy.eval()
    return history
