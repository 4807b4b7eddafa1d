"""A scalar head on a GPT trunk: the reward model (one score per sequence) and the PPO value function (one per token).

As in InstructGPT (Ouyang et al., 2022) the reward model starts as a copy of the SFT model with its output head
replaced by a linear layer to one number, read at the last token of the response, and is trained on preference
pairs with the Bradley-Terry loss, -log sigmoid(r(chosen) - r(rejected)). The head starts at zero, so every
sequence scores 0 before training. The same module, read at every position, is PPO's value function.

Left out: reward normalisation by a reference set (we report the raw scale), ensembles, margin terms.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Iterator

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from course_utils.model.gpt import GPT
from course_utils.rlhf.losses import bradley_terry_loss


class ScalarHeadModel(nn.Module):
    """``ids (B, T) -> (B, T)`` scalars: a copy of ``trunk`` with a zero-initialised linear head to one number."""

    def __init__(self, trunk: GPT) -> None:
        super().__init__()
        self.trunk = copy.deepcopy(trunk)
        self.trunk.lm_head = nn.Identity()  # not used; keeps the tied embedding a plain parameter of the trunk
        device = next(trunk.parameters()).device  # the head lives where the trunk does (a GPU trunk, a GPU head)
        self.head = nn.Linear(trunk.config.n_embd, 1, device=device)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk.hidden_states(ids)).squeeze(-1)  # (B, T)

    def score(self, ids: torch.Tensor, last_index: torch.Tensor) -> torch.Tensor:
        """The scalar at each row's ``last_index`` (B,): a sequence's reward."""
        values = self(ids)  # (B, T)
        return values.gather(1, last_index[:, None]).squeeze(1)  # (B,)


@dataclass
class PreferencePairs:
    """Comparisons of two responses to one prompt; ``chosen`` was preferred by the (noisy) labeller."""
    chosen: torch.Tensor  # (N, P + R) ids
    rejected: torch.Tensor  # (N, P + R) ids
    chosen_last: torch.Tensor  # (N,) index of each chosen response's last real token
    rejected_last: torch.Tensor  # (N,)
    chosen_mask: torch.Tensor  # (N, R) response-token masks
    rejected_mask: torch.Tensor  # (N, R)
    prompt_len: int

    def __len__(self) -> int:
        return len(self.chosen)

    def subset(self, rows: torch.Tensor) -> "PreferencePairs":
        return PreferencePairs(self.chosen[rows], self.rejected[rows], self.chosen_last[rows],
                               self.rejected_last[rows], self.chosen_mask[rows], self.rejected_mask[rows],
                               self.prompt_len)

    def chunks(self, batch_size: int) -> Iterator["PreferencePairs"]:
        """The pairs in order, ``batch_size`` at a time (for evaluation)."""
        for i in range(0, len(self), batch_size):
            yield self.subset(torch.arange(i, min(i + batch_size, len(self)), device=self.chosen.device))

    def sample_rows(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """``batch_size`` row indices drawn uniformly with replacement (drawn on the generator's device), on the
        pairs' device."""
        rows = torch.randint(len(self), (batch_size,), generator=generator, device=generator.device)
        return rows.to(self.chosen.device)  # (batch_size,)


@dataclass
class RewardTraining:
    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    val_steps: list[int] = field(default_factory=list)


@torch.no_grad()
def pairwise_accuracy(model: ScalarHeadModel, pairs: PreferencePairs, batch_size: int = 256) -> float:
    """Fraction of pairs where the model scores the labelled-chosen response higher."""
    was = model.training
    model.eval()
    hits = 0
    for part in pairs.chunks(batch_size):
        hits += (model.score(part.chosen, part.chosen_last) > model.score(part.rejected, part.rejected_last)).sum()
    model.train(was)
    return float(hits) / len(pairs)


def train_reward_model(model: ScalarHeadModel, train: PreferencePairs, val: PreferencePairs, steps: int,
                       batch_size: int, lr: float, generator: torch.Generator, eval_every: int = 50,
                       weight_decay: float = 0.0, progress: bool = True) -> RewardTraining:
    """Minimise the Bradley-Terry loss on ``train`` with AdamW; held-out accuracy on ``val`` every ``eval_every``."""
    if len(train) == 0 or len(val) == 0:
        raise ValueError("train and val must both hold at least one preference pair")
    if steps < 1 or batch_size < 1 or not lr > 0:
        raise ValueError(f"need steps >= 1, batch_size >= 1 and lr > 0; got {steps}, {batch_size}, {lr}")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    log = RewardTraining()
    model.train()
    for step in tqdm(range(steps), desc="reward model", disable=not progress, leave=False):
        batch = train.subset(train.sample_rows(batch_size, generator))
        loss = bradley_terry_loss(model.score(batch.chosen, batch.chosen_last),
                                  model.score(batch.rejected, batch.rejected_last))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        log.steps.append(step)
        log.loss.append(loss.item())
        if (step + 1) % eval_every == 0 or step == steps - 1:
            log.val_steps.append(step + 1)
            log.val_accuracy.append(pairwise_accuracy(model, val))
    model.eval()
    return log
