"""Reference solutions to chapter 05's exercises (RLHF): the KL-regularised optimal policy over a finite set of
responses, its expected reward and KL, the IPO loss, and RLOO's leave-one-out advantages."""

from __future__ import annotations

import torch


def optimal_policy(pi_ref: torch.Tensor, rewards: torch.Tensor, beta: float) -> torch.Tensor:
    """pi*(y) = pi_ref(y) exp(r(y) / beta) / Z (Rafailov et al. 2023, eq. 4), computed in log space. (N,)."""
    logits = torch.log(pi_ref) + rewards / beta  # (N,); log 0 = -inf keeps unsupported responses at 0
    logits = logits - logits.max()  # the largest term becomes exp(0) = 1: no overflow
    weights = torch.exp(logits)
    return weights / weights.sum()


def kl_and_reward(pi: torch.Tensor, pi_ref: torch.Tensor,
                  rewards: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(E_pi[r], KL(pi || pi_ref)) in nats; a response with pi(y) = 0 adds nothing (0 log 0 = 0)."""
    expected_reward = (pi * rewards).sum()
    terms = torch.where(pi > 0, pi * (torch.log(pi) - torch.log(pi_ref)), torch.zeros_like(pi))  # (N,)
    return expected_reward, terms.sum()


def ipo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor, ref_chosen_logps: torch.Tensor,
             ref_rejected_logps: torch.Tensor, tau: float) -> torch.Tensor:
    """IPO (Azar et al. 2023): mean over pairs of (h - 1 / (2 tau))^2, h the difference of the two log-ratios."""
    h = (policy_chosen_logps - ref_chosen_logps) - (policy_rejected_logps - ref_rejected_logps)  # (B,)
    return ((h - 1 / (2 * tau)) ** 2).mean()


def rloo_advantages(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """RLOO (Ahmadian et al. 2024): each reward minus the mean of the other k - 1 rewards of its group. (B,)."""
    groups = rewards.view(-1, k)  # (n_groups, k), consecutive samples of one prompt
    baseline = (groups.sum(dim=1, keepdim=True) - groups) / (k - 1)  # leave-one-out mean
    return (groups - baseline).reshape(-1)
