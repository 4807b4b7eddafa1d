"""The tiny mixture of experts (course_utils.model.moe): routing, the load-balancing loss, utilisation, parameter
counts by hand, the layer against a token-by-token computation, and a few training steps of a GPT with MoE."""

import math

import pytest
import torch

from course_utils.model.gpt import GPT, GPTConfig
from course_utils.model.moe import (MoEMLP, expert_counts, expert_utilisation, load_balancing_loss, moe_aux_loss,
                                    moe_parameter_counts, route, use_moe)


def tiny_config(**overrides):
    settings = dict(vocab_size=20, block_size=16, n_layer=2, n_head=2, n_embd=16)
    settings.update(overrides)
    return GPTConfig(**settings)


def test_route_keeps_the_top_k_and_renormalises_their_gates():
    logits = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]]))
    routing = route(logits, top_k=2)
    torch.testing.assert_close(routing.probs, torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]]))
    assert routing.experts.tolist() == [[3, 2], [0, 1]]
    torch.testing.assert_close(routing.gates, torch.tensor([[0.4 / 0.7, 0.3 / 0.7], [0.4 / 0.7, 0.3 / 0.7]]))
    random_routing = route(torch.randn(50, 8, generator=torch.Generator().manual_seed(0)), top_k=3)
    torch.testing.assert_close(random_routing.gates.sum(-1), torch.ones(50))
    with pytest.raises(ValueError, match=r"top_k must be an int in \[1, n_expert=4\]"):
        route(logits, top_k=5)
    with pytest.raises(ValueError, match=r"router_logits must have shape \(N, E\)"):
        route(logits[0], top_k=1)


def test_load_balancing_loss_equals_its_formula_on_a_hand_made_example():
    probs = torch.tensor([[0.8, 0.2], [0.6, 0.4]])
    experts = torch.tensor([[0], [0]])  # both tokens to expert 0: f = (1, 0), P = (0.7, 0.3)
    assert load_balancing_loss(probs, experts).item() == pytest.approx(2 * (1.0 * 0.7 + 0.0 * 0.3))
    # top-2 of 3 experts for two tokens: assignments 0, 1, 0, 2 -> f = (2/4, 1/4, 1/4)
    probs = torch.tensor([[0.5, 0.3, 0.2], [0.4, 0.1, 0.5]])
    experts = torch.tensor([[0, 1], [2, 0]])
    expected = 3 * (0.5 * 0.45 + 0.25 * 0.2 + 0.25 * 0.35)
    assert load_balancing_loss(probs, experts).item() == pytest.approx(expected)


def test_load_balancing_loss_is_one_for_uniform_routing_and_e_for_collapse():
    E, N = 4, 8
    uniform_probs = torch.full((N, E), 1 / E)
    even = torch.arange(N * 2).remainder(E).view(N, 2)  # each expert gets N * k / E assignments
    assert load_balancing_loss(uniform_probs, even).item() == pytest.approx(1.0)
    collapsed = torch.zeros(N, E)
    collapsed[:, 0] = 1.0
    assert load_balancing_loss(collapsed, torch.zeros(N, 1, dtype=torch.long)).item() == pytest.approx(E)
    any_assignment = torch.randint(0, E, (N, 2), generator=torch.Generator().manual_seed(0))
    assert load_balancing_loss(uniform_probs, any_assignment).item() == pytest.approx(1.0)  # P uniform: always 1
    skewed = route(torch.randn(N, E, generator=torch.Generator().manual_seed(1)) * 3, top_k=1)
    assert load_balancing_loss(skewed.probs, skewed.experts).item() > 1.0


def test_moe_layer_equals_a_token_by_token_computation_and_counts_assignments():
    torch.manual_seed(0)
    layer = MoEMLP(tiny_config(), n_expert=4, top_k=2)
    x = torch.randn(3, 5, 16)
    out = layer(x)
    routing = route(layer.router(x.view(15, 16)), top_k=2)
    for n, token in enumerate(x.view(15, 16)):
        expected = sum(routing.gates[n, s] * layer.experts[int(routing.experts[n, s])](token) for s in range(2))
        torch.testing.assert_close(out.view(15, 16)[n], expected, rtol=1e-5, atol=1e-6)
    assert layer.expert_counts.sum().item() == 15 * 2  # tokens x k
    assert torch.equal(layer.expert_counts, expert_counts(routing.experts, 4))
    assert layer.aux_loss.requires_grad  # the gradient flows through the mean router probabilities


