"""The losses of RLHF as pure torch functions: reward model, DPO, PPO (policy and value), KL estimators, advantages.

Outputs stay on the inputs' device and dtype (nothing is created on the CPU). Arguments are validated once, at the
public entry, by shape checks without device sync; only a masked mean reads ``mask`` once (an empty selection), and
GRPO's advantages read the rewards once (NaN or inf).

References
* Bradley-Terry preference model: R. A. Bradley, M. E. Terry, "Rank Analysis of Incomplete Block Designs", 1952;
  as a reward-model loss: P. Christiano et al., "Deep RL from Human Preferences", 2017, and L. Ouyang et al.,
  "Training language models to follow instructions with human feedback" (InstructGPT), 2022.
* DPO: R. Rafailov et al., "Direct Preference Optimization: Your Language Model is Secretly a Reward Model", 2023.
* PPO: J. Schulman et al., "Proximal Policy Optimization Algorithms", 2017; clipped losses as in baselines' ``ppo2``.
* GAE: J. Schulman et al., "High-Dimensional Continuous Control Using Generalized Advantage Estimation", 2016.
* KL estimators k1, k2, k3: J. Schulman, "Approximating KL Divergence" (blog post, joschu.net), 2020.
* Gradients of KL estimators used as losses: Y. Tang and R. Munos, "On a few pitfalls in KL divergence gradient
  estimation for RL", 2025 (arXiv 2506.09477).
* GRPO: Z. Shao et al., "DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language Models", 2024.

Shapes: B sequences (or B = n_groups * group_size completions in GRPO), T response tokens. A ``mask`` is a bool or
0/1 tensor of the same shape as the tensor it masks; True marks a real token. Masked entries never reach a result,
even when they hold NaN or inf (they are replaced with ``torch.where``, not multiplied by 0).

Left out: entropy bonus, the KL penalty folded into per-token rewards (the PPO trainer builds it from
:func:`kl_estimate`), dual-clip PPO, IPO/SimPO/KTO and other DPO variants, sequence-level importance ratios (GSPO).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from course_utils.arguments import check_int, check_real

REDUCTIONS = ("mean", "sum", "none")
KL_KINDS = ("k1", "k2", "k3")


def _check_tensor(name: str, x: object, floating: bool = True) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}); pass at least one element")
    if floating and not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")


def _check_pair(name_a: str, a: object, name_b: str, b: object) -> None:
    _check_tensor(name_a, a)
    _check_tensor(name_b, b)
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def _check_mask(mask: object, like: torch.Tensor, like_name: str) -> torch.Tensor:
    """Returns the mask as a bool tensor after checking that it is a tensor of ``like``'s shape."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch.Tensor (bool or 0/1), got {type(mask).__name__}")
    if mask.shape != like.shape:
        raise ValueError(f"mask must have the shape of {like_name} {tuple(like.shape)}, got {tuple(mask.shape)}")
    return mask if mask.dtype == torch.bool else mask != 0


def _check_reduction(reduction: object) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def check_number(name: str, value: object, low: float, high: float, closed: bool = False) -> None:
    """A finite real number in (low, high), or in [low, high] with ``closed``; TypeError for a non-number."""
    allowed = f"a finite number in [{low:g}, {high:g}]" if closed else f"a finite number in ({low:g}, {high:g})"
    check_real(value, name, minimum=low, maximum=high, low_open=not closed, high_open=not closed, allowed=allowed)


