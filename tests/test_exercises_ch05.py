"""Chapter 05's exercise checks accept the reference solution and other correct forms, reject likely wrong answers
without revealing the expected value, and the solutions satisfy the identities the notebook asks about."""

import math

import numpy as np
import pytest
import torch
from torch.distributions import Categorical, OneHotCategorical, kl_divergence

from course_utils.exercises import ch05 as ex
from course_utils.rlhf.losses import dpo_loss, group_relative_advantages
from course_utils.solutions import ch05 as sol


from exercise_helpers import assert_hidden, rejects, refuses_reference_then_passes  # noqa: E402


# ---------- exercise 1a: the optimal policy ----------

def expected_policies():
    return [float(x) for _, p, r, b in ex._policy_cases()[:4] for x in sol.optimal_policy(p, r, b)]


def test_optimal_policy_accepts_solution_and_other_forms():
    ex.check_optimal_policy(sol.optimal_policy)
    ex.check_optimal_policy(lambda p, r, b: sol.optimal_policy(p, r, b).tolist())
    ex.check_optimal_policy(lambda p, r, b: sol.optimal_policy(p, r, b).numpy())
    ex.check_optimal_policy(lambda p, r, b: torch.softmax(torch.log(p) + r / b, dim=0))  # float64, torch's softmax

    def float32_max_of_logits(p, r, b):  # float32 throughout, the max subtracted after adding log pi_ref
        logits = torch.log(p.float()) + r.float() / b
        w = torch.exp(logits - logits.max())
        return w / w.sum()

    ex.check_optimal_policy(float32_max_of_logits)


def softmax_without_ref(p, r, b):
    return torch.softmax(r / b, dim=0)


def beta_times_reward(p, r, b):
    return torch.softmax(torch.log(p) + r * b, dim=0)


def unnormalised(p, r, b):
    return p * torch.exp(r / b - (r / b).max())


def naive_overflow(p, r, b):
    w = p * torch.exp(r / b)
    return w / w.sum()


def max_over_all_responses(p, r, b):  # stabilised with the max of r / beta over every response, unsupported included
    w = p * torch.exp(r / b - (r / b).max())
    return w / w.sum()


def eps_in_log(p, r, b):  # keeps a little mass on responses the reference never says
    return torch.softmax(torch.log(p + 1e-12) + r / b, dim=0)


@pytest.mark.parametrize("wrong", [softmax_without_ref, beta_times_reward, unnormalised, naive_overflow,
                                   max_over_all_responses, eps_in_log])
def test_optimal_policy_rejects_likely_mistakes(wrong):
    assert_hidden(rejects(ex.check_optimal_policy, wrong), expected_policies())


def test_overflow_gets_a_hint_that_does_not_give_the_method_away():
    message = rejects(ex.check_optimal_policy, naive_overflow)
    assert "NaN or inf" in message and "overflows" in message and "one constant" in message
    assert "logarithm" not in message and "maximum" not in message


def test_optimal_policy_limits():
    p = torch.tensor([0.1, 0.3, 0.2, 0.0, 0.4], dtype=torch.float64)
    r = torch.tensor([0.2, 0.9, 0.5, 1.0, 0.3], dtype=torch.float64)
    assert torch.allclose(sol.optimal_policy(p, r, 1e8), p)
    assert int(sol.optimal_policy(p, r, 1e-3).argmax()) == 1  # argmax of r among supported responses
    assert sol.optimal_policy(p, r, 1e-3)[3] == 0


# ---------- exercise 1b: expected reward and KL ----------

def test_kl_and_reward_accepts_solution_and_other_forms():
    ex.check_kl_and_reward(sol.kl_and_reward)
    ex.check_kl_and_reward(lambda pi, q, r: tuple(float(x) for x in sol.kl_and_reward(pi, q, r)))
    ex.check_kl_and_reward(lambda pi, q, r: [np.float64(x) for x in sol.kl_and_reward(pi, q, r)])
    ex.check_kl_and_reward(lambda pi, q, r: torch.stack([torch.as_tensor(x) for x in sol.kl_and_reward(pi, q, r)]))
    ex.check_kl_and_reward(lambda pi, q, r: np.array([float(x) for x in sol.kl_and_reward(pi, q, r)]))
    ex.check_kl_and_reward(lambda pi, q, r: torch.tensor([[float(x) for x in sol.kl_and_reward(pi, q, r)]]))  # (1, 2)

    def by_mask(pi, q, r):
        keep = pi > 0
        return (pi @ r).reshape(1), (pi[keep] * (pi[keep] / q[keep]).log()).sum()

    ex.check_kl_and_reward(by_mask)


