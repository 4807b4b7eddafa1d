"""Number formats, gradient casting and dynamic loss scaling (course_utils.parallel.precision)."""

from dataclasses import replace

import pytest
import torch

from course_utils.model.gpt import GPT, GPTConfig
from course_utils.parallel.precision import (LossScaler, cast_outcomes, collect_gradients, float_ranges, step_seconds,
                                             train_fp16)
from course_utils.train.batches import make_batch_fn
from course_utils.train.loop import TrainConfig, train

TINY = GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16, dropout=0.0)


def test_float_ranges_match_the_ieee_formats():
    fp16, bf16, fp32 = float_ranges()
    assert (fp16.max, fp16.smallest_normal, fp16.smallest_subnormal) == (65504.0, 2**-14, 2**-24)
    assert fp16.mantissa_bits == 10
    assert (bf16.smallest_normal, bf16.smallest_subnormal, bf16.mantissa_bits) == (2**-126, 2**-133, 7)
    assert bf16.max == pytest.approx(3.3895e38, rel=1e-4) and fp32.max == pytest.approx(3.4028e38, rel=1e-4)
    assert (fp32.smallest_subnormal, fp32.mantissa_bits) == (2**-149, 23)
    for r, dtype in zip((fp16, bf16, fp32), (torch.float16, torch.bfloat16, torch.float32)):
        x = torch.tensor([r.smallest_subnormal, r.smallest_subnormal / 2], dtype=torch.float64).to(dtype)
        assert x[0] > 0 and x[1] == 0  # half the smallest subnormal is a tie, rounded to the even neighbour 0
    assert torch.isinf(torch.tensor(65520.0).half())  # halfway from 65504 to the next step rounds to inf
    with pytest.raises(ValueError, match="unknown format"):
        float_ranges(("float8",))


def test_cast_outcomes_hand_computed():
    values = torch.tensor([2.0**-26, 2.0**-20, 1e-3, 1e5, 0.0])  # the zero is not counted
    assert cast_outcomes(values) == {"underflow": 0.25, "subnormal": 0.25, "overflow": 0.25, "normal": 0.25}
    # x 2^8: 2^-18 is subnormal, 2^-12 and 0.256 are normal, 2.56e7 overflows
    assert cast_outcomes(values, 2.0**8) == {"underflow": 0.0, "subnormal": 0.25, "overflow": 0.25, "normal": 0.5}
    assert cast_outcomes(values, 1.0, torch.bfloat16)["normal"] == 1.0  # bfloat16 has float32's range
    with pytest.raises(ValueError, match="scale must be > 0"):
        cast_outcomes(values, 0.0)
    with pytest.raises(TypeError, match="floating-point"):
        cast_outcomes(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="no non-zero"):
        cast_outcomes(torch.zeros(3))


