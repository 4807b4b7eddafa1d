"""RMSNorm, RoPE, SwiGLU and GQA's key/value repetition against transformers' Llama code and hand-computed values."""

import math

import numpy as np
import pytest
import torch
import transformers
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.llama import modeling_llama as hf_llama

from course_utils.generate.kv_cache import kv_cache_bytes
from course_utils.model.modern import (RMSNorm, SwiGLU, apply_rope, repeat_kv, rope_cos_sin,
                                       rope_inverse_frequencies, rotate_half)


def hf_config(**overrides):
    settings = dict(vocab_size=50, hidden_size=48, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                    num_key_value_heads=2, max_position_embeddings=128,
                    rope_parameters={"rope_type": "default", "rope_theta": 500.0})
    settings.update(overrides)
    return transformers.LlamaConfig(**settings)


def test_rmsnorm_matches_transformers_and_the_formula():
    torch.manual_seed(0)
    ours, theirs = RMSNorm(16, eps=1e-5), hf_llama.LlamaRMSNorm(16, eps=1e-5)
    weight = torch.randn(16)
    ours.weight.data.copy_(weight)
    theirs.weight.data.copy_(weight)
    x = torch.randn(2, 5, 16) * 3 + 1  # a non-zero mean: RMSNorm does not subtract it
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-6)
    by_hand = x / torch.sqrt((x ** 2).mean(-1, keepdim=True) + 1e-5) * weight
    torch.testing.assert_close(ours(x), by_hand, rtol=1e-5, atol=1e-6)
    assert ours(x).dtype == x.dtype and ours(x.bfloat16()).dtype == torch.float32  # float32 weight, as transformers
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        RMSNorm(4, eps=0.0)


def test_rmsnorm_squares_half_precision_inputs_in_float32():
    x = torch.full((1, 2, 4), 300.0, dtype=torch.float16)  # 300^2 = 90000 overflows float16 (max 65504)
    out = RMSNorm(4)(x)
    torch.testing.assert_close(out, hf_llama.LlamaRMSNorm(4)(x), rtol=0, atol=0)
    torch.testing.assert_close(out, torch.ones(1, 2, 4), rtol=0, atol=1e-3)


def test_rmsnorm_default_eps_is_llamas():
    x = torch.full((1, 1, 4), 1e-3)  # mean of squares 1e-6: the default eps (1e-6, as LlamaRMSNorm) halves it
    torch.testing.assert_close(RMSNorm(4)(x), hf_llama.LlamaRMSNorm(4)(x))
    torch.testing.assert_close(RMSNorm(4)(x), torch.full((1, 1, 4), 1 / math.sqrt(2)))


def test_rmsnorm_of_a_constant_vector_is_its_sign():
    out = RMSNorm(4, eps=0.0 + 1e-12)(torch.full((1, 1, 4), -7.0))
    torch.testing.assert_close(out, torch.full((1, 1, 4), -1.0))


def test_inverse_frequencies_match_transformers_default_and_linear_scaling():
    config = hf_config()
    inv_freq, _ = hf_llama.LlamaRotaryEmbedding.compute_default_rope_parameters(config)
    torch.testing.assert_close(rope_inverse_frequencies(12, 500.0), inv_freq, rtol=0, atol=0)
    linear = hf_config(rope_parameters={"rope_type": "linear", "rope_theta": 500.0, "factor": 4.0})
    inv_linear, _ = ROPE_INIT_FUNCTIONS["linear"](linear, "cpu")
    torch.testing.assert_close(rope_inverse_frequencies(12, 500.0, scaling_factor=4.0), inv_linear)
    # by hand: pair i turns at theta^(-2i/D); for D = 4, theta = 100: 1 and 1/10 radians per position
    torch.testing.assert_close(rope_inverse_frequencies(4, 100.0, dtype=torch.float64),
                               torch.tensor([1.0, 0.1], dtype=torch.float64))