def naive_kl(pi, q, r):
    return (pi * r).sum(), (pi * torch.log(pi / q)).sum()


def reversed_kl(pi, q, r):
    keep = q > 0
    return (pi * r).sum(), (q[keep] * (q[keep] / pi[keep].clamp_min(1e-300)).log()).sum()


def reward_under_ref(pi, q, r):
    return (q * r).sum(), sol.kl_and_reward(pi, q, r)[1]


def kl_in_bits(pi, q, r):
    reward, kl = sol.kl_and_reward(pi, q, r)
    return reward, kl / math.log(2)


def swapped(pi, q, r):
    return tuple(reversed(sol.kl_and_reward(pi, q, r)))


def swapped_in_a_tensor(pi, q, r):
    return torch.stack([torch.as_tensor(x) for x in swapped(pi, q, r)])


def three_numbers_in_a_tensor(pi, q, r):
    return torch.stack([torch.as_tensor(x) for x in (*sol.kl_and_reward(pi, q, r), 0.0)])


@pytest.mark.parametrize("wrong", [naive_kl, reversed_kl, reward_under_ref, kl_in_bits, swapped, swapped_in_a_tensor,
                                   three_numbers_in_a_tensor])
def test_kl_and_reward_rejects_likely_mistakes(wrong):
    p = torch.tensor([0.4, 0.0, 0.3, 0.2, 0.1], dtype=torch.float64)
    r = torch.tensor([1.0, 9.0, -0.5, 2.0, 0.0], dtype=torch.float64)
    pi = torch.tensor([0.1, 0.0, 0.2, 0.6, 0.1], dtype=torch.float64)
    assert_hidden(rejects(ex.check_kl_and_reward, wrong), sol.kl_and_reward(pi, p, r))


def test_kl_and_reward_names_the_shape_of_a_tensor_that_is_not_a_pair():
    message = rejects(ex.check_kl_and_reward, three_numbers_in_a_tensor)
    assert "got Tensor of shape (3,)" in message


def xlogy_of_ratio(pi, q, r):
    return (pi * r).sum(), torch.xlogy(pi, pi / q).sum()


@pytest.mark.parametrize("zero_over_zero", [xlogy_of_ratio])  # F.kl_div(q.log(), pi) too, but it is switched off
def test_kl_and_reward_names_zero_over_zero_where_pi_and_pi_ref_are_both_zero(zero_over_zero):
    # idiomatic forms that give 0 / 0 = NaN where pi = pi_ref = 0 (the exercise says such terms occur): rejected,
    # with a hint that names the cause
    message = rejects(ex.check_kl_and_reward, zero_over_zero)
    assert "NaN" in message and "0 / 0" in message and "both 0" in message


def torch_categorical_kl(pi, q, r):  # torch's KL of two categoricals handles 0 log 0 and 0 / 0 by itself
    return (pi * r).sum(), kl_divergence(Categorical(probs=pi), Categorical(probs=q))


def torch_one_hot_categorical_kl(pi, q, r):  # the one-hot KL is registered separately but calls the categorical one
    return (pi * r).sum(), kl_divergence(OneHotCategorical(probs=pi), OneHotCategorical(probs=q))