def _reduce(loss: torch.Tensor, reduction: str, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return {"mean": loss.mean, "sum": loss.sum, "none": lambda: loss}[reduction]()
    if reduction == "mean":
        return _masked_mean(loss, mask)
    masked = torch.where(mask, loss, torch.zeros_like(loss))
    return masked.sum() if reduction == "sum" else masked


def _masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """No checks of shapes; one sync to reject an empty selection (mask is bool)."""
    count = mask.sum() if dim is None else mask.sum(dim)
    if not bool((count > 0).all()):
        raise ValueError("mask selects no elements" + ("" if dim is None else f" in some slice along dim {dim}"))
    total = torch.where(mask, x, torch.zeros_like(x))
    total = total.sum() if dim is None else total.sum(dim)
    return total / count.to(x.dtype)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over the entries where ``mask`` is true: sum(x * mask) / sum(mask), over all or along ``dim``.

    ``mask`` (bool or 0/1) has the shape of ``x``. Raises ValueError when it selects no element (or, with ``dim``,
    no element in some slice), instead of returning NaN.
    """
    _check_tensor("x", x)
    return _masked_mean(x, _check_mask(mask, x, "x"), dim)


def whiten(x: torch.Tensor, mask: torch.Tensor | None = None, shift_mean: bool = True,
           eps: float = 1e-8) -> torch.Tensor:
    """Advantage normalisation: (x - mean) / (std + eps), mean and std over the unmasked entries.

    std is the unbiased (Bessel-corrected) standard deviation, as ``torch.std`` and TRL's ``masked_var``; a single
    unmasked entry gives std 0 (not NaN). ``shift_mean=False`` adds the mean back (only the scale changes), as TRL
    does when it whitens rewards. Masked entries of the result are 0.
    """
    _check_tensor("x", x)
    check_number("eps", eps, 0.0, math.inf)
    mask = torch.ones_like(x, dtype=torch.bool) if mask is None else _check_mask(mask, x, "x")
    mean = _masked_mean(x, mask)
    n = mask.sum().to(x.dtype)
    var = _masked_mean((x - mean) ** 2, mask) * n / (n - 1).clamp(min=1)
    out = (x - mean) / (var.sqrt() + eps)
    if not shift_mean:
        out = out + mean
    return torch.where(mask, out, torch.zeros_like(out))


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Reward-model loss: -log sigmoid(r_chosen - r_rejected) (Bradley & Terry 1952; Christiano 2017; InstructGPT).

    Under the Bradley-Terry model P(chosen preferred to rejected) = sigmoid(r_chosen - r_rejected); the loss is its
    negative log-likelihood, computed with ``F.logsigmoid`` (no overflow for large margins). Shapes (B,) or any
    shape, the same for both; ``reduction`` in ("mean", "sum", "none").
    """
    _check_pair("r_chosen", r_chosen, "r_rejected", r_rejected)
    _check_reduction(reduction)
    return _reduce(-F.logsigmoid(r_chosen - r_rejected), reduction, None)


def _check_sequence_logps(name: str, x: torch.Tensor) -> None:
    if x.dim() != 1:
        raise ValueError(f"{name} must be (B,), one summed log-probability per sequence, got shape {tuple(x.shape)}; "
                         "for per-token log-probs (B, T), sum over the response tokens first")


def dpo_implicit_rewards(policy_logps: torch.Tensor, ref_logps: torch.Tensor, beta: float) -> torch.Tensor:
    """DPO's implicit reward of a sequence: beta * (log pi(y|x) - log pi_ref(y|x)) (Rafailov et al. 2023). (B,)."""
    _check_pair("policy_logps", policy_logps, "ref_logps", ref_logps)
    _check_sequence_logps("policy_logps", policy_logps)
    check_number("beta", beta, 0.0, math.inf)
    return beta * (policy_logps - ref_logps)


def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor, ref_chosen_logps: torch.Tensor,
             ref_rejected_logps: torch.Tensor, beta: float, reduction: str = "mean") -> torch.Tensor:
    """DPO loss (Rafailov et al. 2023): -log sigmoid(beta * ((pc - rc) - (pr - rr))).

    pc, pr: the policy's summed log-probabilities of the chosen and rejected responses, rc, rr: the frozen
    reference's; all four (B,). It is the Bradley-Terry loss on the implicit rewards beta * (log pi - log pi_ref),
    so it depends only on the difference of the two log-ratios; when policy == reference it is log 2 exactly.
    ``beta`` > 0: a larger beta keeps the policy closer to the reference.
    """
    names = ("policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps", "ref_rejected_logps")
    tensors = (policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    for name, t in zip(names[1:], tensors[1:]):
        _check_pair(names[0], tensors[0], name, t)
    _check_sequence_logps(names[0], policy_chosen_logps)
    check_number("beta", beta, 0.0, math.inf)
    _check_reduction(reduction)
    margin = (policy_chosen_logps - ref_chosen_logps) - (policy_rejected_logps - ref_rejected_logps)  # (B,)
    return _reduce(-F.logsigmoid(beta * margin), reduction, None)


def _check_ppo(logp, old_logp, advantages, clip_eps, mask) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Shared checks; returns the advantages broadcastable to logp's shape and the bool mask (or None)."""
    _check_pair("logp", logp, "old_logp", old_logp)
    _check_tensor("advantages", advantages)
    check_number("clip_eps", clip_eps, 0.0, 1.0)
    if advantages.shape != logp.shape:
        if logp.dim() == 2 and advantages.shape == logp.shape[:1]:
            advantages = advantages.unsqueeze(-1)  # (B,) -> (B, 1), broadcast over T
        else:
            raise ValueError(f"advantages must have the shape of logp {tuple(logp.shape)} or (B,) = "
                             f"({logp.shape[0]},) when logp is (B, T); got {tuple(advantages.shape)}")
    return advantages, (None if mask is None else _check_mask(mask, logp, "logp"))


def ppo_clip_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, clip_eps: float,
                  mask: torch.Tensor | None = None, reduction: str = "mean") -> torch.Tensor:
    """PPO's clipped surrogate, per token (Schulman et al. 2017, as OpenAI baselines ppo2), to minimise.

    ratio = exp(logp - old_logp); loss = max(-A * ratio, -A * clamp(ratio, 1 - eps, 1 + eps)), the negative of
    min(ratio * A, clip(ratio) * A). Once the ratio leaves [1 - eps, 1 + eps] in the direction that A rewards, the
    clipped term wins and the gradient is 0. ``old_logp`` (sampling policy) and ``advantages`` are constants and are
    detached. logp, old_logp: (B, T) or (B,); advantages: logp's shape, or (B,) broadcast over T. With ``mask``,
    "mean" averages over unmasked tokens, "sum" sums them, "none" returns the per-token loss with masked entries 0.
    """
    advantages, mask = _check_ppo(logp, old_logp, advantages, clip_eps, mask)
    _check_reduction(reduction)
    ratio = torch.exp(logp - old_logp.detach())  # (B, T)
    advantages = advantages.detach()
    loss = torch.max(-advantages * ratio, -advantages * ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps))
    return _reduce(loss, reduction, mask)


