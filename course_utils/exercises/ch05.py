"""Checks for chapter 05's exercises (RLHF): the KL-regularised optimal policy over a finite set of responses and
its expected reward and KL, the IPO loss, and RLOO's leave-one-out advantages.

Each exercise asks for something :mod:`course_utils.rlhf` does not provide (the closed-form optimum that DPO starts
from, IPO, RLOO). While the learner's function runs, this module's own references are
switched off, and so are :func:`course_utils.rlhf.losses.group_relative_advantages` (RLOO is k / (k - 1) times its
mean-subtracted rewards) and the library KLs that answer exercise 1b: torch's categorical KL
(``torch.distributions.kl_divergence``), ``torch.nn.functional.kl_div`` (and so ``nn.KLDivLoss``) and the builtin
``torch.kl_div`` under it, and where scipy is already imported ``scipy.stats.entropy``, ``scipy.special.rel_entr`` and
``kl_div``, also under the names the answer's module imported them as (:func:`_library_kls_refused`).
Each check computes the expected value itself with plain code written differently from the reference solution, and
fails through :mod:`course_utils.checks`, whose messages never show the expected value.
``tests/test_exercises_ch05.py`` feeds every check the reference solution, correct answers in other forms, and the
likely wrong answers.

Inputs are float64 CPU tensors drawn from a seeded ``torch.Generator``; answers may be tensors (float32 or float64, any
device), lists or numpy arrays. Tolerances: probabilities and advantages within 1e-6 absolute (float64 work is exact to
~1e-15; the likely mistakes are off by 1e-2 or more); at r / beta ~ 1000 a float32 computation loses ~3e-5 of each
log-probability (float32's spacing near 1000 is 6e-5), so the optimal policy also allows 1e-4 relative.

References: R. Rafailov et al., "Direct Preference Optimization", 2023, eq. 4, and T. Korbak, E. Perez, C. L.
Buckley, "RL with KL penalties is better viewed as Bayesian inference", 2022 (the optimal policy
pi_ref exp(r / beta) / Z); M. G. Azar et al., "A General Theoretical Paradigm to Understand Learning from Human
Preferences", 2023 (IPO); A. Ahmadian et al., "Back to Basics: Revisiting REINFORCE Style Optimization for Learning
from Human Feedback in LLMs", 2024, and W. Kool, H. van Hoof, M. Welling, "Buy 4 REINFORCE Samples, Get a Baseline
for Free!", 2019 (RLOO).

Left out: checks of argument validation (the exercises are about the formulas), contexts x (one prompt, a finite
set of whole responses), per-token versions of any of these.
"""

from __future__ import annotations

import contextlib
import math
import sys
from typing import Any, Callable, Iterator

import torch

from course_utils import checks
from course_utils.device import make_generator


# ---------- exercise 1a: the KL-regularised optimal policy ----------

def _optimal_reference(pi_ref: torch.Tensor, rewards: torch.Tensor, beta: float) -> torch.Tensor:
    support = pi_ref > 0
    logits = torch.full_like(pi_ref, -math.inf)
    logits[support] = pi_ref[support].log() + rewards[support] / beta
    return torch.exp(logits - torch.logsumexp(logits, dim=0))  # (N,)