@pytest.mark.parametrize("library_answer", [torch_categorical_kl, torch_one_hot_categorical_kl])
def test_kl_and_reward_refuses_torch_kl_divergence_and_restores_it(library_answer):
    p = torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64)
    q = torch.tensor([0.25, 0.5, 0.25], dtype=torch.float64)
    before = kl_divergence(Categorical(probs=p), Categorical(probs=q))
    library_answer(q, q, q)  # the call works outside the check (and fills kl_divergence's dispatch cache)
    message = rejects(ex.check_kl_and_reward, library_answer)
    assert "switched off" in message and "_kl_categorical_categorical" in message
    # restored after the refusal (an error inside the block): the library works again and a hand-written answer passes
    assert torch.equal(kl_divergence(Categorical(probs=p), Categorical(probs=q)), before)
    assert abs(float(before) - 0.5 * math.log(2)) < 1e-12
    ex.check_kl_and_reward(sol.kl_and_reward)

    def hand_written(pi, q, r):
        keep = pi > 0
        return float((pi * r).sum()), sum(float(a) * math.log(float(a) / float(b)) for a, b in zip(pi[keep], q[keep]))

    ex.check_kl_and_reward(hand_written)


def kl_div_of_clamped_logs(pi, q, r):  # F.kl_div, the zeros of pi_ref kept finite
    return (pi * r).sum(), torch.nn.functional.kl_div(q.clamp_min(1e-300).log(), pi, reduction="sum")


def kl_div_loss_module(pi, q, r):  # nn.KLDivLoss calls F.kl_div
    return (pi * r).sum(), torch.nn.KLDivLoss(reduction="sum")(q.clamp_min(1e-300).log(), pi)


def kl_div_builtin(pi, q, r):  # torch.kl_div, the builtin under F.kl_div (reduction 2 is "sum")
    return (pi * r).sum(), torch.kl_div(q.clamp_min(1e-300).log(), pi, 2)


def scipy_stats_entropy(pi, q, r):  # entropy(pk, qk) is KL(pk || qk) in nats
    import scipy.stats
    return (pi * r).sum(), float(scipy.stats.entropy(pi.numpy(), q.numpy()))


def scipy_special_rel_entr(pi, q, r):  # a ufunc: its module attribute is what the check swaps
    import scipy.special
    return (pi * r).sum(), float(scipy.special.rel_entr(pi.numpy(), q.numpy()).sum())


def scipy_special_kl_div(pi, q, r):  # x log(x / y) - x + y, which sums to the KL of two distributions
    import scipy.special
    return (pi * r).sum(), float(scipy.special.kl_div(pi.numpy(), q.numpy()).sum())


@pytest.mark.parametrize("library_answer, name", [
    (kl_div_of_clamped_logs, "torch.nn.functional.kl_div"), (kl_div_loss_module, "torch.nn.functional.kl_div"),
    (kl_div_builtin, "torch.kl_div"),
    (scipy_stats_entropy, "scipy.stats._entropy.entropy"), (scipy_special_rel_entr, "scipy.special.rel_entr"),
    (scipy_special_kl_div, "scipy.special.kl_div")])
def test_kl_and_reward_refuses_library_kls_and_restores_them(library_answer, name):
    if name.startswith("scipy"):
        pytest.importorskip("scipy.stats")
    p = torch.tensor([0.4, 0.0, 0.3, 0.2, 0.1], dtype=torch.float64)
    r = torch.tensor([1.0, 9.0, -0.5, 2.0, 0.0], dtype=torch.float64)
    pi = torch.tensor([0.1, 0.0, 0.2, 0.6, 0.1], dtype=torch.float64)

    def right(answer):
        return all(abs(float(a) - float(b)) < 1e-9 for a, b in zip(answer, sol.kl_and_reward(pi, p, r)))

    assert right(library_answer(pi, p, r))  # the library call is right outside the check...
    message = rejects(ex.check_kl_and_reward, library_answer)  # ... refused by it ...
    assert "switched off" in message and name in message, message
    assert right(library_answer(pi, p, r))  # ... and restored afterwards, when a right answer passes
    ex.check_kl_and_reward(sol.kl_and_reward)


def test_optimal_policy_maximises_the_regularised_objective():
    # the identity the notebook asks about: E_pi*[r] - beta KL(pi* || pi_ref) = beta log Z, and no pi does better
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(12, generator=g, dtype=torch.float64), dim=0)
    r = torch.randn(12, generator=g, dtype=torch.float64)
    beta = 0.7
    reward, kl = sol.kl_and_reward(sol.optimal_policy(p, r, beta), p, r)
    log_z = torch.logsumexp(torch.log(p) + r / beta, dim=0)
    assert torch.isclose(reward - beta * kl, beta * log_z)
    for _ in range(20):
        other = torch.softmax(torch.randn(12, generator=g, dtype=torch.float64), dim=0)
        reward_o, kl_o = sol.kl_and_reward(other, p, r)
        assert reward_o - beta * kl_o < reward - beta * kl


