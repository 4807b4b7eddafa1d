"""LoRALinear against hand-computed values: identity at init, the low-rank update, merge/unmerge, gradients only on
A and B, dropout on the LoRA path only, rsLoRA scaling, seeded init, argument checks."""

import math

import pytest
import torch
import torch.nn as nn

from course_utils.device import make_generator
from course_utils.lora.layer import LoRALinear

IN, OUT, R = 12, 10, 4
# float32 tolerance for merged vs unmerged: the two paths sum the same products in a different order
# (x (W + s B A)^T vs x W^T + s (x A^T) B^T), so they differ by a few ulps of values of size ~1:
# 1e-5 absolute/relative is ~100x float32's epsilon (1.2e-7) times the inner dimension's rounding growth.
ATOL = RTOL = 1e-5


def make_layer(seed=0, r=R, alpha=8.0, **kwargs):
    torch.manual_seed(seed)
    base = nn.Linear(IN, OUT)
    return LoRALinear(base, r, alpha, generator=make_generator(seed, "cpu"), **kwargs)


def randomise_B(layer, seed=1):
    with torch.no_grad():
        layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=make_generator(seed, "cpu")))


def inputs(shape=(3, 5, IN), seed=2):
    return torch.randn(shape, generator=make_generator(seed, "cpu"))


def test_attributes_shapes_and_frozen_base():
    layer = make_layer()
    assert (layer.r, layer.alpha, layer.rslora, layer.scaling) == (R, 8.0, False, 2.0)
    assert (layer.in_features, layer.out_features) == (IN, OUT)
    assert layer.lora_A.shape == (R, IN) and layer.lora_B.shape == (OUT, R)
    assert layer.lora_A.requires_grad and layer.lora_B.requires_grad
    assert not layer.base.weight.requires_grad and not layer.base.bias.requires_grad
    assert torch.equal(layer.lora_B, torch.zeros(OUT, R)) and not layer.merged
    assert isinstance(layer.lora_dropout, nn.Identity)
    text = repr(layer)
    assert all(s in text for s in ("r=4", "alpha=8.0", "scaling=2", "merged=False"))


def test_output_equals_base_at_init_exactly():
    layer = make_layer()
    x = inputs()
    assert torch.equal(layer(x), layer.base(x))


def test_output_matches_the_formula_by_hand():
    layer = make_layer()
    randomise_B(layer)
    x = inputs()
    W, b, A, B = layer.base.weight, layer.base.bias, layer.lora_A, layer.lora_B
    expected = x @ W.T + b + layer.scaling * (x @ A.T) @ B.T  # (3, 5, OUT)
    out = layer(x)
    assert out.shape == (3, 5, OUT)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(layer.delta_weight(), layer.scaling * B @ A)
    assert layer.delta_weight().shape == (OUT, IN)