def test_active_and_total_parameters_match_hand_arithmetic():
    config = tiny_config()
    dense = sum(p.numel() for p in GPT(config).parameters())
    model = use_moe(GPT(config), n_expert=4, top_k=2)
    expert = 16 * 64 + 64 + 64 * 16 + 16  # one 4x MLP: fc weight and bias, proj weight and bias = 2,128
    router = 16 * 4
    counts = moe_parameter_counts(model)
    assert counts["total"] == dense + config.n_layer * (3 * expert + router)  # 4 experts where 1 MLP was
    assert counts["active_per_token"] == counts["total"] - config.n_layer * 2 * expert  # 2 of 4 experts idle
    assert counts["active_per_token"] == dense + config.n_layer * (expert + router)


def test_moe_validates_its_settings():
    with pytest.raises(ValueError, match="n_expert must be an int >= 2"):
        MoEMLP(tiny_config(), n_expert=1)
    with pytest.raises(ValueError, match="top_k must be an int in"):
        MoEMLP(tiny_config(), n_expert=4, top_k=0)
    with pytest.raises(TypeError, match="must be a course_utils.model.gpt.GPT"):
        use_moe(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="no MoE layer has run a forward pass"):
        moe_aux_loss(use_moe(GPT(tiny_config())))


def test_a_few_training_steps_of_a_gpt_with_moe_lower_the_loss():
    torch.manual_seed(0)
    model = use_moe(GPT(tiny_config()), n_expert=4, top_k=2)
    data = torch.arange(200).remainder(7).add(3)  # a periodic sequence: easy to learn
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for step in range(30):
        starts = torch.randint(0, len(data) - 17, (8,), generator=torch.Generator().manual_seed(step))
        idx = torch.stack([data[s:s + 16] for s in starts])
        targets = torch.stack([data[s + 1:s + 17] for s in starts])
        _, loss = model(idx, targets)
        (loss + 0.01 * moe_aux_loss(model)).backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[0] > math.log(20) * 0.8  # starts near chance
    assert sum(losses[-5:]) / 5 < 0.5 * losses[0]
    utilisation = expert_utilisation(model)  # (n_layer, E)
    assert utilisation.shape == (2, 4)
    torch.testing.assert_close(utilisation.sum(1), torch.ones(2))
    assert 0.9 < moe_aux_loss(model).item() < 2.0  # about balanced: collapse onto one expert would be 4


def test_aux_loss_is_the_mean_over_layers_and_experts_start_like_the_dense_mlp():
    torch.manual_seed(0)
    model = use_moe(GPT(tiny_config(n_layer=8, n_embd=64)), n_expert=2, top_k=1)
    model(torch.randint(0, 20, (2, 8)))
    layers = [block.mlp for block in model.blocks]
    torch.testing.assert_close(moe_aux_loss(model), sum(layer.aux_loss for layer in layers) / 8)
    # GPT-2's initialisation: std 0.02, residual projections 0.02 / sqrt(2 * n_layer) = 0.005 here
    for expert in layers[0].experts:
        assert expert.fc.weight.std().item() == pytest.approx(0.02, rel=0.1)
        assert expert.proj.weight.std().item() == pytest.approx(0.005, rel=0.1)


def test_moe_layer_runs_in_bfloat16():
    torch.manual_seed(0)
    layer = MoEMLP(tiny_config(), n_expert=4, top_k=2)
    x = torch.randn(2, 3, 16)
    out = layer.to(torch.bfloat16)(x.bfloat16())
    assert out.dtype == torch.bfloat16
    assert route(torch.randn(5, 4).bfloat16(), top_k=2).gates.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), layer.float()(x), rtol=0.05, atol=0.02)


def test_numpy_ints_are_taken_as_python_ints():
    import numpy as np

    logits = torch.randn(6, 4, generator=torch.Generator().manual_seed(2))
    ours, plain = route(logits, top_k=np.int64(2)), route(logits, top_k=2)
    assert all(torch.equal(a, b) for a, b in zip((ours.probs, ours.experts, ours.gates),
                                                 (plain.probs, plain.experts, plain.gates)))
    torch.manual_seed(0)
    model = use_moe(GPT(tiny_config()), n_expert=np.int64(4), top_k=np.int32(2))
    torch.manual_seed(0)
    reference = use_moe(GPT(tiny_config()), n_expert=4, top_k=2)
    layer = model.blocks[0].mlp
    assert (type(layer.n_expert), type(layer.top_k)) == (int, int) and len(layer.experts) == 4
    idx = torch.randint(20, (2, 8), generator=torch.Generator().manual_seed(3))
    assert torch.equal(model(idx)[0], reference(idx)[0])
    for kwargs in ({"n_expert": True}, {"top_k": np.float64(2.0)}):
        with pytest.raises(ValueError, match="must be an int"):
            MoEMLP(tiny_config(), **kwargs)