# ---------- exercise 2: IPO ----------

def expected_ipo():
    return [float(sol.ipo_loss(*t, tau)) for _, t, tau in ex._ipo_cases()]


def test_ipo_accepts_solution_and_other_forms():
    ex.check_ipo_loss(sol.ipo_loss)

    def log_ratio_form(pc, pr, rc, rr, tau):  # h as one log of a ratio of ratios, float32, shape (1,)
        h = (pc.float() + rr.float()) - (pr.float() + rc.float())
        return torch.mean(torch.square(h - 0.5 / tau)).reshape(1)

    ex.check_ipo_loss(log_ratio_form)

    def detached_reference(pc, pr, rc, rr, tau):  # the frozen reference may be detached
        return sol.ipo_loss(pc, pr, rc.detach(), rr.detach(), tau)

    ex.check_ipo_loss(detached_reference)


def as_dpo(pc, pr, rc, rr, tau):
    return dpo_loss(pc, pr, rc, rr, beta=tau)


def summed(pc, pr, rc, rr, tau):
    return sol.ipo_loss(pc, pr, rc, rr, tau) * pc.numel()


def one_over_tau(pc, pr, rc, rr, tau):
    return sol.ipo_loss(pc, pr, rc, rr, tau / 2)


def absolute(pc, pr, rc, rr, tau):
    h = (pc - rc) - (pr - rr)
    return (h - 1 / (2 * tau)).abs().mean()


def sign_flipped(pc, pr, rc, rr, tau):
    return sol.ipo_loss(pr, pc, rr, rc, tau)


def per_pair(pc, pr, rc, rr, tau):
    h = (pc - rc) - (pr - rr)
    return (h - 1 / (2 * tau)) ** 2


@pytest.mark.parametrize("wrong", [as_dpo, summed, one_over_tau, absolute, sign_flipped, per_pair])
def test_ipo_rejects_likely_mistakes(wrong):
    assert_hidden(rejects(ex.check_ipo_loss, wrong), expected_ipo())


def detached(pc, pr, rc, rr, tau):
    return sol.ipo_loss(pc.detach(), pr.detach(), rc, rr, tau)


def with_numpy(pc, pr, rc, rr, tau):
    h = (pc.detach().numpy() - rc.numpy()) - (pr.detach().numpy() - rr.numpy())
    return float(np.mean((h - 1 / (2 * tau)) ** 2))


def rewrapped(pc, pr, rc, rr, tau):
    return torch.tensor(sol.ipo_loss(pc, pr, rc, rr, tau).item(), requires_grad=True)


@pytest.mark.parametrize("wrong", [detached, with_numpy, rewrapped])
def test_ipo_without_gradient_gets_the_autograd_hint(wrong):
    message = rejects(ex.check_ipo_loss, wrong)
    assert "autograd" in message and "gradient" in message
    assert_hidden(message, expected_ipo())


def test_ipo_hand_value():
    t = [torch.tensor(v, dtype=torch.float64) for v in ([-1.0, -2.0], [-3.0, -1.5], [-1.5, -2.0], [-2.5, -1.0])]
    assert float(sol.ipo_loss(*t, 0.5)) == pytest.approx(0.125)  # h = (1, 0.5), target 1


# ---------- exercise 3: RLOO ----------

def expected_rloo():
    t = torch.tensor([1.0, 0.0, 0.0, 1.0, 3.0, 1.0, 2.0, 2.0], dtype=torch.float64)
    return sol.rloo_advantages(t, 4).tolist()


def test_rloo_accepts_solution_and_other_forms():
    ex.check_rloo_advantages(sol.rloo_advantages)
    ex.check_rloo_advantages(lambda r, k: sol.rloo_advantages(r, k).tolist())
    ex.check_rloo_advantages(lambda r, k: sol.rloo_advantages(r.float(), k))
    ex.check_rloo_advantages(lambda r, k: k / (k - 1) * (r.view(-1, k) - r.view(-1, k).mean(1, keepdim=True)).view(-1))