def _policy_cases() -> list[tuple[str, torch.Tensor, torch.Tensor, float]]:
    d = torch.float64
    g = make_generator(5, "cpu")
    rand_ref = torch.softmax(torch.randn(40, generator=g, dtype=d), dim=0)
    rand_r = torch.randn(40, generator=g, dtype=d)
    holes = rand_ref.clone()
    holes[::4] = 0.0  # a quarter of the responses the reference never says
    holes = holes / holes.sum()
    return [
        ("three responses, beta = 0.5", torch.tensor([0.5, 0.25, 0.25], dtype=d), torch.tensor([0.0, 1.0, 2.0],
                                                                                              dtype=d), 0.5),
        ("three responses, beta = 2", torch.tensor([0.2, 0.7, 0.1], dtype=d), torch.tensor([1.0, -1.0, 0.5],
                                                                                          dtype=d), 2.0),
        ("r / beta near 1000", torch.tensor([0.3, 0.3, 0.4], dtype=d), torch.tensor([1000.0, 999.0, 0.0], dtype=d),
         1.0),
        ("zeros in pi_ref, the best reward on a zero", torch.tensor([0.4, 0.0, 0.6, 0.0], dtype=d),
         torch.tensor([1.0, 50.0, 0.0, 3.0], dtype=d), 0.5),
        ("a very large beta", rand_ref, rand_r, 1e6),
        ("a tiny beta", torch.tensor([0.1, 0.3, 0.2, 0.0, 0.4], dtype=d),
         torch.tensor([0.2, 0.9, 0.5, 1.0, 0.3], dtype=d), 1e-3),
        ("40 random responses, beta = 0.3", rand_ref, rand_r, 0.3),
        ("40 random responses with zeros in pi_ref, beta = 0.05", holes, rand_r * 3, 0.05),
        # r / beta of a response pi_ref never says beats every other by 1000 (float64's exp underflows to 0 below
        # about -745): a constant taken over all responses, unsupported ones included, zeroes every weight
        ("the largest r / beta, by 1000, on a response with pi_ref = 0", torch.tensor([0.5, 0.5, 0.0], dtype=d),
         torch.tensor([0.0, 0.0, 1000.0], dtype=d), 1.0),
    ]


def check_optimal_policy(fn: Callable[[torch.Tensor, torch.Tensor, float], Any]) -> None:
    """``fn(pi_ref (N,), rewards (N,), beta) -> pi* (N,)``: pi*(y) = pi_ref(y) exp(r(y) / beta) / Z."""
    hint = ("pi* is proportional to pi_ref(y) * exp(r(y) / beta) and must sum to 1; exp overflows once its argument "
            "passes ~88 (float32) or ~709 (float64), and multiplying every weight by one constant leaves pi* "
            "unchanged, but if it makes every weight underflow to 0 the sum is 0 and 0 / 0 is NaN; a response with "
            "pi_ref = 0 must keep probability 0")
    for label, pi_ref, rewards, beta in _policy_cases():
        name = f"optimal policy, {label}"
        with _learner_alone(fn):
            raw = fn(pi_ref.clone(), rewards.clone(), beta)
        answer = checks.finite_float_tensor(name, raw, hint)
        expected = _optimal_reference(pi_ref, rewards, beta)
        if answer.shape == expected.shape and (answer[pi_ref == 0] != 0).any():
            raise AssertionError(f"{name}: a response with pi_ref = 0 got probability > 0. {hint}")
        checks.check_close(name, answer, expected, atol=1e-6, rtol=1e-4, hint=hint)


# ---------- exercise 1b: expected reward and KL of a policy ----------

def _kl_reference(pi: torch.Tensor, pi_ref: torch.Tensor, rewards: torch.Tensor) -> tuple[float, float]:
    reward = sum(float(p) * float(r) for p, r in zip(pi, rewards))
    kl = sum(float(p) * math.log(float(p) / float(q)) for p, q in zip(pi, pi_ref) if p > 0)
    return reward, kl


