"""Muon (course_utils.train.muon) and its place in the trainer: the Newton-Schulz iteration against the SVD, one
and two steps by hand, torch.optim.Muon, the parameter split, the combined optimiser and the recipes."""

import copy

import pytest
import torch
import torch.nn as nn

from course_utils.model.gpt import GPT, GPTConfig
from course_utils.train.loop import TrainConfig, lr_at, make_optimizer, set_lr, train
from course_utils.train.muon import Muon, MuonWithAdamW, hidden_matrices, newton_schulz


@pytest.mark.parametrize("shape", [(16, 32), (32, 16), (24, 24)])
def test_newton_schulz_keeps_the_singular_vectors_and_pushes_the_values_towards_one(shape):
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    u, s, vh = torch.linalg.svd(g, full_matrices=False)
    o = newton_schulz(g)
    inner = u.mT @ o @ vh.mT  # (k, k): diagonal when o = u diag(s') vh
    off = inner - torch.diag(torch.diagonal(inner))
    assert off.abs().max() < 1e-10
    values = torch.diagonal(inner)
    # the quintic's coefficients trade exactness for speed: values land near 1, not on it (Jordan et al., 2024)
    assert values.min() > 0.6 and values.max() < 1.25, values
    assert s.max() / s.min() > 3  # the input was far from orthogonal, so this is a real change


def test_newton_schulz_is_batched_and_scale_invariant():
    gen = torch.Generator().manual_seed(1)
    g = torch.randn(3, 8, 12, generator=gen, dtype=torch.float64)
    batched = newton_schulz(g)
    for k in range(3):
        torch.testing.assert_close(batched[k], newton_schulz(g[k]))
    torch.testing.assert_close(newton_schulz(1000.0 * g[0]), batched[0])


def test_newton_schulz_rejects_bad_input():
    with pytest.raises(ValueError, match="matrices"):
        newton_schulz(torch.ones(4))
    with pytest.raises(ValueError, match="steps"):
        newton_schulz(torch.ones(2, 2), steps=0)


def test_two_muon_steps_by_hand():
    gen = torch.Generator().manual_seed(2)
    w = nn.Parameter(torch.randn(12, 4, generator=gen, dtype=torch.float64))  # tall: scale sqrt(12 / 4)
    w0 = w.detach().clone()
    g1, g2 = torch.randn(2, 12, 4, generator=gen, dtype=torch.float64)
    lr, mu = 0.1, 0.9
    opt = Muon([w], lr=lr, momentum=mu)
    w.grad = g1.clone()
    opt.step()
    # buffer = g1; Nesterov look-ahead g1 + mu * g1, whose orthogonalisation equals g1's (scale-invariant)
    expected = w0 - lr * 3 ** 0.5 * newton_schulz(g1 + mu * g1)
    torch.testing.assert_close(w.detach(), expected)
    w.grad = g2.clone()
    opt.step()
    buffer = mu * g1 + g2
    expected = expected - lr * 3 ** 0.5 * newton_schulz(g2 + mu * buffer)
    torch.testing.assert_close(w.detach(), expected)


def test_muon_agrees_with_torch_optim_muon():
    # torch's Muon orthogonalises in bfloat16 (8 mantissa bits, about 4e-3 relative per product); ours in float32.
    # After one step from the same gradients the two updates differ by bf16 rounding only.
    gen = torch.Generator().manual_seed(3)
    ours_w = [nn.Parameter(torch.randn(*s, generator=gen)) for s in [(24, 8), (8, 24), (16, 16)]]
    theirs_w = [nn.Parameter(p.detach().clone()) for p in ours_w]
    for a, b in zip(ours_w, theirs_w):
        a.grad = torch.randn(a.shape, generator=gen)
        b.grad = a.grad.clone()
    before = [p.detach().clone() for p in ours_w]
    Muon(ours_w, lr=0.02).step()
    torch.optim.Muon(theirs_w, lr=0.02, weight_decay=0.0, adjust_lr_fn="original").step()
    for a, b, w0 in zip(ours_w, theirs_w, before):
        ours_step, their_step = (a - w0).detach(), (b - w0).detach()
        assert (ours_step - their_step).norm() / their_step.norm() < 0.03


def test_muon_rejects_bad_arguments():
    w = nn.Parameter(torch.ones(3, 3))
    with pytest.raises(ValueError, match="2-D"):
        Muon([nn.Parameter(torch.ones(3))])
    with pytest.raises(ValueError, match="lr"):
        Muon([w], lr=0.0)
    with pytest.raises(ValueError, match="momentum"):
        Muon([w], momentum=1.0)
    with pytest.raises(ValueError, match="ns_steps"):
        Muon([w], ns_steps=0)


def tiny_gpt(tie: bool = True) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=0.0,
                         tie_weights=tie))