def test_rope_matches_transformers_rotary_embedding_and_apply_rotary_pos_emb():
    torch.manual_seed(1)
    config = hf_config()
    B, H, T, D = 2, 4, 7, 12
    q, k = torch.randn(B, H, T, D), torch.randn(B, 2, T, D)
    position_ids = torch.tensor([[0, 1, 2, 3, 4, 5, 6], [0, 0, 0, 1, 2, 3, 4]])  # the second row left-padded
    cos_hf, sin_hf = hf_llama.LlamaRotaryEmbedding(config)(q, position_ids)
    cos, sin = rope_cos_sin(position_ids, rope_inverse_frequencies(D, 500.0))
    torch.testing.assert_close(cos, cos_hf, rtol=0, atol=1e-7)
    torch.testing.assert_close(sin, sin_hf, rtol=0, atol=1e-7)
    q_hf, k_hf = hf_llama.apply_rotary_pos_emb(q, k, cos_hf, sin_hf)
    torch.testing.assert_close(apply_rope(q, cos, sin), q_hf, rtol=0, atol=1e-6)
    torch.testing.assert_close(apply_rope(k, cos, sin), k_hf, rtol=0, atol=1e-6)
    torch.testing.assert_close(rotate_half(q), hf_llama.rotate_half(q), rtol=0, atol=0)
    with pytest.raises(ValueError, match="same T and D"):
        apply_rope(q, cos[:, :3], sin[:, :3])


def test_rope_rotates_each_pair_by_position_times_frequency_by_hand():
    # D = 2: one pair, rotated by angle = position * 1 radian
    x = torch.tensor([[[[1.0, 0.0]]]], dtype=torch.float64)  # (1, 1, 1, 2)
    cos, sin = rope_cos_sin(torch.tensor([3]), rope_inverse_frequencies(2, 10.0, dtype=torch.float64))
    rotated = apply_rope(x, cos, sin)
    torch.testing.assert_close(rotated, torch.tensor([[[[math.cos(3.0), math.sin(3.0)]]]], dtype=torch.float64))
    assert torch.allclose(rotated.norm(), x.norm())  # a rotation keeps lengths


def test_rope_score_depends_only_on_the_offset():
    """q at position m and k at position n: q_m . k_n after RoPE is a function of m - n alone (float64)."""
    torch.manual_seed(2)
    D = 16
    inv_freq = rope_inverse_frequencies(D, 10000.0, dtype=torch.float64)
    q, k = torch.randn(D, dtype=torch.float64), torch.randn(D, dtype=torch.float64)

    def score(m: int, n: int) -> float:
        cos, sin = rope_cos_sin(torch.tensor([m, n]), inv_freq)  # (2, D)
        rotated_q = apply_rope(q.view(1, 1, 1, D).expand(1, 1, 2, D), cos, sin)[0, 0, 0]
        rotated_k = apply_rope(k.view(1, 1, 1, D).expand(1, 1, 2, D), cos, sin)[0, 0, 1]
        return float(rotated_q @ rotated_k)

    for offset in (0, 1, 5, 37):
        scores = [score(n + offset, n) for n in (0, 3, 100, 1000)]
        assert max(scores) - min(scores) < 1e-9, (offset, scores)
    assert abs(score(5, 0) - score(0, 5)) > 1e-3  # but it does depend on the offset (and its sign)
    assert abs(score(0, 0) - float(q @ k)) < 1e-12  # offset 0: the plain dot product


def test_rope_validates_head_size():
    for bad in (3, 0, 7.0):
        with pytest.raises(ValueError, match="head_size must be an even int"):
            rope_inverse_frequencies(bad)
    with pytest.raises(ValueError, match="scaling_factor must be >= 1"):
        rope_inverse_frequencies(4, scaling_factor=0.5)