def check_kl_and_reward(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], Any]) -> None:
    """``fn(pi (N,), pi_ref (N,), rewards (N,)) -> (expected reward under pi, KL(pi || pi_ref))`` in nats, with
    0 log 0 = 0. ``pi`` is zero wherever ``pi_ref`` is (otherwise the KL is infinite); the cases include responses
    with pi = pi_ref = 0, as the notebook says, so a ratio pi / pi_ref must not reach the sum there (0 / 0 = NaN).

    Switched off meanwhile (:func:`_learner_alone`): torch's ``kl_divergence`` of categoricals, ``F.kl_div`` and the
    builtin ``torch.kl_div`` under it, ``scipy.stats.entropy``, ``scipy.special.rel_entr`` and ``scipy.special.kl_div``.
    The builtin and the two NumPy ufuncs cannot have their code swapped: the names bound to them are, in ``torch``,
    ``scipy.special`` and the answer's own module, so ``from scipy.special import rel_entr`` in the notebook is refused
    too, while a reference kept elsewhere (another module, a list) still reaches them."""
    hint = ("the expected reward averages r under pi (not under pi_ref); KL(pi || pi_ref) = sum over y of "
            "pi(y) * log(pi(y) / pi_ref(y)) with the natural log, and a term with pi(y) = 0 counts as 0 (leave it "
            "out, e.g. with torch.where, rather than computing 0 * log 0); where pi(y) and pi_ref(y) are both 0, "
            "pi / pi_ref is 0 / 0 = NaN, and neither 0 * NaN nor torch.xlogy(0, NaN) gives 0 back; return the pair "
            "in that order")
    d = torch.float64
    pi_ref = torch.tensor([0.4, 0.0, 0.3, 0.2, 0.1], dtype=d)
    rewards = torch.tensor([1.0, 9.0, -0.5, 2.0, 0.0], dtype=d)
    g = make_generator(6, "cpu")
    rand_ref = torch.softmax(torch.randn(30, generator=g, dtype=d), dim=0)
    rand_r = torch.randn(30, generator=g, dtype=d)
    cases = [
        ("pi equal to pi_ref", pi_ref, pi_ref, rewards),
        ("a hand-made pi", torch.tensor([0.1, 0.0, 0.2, 0.6, 0.1], dtype=d), pi_ref, rewards),
        ("pi with zeros where pi_ref is not zero", torch.tensor([0.0, 0.0, 0.5, 0.5, 0.0], dtype=d), pi_ref,
         rewards),
        ("the optimal policy at beta = 0.5", _optimal_reference(pi_ref, rewards, 0.5), pi_ref, rewards),
        ("the optimal policy of 30 random responses at beta = 0.02", _optimal_reference(rand_ref, rand_r, 0.02),
         rand_ref, rand_r),
    ]
    for label, pi, ref, r in cases:
        with _learner_alone(fn):
            answer = fn(pi.clone(), ref.clone(), r.clone())
        if hasattr(answer, "shape") and not isinstance(answer, (tuple, list)):   # a tensor or array of the two
            answer = tuple(answer.reshape(-1)) if math.prod(answer.shape) == 2 else answer
        if not isinstance(answer, (tuple, list)) or len(answer) != 2:
            shape = f" of shape {tuple(answer.shape)}" if hasattr(answer, "shape") else ""
            raise AssertionError(f"{label}: return a pair (expected_reward, kl), as a tuple, a list or a tensor of two "
                                 f"numbers; got {type(answer).__name__}{shape}. {hint}")
        expected_reward, expected_kl = _kl_reference(pi, ref, r)
        for what, value, expected in (("expected reward", answer[0], expected_reward), ("KL", answer[1], expected_kl)):
            t = checks.as_float_tensor(f"{what}, {label}", value, hint)
            if t.numel() != 1:
                raise AssertionError(f"{what}, {label}: expected one number, got shape {tuple(t.shape)}. {hint}")
            if not torch.isfinite(t).all():
                raise AssertionError(f"{what}, {label}: your answer is NaN or inf. {hint}")
            checks.check_close(f"{what}, {label}", float(t), expected, atol=1e-6, rtol=1e-6, hint=hint,
                               direction=False)  # no "too large/small": a function could bisect on the messages


# ---------- exercise 2: the IPO loss ----------

def _ipo_reference(pc: torch.Tensor, pr: torch.Tensor, rc: torch.Tensor, rr: torch.Tensor,
                   tau: float) -> torch.Tensor:
    h = (pc - pr) - (rc - rr)  # (B,) log [pi(y_w) pi_ref(y_l) / (pi(y_l) pi_ref(y_w))]
    return ((h - 1 / (2 * tau)) ** 2).sum() / h.numel()