def ppo_clip_fraction(logp: torch.Tensor, old_logp: torch.Tensor, clip_eps: float,
                      mask: torch.Tensor | None = None) -> torch.Tensor:
    """Diagnostic: the fraction of (unmasked) tokens whose ratio is outside the clip range, |ratio - 1| > eps.

    A 0-d tensor in logp's dtype, without gradient. Values near 0 mean the update barely moved the policy; large
    values (above about 0.2) mean the steps are too big for the trust region.
    """
    _, mask = _check_ppo(logp, old_logp, logp, clip_eps, mask)
    with torch.no_grad():
        clipped = ((torch.exp(logp - old_logp) - 1.0).abs() > clip_eps).to(logp.dtype)
        return clipped.mean() if mask is None else _masked_mean(clipped, mask)


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, clip_eps: float | None = None,
               mask: torch.Tensor | None = None) -> torch.Tensor:
    """Critic loss 0.5 * (values - returns)^2, mean over (unmasked) tokens; optionally clipped as baselines ppo2.

    With ``clip_eps`` (> 0, in the units of the values, not a ratio): v_clip = old_values + clamp(values -
    old_values, -eps, eps) and the loss is 0.5 * max((values - returns)^2, (v_clip - returns)^2), so the critic gets
    no gain from moving further than eps from the values it had when the batch was collected. All three tensors
    share one shape, (B, T) or (B,); ``old_values`` and ``returns`` are detached.
    """
    _check_pair("values", values, "old_values", old_values)
    _check_pair("values", values, "returns", returns)
    if clip_eps is not None:
        check_number("clip_eps", clip_eps, 0.0, math.inf)
    mask = None if mask is None else _check_mask(mask, values, "values")
    returns, old_values = returns.detach(), old_values.detach()
    loss = (values - returns) ** 2
    if clip_eps is not None:
        clipped = old_values + (values - old_values).clamp(-clip_eps, clip_eps)
        loss = torch.max(loss, (clipped - returns) ** 2)
    return 0.5 * _reduce(loss, "mean", mask)


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(policy || ref) from tokens sampled from the policy (Schulman 2020), unreduced.

    With log_ratio = logp - ref_logp (log p(x)/q(x), x ~ p):
    * k1 = log_ratio: unbiased, high variance, negative on some samples;
    * k2 = 0.5 * log_ratio^2: biased (low bias when p and q are close), always >= 0, low variance;
    * k3 = exp(-log_ratio) - 1 + log_ratio = (r - 1) - log r with r = q(x)/p(x): unbiased and always >= 0
      (log r <= r - 1); the estimator of GRPO's KL penalty (DeepSeekMath).

    These estimate the KL's *value*. Differentiating an estimate as a loss is not differentiating the KL (Tang and
    Munos 2025): on samples x ~ p, the gradient of k1 is grad log p(x), whose expectation is 0 (k1 as a loss does
    nothing on average, whatever its sign); the gradient of k3 is (1 - q(x)/p(x)) grad log p(x), whose expectation is
    the gradient of the *forward* KL(ref || policy), not of the KL(policy || ref) that its value estimates. k1 used
    as a reward (through the policy gradient, as the PPO trainer's per-token penalty) follows the gradient of
    KL(policy || ref). ``tests/test_rlhf_losses.py`` checks both facts with exact expectations.
    """
    _check_pair("logp", logp, "ref_logp", ref_logp)
    if kind not in KL_KINDS:
        raise ValueError(f"kind must be one of {KL_KINDS}, got {kind!r}")
    log_ratio = logp - ref_logp
    if kind == "k1":
        return log_ratio
    if kind == "k2":
        return 0.5 * log_ratio ** 2
    return torch.expm1(-log_ratio) + log_ratio


def gae_advantages(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
                   lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) over T response tokens; returns (advantages, returns).

    delta_t = r_t + gamma * V_{t+1} - V_t and A_t = delta_t + gamma * lam * A_{t+1}, computed backwards over t.
    rewards, values, mask: (B, T). ``mask`` marks real tokens as a prefix of each row (right padding): a response
    ends at its last real token, after which V = 0 and A = 0; masked positions get advantage 0 and return 0
    whatever their rewards or values hold. returns = advantages + values (the critic's targets). lam = 1 gives the
    discounted reward-to-go minus V_t; lam = 0 the one-step TD error. Both outputs are detached (targets, not losses).
    """
    _check_pair("rewards", rewards, "values", values)
    if rewards.dim() != 2:
        raise ValueError(f"rewards and values must have shape (B, T), got {tuple(rewards.shape)}")
    mask = _check_mask(mask, rewards, "rewards")
    check_number("gamma", gamma, 0.0, 1.0, closed=True)
    check_number("lam", lam, 0.0, 1.0, closed=True)
    with torch.no_grad():
        zero = torch.zeros_like(rewards)
        r, v = torch.where(mask, rewards, zero), torch.where(mask, values, zero)  # (B, T)
        advantages = torch.zeros_like(rewards)  # (B, T)
        next_value, next_adv = zero[:, 0], zero[:, 0]  # (B,) the value and advantage after the last token: 0
        for t in reversed(range(rewards.shape[1])):
            delta = r[:, t] + gamma * next_value - v[:, t]  # (B,)
            next_adv = torch.where(mask[:, t], delta + gamma * lam * next_adv, zero[:, t])
            advantages[:, t] = next_adv
            next_value = v[:, t]
        return advantages, advantages + v


def group_relative_advantages(rewards: torch.Tensor, group_size: int, scale: bool = True,
                              eps: float = 1e-6) -> torch.Tensor:
    """GRPO's advantage (Shao et al. 2024): each reward minus its group's mean, divided by the group's std + eps.

    rewards: (B,) with B = n_groups * group_size, consecutive entries one group (the completions of one prompt).
    std is torch's default, the unbiased (Bessel-corrected) one, as TRL's GRPOTrainer; DeepSeekMath writes std
    without saying which. A group of equal rewards gets advantage 0 (0 / eps, no NaN): it carries no signal.
    ``scale=False`` returns r - mean only, the variant of Liu et al. 2025 ("Understanding R1-Zero-Like Training",
    Dr. GRPO), which argues that dividing by std biases training towards too easy and too hard prompts. (B,).
    """
    _check_tensor("rewards", rewards)
    if rewards.dim() != 1:
        raise ValueError(f"rewards must have shape (B,), got {tuple(rewards.shape)}")
    group_size = check_int(group_size, "group_size", allowed="an int")  # the range below: it names the batch size
    if group_size < 2 or rewards.shape[0] % group_size:
        raise ValueError(f"group_size must be >= 2 and divide the batch size {rewards.shape[0]}, got {group_size}")
    check_number("eps", eps, 0.0, math.inf)
    if rewards.device.type != "meta" and not bool(torch.isfinite(rewards).all()):  # one sync per batch of rewards
        raise ValueError("rewards contain NaN or inf; it would spread to every advantage of its group: fix the reward")
    groups = rewards.view(-1, group_size)  # (n_groups, group_size)
    centered = groups - groups.mean(dim=1, keepdim=True)
    if scale:
        centered = centered / (groups.std(dim=1, keepdim=True) + eps)
    return centered.reshape(-1)