def test_rloo_refuses_the_package_grpo_advantages_and_restores_them():
    r = torch.arange(8, dtype=torch.float64)
    before = group_relative_advantages(r, 4, scale=False)
    assert "switched off" in rejects(ex.check_rloo_advantages,
                                     lambda r, k: k / (k - 1) * group_relative_advantages(r, k, scale=False))
    assert torch.equal(group_relative_advantages(r, 4, scale=False), before)


def grpo_unscaled(r, k):
    return group_relative_advantages(r, k, scale=False)


def grpo_scaled(r, k):
    return group_relative_advantages(r, k, scale=True)


def batch_mean(r, k):
    return r - (r.sum() - r) / (r.numel() - 1)


def strided(r, k):
    cols = r.view(k, -1)  # (k, n_groups): group j holds entries j, j + n_groups, ...
    return (cols - (cols.sum(0, keepdim=True) - cols) / (k - 1)).reshape(-1)


def divided_by_k(r, k):
    g = r.view(-1, k)
    return (g - (g.sum(1, keepdim=True) - g) / k).reshape(-1)


@pytest.mark.parametrize("wrong", [grpo_unscaled, grpo_scaled, batch_mean, strided, divided_by_k])
def test_rloo_rejects_likely_mistakes(wrong):
    assert_hidden(rejects(ex.check_rloo_advantages, wrong), expected_rloo())


def test_rloo_hand_values():
    t = torch.tensor([1.0, 0.0, 0.5, 0.5, -1.0, 2.0], dtype=torch.float64)
    assert sol.rloo_advantages(t, 2).tolist() == [1.0, -1.0, 0.0, 0.0, -3.0, 3.0]


@pytest.mark.parametrize("check, via_reference, right", [
    (ex.check_optimal_policy, lambda p, r, b: ex._optimal_reference(p, r, b), sol.optimal_policy),
    (ex.check_kl_and_reward, lambda p, q, r: ex._kl_reference(p, q, r), sol.kl_and_reward),
    (ex.check_ipo_loss, lambda pc, pr, rc, rr, tau: ex._ipo_reference(pc, pr, rc, rr, tau), sol.ipo_loss),
    (ex.check_rloo_advantages, lambda r, k: ex._rloo_reference(r, k), sol.rloo_advantages),
], ids=["optimal_policy", "kl_and_reward", "ipo", "rloo"])
def test_checks_refuse_their_own_reference_and_restore_it(check, via_reference, right):
    refuses_reference_then_passes(check, via_reference, right)


# ---------- added by the mutation audit: near misses inside a loosened tolerance, and answers that work in place ----

def floor_for_safety(p, r, b):  # a floor "for numerical safety": responses pi_ref never says get 1e-9
    w = sol.optimal_policy(p, r, b).clamp_min(1e-9)
    return w / w.sum()


def negligible_dropped(p, r, b):  # responses below 1e-5 dropped and the rest renormalised: ~7e-6 off on 40 responses
    w = sol.optimal_policy(p, r, b)
    w = torch.where(w < 1e-5, torch.zeros_like(w), w)
    return w / w.sum()


def in_bfloat16(p, r, b):  # the right numbers rounded to bfloat16: ~2e-3 relative
    return sol.optimal_policy(p, r, b).to(torch.bfloat16)


@pytest.mark.parametrize("wrong", [floor_for_safety, negligible_dropped, in_bfloat16])
def test_optimal_policy_rejects_near_misses(wrong):
    assert_hidden(rejects(ex.check_optimal_policy, wrong), expected_policies())


def test_optimal_policy_names_mass_on_a_response_pi_ref_never_says():
    assert "pi_ref = 0 got probability > 0" in rejects(ex.check_optimal_policy, floor_for_safety)


def test_checks_accept_answers_that_work_in_place():
    def policy_in_place(p, r, b):  # overwrites pi_ref with pi*
        p.log_().add_(r / b)
        return p.sub_(p.logsumexp(0)).exp_()

    def rloo_in_place(r, k):  # overwrites the rewards with the advantages
        g = r.view(-1, k)
        g.sub_((g.sum(1, keepdim=True) - g) / (k - 1))
        return r

    def ipo_in_place(pc, pr, rc, rr, tau):  # overwrites the policy log-probs with the log-ratios
        pc -= rc
        pr -= rr
        return ((pc - pr - 1 / (2 * tau)) ** 2).mean()

    ex.check_optimal_policy(policy_in_place)
    ex.check_rloo_advantages(rloo_in_place)
    ex.check_ipo_loss(ipo_in_place)