def _ipo_cases() -> list[tuple[str, tuple[torch.Tensor, ...], float]]:
    d = torch.float64
    hand = (torch.tensor([-1.0, -2.0], dtype=d), torch.tensor([-3.0, -1.5], dtype=d),
            torch.tensor([-1.5, -2.0], dtype=d), torch.tensor([-2.5, -1.0], dtype=d))
    g = make_generator(7, "cpu")
    rand = tuple(-(torch.rand(16, generator=g, dtype=d) * 30 + 1) for _ in range(4))  # (B,) summed log-probs
    close = (rand[0], rand[1], rand[0] + 0.1 * torch.randn(16, generator=g, dtype=d),
             rand[1] + 0.1 * torch.randn(16, generator=g, dtype=d))  # a policy near its reference
    return [("two hand pairs, tau = 0.5", hand, 0.5), ("16 random pairs, tau = 0.1", rand, 0.1),
            ("16 random pairs, tau = 2", rand, 2.0), ("a policy near its reference, tau = 0.25", close, 0.25)]


def check_ipo_loss(fn: Callable[..., Any]) -> None:
    """``fn(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, tau) -> loss``: the
    mean over pairs of (h - 1 / (2 tau))^2, h the chosen log-ratio minus the rejected log-ratio; differentiable."""
    hint = ("h = (log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l)) for each pair; IPO regresses h "
            "onto the target 1 / (2 tau) with a squared error, averaged (not summed) over the pairs")
    grad_hint = ("the loss must stay a torch tensor computed from the inputs with torch operations, so autograd can "
                 "differentiate it: no .item(), .detach(), .numpy(), float(...) or torch.tensor(...) on the way")
    for label, (pc, pr, rc, rr), tau in _ipo_cases():
        name = f"IPO loss, {label}"
        pc_in, pr_in = pc.clone().requires_grad_(True), pr.clone().requires_grad_(True)
        with _learner_alone(fn):  # `* 1`: not leaves, as log-probs in training are, so in-place work is allowed
            loss = fn(pc_in * 1, pr_in * 1, rc.clone(), rr.clone(), tau)
        value = checks.as_float_tensor(name, loss, hint)
        if value.numel() != 1:
            raise AssertionError(f"{name}: expected one number (the loss over the batch), got shape "
                                 f"{tuple(value.shape)}. {hint}")
        expected = _ipo_reference(pc, pr, rc, rr, tau)
        checks.check_close(name, float(value), float(expected), atol=1e-6, rtol=1e-6, hint=hint)
        if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
            raise AssertionError(f"{name}: the value is right but no gradient reaches policy_chosen_logps. "
                                 f"{grad_hint}")
        grads = torch.autograd.grad(loss.sum(), (pc_in, pr_in), allow_unused=True)
        if any(gr is None for gr in grads):
            raise AssertionError(f"{name}: autograd finds no gradient path from the loss to both policy log-probs. "
                                 f"{grad_hint}")
        ref_in = pc.clone().requires_grad_(True), pr.clone().requires_grad_(True)
        expected_grads = torch.autograd.grad(_ipo_reference(*ref_in, rc, rr, tau), ref_in)
        for which, gr, exp in zip(("policy_chosen_logps", "policy_rejected_logps"), grads, expected_grads):
            checks.check_close(f"gradient with respect to {which}, {label}", gr, exp, atol=1e-6, rtol=1e-6,
                               hint=hint)


# ---------- exercise 3: RLOO advantages ----------

def _rloo_reference(rewards: torch.Tensor, k: int) -> torch.Tensor:
    out = torch.empty_like(rewards)
    for start in range(0, rewards.numel(), k):
        group = rewards[start:start + k].tolist()
        for j, r in enumerate(group):
            others = group[:j] + group[j + 1:]
            out[start + j] = r - sum(others) / len(others)
    return out  # (B,)