def test_merge_equals_unmerged_and_unmerge_restores_the_weight():
    layer = make_layer()
    randomise_B(layer)
    x = inputs()
    W0 = layer.base.weight.detach().clone()
    unmerged = layer(x)
    layer.merge()
    assert layer.merged
    torch.testing.assert_close(layer.base.weight, W0 + layer.delta_weight(), atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(layer(x), unmerged, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(layer(x), layer.base(x))  # merged forward is the base layer alone
    layer.unmerge()
    assert not layer.merged
    torch.testing.assert_close(layer.base.weight, W0, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(layer(x), unmerged, atol=ATOL, rtol=RTOL)


def test_double_merge_and_unmerge_warn_and_change_nothing():
    layer = make_layer()
    randomise_B(layer)
    with pytest.warns(UserWarning, match="not merged"):
        layer.unmerge()
    layer.merge()
    W = layer.base.weight.detach().clone()
    with pytest.warns(UserWarning, match="already merged"):
        layer.merge()
    assert torch.equal(layer.base.weight, W) and layer.merged
    layer.unmerge()
    W = layer.base.weight.detach().clone()
    with pytest.warns(UserWarning, match="not merged"):
        layer.unmerge()
    assert torch.equal(layer.base.weight, W) and not layer.merged


def test_merge_in_bfloat16_is_computed_in_float32():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(IN, OUT).to(torch.bfloat16), R, 8.0, generator=make_generator(0, "cpu"))
    assert layer.lora_A.dtype == layer.lora_B.dtype == torch.bfloat16
    randomise_B(layer)
    W0 = layer.base.weight.detach().clone()
    layer.merge()
    expected = (W0.float() + layer.scaling * layer.lora_B.float() @ layer.lora_A.float()).bfloat16()
    assert torch.equal(layer.base.weight, expected)


def test_only_A_and_B_get_gradients():
    layer = make_layer()
    randomise_B(layer)
    layer(inputs()).square().sum().backward()
    assert layer.base.weight.grad is None and layer.base.bias.grad is None
    assert layer.lora_A.grad is not None and layer.lora_A.grad.abs().sum() > 0
    assert layer.lora_B.grad is not None and layer.lora_B.grad.abs().sum() > 0


def test_dropout_acts_on_the_lora_path_only():
    layer = make_layer(dropout=0.9)
    assert isinstance(layer.lora_dropout, nn.Dropout) and layer.lora_dropout.p == 0.9
    x = inputs()
    layer.train()
    torch.manual_seed(3)
    assert torch.equal(layer(x), layer.base(x))  # B = 0: only the base path contributes, dropout or not
    randomise_B(layer)
    torch.manual_seed(3)
    first = layer(x)
    torch.manual_seed(4)
    second = layer(x)
    assert not torch.equal(first, second)  # the LoRA path is dropped at random in training
    with torch.no_grad():
        layer.lora_B.zero_()
    torch.manual_seed(4)
    assert torch.equal(layer(x), layer.base(x))  # ... and the base path never is
    randomise_B(layer)
    layer.eval()
    A, B = layer.lora_A, layer.lora_B
    expected = layer.base(x) + layer.scaling * (x @ A.T) @ B.T
    torch.testing.assert_close(layer(x), expected)  # eval: no dropout on the LoRA path


def test_rslora_scaling():
    layer = make_layer(r=4, alpha=8.0, rslora=True)
    assert layer.rslora and layer.scaling == pytest.approx(8.0 / math.sqrt(4))
    assert make_layer(r=2, alpha=3.0).scaling == pytest.approx(1.5)


def test_seeded_init_is_reproducible_and_is_nn_linear_default():
    a = make_layer(seed=0).lora_A
    b = make_layer(seed=0).lora_A
    c = make_layer(seed=1).lora_A
    assert torch.equal(a, b) and not torch.equal(a, c)
    reference = torch.empty(R, IN)
    nn.init.kaiming_uniform_(reference, a=math.sqrt(5), generator=make_generator(0, "cpu"))
    assert torch.equal(a, reference)
    assert a.abs().max() <= 1 / math.sqrt(IN)
    # without a generator, torch's default RNG (seeded here) is used
    torch.manual_seed(5)
    first = LoRALinear(nn.Linear(IN, OUT), R, 1.0).lora_A
    torch.manual_seed(5)
    assert torch.equal(first, LoRALinear(nn.Linear(IN, OUT), R, 1.0).lora_A)


def test_meta_device_creates_shapes_without_drawing():
    with torch.device("meta"):
        base = nn.Linear(IN, OUT)
    gen = make_generator(0, "cpu")
    state = gen.get_state()
    layer = LoRALinear(base, R, 8.0, generator=gen)
    assert layer.lora_A.device.type == "meta" and layer.lora_A.shape == (R, IN)
    assert torch.equal(gen.get_state(), state)
    assert layer(torch.empty(2, IN, device="meta")).shape == (2, OUT)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(base=nn.Conv1d(2, 2, 1)), TypeError, "nn.Linear"),
    (dict(r=0), ValueError, r"1 <= r <= 10"),
    (dict(r=11), ValueError, r"allowed: 1 <= r <= 10"),
    (dict(r=2.0), TypeError, "must be an int"),
    (dict(r=True), TypeError, "must be an int"),
    (dict(alpha=0), ValueError, "alpha must be a finite number > 0"),
    (dict(alpha=float("inf")), ValueError, "alpha must be a finite number > 0"),
    (dict(alpha=float("nan")), ValueError, "alpha must be a finite number > 0"),
    (dict(alpha="8"), TypeError, "alpha must be a finite number > 0, got '8'"),
    (dict(dropout=1.0), ValueError, r"dropout must be in \[0, 1\)"),
    (dict(dropout=-0.1), ValueError, r"dropout must be in \[0, 1\)"),
    (dict(rslora=1), TypeError, "rslora must be a bool"),
    (dict(generator=0), TypeError, "generator must be a torch.Generator"),
])
def test_bad_arguments_raise_with_a_clear_message(kwargs, error, match):
    args = dict(base=nn.Linear(IN, OUT), r=R, alpha=8.0) | kwargs
    with pytest.raises(error, match=match):
        LoRALinear(**args)


def test_numpy_hyperparameters_are_taken_and_stored_as_python_numbers():
    import numpy as np

    ours = make_layer(r=np.int64(R), alpha=np.float32(8.0), dropout=np.float64(0.25), rslora=True)
    plain = make_layer(r=R, alpha=8.0, dropout=0.25, rslora=True)
    assert (type(ours.r), type(ours.alpha), type(ours.scaling), ours.lora_dropout.p) == (int, float, float, 0.25)
    assert repr(ours) == repr(plain) and torch.equal(ours.lora_A, plain.lora_A)
    assert make_layer(alpha=np.int64(8)).alpha == 8 and type(make_layer(alpha=np.int64(8)).alpha) is int
    for kwargs, error in (({"r": np.float64(4.0)}, TypeError), ({"alpha": np.float32(np.nan)}, ValueError),
                          ({"dropout": np.float32(1.0)}, ValueError), ({"alpha": np.bool_(True)}, TypeError)):
        with pytest.raises(error):
            make_layer(**kwargs)