def test_kl_and_reward_rejects_a_triple_and_a_safe_log_epsilon():
    def with_objective(pi, q, r):  # a third entry: the exercise asks for the pair
        reward, kl = sol.kl_and_reward(pi, q, r)
        return reward, kl, reward - kl

    def eps_in_log(pi, q, r):  # log((pi + 1e-6) / (q + 1e-6)): no NaN, but up to 6.5e-6 off
        return (pi * r).sum(), (pi * torch.log((pi + 1e-6) / (q + 1e-6))).sum()

    assert "pair" in rejects(ex.check_kl_and_reward, with_objective)
    rejects(ex.check_kl_and_reward, eps_in_log)


def rejected_branch_detached(pc, pr, rc, rr, tau):  # a gradient reaches the chosen log-probs only
    return sol.ipo_loss(pc, pr.detach(), rc, rr, tau)


def zero_gradient(pc, pr, rc, rr, tau):  # the value of detached inputs, kept in the graph by a zero term
    return sol.ipo_loss(pc.detach(), pr.detach(), rc, rr, tau) + 0 * (pc.sum() + pr.sum())


def test_ipo_checks_the_gradient_itself():
    assert "autograd" in rejects(ex.check_ipo_loss, rejected_branch_detached)
    assert "gradient with respect to policy_chosen_logps" in rejects(ex.check_ipo_loss, zero_gradient)


def _cell(source):
    """The function ``answer`` defined in a namespace of its own, as a notebook cell defines it."""
    namespace = {}
    exec(source, namespace)
    return namespace


@pytest.mark.parametrize("imported, call", [
    ("from scipy.special import rel_entr", "rel_entr"), ("from scipy.special import kl_div", "kl_div"),
    ("from scipy.special import rel_entr as relative_entropy", "relative_entropy"),
    ("from scipy.special._ufuncs import rel_entr", "rel_entr")])
def test_kl_and_reward_refuses_scipy_ufuncs_imported_by_name_and_restores_the_name(imported, call):
    special = pytest.importorskip("scipy.special")
    cell = _cell(f"{imported}\n"
                 "def answer(pi, q, r):\n"
                 f"    return (pi * r).sum(), float({call}(pi.numpy(), q.numpy()).sum())\n")
    ufunc = cell[call]
    assert ufunc in (special.rel_entr, special.kl_div)
    message = rejects(ex.check_kl_and_reward, cell["answer"])
    assert "switched off" in message and f"scipy.special.{ufunc.__name__}" in message, message
    # the refusal raised inside the learner's function; afterwards its name is bound to the ufunc again, and so are
    # scipy's attributes, and a right answer passes
    assert cell[call] is ufunc and getattr(special, ufunc.__name__) is ufunc
    assert getattr(special._ufuncs, ufunc.__name__) is ufunc
    ex.check_kl_and_reward(sol.kl_and_reward)


@pytest.mark.parametrize("route", [lambda a, b: torch.ops.aten.kl_div(a, b, 2),
                                   lambda a, b: torch._C._VariableFunctions.kl_div(a, b, 2),
                                   lambda a, b: torch.ops.aten.kl_div.default(a, b, 2)])
def test_kl_and_reward_refuses_kl_div_under_its_other_names(route):
    def via(pi, ref, r):
        m = pi > 0
        return (pi * r).sum(), route(ref[m].log(), pi[m])
    assert "switched off" in rejects(ex.check_kl_and_reward, via)


def test_kl_and_reward_messages_give_no_direction():  # a function that computes nothing could bisect on them
    for scale in (0.5, 2.0):
        message = rejects(ex.check_kl_and_reward, lambda pi, q, r: tuple(scale * float(x)
                                                                          for x in sol.kl_and_reward(pi, q, r)))
        assert "too large" not in message and "too small" not in message, message
