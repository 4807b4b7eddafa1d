"""Reference solutions to chapter 05's exercises (RLHF): the KL-regularised optimal policy over a finite set of
responses, its expected reward and KL, the IPO loss, and RLOO's leave-one-out advantages. The exercises' questions
are answered in :data:`WHY_BETA_LIMITS`, :data:`WHY_BETA_TRADE`, :data:`WHY_IPO_MARGIN` and :data:`WHY_RLOO`."""

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


#: Exercise 1a's question, answered.
WHY_BETA_LIMITS = (
    "pi* reweights pi_ref by e^(r / beta): the ratio of two responses' probabilities is pi_ref's ratio times e^(d / "
    "beta), d the difference of their rewards, so beta sets how strongly reward counts against staying near pi_ref. "
    "As beta grows, r / beta tends to 0 for every response, every weight tends to 1 and pi* tends to pi_ref: the KL "
    "penalty outweighs any reward, and the best policy is the reference itself. As beta tends to 0, the weights of "
    "the responses with the highest reward among those pi_ref can produce outgrow all others without bound, so pi* "
    "puts all its probability on them, shared in proportion to pi_ref (a one-hot when one response is best). A "
    "response with pi_ref = 0 keeps pi* = 0 at every beta, even when its reward is the highest: any pi that gives it "
    "probability has an infinite KL from pi_ref. So the limit holds the best of the responses pi_ref can produce, "
    "which need not be the best response.")

#: Exercise 1b's questions, answered.
WHY_BETA_TRADE = (
    "As beta falls, both rise: the expected reward from E_pi_ref[r] (at beta -> infinity, where the KL is 0) towards "
    "the highest reward among the responses pi_ref can produce, and the KL towards -log of the probability pi_ref "
    "gives those best responses, a finite value: pi* only reweights what pi_ref produces. Neither ever falls: with "
    "theta = 1 / beta, d E_pi*[r] / d theta = Var_pi*(r) and d KL(pi* || pi_ref) / d theta = theta Var_pi*(r), both "
    ">= 0 (and > 0 unless every response pi_ref can produce has the same reward). So beta moves the optimum along one "
    "curve, buying reward with KL. The identity: log(pi*(y) / pi_ref(y)) = r(y) / beta - log Z, so KL(pi* || pi_ref) "
    "= E_pi*[r] / beta - log Z, and E_pi*[r] - beta KL(pi* || pi_ref) = beta log Z. For any other pi (0 wherever "
    "pi_ref is), the same algebra gives E_pi[r] - beta KL(pi || pi_ref) = beta log Z - beta KL(pi || pi*). A KL is >= "
    "0 and is 0 only when the two distributions are equal, so no distribution scores higher than pi*, and any other "
    "falls short by beta times its KL from pi*. The one-hot on the best response y_b, for example, scores r(y_b) + "
    "beta log pi_ref(y_b), below beta log Z at every beta > 0; it reaches it only in the limit beta -> 0, and only "
    "when y_b is the one best response.")

#: Exercise 2's question, answered.
WHY_IPO_MARGIN = (
    "For one pair the loss (h - 1 / (2 tau))^2 is smallest, 0, at h = 1 / (2 tau): the margin asked for is inversely "
    "proportional to tau, so doubling tau halves it and keeps the policy's log-ratios nearer the reference's (the "
    "sense in which tau plays DPO's beta). DPO's loss -log sigma(beta h) has the derivative -beta sigma(-beta h) = "
    "-beta / (1 + e^(beta h)) with respect to h: negative at every h, so gradient descent always pushes the margin "
    "up; at a very large margin it is close to 0 (about -beta e^(-beta h)) but never changes sign. The loss has no "
    "minimum at a finite margin: on pairs whose preference is always satisfied, nothing in the loss stops h from "
    "growing, only the finite number of steps (or something outside the loss, such as weight decay), and the rejected "
    "response's log-ratio can be pushed towards -infinity whatever beta is, so beta no longer limits how far the "
    "policy moves from the reference on those pairs (Azar et al.'s point). IPO's derivative, 2 (h - 1 / (2 tau)), "
    "grows with h: a margin beyond the target is pulled back, the harder the further it is. Both reach the "
    "log-probabilities through dh / d log pi(y_w) = 1 and dh / d log pi(y_l) = -1, so these are also the gradients "
    "the check compares, each divided by the number of pairs B (the loss is a mean).")

#: Exercise 3's questions, answered.
WHY_RLOO = (
    "With k = 2 each sample's baseline is the other's reward: a_1 = r_1 - r_2 and a_2 = r_2 - r_1, opposite "
    "advantages, so the pair pushes the better response up and the worse one down by the same amount. When every "
    "sample of a group gets the same reward, every advantage is 0 and that prompt adds nothing to the gradient "
    "(GRPO's advantage is 0 there too: 0 / (0 + eps)). The identity: the other rewards sum to k rbar - r_i (rbar the "
    "group's mean, r_i included), so a_i = r_i - (k rbar - r_i) / (k - 1) = (k r_i - k rbar) / (k - 1) = k / (k - 1) "
    "(r_i - rbar). The constant k / (k - 1) is the same for every sample and every group (k is fixed), so it changes "
    "no advantage's sign, nor their order, nor which responses are pushed up or down, nor their sum over a group (0), "
    "nor the direction of the gradient estimate. It changes its size, and that is what makes it unbiased: the "
    "leave-one-out baseline does not depend on y_i, so E[a_i grad log pi(y_i)] is the policy gradient, whereas the "
    "centred r_i - rbar, whose mean contains r_i, gives (k - 1) / k of it (half at k = 2): the right direction, too "
    "small. In training the factor acts as a larger step: with plain gradient descent it multiplies the learning rate "
    "by k / (k - 1); Adam (the course's trainers use AdamW) divides each step by a running gradient scale, which "
    "cancels most of a constant factor (not its eps, nor gradient-norm clipping); and when the loss has another term, "
    "such as GRPO's beta times the k3 KL, it weighs the policy-gradient term k / (k - 1) times more against it, as a "
    "beta divided by k / (k - 1) would. GRPO's division by each group's standard deviation is different in kind: that "
    "factor varies from group to group, so it changes how much each prompt weighs, which no constant does.")