def test_swiglu_matches_hand_computed_values_and_transformers_mlp():
    mlp = SwiGLU(n_embd=2, intermediate_size=2)
    with torch.no_grad():
        mlp.gate_proj.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
        mlp.up_proj.weight.copy_(torch.tensor([[1.0, 1.0], [0.0, 1.0]]))
        mlp.down_proj.weight.copy_(torch.tensor([[1.0, 0.0], [1.0, -1.0]]))
    x = torch.tensor([[[1.0, -1.0]]])
    silu = lambda z: z / (1 + math.exp(-z))  # noqa: E731
    hidden = [silu(1.0) * 0.0, silu(-2.0) * -1.0]  # gate (1, -2) through silu, times up (0, -1)
    expected = torch.tensor([[[hidden[0], hidden[0] - hidden[1]]]])
    torch.testing.assert_close(mlp(x), expected)
    config = hf_config(hidden_size=2, intermediate_size=2, num_attention_heads=1, num_key_value_heads=1)
    theirs = hf_llama.LlamaMLP(config)
    theirs.load_state_dict(mlp.state_dict())
    torch.testing.assert_close(mlp(x), theirs(x), rtol=0, atol=0)


def test_repeat_kv_matches_transformers_and_groups_heads_in_place():
    kv = torch.randn(2, 3, 5, 4)
    for n_rep in (1, 2, 3):
        torch.testing.assert_close(repeat_kv(kv, n_rep), hf_llama.repeat_kv(kv, n_rep), rtol=0, atol=0)
    repeated = repeat_kv(kv, 3)  # (2, 9, 5, 4): query heads 0, 1, 2 share kv head 0; 3, 4, 5 share kv head 1
    assert repeated.shape == (2, 9, 5, 4)
    assert torch.equal(repeated[:, 4], kv[:, 1]) and torch.equal(repeated[:, 8], kv[:, 2])
    with pytest.raises(ValueError, match="n_rep must be an int >= 1"):
        repeat_kv(kv, 0)
    with pytest.raises(ValueError, match=r"\(B, H_kv, T, D\)"):
        repeat_kv(kv[0], 2)


def test_kv_cache_memory_with_and_without_gqa_for_smollm2():
    # SmolLM2-135M: 30 layers, 9 query heads, 3 key/value heads, head size 64; 8,192 tokens in float32
    gqa = kv_cache_bytes(n_layer=30, n_kv_head=3, head_size=64, n_tokens=8192, bytes_per_value=4)
    mha = kv_cache_bytes(n_layer=30, n_kv_head=9, head_size=64, n_tokens=8192, bytes_per_value=4)
    assert gqa == 30 * 2 * 3 * 64 * 8192 * 4 == 377_487_360  # 360 MiB
    assert mha == 3 * gqa


def test_rope_refuses_infinite_theta_and_scaling_and_takes_numpy_numbers():
    for bad in (math.inf, True, math.nan):  # inf gave frequencies [1, 0, 0, ...]: only the first pair rotated
        with pytest.raises(ValueError, match="rope_theta must be > 1 and finite"):
            rope_inverse_frequencies(8, rope_theta=bad)
    for bad in (math.inf, True):  # inf divided every frequency to 0
        with pytest.raises(ValueError, match="scaling_factor must be >= 1 and finite"):
            rope_inverse_frequencies(8, scaling_factor=bad)
    expected = rope_inverse_frequencies(8, 500.0, 2.0)
    assert torch.equal(rope_inverse_frequencies(np.int64(8), np.float32(500.0), np.int64(2)), expected)


def test_repeat_kv_takes_numpy_ints():
    kv = torch.randn(2, 3, 5, 4)
    assert torch.equal(repeat_kv(kv, np.int64(3)), repeat_kv(kv, 3))
    assert repeat_kv(kv, np.int32(1)) is kv
    for bad in (True, np.float64(2.0)):
        with pytest.raises(ValueError, match="n_rep must be an int >= 1"):
            repeat_kv(kv, bad)


@pytest.mark.parametrize("eps", [True, "1e-6", float("nan"), float("inf")])
def test_rms_norm_refuses_a_bool_a_string_and_non_finite_eps(eps):
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        RMSNorm(4, eps=eps)
