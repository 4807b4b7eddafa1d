"""The glue of chapter 05's pipeline: preference pairs sampled from a policy and labelled by noisy simulated
labellers, and one evaluation of a policy on held-out prompts that every method (SFT, PPO, DPO, GRPO) gets.

The evaluation reports the hidden true score, the reward model's score, the KL to the reference (the sum over
response tokens of log pi - log pi_ref on the policy's own samples: an unbiased estimate of the sequence KL),
length, the share of finished responses, the responses' token ids and a few decoded samples. All arms are sampled
at temperature 1 from the same prompts with the same generator seed. Diversity (distinct-n, Li et al., 2016, "A
Diversity-Promoting Objective Function for Neural Conversation Models") is left to the caller, from ``responses``:
responses stop at the end token, so arms write different amounts, and pooled distinct-n falls as the count of n-grams
grows; arms are compared at equal counts with ``course_utils.evaluate.diversity.distinct_n_at_equal_counts``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from course_utils.device import make_generator
from course_utils.model.gpt import GPT
from course_utils.rlhf.ppo import RewardFn, sequence_kl
from course_utils.rlhf.preferences import bayes_accuracy, noisy_labels
from course_utils.rlhf.reward_model import PreferencePairs
from course_utils.rlhf.rollout import Rollout, response_logprobs, sample_rollout


@dataclass
class LabelledPairs:
    pairs: PreferencePairs
    score_chosen: torch.Tensor  # (N,) hidden scores of the labelled-chosen responses
    score_rejected: torch.Tensor  # (N,)
    bayes_accuracy: float  # the accuracy of the hidden score itself on these noisy labels (in expectation)

    @property
    def label_agrees_with_truth(self) -> torch.Tensor:
        return self.score_chosen > self.score_rejected  # (N,) False for ties and for flipped labels


def label_pairs(first: Rollout, second: Rollout, true_fn: RewardFn, temperature: float,
                generator: torch.Generator) -> LabelledPairs:
    """Two responses to each prompt -> preference pairs labelled by Bradley-Terry labellers at ``temperature``."""
    if first.ids.shape != second.ids.shape or first.prompt_len != second.prompt_len:
        raise ValueError("the two rollouts must answer the same prompts with the same lengths")
    if not torch.equal(first.ids[:, :first.prompt_len], second.ids[:, :second.prompt_len]):
        raise ValueError("the two rollouts must start from the same prompts, row by row")
    sa = true_fn(first).float().to(generator.device)  # (N,), drawn on where the generator lives
    sb = true_fn(second).float().to(generator.device)  # (N,)
    first_wins = noisy_labels(sa, sb, temperature, generator).to(first.ids.device)  # (N,)

    def pick(a: torch.Tensor, b: torch.Tensor, take_a: torch.Tensor) -> torch.Tensor:
        return torch.where(take_a.view(-1, *([1] * (a.dim() - 1))), a, b)

    pairs = PreferencePairs(
        pick(first.ids, second.ids, first_wins), pick(second.ids, first.ids, first_wins),
        pick(first.last_index, second.last_index, first_wins), pick(second.last_index, first.last_index, first_wins),
        pick(first.mask, second.mask, first_wins), pick(second.mask, first.mask, first_wins), first.prompt_len)
    wins = first_wins.to(sa.device)
    return LabelledPairs(pairs, torch.where(wins, sa, sb), torch.where(wins, sb, sa),
                         bayes_accuracy(sa, sb, temperature))


@dataclass
class PolicyEval:
    true_score: float
    true_score_sem: float  # standard error of that mean (sample std / sqrt(number of responses))
    reward: float
    reward_sem: float
    kl: float
    length: float
    finished: float
    responses: list[list[int]]  # token ids of each response, one per held-out prompt in order, with its end token
    # if it reached one: len(responses[i]) is the length that ``length`` averages
    samples: list[str]  # the first few responses decoded


@torch.no_grad()
def evaluate_policy(policy: GPT, reference: GPT, prompts: torch.Tensor, eos_id: int, max_new_tokens: int,
                    reward_fn: RewardFn, true_fn: RewardFn, decode: Callable[[Rollout], list[str]], seed: int,
                    batch_size: int = 256) -> PolicyEval:
    """Sample one response per held-out prompt (a fresh generator from ``seed`` on the policy's device) and
    measure it; see the module docstring."""
    device = next(policy.parameters()).device
    generator = make_generator(seed, device)
    true, reward, kl, length, finished, responses, texts = [], [], [], [], [], [], []
    for chunk in prompts.to(device).split(batch_size):
        rollout = sample_rollout(policy, chunk, max_new_tokens, eos_id, generator)
        P = rollout.prompt_len
        kl.append(sequence_kl(response_logprobs(policy, rollout.ids, P), response_logprobs(reference, rollout.ids, P),
                              rollout.mask.float()))
        true.append(true_fn(rollout).float().cpu())
        reward.append(reward_fn(rollout).float().cpu())
        length.append(rollout.lengths.float().cpu())
        finished.append(rollout.finished.float().cpu())
        responses += [row[:n].tolist() for row, n in zip(rollout.response.cpu(), rollout.lengths.tolist())]
        texts += decode(rollout)
    mean = lambda xs: torch.cat(xs).float().mean().item()  # noqa: E731
    def sem(xs: list[torch.Tensor]) -> float:  # standard error of the mean over all responses
        values = torch.cat(xs).float()  # (N,)
        return (values.std() / math.sqrt(len(values))).item() if len(values) > 1 else float("nan")

    return PolicyEval(mean(true), sem(true), mean(reward), sem(reward), mean([k.cpu() for k in kl]), mean(length),
                      mean(finished), responses, texts[:6])
