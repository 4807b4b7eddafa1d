import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from course_utils.train.batches import make_batch_fn
from course_utils.model.gpt import GPT, GPTConfig
from course_utils.train.loop import (TrainConfig, TrainingDiverged, estimate_loss, lr_at, make_optimizer,
                                     train)


def run(seed=0, steps=60, precision="fp32", attention="sdpa", model_out=None):
    torch.manual_seed(seed)
    data = torch.tensor([i % 7 for i in range(500)])  # a perfectly periodic sequence: learnable
    model = GPT(GPTConfig(vocab_size=7, block_size=8, n_layer=1, n_head=2, n_embd=16, attention=attention))
    config = TrainConfig(max_steps=steps, lr=3e-3, min_lr=3e-4, warmup_steps=5, eval_interval=20, eval_batches=2,
                         progress=False, precision=precision)
    if model_out is not None:
        model_out.append(model)
    return train(model, make_batch_fn(data, data, 8, 8), config, torch.Generator().manual_seed(seed))


def test_loss_falls_and_history_is_complete():
    history = run()
    assert history.eval_steps == [20, 40, 60]
    assert len(history.train_loss) == 60 and history.tokens_seen == 60 * 8 * 8
    assert history.eval_val_loss[-1] < 0.5 * math.log(7)


def test_same_seed_same_losses():
    assert run(seed=3).train_loss == run(seed=3).train_loss
    assert run(seed=3).train_loss != run(seed=4).train_loss


def test_lr_schedule_warmup_then_cosine():
    config = TrainConfig(max_steps=110, lr=1e-3, min_lr=1e-4, warmup_steps=10)
    assert lr_at(0, config) == pytest.approx(1e-4)
    assert lr_at(9, config) == pytest.approx(1e-3)
    assert lr_at(60, config) == pytest.approx(0.5 * (1e-3 + 1e-4))  # half-way through the cosine
    assert lr_at(110, config) == pytest.approx(1e-4)
    assert lr_at(160, config) == pytest.approx(1e-4)  # past max_steps the rate stays at min_lr
    values = [lr_at(s, config) for s in range(10, 110)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_weight_decay_only_on_matrices():
    model = GPT(GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=8))
    decay, no_decay = make_optimizer(model, TrainConfig()).param_groups
    assert all(p.dim() >= 2 for p in decay["params"]) and decay["weight_decay"] == 0.1
    assert all(p.dim() < 2 for p in no_decay["params"]) and no_decay["weight_decay"] == 0.0
    assert decay["betas"] == no_decay["betas"] == (0.9, 0.99)  # (beta1, beta2) of the config
    assert make_optimizer(model, TrainConfig(beta1=0.8, beta2=0.95)).param_groups[0]["betas"] == (0.8, 0.95)


@pytest.mark.parametrize("kwargs", [{"max_steps": 0}, {"lr": 0}, {"min_lr": 1.0}, {"warmup_steps": -1},
                                    {"beta2": 1.0}, {"grad_clip": -1}, {"eval_interval": 0},
                                    {"precision": "fp16"}, {"precision": "bfloat16"},
                                    {"lr": float("inf")}, {"lr": float("nan")}, {"muon_lr": float("inf")},
                                    {"warmup_steps": 2.5}, {"eval_interval": 2.5}, {"eval_batches": True}])
def test_train_config_validation(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs)).rstrip("12")):  # beta2 -> "betas must be ..."
        TrainConfig(**kwargs)


@pytest.mark.parametrize("kwargs", [{"max_steps": True}, {"lr": True}, {"min_lr": False}, {"weight_decay": True},
                                    {"beta1": True}, {"grad_clip": False}, {"muon_lr": True},
                                    {"muon_momentum": False}, {"warmup_steps": "10"}, {"lr": None}])
def test_train_config_refuses_bools_and_non_numbers(kwargs):  # max_steps=True trained one step, lr=True at 1.0
    with pytest.raises(ValueError, match=f"^{next(iter(kwargs))} must be "):
        TrainConfig(**kwargs)


def test_train_config_takes_numpy_counts_as_python_ints():
    import numpy as np

    config = TrainConfig(max_steps=np.int64(50), warmup_steps=np.int32(5), eval_interval=np.int64(10),
                         eval_batches=np.int64(2), lr=np.float32(1e-3))
    assert (config.max_steps, config.warmup_steps, config.eval_interval, config.eval_batches) == (50, 5, 10, 2)
    assert all(type(v) is int for v in (config.max_steps, config.warmup_steps, config.eval_interval,
                                         config.eval_batches))
    assert TrainConfig(grad_clip=float("inf")).grad_clip == float("inf")  # no clipping, as before


def test_divergence_is_reported():
    torch.manual_seed(0)
    data = torch.tensor([i % 7 for i in range(100)])
    model = GPT(GPTConfig(vocab_size=7, block_size=8, n_layer=1, n_head=1, n_embd=8))
    with torch.no_grad():
        model.tok_emb.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="lower lr"):
        train(model, make_batch_fn(data, data, 2, 8), TrainConfig(max_steps=3, warmup_steps=1, progress=False),
              torch.Generator().manual_seed(0))


