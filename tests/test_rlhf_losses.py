"""course_utils.rlhf.losses: hand-computed values, limiting cases, gradients, validation, device and dtype."""

import math

import pytest
import torch

from course_utils.rlhf.losses import (
    bradley_terry_loss,
    dpo_implicit_rewards,
    dpo_loss,
    gae_advantages,
    group_relative_advantages,
    kl_estimate,
    masked_mean,
    ppo_clip_fraction,
    ppo_clip_loss,
    value_loss,
    whiten,
)


def t(*values, dtype=torch.float64):
    return torch.tensor(values, dtype=dtype)


# ---- Bradley-Terry -------------------------------------------------------------------------------------------------

def test_bradley_terry_hand_values():
    # r_c=2, r_r=0: -log sigmoid(2) = log(1 + e^-2) = 0.12692801104297...
    # r_c=0, r_r=0: log 2;  r_c=-1, r_r=1: log(1 + e^2) = 2.12692801104297...
    loss = bradley_terry_loss(t(2.0, 0.0, -1.0), t(0.0, 0.0, 1.0), reduction="none")
    expected = t(math.log1p(math.exp(-2)), math.log(2), math.log1p(math.exp(2)))
    torch.testing.assert_close(loss, expected)
    assert loss[0].item() == pytest.approx(0.1269280110429725, abs=1e-12)
    torch.testing.assert_close(bradley_terry_loss(t(2.0, 0.0, -1.0), t(0.0, 0.0, 1.0)), expected.mean())
    torch.testing.assert_close(bradley_terry_loss(t(2.0, 0.0, -1.0), t(0.0, 0.0, 1.0), "sum"), expected.sum())


def test_bradley_terry_is_stable_for_huge_margins():
    loss = bradley_terry_loss(t(-1000.0, 1000.0), t(1000.0, -1000.0), reduction="none")
    torch.testing.assert_close(loss, t(2000.0, 0.0))  # log(1 + e^2000) = 2000 to double precision


# ---- DPO -----------------------------------------------------------------------------------------------------------

def test_dpo_hand_value():
    # beta=0.1; policy chosen -10 vs ref -11 (+1), policy rejected -12 vs ref -11 (-1): margin 2, beta*margin = 0.2
    # loss = log(1 + e^-0.2) = 0.59813886938159...
    loss = dpo_loss(t(-10.0), t(-12.0), t(-11.0), t(-11.0), 0.1)
    assert loss.item() == pytest.approx(math.log1p(math.exp(-0.2)), abs=1e-12)
    torch.testing.assert_close(dpo_implicit_rewards(t(-10.0, -12.0), t(-11.0, -11.0), 0.1), t(0.1, -0.1))


def test_dpo_is_log2_when_policy_equals_reference():
    gen = torch.Generator().manual_seed(0)
    chosen, rejected = -50 * torch.rand(16, generator=gen), -50 * torch.rand(16, generator=gen)
    loss = dpo_loss(chosen, rejected, chosen.clone(), rejected.clone(), 0.3, reduction="none")
    assert torch.equal(loss, torch.full_like(loss, math.log(2)))


def test_dpo_gradient_lowers_loss_when_chosen_rises():
    chosen = t(-10.0, -20.0).requires_grad_()
    rejected = t(-11.0, -19.0).requires_grad_()
    dpo_loss(chosen, rejected, t(-10.5, -20.0), t(-10.5, -20.0), 0.5).backward()
    assert (chosen.grad < 0).all() and (rejected.grad > 0).all()
    torch.testing.assert_close(chosen.grad, -rejected.grad)


def test_dpo_depends_only_on_the_margin_difference():
    # (pc - rc) - (pr - rr) is the same in both calls: 2 - 1 = 1 and 6 - 5 = 1
    a = dpo_loss(t(-8.0), t(-9.0), t(-10.0), t(-10.0), 0.7)
    b = dpo_loss(t(-1.0), t(-30.0), t(-7.0), t(-35.0), 0.7)
    torch.testing.assert_close(a, b)


# ---- PPO -----------------------------------------------------------------------------------------------------------