def check_rloo_advantages(fn: Callable[[torch.Tensor, int], Any]) -> None:
    """``fn(rewards (B,), k) -> advantages (B,)``: each reward minus the mean of the other k - 1 rewards of its
    group; groups are consecutive blocks of k (the k samples of one prompt)."""
    hint = ("the groups are consecutive blocks of k rewards (entries 0..k-1 are the first prompt's samples); each "
            "sample's baseline is the mean of the OTHER k - 1 rewards of its own group, not including itself, and "
            "nothing is divided by a standard deviation")
    d = torch.float64
    g = make_generator(8, "cpu")
    rand = torch.randn(24, generator=g, dtype=d)
    cases = [
        ("two groups of 4", torch.tensor([1.0, 0.0, 0.0, 1.0, 3.0, 1.0, 2.0, 2.0], dtype=d), 4),
        ("k = 2", torch.tensor([1.0, 0.0, 0.5, 0.5, -1.0, 2.0], dtype=d), 2),
        ("a group of equal rewards", torch.tensor([0.7, 0.7, 0.7, 1.0, 0.0, 0.0], dtype=d), 3),
        ("24 random rewards, k = 6", rand, 6),
        ("24 random rewards, k = 3", rand, 3),
        ("24 random rewards in one group", rand, 24),
        ("0/1 rewards, k = 5", (torch.rand(20, generator=g, dtype=d) < 0.4).to(d), 5),
    ]
    for label, rewards, k in cases:
        name = f"RLOO advantages, {label}"
        with _learner_alone(fn):
            raw = fn(rewards.clone(), k)
        answer = checks.finite_float_tensor(name, raw, hint)
        checks.check_close(name, answer, _rloo_reference(rewards, k), atol=1e-6, rtol=1e-6, hint=hint)


@contextlib.contextmanager
def _learner_alone(fn: Callable) -> Iterator[None]:
    """Switch off, while the learner's ``fn`` runs, what would answer an exercise for the learner: this module's
    references, GRPO's advantages, ``F.kl_div`` and the builtin ``torch.kl_div`` under it, scipy's KLs
    (:func:`_library_kls_refused`) and torch's categorical KL, which the notebook shows
    (``kl_divergence(Categorical(...), Categorical(...))`` answers exercise 1b's 0 log 0 and 0 / 0 terms by itself).
    ``kl_divergence`` looks the function up in a registry, so the registered function object is switched off (its
    code swapped), which also blocks the one-hot categorical KL that calls it; everything is restored when the block
    ends, also when it raises."""
    from torch.distributions import kl as torch_kl

    from course_utils.rlhf.losses import group_relative_advantages

    with contextlib.ExitStack() as stack:
        entropy = _library_kls_refused(stack, fn)
        stack.enter_context(checks.OpsRefused(("kl_div",)))  # torch.ops.aten.kl_div, torch._C's: every route
        stack.enter_context(checks.package_functions_switched_off(
            _optimal_reference, _kl_reference, _ipo_reference, _rloo_reference, group_relative_advantages,
            torch_kl._kl_categorical_categorical, torch.nn.functional.kl_div, *entropy))
        yield


def _library_kls_refused(stack: contextlib.ExitStack, fn: Callable) -> tuple[Callable, ...]:
    """Refuse, until ``stack`` closes (also after a raise), what cannot be switched off by swapping code: the builtin
    ``torch.kl_div`` and, where scipy is already imported (nothing is imported to look; the checks call the learner
    once per case, each time with a fresh look, so one imported inside the learner's function escapes that call, not
    the next), the ufuncs ``scipy.special.rel_entr`` and ``kl_div``, under every name that ``torch``,
    ``scipy.special`` (and ``_ufuncs``) or ``fn``'s module (``from scipy.special import rel_entr`` in the notebook)
    binds to them (:func:`course_utils.checks.bindings_refused`); return ``scipy.stats.entropy``'s function to switch
    off."""
    special = sys.modules.get("scipy.special")
    ufuncs = {f"scipy.special.{name}": getattr(special, name) for name in ("rel_entr", "kl_div")
              if special is not None and hasattr(special, name)}
    checks.bindings_refused(stack, {"torch.kl_div": torch.kl_div, **ufuncs}, torch, special,
                            sys.modules.get("scipy.special._ufuncs"), getattr(fn, "__globals__", None))
    return checks.library_functions("scipy.stats", "entropy", loaded_only=True)