def test_collect_gradients_shapes_and_values():
    torch.manual_seed(0)
    model = GPT(TINY)
    g = torch.Generator().manual_seed(1)
    idx, targets = torch.randint(11, (3, 8), generator=g), torch.randint(11, (3, 8), generator=g)
    grads = collect_gradients(model, idx, targets)
    n_params = sum(p.numel() for p in model.parameters())
    assert grads["weight gradients"].numel() == n_params
    assert grads["activation gradients"].numel() == TINY.n_layer * 3 * 8 * TINY.n_embd + 3 * 8 * TINY.vocab_size
    expected = torch.cat([p.grad.flatten() for p in model.parameters()])
    model.zero_grad()
    model(idx, targets)[1].backward()
    torch.testing.assert_close(grads["weight gradients"], torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert torch.equal(grads["weight gradients"], expected)
    assert not model.lm_head._forward_hooks  # the hooks are removed
    with pytest.raises(TypeError, match="course GPT"):
        collect_gradients(torch.nn.Linear(2, 2), idx, targets)


def _gradient_sequence():
    g = torch.Generator().manual_seed(3)
    steps = []
    for t in range(14):
        grad = torch.randn(5, generator=g)
        if t in (0, 1, 6):
            grad[2] = float("inf")
        if t == 9:
            grad[0] = float("nan")
        steps.append(grad)
    return steps


def _run(scaler_kind: str):
    weight = torch.nn.Parameter(torch.ones(5))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    kwargs = dict(init_scale=2.0**10, growth_factor=2.0, backoff_factor=0.5, growth_interval=3)
    scaler = LossScaler(**kwargs) if scaler_kind == "ours" else torch.amp.GradScaler("cpu", **kwargs)
    scales, skipped = [], []
    for grad in _gradient_sequence():
        optimizer.zero_grad()
        scaler.scale((weight * grad).sum()).backward()  # d/dweight = grad * scale
        before = weight.detach().clone()
        scales.append(float(scaler.get_scale()) if scaler_kind == "torch" else scaler.scale_value)
        scaler.step(optimizer)
        scaler.update()
        skipped.append(torch.equal(before, weight.detach()))
    return scales, skipped, weight.detach()


def test_loss_scaler_matches_torch_grad_scaler():
    ours, theirs = _run("ours"), _run("torch")
    assert ours[0] == theirs[0]  # the same scale at every step
    assert ours[1] == theirs[1]  # the same steps skipped
    assert torch.equal(ours[2], theirs[2])  # power-of-two scales: unscaling is exact, parameters bit-equal
    assert ours[1][:3] == [True, True, False] and ours[1][9]  # the injected inf/nan steps were skipped
    assert ours[0][:3] == [2.0**10, 2.0**9, 2.0**8] and ours[0][5] == 2.0**9  # back off twice, grow after 3 clean


def test_loss_scaler_records_and_rejects_misuse():
    scaler = LossScaler(init_scale=4.0, growth_interval=1)
    weight = torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    scaler.scale(weight.sum()).backward()
    assert torch.equal(weight.grad, torch.full((2,), 4.0))
    assert scaler.unscale_(optimizer) is False and torch.equal(weight.grad, torch.ones(2))
    with pytest.raises(RuntimeError, match="already called"):
        scaler.unscale_(optimizer)
    assert scaler.step(optimizer) is True
    scaler.update()
    assert (scaler.scales, scaler.skipped, scaler.scale_value) == ([4.0], [False], 8.0)
    with pytest.raises(RuntimeError, match="needs unscale_"):
        scaler.update()
    for kwargs, match in [({"init_scale": 0}, "init_scale"), ({"growth_factor": 1.0}, "growth_factor"),
                          ({"backoff_factor": 1.0}, "backoff_factor"), ({"growth_interval": 0}, "growth_interval")]:
        with pytest.raises(ValueError, match=match):
            LossScaler(**kwargs)


def test_loss_scaling_rescues_a_gradient_that_float16_flushes_to_zero():
    # The gradient of w is 2^-26, below float16's smallest subnormal 2^-24: computed in float16 it is 0.
    x = torch.full((4,), 2.0**-13)

    def grad_of_w(scale: float) -> torch.Tensor:
        w = torch.nn.Parameter(torch.ones(4))
        loss = (w.half() * x.half()).float().sum() * 2.0**-13
        (loss * scale).backward()
        return w.grad / scale

    assert torch.equal(grad_of_w(1.0), torch.zeros(4))
    assert torch.equal(grad_of_w(2.0**16), torch.full((4,), 2.0**-26))


def _tiny_batches():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(TINY.vocab_size, (400,), generator=g)
    return make_batch_fn(ids[:300], ids[300:], batch_size=2, block_size=8)


def test_train_fp16_skips_overflowing_steps_and_then_trains():
    torch.manual_seed(0)
    model = GPT(TINY)
    start = [p.detach().clone() for p in model.parameters()]
    config = TrainConfig(max_steps=12, warmup_steps=0, eval_interval=12, eval_batches=2, progress=False)
    scaler = LossScaler(init_scale=2.0**24, growth_interval=100)  # too large: float16 gradients overflow at first
    history = train_fp16(model, _tiny_batches(), config, torch.Generator().manual_seed(1), scaler)
    assert scaler.skipped[0] and not scaler.skipped[-1]
    first_clean = scaler.skipped.index(False)
    assert scaler.scales[first_clean] == 2.0**24 * 0.5**first_clean  # halved once per skipped step
    assert len(history.train_loss) == 12 and all(map(torch.isfinite, map(torch.tensor, history.train_loss)))
    assert history.eval_steps == [12] and torch.isfinite(torch.tensor(history.final_val_loss))
    assert any(not torch.equal(a, b) for a, b in zip(start, model.parameters()))
    with pytest.raises(TypeError, match="LossScaler"):
        train_fp16(model, _tiny_batches(), config, torch.Generator(), scaler=None)


def test_step_seconds_times_without_changing_the_model():
    torch.manual_seed(0)
    model = GPT(TINY)
    before = [p.detach().clone() for p in model.parameters()]
    idx = torch.randint(11, (2, 8))
    times = step_seconds(model, idx, idx, steps=2, precision="bf16")
    assert len(times.seconds) == 2 and times.median > 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    with pytest.raises(ValueError, match="precision must be"):
        step_seconds(model, idx, idx, steps=1, precision="fp8")
    with pytest.raises(ValueError, match="steps must be"):
        step_seconds(model, idx, idx, steps=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_train_fp16_on_cuda_trains_like_float32():
    # float16 autocast with dynamic loss scaling on the GPU it is meant for: the weights stay float32, the scale is
    # recorded every step, and the validation loss (measured in float32) falls as far as a float32 run's does.
    config = GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=32, dropout=0.0)
    ids = torch.arange(11).repeat(60)  # a periodic sequence: learnable in a few dozen steps
    batches = make_batch_fn(ids[:500], ids[500:], batch_size=8, block_size=16, device="cuda")
    train_config = TrainConfig(max_steps=60, lr=3e-3, warmup_steps=5, eval_interval=60, eval_batches=4,
                               progress=False)
    torch.manual_seed(0)
    model = GPT(config).to("cuda")
    scaler = LossScaler()
    history = train_fp16(model, batches, train_config, torch.Generator().manual_seed(1), scaler)
    assert all(p.dtype == torch.float32 and p.device.type == "cuda" for p in model.parameters())
    assert len(scaler.scales) == 60 and not all(scaler.skipped)
    assert history.final_val_loss < history.train_loss[0] - 1.0  # log(11) = 2.4 nats at the start
    torch.manual_seed(0)
    reference = GPT(config).to("cuda")
    fp32 = train(reference, batches, replace(train_config, precision="fp32"), torch.Generator().manual_seed(1))
    assert abs(history.final_val_loss - fp32.final_val_loss) < 0.1


def test_numpy_numbers_are_taken_and_kept_as_python_numbers():
    import numpy as np

    def run(**kwargs):
        weight, scaler = torch.nn.Parameter(torch.ones(5)), LossScaler(**kwargs)
        optimizer = torch.optim.SGD([weight], lr=0.1)
        for grad in _gradient_sequence():
            optimizer.zero_grad()
            scaler.scale((weight * grad).sum()).backward()
            scaler.step(optimizer)
            scaler.update()
        return scaler

    ours = run(init_scale=np.float32(2.0**10), growth_factor=np.float64(2.0), backoff_factor=np.float32(0.5),
               growth_interval=np.int64(3))
    plain = run(init_scale=2.0**10, growth_factor=2.0, backoff_factor=0.5, growth_interval=3)
    assert (ours.scales, ours.skipped) == (plain.scales, plain.skipped)
    assert type(ours.growth_interval) is int and all(type(s) is float for s in ours.scales)
    for bad in (True, 2.0, np.float64(3.0)):
        with pytest.raises(ValueError, match="growth_interval must be a positive int"):
            LossScaler(growth_interval=bad)
    torch.manual_seed(0)
    model, idx = GPT(TINY), torch.randint(11, (2, 8))
    assert len(step_seconds(model, idx, idx, steps=np.int64(2), warmup=np.int64(0)).seconds) == 2
    for steps, warmup, match in ((True, 1, r"steps must be an int >= 1, got True"),
                                 # numpy 1.x: repr 1.0
                                 (2, np.float64(1.0), r"warmup must be an int >= 0, got (np.float64\(1.0\)|1.0)$")):
        with pytest.raises(ValueError, match=match):
            step_seconds(model, idx, idx, steps=steps, warmup=warmup)


@pytest.mark.parametrize("kwargs, match", [
    (dict(init_scale=float("inf")), "init_scale must be a finite number > 0"),  # every step skipped, scale stuck
    (dict(growth_factor=float("inf")), "growth_factor must be a finite number > 1"),
    (dict(backoff_factor=True), r"backoff_factor must be in \(0, 1\)"),
    (dict(init_scale="65536"), "init_scale must be"),  # was TypeError: '>' not supported
])
def test_loss_scaler_refuses_infinite_scales_bools_and_strings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LossScaler(**kwargs)