def test_ppo_without_clipping_is_minus_advantage_times_ratio():
    logp, old = t(-1.0, -2.0, -0.5), t(-1.05, -1.9, -0.5)  # ratios e^0.05, e^-0.1, 1: inside [0.8, 1.2]
    adv = t(1.0, -2.0, 0.5)
    expected = (-adv * torch.exp(logp - old)).mean()
    torch.testing.assert_close(ppo_clip_loss(logp, old, adv, 0.2), expected)


def test_ppo_clipped_hand_values_and_zero_gradient_where_clipped():
    # eps = 0.2, loss = max(-A r, -A clip(r, 0.8, 1.2)):
    # r=1.5, A=+1: max(-1.5, -1.2) = -1.2 (clipped);  r=0.5, A=+1: max(-0.5, -0.8) = -0.5 (not clipped)
    # r=0.5, A=-1: max(0.5, 0.8) = 0.8 (clipped);    r=1.5, A=-1: max(1.5, 1.2) = 1.5 (not clipped)
    ratios = t(1.5, 0.5, 0.5, 1.5)
    logp = ratios.log().requires_grad_()
    old = torch.zeros(4, dtype=torch.float64)
    adv = t(1.0, 1.0, -1.0, -1.0)
    loss = ppo_clip_loss(logp, old, adv, 0.2, reduction="none")
    torch.testing.assert_close(loss, t(-1.2, -0.5, 0.8, 1.5))
    loss.sum().backward()
    # d(-A r)/d logp = -A r where not clipped, 0 where the clipped (constant) term wins
    torch.testing.assert_close(logp.grad, t(0.0, -0.5, 0.0, 1.5))
    assert ppo_clip_fraction(logp, old, 0.2).item() == 1.0  # all four ratios are 0.5 away from 1
    assert ppo_clip_fraction(logp, old, 0.6).item() == 0.0
    assert ppo_clip_fraction(logp, old, 0.5).item() == 0.0  # |ratio - 1| = eps exactly: on the edge, not outside


def test_ppo_and_value_losses_treat_their_targets_as_constants():
    logp = t(-1.0, -0.5).requires_grad_()
    old, adv = t(-1.1, -0.4).requires_grad_(), t(1.0, -2.0).requires_grad_()
    ppo_clip_loss(logp, old, adv, 0.2).backward()
    assert logp.grad is not None and old.grad is None and adv.grad is None
    values, old_values = t(1.0, 0.0).requires_grad_(), t(0.5, 0.5).requires_grad_()
    returns = t(2.0, 0.0).requires_grad_()
    value_loss(values, old_values, returns, clip_eps=0.2).backward()
    assert values.grad is not None and old_values.grad is None and returns.grad is None