def test_divergence_carries_the_step_and_the_history_so_far():
    torch.manual_seed(0)
    data = torch.tensor([i % 7 for i in range(100)])
    model = GPT(GPTConfig(vocab_size=7, block_size=8, n_layer=1, n_head=1, n_embd=8))
    poison_at, train_batches = 5, 0
    batches = make_batch_fn(data, data, 2, 8)

    def get_batch(split, generator):
        nonlocal train_batches
        if split == "train":
            if train_batches == poison_at:                              # the weights break before step 5's forward
                with torch.no_grad():
                    model.tok_emb.weight.fill_(float("nan"))
            train_batches += 1
        return batches(split, generator)

    config = TrainConfig(max_steps=10, warmup_steps=1, eval_interval=2, eval_batches=1, eval_train_split=False,
                         progress=False)
    with pytest.raises(TrainingDiverged, match="at step 5") as caught:
        train(model, get_batch, config, torch.Generator().manual_seed(0))
    assert isinstance(caught.value, FloatingPointError)
    assert caught.value.step == poison_at
    history = caught.value.history
    assert history.steps == list(range(poison_at))
    assert history.eval_steps == [2, 4] and len(history.eval_val_loss) == 2
    assert all(math.isfinite(v) for v in history.train_loss + history.eval_val_loss)


def test_fused_optimizer_matches_the_loop_and_val_only_evaluation():
    def go(fused):
        torch.manual_seed(0)
        data = torch.tensor([i % 7 for i in range(300)])
        model = GPT(GPTConfig(vocab_size=7, block_size=8, n_layer=1, n_head=1, n_embd=8))
        config = TrainConfig(max_steps=10, warmup_steps=2, eval_interval=5, eval_batches=1, progress=False,
                             fused_optimizer=fused, eval_train_split=False)
        return train(model, make_batch_fn(data, data, 4, 8), config, torch.Generator().manual_seed(0))

    loop, fused = go(False), go(True)
    assert fused.eval_train_loss == [] and len(fused.eval_val_loss) == 2
    assert loop.train_loss == pytest.approx(fused.train_loss, rel=1e-4)


def test_baseline_recipe_is_the_published_small_cpu_recipe():
    from course_utils.train.recipes import baseline_char_recipe, course_char_recipe

    base = baseline_char_recipe(65)
    assert (base.model.n_layer, base.model.n_head, base.model.n_embd, base.model.block_size) == (4, 4, 128, 64)
    assert (base.batch_size, base.train.max_steps, base.train.lr, base.train.min_lr) == (12, 2000, 1e-3, 1e-4)
    assert ((base.train.warmup_steps, base.train.beta2, base.train.weight_decay, base.train.grad_clip)
            == (100, 0.99, 0.1, 1.0))
    assert base.model.dropout == 0.0 and base.train.eval_interval == 250
    course = course_char_recipe(65)
    # same model (the attention implementation computes the same function); only the optimisation differs
    assert replace(course.model, attention=base.model.attention) == base.model
    assert base.model.attention == "sdpa" and base.train.precision == "fp32"


def test_validation_batches_do_not_depend_on_evaluating_the_train_split():
    def go(eval_train):
        torch.manual_seed(0)
        data = torch.arange(300) % 7
        model = GPT(GPTConfig(vocab_size=7, block_size=8, n_layer=1, n_head=1, n_embd=8))
        config = TrainConfig(max_steps=4, warmup_steps=1, eval_interval=4, eval_batches=2, progress=False,
                             eval_train_split=eval_train)
        return train(model, make_batch_fn(data, torch.randint(0, 7, (300,), generator=torch.Generator().manual_seed(9)),
                                          4, 8), config, torch.Generator().manual_seed(0))

    assert go(True).eval_val_loss == go(False).eval_val_loss


@pytest.mark.filterwarnings("ignore:this CPU has no native bf16")  # emulated bf16 is slow, not wrong
@pytest.mark.parametrize("attention", ["manual", "sdpa"])
def test_bf16_training_learns_and_lands_close_to_fp32(attention):
    models = []
    fp32, bf16 = run(precision="fp32"), run(precision="bf16", attention=attention, model_out=models)
    assert bf16.eval_val_loss[-1] < 0.5 * math.log(7)  # it learns, like fp32 (test_loss_falls...)
    assert bf16.train_loss != fp32.train_loss  # autocast was really on: the training losses differ ...
    # ... but only by bf16 rounding: matmul inputs carry 8 mantissa bits (relative error <= 2^-9 ~ 0.002), the
    # accumulation, loss, weights and AdamW states are float32, so 60 steps drift the loss by far less than 0.02
    # nats (measured here: about 1e-4 on the float32 evaluation); a broken cast (e.g. bf16 weights) would not.
    assert bf16.eval_val_loss == pytest.approx(fp32.eval_val_loss, abs=0.02)
    model = models[0]
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in model.parameters())


