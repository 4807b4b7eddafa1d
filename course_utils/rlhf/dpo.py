"""Direct Preference Optimization: train the policy on the preference pairs themselves, no reward model, no sampling.

Rafailov et al., 2023, "Direct Preference Optimization: Your Language Model is Secretly a Reward Model": the policy
that maximises reward - beta * KL(pi || pi_ref) satisfies r(x, y) = beta * log(pi(y|x) / pi_ref(y|x)) + const, so
the Bradley-Terry loss on that implicit reward trains the policy directly. The reference's log-probabilities of
every pair are computed once, before training.

Left out: label smoothing (cDPO), IPO and the many later variants, a separate SFT on the chosen responses.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from course_utils.arguments import check_int
from course_utils.model.gpt import GPT
from course_utils.rlhf.losses import check_number, dpo_implicit_rewards, dpo_loss
from course_utils.rlhf.reward_model import PreferencePairs
from course_utils.rlhf.rollout import response_logprobs


@dataclass
class DPOConfig:
    steps: int = 300
    batch_size: int = 32
    lr: float = 1e-4
    beta: float = 0.1
    eval_every: int = 50

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_every"):  # True ran one step; numpy ints become Python ints
            setattr(self, name, check_int(getattr(self, name), f"DPOConfig.{name}", minimum=1,
                                          allowed="a positive int"))
        check_number("lr", self.lr, 0.0, math.inf)
        check_number("beta", self.beta, 0.0, math.inf)


@dataclass
class DPOHistory:
    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)  # implicit reward of chosen > rejected, held-out pairs
    val_margin: list[float] = field(default_factory=list)  # mean implicit-reward margin, held-out pairs
    seconds: float = 0.0


def sequence_logps(model: GPT, ids: torch.Tensor, mask: torch.Tensor, prompt_len: int) -> torch.Tensor:
    """log pi(response | prompt) summed over the response tokens ``mask`` (B, R): (B,)."""
    return (response_logprobs(model, ids, prompt_len) * mask).sum(dim=1)  # (B,)


@torch.no_grad()
def pair_logps(model: GPT, pairs: PreferencePairs, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequence log-probabilities of every chosen and rejected response: two (N,) tensors."""
    was = model.training
    model.eval()
    chosen, rejected = [], []
    for part in pairs.chunks(batch_size):
        chosen.append(sequence_logps(model, part.chosen, part.chosen_mask, part.prompt_len))
        rejected.append(sequence_logps(model, part.rejected, part.rejected_mask, part.prompt_len))
    model.train(was)
    return torch.cat(chosen), torch.cat(rejected)


def train_dpo(policy: GPT, reference: GPT, train: PreferencePairs, val: PreferencePairs, config: DPOConfig,
              generator: torch.Generator, progress: bool = True) -> DPOHistory:
    """Optimise ``policy`` in place with the DPO loss on ``train``; implicit-reward accuracy on ``val``."""
    if len(train) == 0 or len(val) == 0:
        raise ValueError("train and val must both hold at least one preference pair")
    ref_chosen, ref_rejected = pair_logps(reference, train)  # (N,) each, computed once
    val_ref = pair_logps(reference, val)
    opt = torch.optim.AdamW(policy.parameters(), lr=config.lr, weight_decay=0.0)
    history = DPOHistory()
    start = time.perf_counter()
    policy.train()
    for step in tqdm(range(config.steps), desc=f"DPO beta={config.beta:g}", disable=not progress, leave=False):
        rows = train.sample_rows(config.batch_size, generator)  # (b,)
        batch = train.subset(rows)
        loss = dpo_loss(sequence_logps(policy, batch.chosen, batch.chosen_mask, batch.prompt_len),
                        sequence_logps(policy, batch.rejected, batch.rejected_mask, batch.prompt_len),
                        ref_chosen[rows], ref_rejected[rows], config.beta)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        history.steps.append(step)
        history.loss.append(loss.item())
        if (step + 1) % config.eval_every == 0 or step == config.steps - 1:
            chosen, rejected = pair_logps(policy, val)
            margin = (dpo_implicit_rewards(chosen, val_ref[0], config.beta)
                      - dpo_implicit_rewards(rejected, val_ref[1], config.beta))  # (N_val,)
            history.eval_steps.append(step + 1)
            history.val_accuracy.append((margin > 0).float().mean().item())
            history.val_margin.append(margin.mean().item())
    history.seconds = time.perf_counter() - start
    policy.eval()
    return history