@pytest.mark.parametrize("tie", [True, False])
def test_hidden_matrices_are_the_blocks_linear_weights(tie):
    model = tiny_gpt(tie)
    hidden, rest = hidden_matrices(model)
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)] for p in hidden) == sorted(
        f"blocks.{i}.{part}.weight" for i in range(2) for part in ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj"))
    assert all(p.dim() == 2 for p in hidden)
    rest_names = {names[id(p)] for p in rest}
    assert "tok_emb.weight" in rest_names and "pos_emb.weight" in rest_names
    assert ("lm_head.weight" in rest_names) == (not tie)  # a tied head is the embedding table
    assert len(hidden) + len(rest) == len(list(model.parameters()))


def test_make_optimizer_with_muon_covers_every_parameter_once_and_scales_the_schedule():
    model = tiny_gpt()
    config = TrainConfig(max_steps=20, lr=1e-3, min_lr=1e-4, warmup_steps=5, optimizer="muon", muon_lr=0.05)
    opt = make_optimizer(model, config)
    assert isinstance(opt, MuonWithAdamW)
    seen = [id(p) for group in opt.param_groups for p in group["params"]]
    assert sorted(seen) == sorted(id(p) for p in model.parameters()) and len(seen) == len(set(seen))
    for step in (0, 4, 12, 19):
        assert set_lr(opt, step, config) == lr_at(step, config)
        muon_group, *adamw_groups = opt.param_groups
        assert muon_group["lr"] == pytest.approx(lr_at(step, config) * 50)
        assert all(g["lr"] == lr_at(step, config) for g in adamw_groups)


def test_set_lr_is_exactly_the_schedule_for_adamw():
    config = TrainConfig(max_steps=30, lr=7e-3, min_lr=3e-4, warmup_steps=7)
    opt = make_optimizer(tiny_gpt(), config)
    for step in range(30):
        set_lr(opt, step, config)
        assert all(g["lr"] == lr_at(step, config) for g in opt.param_groups)  # bit-exact with the earlier loop


def test_trainer_with_muon_learns_and_its_state_round_trips():
    data = torch.arange(11).repeat(40)  # a repeating sequence: easy to learn

    def get_batch(split, generator):
        starts = torch.randint(len(data) - 9, (8,), generator=generator)
        idx = torch.stack([data[s:s + 8] for s in starts])
        return idx, torch.stack([data[s + 1:s + 9] for s in starts])

    config = TrainConfig(max_steps=40, lr=3e-3, min_lr=3e-4, warmup_steps=4, eval_interval=40, eval_batches=2,
                         optimizer="muon", muon_lr=0.02, progress=False)
    model = tiny_gpt()
    history = train(model, get_batch, config, torch.Generator().manual_seed(0))
    assert history.final_val_loss < 0.75 * history.train_loss[0]  # from about ln 11 = 2.40 to 1.46 in this run

    # the combined optimiser's state survives save/load: the next step is identical
    opt = make_optimizer(model, config)
    idx, targets = get_batch("train", torch.Generator().manual_seed(1))
    model(idx, targets)[1].backward()
    opt.step()
    clone = copy.deepcopy(model)
    opt2 = make_optimizer(clone, config)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))  # a copy, as torch.save makes: loading shares tensors
    for m, o in ((model, opt), (clone, opt2)):
        o.zero_grad()
        m(idx, targets)[1].backward()
        o.step()
    for a, b in zip(model.parameters(), clone.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_muon_needs_hidden_matrices_and_a_known_optimizer_name():
    with pytest.raises(ValueError, match="optimizer must be one of"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(ValueError, match="muon_lr"):
        TrainConfig(optimizer="muon", muon_lr=0.0)
    embedding_only = nn.Sequential(nn.Embedding(5, 3))
    with pytest.raises(ValueError, match="no hidden"):
        make_optimizer(embedding_only, TrainConfig(optimizer="muon"))


def test_the_course_recipe_adds_muon_to_the_adamw_recipe():
    from course_utils.train.recipes import adamw_char_recipe, baseline_char_recipe, course_char_recipe

    base, adamw, course = baseline_char_recipe(65), adamw_char_recipe(65), course_char_recipe(65)
    assert base.model == adamw.model == course.model  # only the optimisation differs
    assert (adamw.train.optimizer, adamw.batch_size, adamw.train.max_steps, adamw.train.lr) == ("adamw", 24, 700, 6e-3)
    assert (course.train.optimizer, course.batch_size, course.train.muon_lr, course.train.lr) == ("muon", 48, 0.05,
                                                                                                 6e-3)
    assert course.train.warmup_steps < course.train.max_steps and course.train.precision == "fp32"


def test_newton_schulz_and_muon_take_numpy_step_counts():
    import numpy as np

    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(newton_schulz(x, steps=np.int64(3)), newton_schulz(x, steps=3), rtol=0, atol=0)
    optimizer = Muon([nn.Parameter(torch.zeros(4, 6))], lr=0.02, ns_steps=np.int64(5))
    assert type(optimizer.param_groups[0]["ns_steps"]) is int
    for bad in (True, 2.5):
        with pytest.raises(ValueError, match="steps must be a positive int"):
            newton_schulz(x, steps=bad)


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr=float("inf")), "lr must be a finite number > 0"), (dict(lr=True), "lr must be"),
    (dict(momentum=True), r"momentum must be in \[0, 1\)"), (dict(momentum=float("nan")), "momentum must be"),
])
def test_muon_refuses_infinite_rates_bools_and_nan(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Muon([nn.Parameter(torch.zeros(2, 2))], **kwargs)
