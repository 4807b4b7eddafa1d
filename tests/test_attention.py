"""From-scratch attention against hand-computed values and against torch's scaled_dot_product_attention."""

import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from course_utils.model import masks
from course_utils.model.attention import attention_weights, scaled_dot_product_attention

T = 7


def qkv(seed=0, B=2, H=3, T=T, D=8, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, T, D, generator=g, dtype=dtype) for _ in range(3)]


def test_hand_computed_two_by_two():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    k = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    v = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    out, w = scaled_dot_product_attention(q, k, v, masks.causal_mask(2), return_weights=True)
    # row 0 sees only key 0; row 1 scores (0, 1/sqrt 2) -> softmax weights (1, e^{1/sqrt 2}) / sum
    e = math.exp(1 / math.sqrt(2))
    assert torch.allclose(w, torch.tensor([[1.0, 0.0], [1 / (1 + e), e / (1 + e)]]))
    assert torch.allclose(out[0], v[0])
    assert torch.allclose(out[1], (v[0] + e * v[1]) / (1 + e))
    # unmasked: row 0 scores (1/sqrt 2, 0)
    w_full = attention_weights(q, k)
    assert torch.allclose(w_full[0], torch.tensor([e / (1 + e), 1 / (1 + e)]))


def test_blocked_keys_get_exactly_zero_weight_and_rows_sum_to_one():
    q, k, _ = qkv(1)
    w = attention_weights(q, k, masks.sliding_window_mask(T, 3))
    assert (w[..., ~masks.sliding_window_mask(T, 3)] == 0).all()
    assert torch.allclose(w.sum(-1), torch.ones_like(w.sum(-1)))


MASKS = {
    "none": None,
    "causal": masks.causal_mask(T),
    "bidirectional": masks.bidirectional_mask(T),
    "prefix_lm": masks.prefix_lm_mask(T, 3),
    "sliding_window": masks.sliding_window_mask(T, 3),
    "sliding_window_symmetric": masks.sliding_window_mask(T, 2, causal=False),
    "padding_right": masks.padding_mask([7, 4], T, "right"),
    "padding_left": masks.padding_mask([7, 4], T, "left"),
    "causal_and_left_padding": masks.combine(masks.causal_mask(T), masks.padding_mask([7, 4], T, "left")),
    "prefix_and_right_padding": masks.combine(masks.prefix_lm_mask(T, 2), masks.padding_mask([5, 3], T)),
}


@pytest.mark.parametrize("name", MASKS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_torch_sdpa_for_every_mask_kind(name, dtype):
    q, k, v = qkv(2, dtype=dtype)
    mask = MASKS[name]
    ours = scaled_dot_product_attention(q, k, v, mask)
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert torch.allclose(ours, reference, atol=tol, rtol=tol), (ours - reference).abs().max()
    if mask is not None:  # the additive form gives the same answer in torch
        additive = masks.to_additive(mask, dtype)
        assert torch.allclose(F.scaled_dot_product_attention(q, k, v, attn_mask=additive), reference, atol=tol)


def test_is_causal_flag_equals_causal_mask():
    q, k, v = qkv(3)
    flagged = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.allclose(scaled_dot_product_attention(q, k, v, masks.causal_mask(T)), flagged, atol=1e-12)


def test_fully_masked_rows_give_zeros_like_sdpa():
    q, k, v = qkv(4, B=1)
    mask = masks.combine(masks.causal_mask(T), masks.padding_mask([4], T, "left"))  # first 3 query rows empty
    out, w = scaled_dot_product_attention(q, k, v, mask, return_weights=True)
    assert not torch.isnan(out).any()
    assert (out[..., :3, :] == 0).all() and (w[..., :3, :] == 0).all()
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-12)