def test_ppo_mask_and_broadcast_advantages():
    logp = t(0.0, 0.1, 5.0, 0.0, -0.1, 5.0).view(2, 3)  # last column is padding (ratio e^5 if it counted)
    old = torch.zeros(2, 3, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    adv = t(1.0, -1.0)  # (B,), broadcast over T
    # every real ratio (1, e^0.1, 1, e^-0.1) is inside [0.8, 1.2], so the loss is -A * ratio there, 0 on padding
    per_token = t(-1.0, -math.exp(0.1), 0.0, 1.0, math.exp(-0.1), 0.0).view(2, 3)
    torch.testing.assert_close(ppo_clip_loss(logp, old, adv, 0.2, mask, "none"), per_token)
    torch.testing.assert_close(ppo_clip_loss(logp, old, adv, 0.2, mask, "sum"), per_token.sum())
    torch.testing.assert_close(ppo_clip_loss(logp, old, adv, 0.2, mask), per_token.sum() / 4)
    torch.testing.assert_close(ppo_clip_loss(logp, old, adv.view(2, 1).expand(2, 3), 0.2, mask), per_token.sum() / 4)
    assert ppo_clip_fraction(logp, old, 0.2, mask).item() == 0.0
    assert ppo_clip_fraction(logp, old, 0.2).item() == pytest.approx(2 / 6)


def test_value_loss_plain_clipped_and_masked():
    values, old, returns = t(1.0, 0.0, 3.0), t(0.5, 0.5, 3.0), t(2.0, 0.0, 0.0)
    # unclipped 0.5 * [(1-2)^2, 0, 9] -> mean 0.5 * 10 / 3
    assert value_loss(values, old, returns).item() == pytest.approx(5 / 3)
    # eps 0.2: v_clip = [0.7, 0.3, 3.0]; squared errors max([1, 0, 9], [1.69, 0.09, 9]) = [1.69, 0.09, 9]
    assert value_loss(values, old, returns, clip_eps=0.2).item() == pytest.approx(0.5 * (1.69 + 0.09 + 9) / 3)
    mask = torch.tensor([True, True, False])
    assert value_loss(values, old, returns, clip_eps=0.2, mask=mask).item() == pytest.approx(0.5 * 1.78 / 2)


# ---- KL estimators -------------------------------------------------------------------------------------------------

def test_kl_estimators_zero_when_equal_and_k3_nonnegative():
    x = torch.randn(100, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for kind in ("k1", "k2", "k3"):
        assert torch.equal(kl_estimate(x, x.clone(), kind), torch.zeros_like(x))
    y = 3 * torch.randn(100, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert (kl_estimate(x, y, "k3") >= 0).all() and (kl_estimate(x, y, "k2") >= 0).all()
    torch.testing.assert_close(kl_estimate(t(0.5), t(0.0), "k3"), t(math.exp(-0.5) - 1 + 0.5))
    torch.testing.assert_close(kl_estimate(t(0.5, -2.0), t(0.0, 0.0), "k2"), t(0.125, 2.0))  # 0.5 * log_ratio^2


def test_kl_estimators_are_unbiased_on_a_categorical_pair():
    p, q = t(0.5, 0.3, 0.2), t(0.2, 0.3, 0.5)
    exact = (p * (p / q).log()).sum().item()  # 0.3 * ln 2.5 = 0.27489
    x = torch.multinomial(p, 200_000, replacement=True, generator=torch.Generator().manual_seed(0))
    logp, ref_logp = p.log()[x], q.log()[x]
    assert kl_estimate(logp, ref_logp, "k1").mean().item() == pytest.approx(exact, abs=0.01)
    assert kl_estimate(logp, ref_logp, "k3").mean().item() == pytest.approx(exact, abs=0.01)
    assert kl_estimate(logp, ref_logp, "k2").mean().item() > 0  # biased, but still a divergence


def test_kl_estimate_gradients_as_losses_k1_zero_k3_forward_kl():
    # Tang and Munos 2025: exact expectations over a categorical policy (no sampling noise). As losses on the policy's
    # own samples, k1's gradient is 0 on average and k3's is the gradient of the forward KL(ref || pi), not the reverse
    theta = t(0.5, -0.3, 0.1, 0.2).requires_grad_(True)  # (4,) logits
    log_ref = t(0.1, 0.4, 0.3, 0.2).log()
    log_pi = torch.log_softmax(theta, dim=0)
    weight = log_pi.exp().detach()  # E over y ~ pi; the sampling itself has no gradient

    def grad(x):
        return torch.autograd.grad(x, theta, retain_graph=True)[0]

    k1 = (weight * kl_estimate(log_pi, log_ref, "k1")).sum()
    k3 = (weight * kl_estimate(log_pi, log_ref, "k3")).sum()
    reverse = (log_pi.exp() * (log_pi - log_ref)).sum()
    forward = (log_ref.exp() * (log_ref - log_pi)).sum()
    torch.testing.assert_close(k1, reverse)  # both values are unbiased for the reverse KL ...
    torch.testing.assert_close(k3, reverse)
    torch.testing.assert_close(grad(k1), torch.zeros_like(theta))  # ... but k1's gradient vanishes on average
    torch.testing.assert_close(grad(k3), grad(forward))  # and k3's is the forward KL's
    assert (grad(k3) - grad(reverse)).abs().max() > 0.05
    # k1 as a reward, through the policy gradient E[k1 * grad log pi], is the reverse KL's gradient
    score = torch.autograd.functional.jacobian(lambda th: torch.log_softmax(th, dim=0), theta.detach())  # (y, theta)
    torch.testing.assert_close(weight @ (kl_estimate(log_pi, log_ref, "k1").detach()[:, None] * score), grad(reverse))


# ---- masked mean and whitening -------------------------------------------------------------------------------------

def test_masked_mean_and_whiten():
    x = t(1.0, 2.0, 3.0, float("nan")).view(2, 2)
    mask = torch.tensor([[True, True], [True, False]])
    assert masked_mean(x, mask).item() == pytest.approx(2.0)  # NaN under the mask never reaches the result
    torch.testing.assert_close(masked_mean(x, mask, dim=1), t(1.5, 3.0))
    w = whiten(x, mask)  # mean 2, unbiased std 1: [-1, 0, 1], masked entry 0
    torch.testing.assert_close(w, t(-1.0, 0.0, 1.0, 0.0).view(2, 2), atol=1e-7, rtol=0)
    torch.testing.assert_close(whiten(x, mask, shift_mean=False), t(1.0, 2.0, 3.0, 0.0).view(2, 2), atol=1e-7, rtol=0)
    y = torch.randn(50, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    torch.testing.assert_close(whiten(y), (y - y.mean()) / (y.std() + 1e-8))
    assert whiten(t(5.0, 7.0), torch.tensor([True, False])).tolist() == [0.0, 0.0]  # one entry: std 0, no NaN


# ---- GAE -----------------------------------------------------------------------------------------------------------

def test_gae_hand_computed_three_steps():
    # gamma 0.9, lam 0.8 (gamma*lam = 0.72); rewards [0, 0, 1], values [0.5, 0.6, 0.7], V after the end = 0
    # delta2 = 1 - 0.7 = 0.3                 A2 = 0.3
    # delta1 = 0.9*0.7 - 0.6 = 0.03          A1 = 0.03 + 0.72*0.3 = 0.246
    # delta0 = 0.9*0.6 - 0.5 = 0.04          A0 = 0.04 + 0.72*0.246 = 0.21712
    rewards, values = t(0.0, 0.0, 1.0).view(1, 3), t(0.5, 0.6, 0.7).view(1, 3)
    adv, ret = gae_advantages(rewards, values, torch.ones(1, 3, dtype=torch.bool), gamma=0.9, lam=0.8)
    torch.testing.assert_close(adv, t(0.21712, 0.246, 0.3).view(1, 3))
    torch.testing.assert_close(ret, t(0.71712, 0.846, 1.0).view(1, 3))


def test_gae_limits_lam_one_and_lam_zero():
    gen = torch.Generator().manual_seed(4)
    rewards, values = torch.randn(3, 6, generator=gen, dtype=torch.float64), torch.randn(3, 6, generator=gen,
                                                                                       dtype=torch.float64)
    mask, gamma = torch.ones(3, 6), 0.9
    _, ret = gae_advantages(rewards, values, mask, gamma=gamma, lam=1.0)
    discounts = gamma ** torch.arange(6, dtype=torch.float64)
    to_go = torch.stack([(rewards[:, s:] * discounts[: 6 - s]).sum(1) for s in range(6)], dim=1)
    torch.testing.assert_close(ret, to_go)  # lam = 1: returns are the discounted reward-to-go
    adv, _ = gae_advantages(rewards, values, mask, gamma=gamma, lam=0.0)
    next_values = torch.cat([values[:, 1:], torch.zeros(3, 1, dtype=torch.float64)], dim=1)
    torch.testing.assert_close(adv, rewards + gamma * next_values - values)  # lam = 0: one-step TD error


def test_gae_early_ending_sequence_ignores_padding():
    # row 0 ends after 2 tokens; padding holds garbage that must not leak in
    rewards = t(0.0, 1.0, 5.0, float("nan"), 0.0, 0.0, 0.0, 2.0).view(2, 4)
    values = t(0.2, 0.4, 9.0, float("inf"), 0.1, 0.1, 0.1, 0.1).view(2, 4)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    adv, ret = gae_advantages(rewards, values, mask, gamma=1.0, lam=1.0)
    # row 0: A1 = 1 - 0.4 = 0.6, A0 = 0 + 0.4 - 0.2 + 0.6 = 0.8 (= reward-to-go 1 minus V0 0.2)
    torch.testing.assert_close(adv[0], t(0.8, 0.6, 0.0, 0.0))
    torch.testing.assert_close(ret[0], t(1.0, 1.0, 0.0, 0.0))
    alone, _ = gae_advantages(rewards[:1, :2], values[:1, :2], mask[:1, :2], gamma=1.0, lam=1.0)
    torch.testing.assert_close(adv[:1, :2], alone)
    torch.testing.assert_close(ret[1], t(2.0, 2.0, 2.0, 2.0))


# ---- GRPO ----------------------------------------------------------------------------------------------------------

def test_group_relative_advantages_hand_example_and_equal_group():
    # group 1 [1, 0, 0, 1]: mean 0.5, unbiased std sqrt(4 * 0.25 / 3) = 0.57735; 0.5 / 0.57735 = 0.866025
    # group 2 [2, 2, 2, 2]: all equal -> 0 (not NaN)
    rewards = t(1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0)
    adv = group_relative_advantages(rewards, 4)
    a = 0.5 / (math.sqrt(1 / 3) + 1e-6)
    torch.testing.assert_close(adv, t(a, -a, -a, a, 0.0, 0.0, 0.0, 0.0))
    torch.testing.assert_close(group_relative_advantages(rewards, 4, scale=False), t(0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0))
    # group_size 2: [1, 0] and [0, 1] have mean 0.5 and unbiased std sqrt(2 * 0.25 / 1) = 0.70711 -> +-0.70711
    b = 0.5 / (math.sqrt(0.5) + 1e-6)
    torch.testing.assert_close(group_relative_advantages(rewards, 2), t(b, -b, -b, b, 0.0, 0.0, 0.0, 0.0))


# ---- validation ----------------------------------------------------------------------------------------------------

X, Y = t(1.0, 2.0), t(0.5, 0.5)


@pytest.mark.parametrize("call, match", [
    (lambda: bradley_terry_loss(X, t(1.0)), "same shape"),
    (lambda: bradley_terry_loss(t(), t()), "empty"),
    (lambda: bradley_terry_loss(X, Y, "avg"), "reduction"),
    (lambda: dpo_loss(X, Y, X, t(1.0, 2.0, 3.0), 0.1), "same shape"),
    (lambda: dpo_loss(X, Y, X, Y, 0.0), "beta"),
    (lambda: dpo_loss(X, Y, X, Y, -1.0), "beta"),
    (lambda: dpo_implicit_rewards(X, Y, 0), "beta"),
    (lambda: ppo_clip_loss(X, Y, X, 0.0), "clip_eps"),
    (lambda: ppo_clip_loss(X, Y, X, 1.0), "clip_eps"),
    (lambda: ppo_clip_loss(X, Y, X, 0.2, reduction="max"), "reduction"),
    (lambda: ppo_clip_loss(X, Y, t(1.0, 2.0, 3.0), 0.2), "advantages"),
    (lambda: ppo_clip_loss(X, Y, X, 0.2, mask=torch.ones(3, dtype=torch.bool)), "mask"),
    (lambda: ppo_clip_loss(X, Y, X, 0.2, mask=torch.zeros(2, dtype=torch.bool)), "mask selects no elements"),
    (lambda: ppo_clip_fraction(X, Y, 1.5), "clip_eps"),
    (lambda: value_loss(X, Y, t(1.0)), "same shape"),
    (lambda: value_loss(X, Y, X, clip_eps=0.0), "clip_eps"),
    (lambda: kl_estimate(X, Y, "k4"), "kind"),
    (lambda: kl_estimate(X, t(1.0)), "same shape"),
    (lambda: masked_mean(X, torch.zeros(2, dtype=torch.bool)), "mask selects no elements"),
    (lambda: masked_mean(X, torch.ones(1, 2)), "mask"),
    (lambda: masked_mean(t(1.0, 2.0, 3.0, 4.0).view(2, 2), torch.tensor([[True, True], [False, False]]), dim=1),
     "mask selects no elements in some slice"),
    (lambda: whiten(X, torch.zeros(2)), "mask selects no elements"),
    (lambda: gae_advantages(X, Y, torch.ones(2)), r"\(B, T\)"),
    (lambda: gae_advantages(X.view(1, 2), Y.view(1, 2), torch.ones(1, 3)), "mask"),
    (lambda: gae_advantages(X.view(1, 2), Y.view(1, 2), torch.ones(1, 2), lam=1.5), "lam"),
    (lambda: gae_advantages(X.view(1, 2), Y.view(1, 2), torch.ones(1, 2), gamma=-0.1), "gamma"),
    (lambda: group_relative_advantages(t(1.0, 2.0, 3.0), 2), "group_size"),
    (lambda: group_relative_advantages(X, 1), "group_size"),
    (lambda: group_relative_advantages(X.view(1, 2), 2), r"\(B,\)"),
])
def test_value_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("call", [
    lambda: bradley_terry_loss([1.0], Y),
    lambda: dpo_loss(X, Y, X, 0.5, 0.1),
    lambda: dpo_loss(X, Y, X, Y, "0.1"),
    lambda: ppo_clip_loss(X, Y, [1.0, 1.0], 0.2),
    lambda: ppo_clip_loss(X, Y, X, 0.2, mask=[True, True]),
    lambda: value_loss(X, Y, None),
    lambda: kl_estimate(1.0, Y),
    lambda: masked_mean(X, [1, 1]),
    lambda: gae_advantages(X.view(1, 2), Y.view(1, 2), None),
    lambda: group_relative_advantages([1.0, 2.0], 2),
    lambda: group_relative_advantages(X, 2.0),
    lambda: bradley_terry_loss(torch.tensor([1, 2]), torch.tensor([0, 0])),  # integer rewards
])
def test_type_errors(call):
    with pytest.raises(TypeError):
        call()


# ---- device and dtype ----------------------------------------------------------------------------------------------

def all_outputs(device, dtype):
    """Every public function once, on (B, T) = (4, 3) inputs of the given device and dtype."""
    gen = torch.Generator().manual_seed(5)
    a, b, c = (torch.randn(4, 3, generator=gen, dtype=dtype).to(device) for _ in range(3))
    v, mask = a[:, 0], torch.ones(4, 3, dtype=torch.bool, device=device)
    use_mask = device.type != "meta"  # the empty-mask check reads a value, which meta tensors do not have
    m = mask if use_mask else None
    return [bradley_terry_loss(v, b[:, 0]), dpo_loss(v, b[:, 0], c[:, 0], a[:, 1], 0.1),
            dpo_implicit_rewards(v, b[:, 0], 0.1), ppo_clip_loss(a, b, v, 0.2, m),
            ppo_clip_loss(a, b, c, 0.2, mask, "none"), ppo_clip_fraction(a, b, 0.2, m), value_loss(a, b, c, 0.2, m),
            *[kl_estimate(a, b, k) for k in ("k1", "k2", "k3")], *gae_advantages(a, b, mask),
            group_relative_advantages(a.reshape(-1), 4)] + ([masked_mean(a, mask), whiten(a, mask)] if use_mask else [])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_outputs_keep_dtype(dtype):
    for out in all_outputs(torch.device("cpu"), dtype):
        assert out.dtype == dtype and out.device.type == "cpu"


def test_no_tensor_is_created_on_the_cpu():
    # Meta tensors have no data: mixing one with a CPU tensor raises, so this catches a stray torch.tensor(...)
    # or torch.zeros(...) without device= on a CPU-only machine.
    for out in all_outputs(torch.device("meta"), torch.float32):
        assert out.device.type == "meta"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_outputs_stay_on_cuda():
    for out in all_outputs(torch.device("cuda"), torch.float32):
        assert out.device.type == "cuda" and out.dtype == torch.float32


def test_dpo_needs_summed_sequence_log_probs():
    per_token = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"\(B,\).*sum over the response tokens"):
        dpo_loss(per_token, per_token - 1, per_token, per_token, 0.1)  # returned a scalar
    with pytest.raises(ValueError, match=r"\(B,\).*sum over the response tokens"):
        dpo_implicit_rewards(per_token, per_token, 0.1)
    summed = per_token.sum(-1)
    dpo_loss(summed, summed - 1, summed, summed, 0.1)  # (B,): fine


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_group_relative_advantages_refuses_non_finite_rewards(bad):
    with pytest.raises(ValueError, match="NaN or inf"):
        group_relative_advantages(t(1.0, bad, 0.0, 2.0), 2)  # the whole group became NaN


def test_group_relative_advantages_takes_a_numpy_group_size():
    import numpy as np

    rewards = t(1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0)
    assert torch.equal(group_relative_advantages(rewards, np.int64(4)), group_relative_advantages(rewards, 4))
    for bad in (True, np.float64(4.0)):
        with pytest.raises(TypeError, match="group_size must be an int"):
            group_relative_advantages(rewards, bad)