def test_bf16_is_refused_where_autocast_is_unavailable(monkeypatch):
    monkeypatch.setattr(torch.amp, "is_autocast_available", lambda device_type: False)
    with pytest.raises(ValueError, match="precision='fp32'"):
        run(steps=5, precision="bf16")


def test_fp32_is_the_default_and_runs_without_autocast():
    assert TrainConfig().precision == "fp32"
    assert run(seed=2, steps=5).train_loss == run(seed=2, steps=5, precision="fp32").train_loss


@pytest.mark.parametrize("kwargs, match", [({"grad_clip": math.nan}, "grad_clip"), ({"weight_decay": math.nan},
                                           "weight_decay"), ({"weight_decay": math.inf}, "weight_decay")])
def test_non_finite_settings_are_refused(kwargs, match):
    # grad_clip=nan silently turned clipping off; weight_decay=nan raised TrainingDiverged blaming lr
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def tiny_run_parts(seed=0):
    torch.manual_seed(seed)
    data = torch.arange(300) % 7
    model = GPT(GPTConfig(vocab_size=7, block_size=8, n_layer=1, n_head=1, n_embd=8))
    return model, make_batch_fn(data, torch.randint(0, 7, (300,), generator=torch.Generator().manual_seed(9)), 4, 8)


def test_the_last_step_is_evaluated_and_with_the_val_batches_of_seed_plus_one():
    model, get_batch = tiny_run_parts()
    config = TrainConfig(max_steps=10, warmup_steps=1, eval_interval=4, eval_batches=2, progress=False)
    history = train(model, get_batch, config, torch.Generator().manual_seed(0), eval_generator_seed=77)
    assert history.eval_steps == [4, 8, 10]  # 10 is not a multiple of 4 but ends the run
    # parallel.precision's loop relies on this: validation batches come from a generator seeded eval_generator_seed + 1
    assert history.eval_val_loss[-1] == estimate_loss(model, get_batch, 2, torch.Generator().manual_seed(78), "val")


def test_estimate_loss_restores_the_training_mode():
    model, get_batch = tiny_run_parts()
    for training in (True, False):
        model.train(training)
        estimate_loss(model, get_batch, 1, torch.Generator().manual_seed(0))
        assert model.training is training


def test_each_step_starts_from_zero_gradients():
    model, get_batch = tiny_run_parts()
    fresh = []
    for p in model.parameters():  # runs when p's gradient is computed, before it is stored: p.grad must be empty
        p.register_hook(lambda grad, p=p: fresh.append(p.grad is None))
    train(model, get_batch, TrainConfig(max_steps=3, warmup_steps=1, eval_interval=3, eval_batches=1, progress=False),
          torch.Generator().manual_seed(0))
    assert len(fresh) == 3 * len(list(model.parameters())) and all(fresh)


def test_gradient_clipping_is_applied():
    # clipped to a norm of 1e-12, every gradient is far below AdamW's eps = 1e-8: the first update g / (|g| + eps) is
    # about 1e-4 of a step, where unclipped it moves every weight by about lr
    model, get_batch = tiny_run_parts()
    before = [p.detach().clone() for p in model.parameters()]
    config = TrainConfig(max_steps=1, lr=1e-2, min_lr=0.0, warmup_steps=0, weight_decay=0.0, grad_clip=1e-12,
                         eval_batches=1, progress=False)
    train(model, get_batch, config, torch.Generator().manual_seed(0))
    assert max((p.detach() - b).abs().max().item() for p, b in zip(model.parameters(), before)) < 1e-5


def test_evaluation_counts_steps_and_seeds_are_checked():
    torch.manual_seed(0)
    data = torch.tensor([i % 7 for i in range(100)])
    model = GPT(GPTConfig(vocab_size=7, block_size=8, n_layer=1, n_head=2, n_embd=16))
    get_batch = make_batch_fn(data, data, 2, 8)
    for bad in (0, -1, True, 2.5):  # 0 divided by zero; -1 returned -0.0 as a loss
        with pytest.raises(ValueError, match="n_batches must be an int >= 1"):
            estimate_loss(model, get_batch, bad, torch.Generator())
    config = TrainConfig(max_steps=10, warmup_steps=2)
    for bad in (-1, math.nan, -math.inf, 2.5, True):  # -1 gave lr 0.0, NaN min_lr, -inf -inf
        with pytest.raises(ValueError, match=r"step must be an int >= 0"):
            lr_at(bad, config)
    assert lr_at(np.int64(3), config) == lr_at(3, config)
    small = TrainConfig(max_steps=2, warmup_steps=0, eval_interval=2, eval_batches=1, progress=False)
    for bad in (2.5, None, -1):  # failed in manual_seed at the first evaluation, after the training steps
        with pytest.raises(ValueError, match="eval_generator_seed must be a non-negative int"):
            train(model, get_batch, small, torch.Generator(), eval_generator_seed=bad)
    history = train(model, get_batch, small, torch.Generator(), eval_generator_seed=np.int64(3))  # TypeError before
    assert history.eval_steps == [2]