def test_causality_is_exact_under_perturbation_of_the_future():
    q, k, v = qkv(5)
    k2, v2 = k.clone(), v.clone()
    k2[..., 4:, :] += 10.0
    v2[..., 4:, :] -= 3.0
    mask = masks.causal_mask(T)
    before = scaled_dot_product_attention(q, k, v, mask)
    after = scaled_dot_product_attention(q, k2, v2, mask)
    assert torch.equal(before[..., :4, :], after[..., :4, :])  # bit for bit
    assert not torch.allclose(before[..., 4:, :], after[..., 4:, :])
    unmasked = scaled_dot_product_attention(q, k2, v2)
    assert not torch.allclose(scaled_dot_product_attention(q, k, v)[..., :4, :], unmasked[..., :4, :])


def test_cross_attention_shapes_and_custom_scale():
    g = torch.Generator().manual_seed(6)
    q, k, v = torch.randn(3, 4, generator=g), torch.randn(5, 4, generator=g), torch.randn(5, 2, generator=g)
    mask = torch.rand(3, 5, generator=g) > 0.3
    mask[:, 0] = True
    out = scaled_dot_product_attention(q, k, v, mask, scale=0.3)
    assert out.shape == (3, 2)
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.3), atol=1e-6)


@pytest.mark.parametrize("call,error,match", [
    (lambda q, k, v: scaled_dot_product_attention(q, k, v, torch.ones(T, T)), TypeError, "boolean"),
    (lambda q, k, v: scaled_dot_product_attention(q, k, v, masks.causal_mask(T + 1)), ValueError, "broadcast"),
    (lambda q, k, v: scaled_dot_product_attention(q, k[..., :4], v), ValueError, "head size"),
    (lambda q, k, v: scaled_dot_product_attention(q, k, v[..., :3, :]), ValueError, "positions"),
    (lambda q, k, v: scaled_dot_product_attention(q.long(), k, v), TypeError, "floating"),
    (lambda q, k, v: scaled_dot_product_attention(q, k, v, torch.ones(T, dtype=torch.bool)), ValueError, "2 dim"),
])
def test_validation(call, error, match):
    q, k, v = qkv(7)
    with pytest.raises(error, match=match):
        call(q, k, v)


PEAK_SCRIPT = """
import gc, resource, torch
from course_utils.model import masks
from course_utils.model.attention import scaled_dot_product_attention
T = 4096
q, k, v = (torch.randn(1, 4, T, 64) for _ in range(3))
mask = masks.causal_mask(T)
gc.collect()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
scaled_dot_product_attention(q, k, v, mask)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) * 1024 / (4 * T * T * 4))  # peak growth in units of one (1, 4, T, T) float32 tensor
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KiB is Linux's convention")
def test_masked_attention_keeps_at_most_two_score_sized_tensors_alive():
    # scores, weights and the final masked_fill copy were all alive at once (3x); chapter 02's gpu profile times this
    # function at T = 16384, where one (1, 4, T, T) float32 tensor is 4 GiB. A fresh process gives a clean peak; at
    # T = 4096 the tensor (256 MiB) is large enough that the peak of the imports does not hide it.
    ratio = float(subprocess.run([sys.executable, "-c", PEAK_SCRIPT], capture_output=True, text=True,
                                 check=True).stdout)
    assert ratio < 2.5, f"peak memory of one call is {ratio:.2f}x a (1, 4, T, T) score tensor"


@pytest.mark.parametrize("scale", [math.nan, -1.0, 0.0, math.inf, True, "0.3"])
def test_scale_must_be_a_finite_positive_number(scale):
    q = torch.randn(4, 8)
    with pytest.raises(ValueError, match="scale must be a finite number > 0"):
        scaled_dot_product_attention(q, q, q, scale=scale)  # NaN gave all-NaN outputs, -1 reversed the preference
    with pytest.raises(ValueError, match="scale must be a finite number > 0"):
        attention_weights(q, q, scale=scale)


def test_numpy_scale_gives_the_float_result():
    import numpy as np

    q = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(scaled_dot_product_attention(q, q, q, scale=np.float32(0.3)),
                       scaled_dot_product_attention(q, q, q, scale=float(np.float32(0.3))))
