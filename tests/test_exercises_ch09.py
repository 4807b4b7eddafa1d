"""Chapter 09's exercise checks accept the reference solution and other correct forms, reject likely wrong answers
without revealing the expected value, cannot be passed by calling the package's RoPE, GQA or MoE functions, PyTorch's
``enable_gqa=True`` or ``flex_attention``, ``transformers``' rotary, attention and load-balancing functions (any
model's copy, also a reloaded one), and agree with hand computations, with the package and with ``transformers``
(written independently)."""

import importlib
import math
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.nn.functional import scaled_dot_product_attention as imported_sdpa  # a name taken before any check runs

from course_utils.exercises import ch09 as ex
from course_utils.model import llama, modern, moe
from course_utils.solutions import ch09 as sol

from exercise_helpers import assert_hidden, rejects, refuses_reference_then_passes  # noqa: E402


# ---------- exercise 1: RoPE by hand ----------

def expected_rope_values():
    return torch.cat([ex._rope_reference(x, p, t).flatten() for _, x, p, t in ex._rope_cases()]).tolist()


def test_rope_reference_hand_values_and_package_agreement():
    turned = ex._rope_reference(torch.tensor([[1.0, 0.0]]), torch.tensor([1]), 10000.0)  # pair 0: one radian
    assert turned[0].tolist() == pytest.approx([math.cos(1.0), math.sin(1.0)])
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])  # pairs (1, 3) and (2, 4); pair 1 turns by 2 / 100 rad (theta 100)
    a = 2 * 100.0 ** (-2 / 4)
    expected = [math.cos(2) - 3 * math.sin(2), 2 * math.cos(a) - 4 * math.sin(a),
                math.sin(2) + 3 * math.cos(2), 2 * math.sin(a) + 4 * math.cos(a)]
    assert ex._rope_reference(x, torch.tensor([2]), 100.0)[0].tolist() == pytest.approx(expected)
    for _, x, positions, theta in ex._rope_cases():
        inv_freq = modern.rope_inverse_frequencies(x.shape[-1], theta, dtype=torch.float64)
        cos, sin = modern.rope_cos_sin(positions, inv_freq)
        package = modern.apply_rope(x.double().reshape(1, -1, *x.shape[-2:]), cos, sin).reshape(x.shape)
        assert torch.allclose(ex._rope_reference(x, positions, theta), package, atol=1e-12)


def rope_transformers(x, positions, theta=10000.0):  # transformers' own function, fed its cos/sin: refused
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb
    angles = positions.double()[:, None] * theta ** (-torch.arange(0, x.shape[-1], 2).double() / x.shape[-1])
    angles = torch.cat((angles, angles), dim=-1)  # (T, D)
    out, _ = apply_rotary_pos_emb(x.double(), x.double(), angles.cos(), angles.sin(), unsqueeze_dim=0)
    return out.reshape(x.shape)  # (1, T, D) for a (T, D) input: cos and sin were unsqueezed in front


def rope_float64_lists(x, positions, theta=10000.0):  # pair by pair in plain Python, returned as nested lists
    D = x.shape[-1]
    rows = x.double().reshape(-1, x.shape[-2], D).tolist()
    out = []
    for head in rows:
        out.append([])
        for row, p in zip(head, positions.tolist()):
            new = list(row)
            for i in range(D // 2):
                angle = p * theta ** (-2 * i / D)
                a, b = row[i], row[i + D // 2]
                new[i] = a * math.cos(angle) - b * math.sin(angle)
                new[i + D // 2] = a * math.sin(angle) + b * math.cos(angle)
            out[-1].append(new)
    return out if x.dim() == 3 else out[0]


def rope_numpy_complex(x, positions, theta=10000.0):  # complex numbers in numpy, float32
    z = x.numpy().astype(np.float32)
    half = z.shape[-1] // 2
    c = z[..., :half] + 1j * z[..., half:]
    freq = theta ** (-2 * np.arange(half, dtype=np.float32) / z.shape[-1])
    c = c * np.exp(1j * positions.numpy()[:, None] * freq)
    return np.concatenate([c.real, c.imag], axis=-1).astype(np.float32)


def test_rope_accepts_solution_and_other_forms():
    ex.check_apply_rotary(sol.apply_rotary)
    ex.check_apply_rotary(rope_float64_lists)
    ex.check_apply_rotary(rope_numpy_complex)


def test_rope_refuses_transformers_rotary_helpers_and_restores_them():
    # the rotation is the exercise: transformers' apply_rotary_pos_emb and rotate_half (every model's copy) are off
    from transformers.models.llama.modeling_llama import rotate_half
    from transformers.models.qwen2.modeling_qwen2 import apply_rotary_pos_emb as qwen_copy

    def angles(x, positions, theta):  # (T, D): each pair's angle, written twice (the rotate-half layout)
        a = positions.double()[:, None] * theta ** (-torch.arange(0, x.shape[-1], 2).double() / x.shape[-1])
        return torch.cat((a, a), dim=-1)

    def via_rotate_half(x, positions, theta=10000.0):
        a = angles(x, positions, theta)
        return x.double() * a.cos() + rotate_half(x.double()) * a.sin()

    def via_qwen_copy(x, positions, theta=10000.0):
        a = angles(x, positions, theta)
        return qwen_copy(x.double(), x.double(), a.cos(), a.sin(), unsqueeze_dim=0)[0].reshape(x.shape)

    for route in (rope_transformers, via_rotate_half, via_qwen_copy):
        message = rejects(ex.check_apply_rotary, route)
        assert "is switched off" in message and ("apply_rotary_pos_emb" in message or "rotate_half" in message)
    x, positions = ex._rope_cases()[3][1:3]
    for route in (rope_transformers, via_rotate_half, via_qwen_copy):  # restored after the check: right values
        assert torch.allclose(torch.as_tensor(route(x, positions)), ex._rope_reference(x, positions, 1e4), atol=1e-9)
    ex.check_apply_rotary(rope_float64_lists)  # and a hand-written answer still passes


def test_rope_refuses_other_models_half_split_rotations_and_restores_them():
    # gpt-oss's _apply_rotary_emb(x, cos, sin) and wav2vec2-BERT's attention method _apply_rotary_embedding (called
    # on a stand-in for self) rotate the halves exactly as the exercise asks: switched off like apply_rotary_pos_emb
    from transformers.models.gpt_oss.modeling_gpt_oss import _apply_rotary_emb
    from transformers.models.wav2vec2_bert.modeling_wav2vec2_bert import Wav2Vec2BertSelfAttention

    def angles(x, positions, theta):  # (T, D/2)
        return positions.double()[:, None] * theta ** (-torch.arange(0, x.shape[-1], 2).double() / x.shape[-1])

    def via_gpt_oss(x, positions, theta=10000.0):
        a = angles(x, positions, theta)
        return _apply_rotary_emb(x.double(), a.cos(), a.sin())

    def via_wav2vec2_method(x, positions, theta=10000.0):
        heads = x.double().reshape(-1, *x.shape[-2:])  # (H, T, D)
        (H, T, D), a = heads.shape, angles(x, positions, theta).repeat(1, 2)  # (T, D): the rotate-half layout
        table = torch.stack((a.cos(), a.sin()))[:, :, None, None, :]  # (2, T, 1, 1, D)
        out = Wav2Vec2BertSelfAttention._apply_rotary_embedding(
            types.SimpleNamespace(num_heads=H, head_size=D), heads.transpose(0, 1).reshape(1, T, H * D), table)
        return out.reshape(T, H, D).transpose(0, 1).reshape(x.shape)

    x, positions = ex._rope_cases()[3][1:3]
    for route, name in ((via_gpt_oss, "_apply_rotary_emb"), (via_wav2vec2_method, "_apply_rotary_embedding")):
        assert torch.allclose(route(x, positions), ex._rope_reference(x, positions, 1e4), atol=1e-9)  # a right answer
        message = rejects(ex.check_apply_rotary, route)
        assert "is switched off" in message and name in message, message
        assert torch.allclose(route(x, positions), ex._rope_reference(x, positions, 1e4), atol=1e-9)  # restored


def _interleaved(x):  # the rotate-half layout (i with i + D/2) as neighbouring pairs (2i, 2i + 1)
    half = x.shape[-1] // 2
    return torch.stack((x[..., :half], x[..., half:]), dim=-1).flatten(-2)


def _halves(y):  # back from neighbouring pairs to the rotate-half layout
    return torch.cat((y[..., 0::2], y[..., 1::2]), dim=-1)


def _pair_angles(x, positions, theta):  # (T, D/2): pair i's angle at each position
    return positions.double()[:, None] * theta ** (-torch.arange(0, x.shape[-1], 2).double() / x.shape[-1])


def via_deepseek_interleave(x, positions, theta=10000.0):  # interleaved in, the rotate-half layout out
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import apply_rotary_pos_emb_interleave
    a = _pair_angles(x, positions, theta).to(x.dtype).repeat(1, 2)  # (T, D)
    out, _ = apply_rotary_pos_emb_interleave(_interleaved(x), _interleaved(x), a.cos(), a.sin(), unsqueeze_dim=0)
    return out.reshape(x.shape)


def via_llama4_complex(x, positions, theta=10000.0):  # Llama 4's complex multiplication of neighbouring pairs
    from transformers.models.llama4.modeling_llama4 import apply_rotary_emb
    a = _pair_angles(x, positions, theta).float()
    pairs = _interleaved(x).reshape(-1, x.shape[-2], 1, x.shape[-1])  # (B, T, 1, D)
    out, _ = apply_rotary_emb(pairs, pairs, torch.polar(torch.ones_like(a), a)[None])
    return _halves(out.reshape(x.shape)).to(x.dtype)


def via_roformer_static_method(x, positions, theta=10000.0):  # a static method, fed RoFormer's [sin | cos] table
    from transformers.models.roformer.modeling_roformer import RoFormerSelfAttention
    a = _pair_angles(x, positions, theta).to(x.dtype)
    out, _ = RoFormerSelfAttention.apply_rotary_position_embeddings(torch.cat((a.sin(), a.cos()), dim=-1),
                                                                    _interleaved(x), _interleaved(x))
    return _halves(out)


def via_sam3_rotate_pairwise(x, positions, theta=10000.0):  # rotate_half's twin for neighbouring pairs
    from transformers.models.sam3.modeling_sam3 import rotate_pairwise
    a = _pair_angles(x, positions, theta).to(x.dtype).repeat_interleave(2, dim=-1)  # (T, D)
    return _halves(_interleaved(x) * a.cos() + rotate_pairwise(_interleaved(x)) * a.sin())


def via_gptj_rotate_every_two(x, positions, theta=10000.0):  # GPT-J's, on a 4-D view
    from transformers.models.gptj.modeling_gptj import rotate_every_two
    a = _pair_angles(x, positions, theta).to(x.dtype).repeat_interleave(2, dim=-1)  # (T, D)
    pairs = _interleaved(x).reshape(1, -1, *x.shape[-2:])  # (1, H, T, D)
    return _halves((pairs * a.cos() + rotate_every_two(pairs) * a.sin()).reshape(x.shape))


@pytest.mark.parametrize("route, name", [(via_deepseek_interleave, "apply_rotary_pos_emb_interleave"),
                                         (via_llama4_complex, "apply_rotary_emb"),
                                         (via_roformer_static_method, "apply_rotary_position_embeddings"),
                                         (via_sam3_rotate_pairwise, "rotate_pairwise"),
                                         (via_gptj_rotate_every_two, "rotate_every_two")])
def test_rope_refuses_interleaved_complex_and_static_rotations_and_restores_them(route, name):
    # other models' rotations pair neighbours or multiply complex numbers: one permutation of the input (and back)
    # away from the exercise's answer, so each is switched off by name like apply_rotary_pos_emb
    x, positions = ex._rope_cases()[3][1:3]  # (3, 6, 16) at positions 37..42
    expected = ex._rope_reference(x, positions, 1e4)
    torch.testing.assert_close(route(x, positions).double(), expected, atol=1e-4, rtol=1e-4)  # a right answer
    message = rejects(ex.check_apply_rotary, route)
    assert "is switched off" in message and name in message, message
    torch.testing.assert_close(route(x, positions).double(), expected, atol=1e-4, rtol=1e-4)  # restored
    ex.check_apply_rotary(rope_float64_lists)


def _rotate(x, angles):  # angles (T, D/2), rotate-half pairs
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]
    return torch.cat((a * angles.cos() - b * angles.sin(), a * angles.sin() + b * angles.cos()), dim=-1)


def interleaved_pairs(x, positions, theta=10000.0):  # GPT-J / RoFormer layout: 2i with 2i + 1
    D = x.shape[-1]
    angles = positions.float()[:, None] * theta ** (-torch.arange(0, D, 2).float() / D)
    a, b = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2], out[..., 1::2] = a * angles.cos() - b * angles.sin(), a * angles.sin() + b * angles.cos()
    return out


def exponent_i_over_d(x, positions, theta=10000.0):  # theta^(-i/D): the frequencies fall too slowly
    D = x.shape[-1]
    return _rotate(x, positions.float()[:, None] * theta ** (-torch.arange(D // 2).float() / D))


def clockwise(x, positions, theta=10000.0):  # turns by -angle
    return sol.apply_rotary(x, -positions, theta)


def positions_from_zero(x, positions, theta=10000.0):  # ignores the positions given, uses 0..T-1
    return sol.apply_rotary(x, torch.arange(x.shape[-2]), theta)


def frequencies_not_inverted(x, positions, theta=10000.0):  # theta^(+2i/D)
    D = x.shape[-1]
    return _rotate(x, positions.float()[:, None] * theta ** (torch.arange(0, D, 2).float() / D))


def one_frequency_per_coordinate(x, positions, theta=10000.0):  # D angles theta^(-2j/D), j < D, halves not shared
    D = x.shape[-1]
    angles = positions.float()[:, None] * theta ** (-2 * torch.arange(D).float() / D)  # (T, D)
    return x * angles.cos() + torch.cat((-x[..., D // 2:], x[..., :D // 2]), dim=-1) * angles.sin()


def adds_positions(x, positions, theta=10000.0):  # a sinusoidal position vector added, not a rotation
    D = x.shape[-1]
    angles = positions.float()[:, None] * theta ** (-torch.arange(0, D, 2).float() / D)
    return x + torch.cat((angles.sin(), angles.cos()), dim=-1)


@pytest.mark.parametrize("wrong", [interleaved_pairs, exponent_i_over_d, clockwise, positions_from_zero,
                                   frequencies_not_inverted, one_frequency_per_coordinate, adds_positions])
def test_rope_rejects_likely_mistakes(wrong):
    assert_hidden(rejects(ex.check_apply_rotary, wrong), expected_rope_values())


def test_rope_property_check_names_the_property():
    assert "depending only on m - n" in rejects(ex.check_apply_rotary, adds_positions)


def test_rope_cannot_call_the_package():
    def via_package(x, positions, theta=10000.0):
        cos, sin = modern.rope_cos_sin(positions, modern.rope_inverse_frequencies(x.shape[-1], theta))
        return modern.apply_rope(x.reshape(1, -1, *x.shape[-2:]), cos, sin).reshape(x.shape)

    def via_llama_import(x, positions, theta=10000.0):  # the same functions, reached through llama's namespace
        angles = positions.float()[:, None] * theta ** (-torch.arange(0, x.shape[-1], 2).float() / x.shape[-1])
        angles = torch.cat((angles, angles), dim=-1)
        return llama.apply_rope(x.reshape(1, -1, *x.shape[-2:]), angles.cos(), angles.sin()).reshape(x.shape)

    assert "switched off" in rejects(ex.check_apply_rotary, via_package)
    assert "switched off" in rejects(ex.check_apply_rotary, via_llama_import)
    assert modern.rotate_half(torch.tensor([1.0, 2.0])).tolist() == [-2.0, 1.0]  # restored afterwards


# ---------- exercise 2: grouped-query attention ----------

def expected_gqa_values():
    return torch.cat([ex._gqa_reference(q, k, v).flatten() for _, q, k, v in ex._gqa_cases()]).tolist()


def test_gqa_reference_agrees_with_pytorch_and_the_package():
    for _, q, k, v in ex._gqa_cases():
        q64, k64, v64 = q.double(), k.double(), v.double()
        expected = ex._gqa_reference(q, k, v)
        torch_gqa = F.scaled_dot_product_attention(q64, k64, v64, is_causal=True, enable_gqa=True)
        assert torch.allclose(expected, torch_gqa, atol=1e-12)
        n_rep = q.shape[1] // k.shape[1]
        package, _ = llama._attend(q64, k64, v64, "causal", n_rep, need_weights=True)  # softmax in float32
        assert torch.allclose(expected, package, atol=1e-6)
    q, k, v = ex._gqa_cases()[-1][1:]  # a single position attends only to itself: the output is its value
    assert torch.allclose(ex._gqa_reference(q, k, v), v.double().repeat_interleave(2, dim=1))


def gqa_repeat_then_sdpa(q, k, v):  # the heads repeated by hand, then PyTorch's SDPA without enable_gqa: allowed
    group = q.shape[1] // k.shape[1]
    return F.scaled_dot_product_attention(q, k.repeat_interleave(group, 1), v.repeat_interleave(group, 1),
                                          is_causal=True)


def gqa_grouped_einsum(q, k, v):  # no copies: view the query heads as (H_kv, group), float64
    B, H, T, D = q.shape
    H_kv = k.shape[1]
    qg = q.double().view(B, H_kv, H // H_kv, T, D)
    scores = torch.einsum("bkgtd,bksd->bkgts", qg, k.double()) / D ** 0.5
    scores = scores.masked_fill(torch.ones(T, T).triu(1).bool(), -torch.inf)
    return torch.einsum("bkgts,bksd->bkgtd", scores.softmax(-1), v.double()).reshape(B, H, T, D)


def gqa_per_head_numpy(q, k, v):  # a loop over query heads, returned as a numpy array
    B, H, T, D = q.shape
    out = np.zeros((B, H, T, D), dtype=np.float32)
    for h in range(H):
        g = h * k.shape[1] // H
        w = (q[:, h] @ k[:, g].transpose(-1, -2) / math.sqrt(D)).masked_fill(torch.ones(T, T).triu(1).bool(), -1e9)
        out[:, h] = (w.softmax(-1) @ v[:, g]).numpy()
    return out


def test_gqa_accepts_solution_and_other_forms():
    ex.check_grouped_query_attention(sol.grouped_query_attention)
    ex.check_grouped_query_attention(gqa_repeat_then_sdpa)
    ex.check_grouped_query_attention(gqa_grouped_einsum)
    ex.check_grouped_query_attention(gqa_per_head_numpy)


def _attention(q, k, v, scale, mask):
    scores = q @ k.transpose(-2, -1) * scale
    return scores.masked_fill(~mask, float("-inf")).softmax(-1) @ v


def _causal(T):
    return torch.ones(T, T, dtype=torch.bool).tril()


def tiled_heads(q, k, v):  # query head h reads kv head h % H_kv (k.repeat): the wrong sharing order
    group = q.shape[1] // k.shape[1]
    return _attention(q, k.repeat(1, group, 1, 1), v.repeat(1, group, 1, 1), q.shape[-1] ** -0.5,
                      _causal(q.shape[2]))


def not_causal(q, k, v):
    group = q.shape[1] // k.shape[1]
    T = q.shape[2]
    return _attention(q, k.repeat_interleave(group, 1), v.repeat_interleave(group, 1), q.shape[-1] ** -0.5,
                      torch.ones(T, T, dtype=torch.bool))


def no_scale(q, k, v):
    group = q.shape[1] // k.shape[1]
    return _attention(q, k.repeat_interleave(group, 1), v.repeat_interleave(group, 1), 1.0, _causal(q.shape[2]))


def scale_by_d(q, k, v):
    group = q.shape[1] // k.shape[1]
    return _attention(q, k.repeat_interleave(group, 1), v.repeat_interleave(group, 1), 1.0 / q.shape[-1],
                      _causal(q.shape[2]))


def mask_the_wrong_triangle(q, k, v):  # attends to the future instead of the past
    group = q.shape[1] // k.shape[1]
    return _attention(q, k.repeat_interleave(group, 1), v.repeat_interleave(group, 1), q.shape[-1] ** -0.5,
                      _causal(q.shape[2]).T)


def one_output_per_group(q, k, v):  # averages the query heads of a group: (B, H_kv, T, D)
    B, H, T, D = q.shape
    return sol.grouped_query_attention(q, k, v).view(B, k.shape[1], H // k.shape[1], T, D).mean(2)


@pytest.mark.parametrize("wrong", [tiled_heads, not_causal, no_scale, scale_by_d, mask_the_wrong_triangle,
                                   one_output_per_group])
def test_gqa_rejects_likely_mistakes(wrong):
    assert_hidden(rejects(ex.check_grouped_query_attention, wrong), expected_gqa_values())


def test_gqa_cannot_call_the_package():
    def via_repeat_kv(q, k, v):
        group = q.shape[1] // k.shape[1]
        return F.scaled_dot_product_attention(q, modern.repeat_kv(k, group), modern.repeat_kv(v, group),
                                              is_causal=True)

    def via_llama(q, k, v):
        return llama._attend(q, k, v, "causal", q.shape[1] // k.shape[1], need_weights=True)[0]

    assert "switched off" in rejects(ex.check_grouped_query_attention, via_repeat_kv)
    assert "switched off" in rejects(ex.check_grouped_query_attention, via_llama)
    assert modern.repeat_kv(torch.zeros(1, 2, 3, 4), 2).shape == (1, 4, 3, 4)  # restored afterwards


def gqa_pytorch(q, k, v):  # PyTorch's own GQA, the answer in one call: refused
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)


def gqa_pytorch_imported_earlier(q, k, v):  # the same, under a name imported when this module loaded
    return imported_sdpa(q, k, v, is_causal=True, enable_gqa=True)


def gqa_pytorch_c(q, k, v):  # the same function, reached through torch._C
    return torch._C._nn.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)


def rope_onnx(x, positions, theta=10000.0):  # PyTorch's ONNX RotaryEmbedding: only the cos/sin tables by hand
    angles = positions.double()[:, None] * theta ** (-torch.arange(0, x.shape[-1], 2).double() / x.shape[-1])
    x4 = x.reshape(1, -1, *x.shape[-2:])  # (1, H, T, D)
    cos, sin = angles.cos()[None].to(x.dtype), angles.sin()[None].to(x.dtype)  # (1, T, D/2)
    return torch.onnx.ops.rotary_embedding(x4, cos, sin).reshape(x.shape)


def rope_onnx_function(x, positions, theta=10000.0):  # the Python function behind the operator, called directly
    angles = positions.double()[:, None] * theta ** (-torch.arange(0, x.shape[-1], 2).double() / x.shape[-1])
    x4 = x.reshape(1, -1, *x.shape[-2:])
    cos, sin = angles.cos()[None].to(x.dtype), angles.sin()[None].to(x.dtype)
    return torch.onnx.ops.aten_decompositions()[torch.ops.onnx.RotaryEmbedding.opset23](x4, cos, sin).reshape(x.shape)


def rope_peft(x, positions, theta=10000.0):  # peft's copy of Llama's rotate-half RoPE
    from peft.tuners.adaption_prompt.utils import llama_apply_rotary_pos_emb

    inverse = theta ** (-torch.arange(0, x.shape[-1], 2).double() / x.shape[-1])
    angles = torch.arange(int(positions.max()) + 1).double()[:, None] * inverse  # a table over positions 0..max
    table = torch.cat((angles, angles), dim=-1)  # (P, D)
    x4 = x.double().reshape(1, -1, *x.shape[-2:])  # (1, H, T, D)
    return llama_apply_rotary_pos_emb(x4, table.cos(), table.sin(), positions[None]).reshape(x.shape)


def rope_peft_road(x, positions, theta=10000.0):  # peft's RoAd layer rotates halves by given angles
    from peft.tuners.road.layer import _apply_road

    angles = positions.double()[:, None] * theta ** (-torch.arange(0, x.shape[-1], 2).double() / x.shape[-1])
    angles = torch.cat((angles, angles), -1)  # (T, D)
    return _apply_road("road_2", x.shape[-1], angles, torch.ones_like(angles), x.double())


def gqa_onnx(q, k, v):  # PyTorch's ONNX Attention shares the key/value heads itself
    out = torch.onnx.ops.attention(q, k, v, is_causal=True)
    return out[0] if isinstance(out, tuple) else out


def gqa_onnx_function(q, k, v):  # the function behind it, on its path without SDPA (softmax_precision set)
    return torch.onnx.ops.aten_decompositions()[torch.ops.onnx.Attention.opset23](q, k, v, is_causal=True,
                                                                                    softmax_precision=1)[0]


def gqa_flash_kernel(q, k, v):  # the CPU kernel behind SDPA shares the key/value heads itself, no enable_gqa asked
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, True)[0]


def gqa_flex_math(q, k, v):  # the eager code behind flex_attention
    from torch._higher_order_ops.flex_attention import math_attention

    causal = (lambda b, h, m, n: m >= n,)
    return math_attention(q, k, v, lambda s, b, h, m, n: s, causal, q.shape[-1] ** -0.5, {})[0]


def rope_openvino(x, positions, theta=10000.0):  # transformers' OpenVINO exporter rotates neighbouring pairs
    from transformers.exporters.exporter_openvino import _apply_rotary_pos_emb_pairs

    D = x.shape[-1]
    angles = positions.double()[:, None] * theta ** (-torch.arange(0, D, 2).double() / D)  # (T, D/2)
    pairs = torch.stack((x[..., :D // 2], x[..., D // 2:]), dim=-1).reshape(1, -1, *x.shape[-2:])  # halves as pairs
    table = torch.stack((angles.cos(), angles.sin()), -1)[None, None]  # (1, 1, T, D/2, 2)
    y = _apply_rotary_pos_emb_pairs(pairs.double(), table).reshape(*x.shape[:-1], D // 2, 2)
    return torch.cat((y[..., 0], y[..., 1]), -1)


@pytest.mark.parametrize("check, route, refusal", [
    (ex.check_grouped_query_attention, gqa_flash_kernel, "_scaled_dot_product_flash_attention_for_cpu is switched off"),
    (ex.check_grouped_query_attention, gqa_flex_math, "is switched off"),
    (ex.check_apply_rotary, rope_openvino, "is switched off"),
    (ex.check_apply_rotary, rope_onnx, "RotaryEmbedding is switched off"),
    (ex.check_apply_rotary, rope_onnx_function, "is switched off"),
    (ex.check_apply_rotary, rope_peft, "is switched off"),
    (ex.check_apply_rotary, rope_peft_road, "is switched off"),
    (ex.check_grouped_query_attention, gqa_onnx, "Attention is switched off"),
    (ex.check_grouped_query_attention, gqa_onnx_function, "is switched off"),
])
def test_checks_refuse_one_call_routes(check, route, refusal):
    # each route is a right answer in one call (the readers' attacks passed every case), so only the refusal rejects it
    if route in (rope_peft, rope_peft_road):
        pytest.importorskip("peft")
    if route is rope_openvino:
        pytest.importorskip("transformers.exporters.exporter_openvino")
    rope = check is ex.check_apply_rotary
    case = ex._rope_cases()[3][1:3] if rope else ex._gqa_cases()[1][1:]
    expected = ex._rope_reference(*case, 1e4) if rope else ex._gqa_reference(*case)
    torch.testing.assert_close(route(*case).double(), expected.double(), atol=1e-4, rtol=1e-4)
    message = rejects(check, route)
    assert refusal in message, message
    torch.testing.assert_close(route(*case).double(), expected.double(), atol=1e-4, rtol=1e-4)  # restored


@pytest.mark.parametrize("library_gqa", [gqa_pytorch, gqa_pytorch_imported_earlier, gqa_pytorch_c])
def test_gqa_refuses_pytorchs_enable_gqa(library_gqa):
    message = rejects(ex.check_grouped_query_attention, library_gqa)
    assert "enable_gqa=True) is refused" in message and "share them yourself" in message
    assert "flex_attention switched off" in message  # the other PyTorch route, named where the learner looks
    assert "matmuls and a softmax" in message and "repeat_interleave" not in message  # allowed, not the route
    assert_hidden(message, expected_gqa_values())


def test_gqa_refuses_transformers_attention_helpers_and_restores_them():
    # the sharing is the exercise: transformers' repeat_kv and eager_attention_forward (every copy) are off
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.models.llama.modeling_llama import eager_attention_forward, repeat_kv
    from transformers.models.mistral.modeling_mistral import repeat_kv as mistral_copy

    def settings(q, k):  # what transformers' attention functions read from the attention module
        return types.SimpleNamespace(num_key_value_groups=q.shape[1] // k.shape[1], training=False, is_causal=True)

    def future(q):  # (1, 1, T, T) additive causal mask
        T = q.shape[2]
        return torch.zeros(T, T).masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), -math.inf)[None, None]

    def via_eager(q, k, v):  # the whole exercise in one call (the reviewer's route)
        out, _ = eager_attention_forward(settings(q, k), q, k, v, future(q), scaling=q.shape[-1] ** -0.5)
        return out.transpose(1, 2)  # (B, T, H, D) -> (B, H, T, D)

    def via_repeat_kv(q, k, v):
        group = q.shape[1] // k.shape[1]
        return F.scaled_dot_product_attention(q, repeat_kv(k, group), repeat_kv(v, group), is_causal=True)

    def via_mistral_copy(q, k, v):
        group = q.shape[1] // k.shape[1]
        return F.scaled_dot_product_attention(q, mistral_copy(k, group), mistral_copy(v, group), is_causal=True)

    def via_sdpa_integration(q, k, v):  # with a mask it repeats the heads with its own copy of repeat_kv
        return sdpa_attention_forward(settings(q, k), q, k, v, future(q), is_causal=False)[0].transpose(1, 2)

    for route in (via_eager, via_repeat_kv, via_mistral_copy, via_sdpa_integration):
        message = rejects(ex.check_grouped_query_attention, route)
        assert "is switched off" in message and ("repeat_kv" in message or "eager_attention_forward" in message)
        assert_hidden(message, expected_gqa_values())
    q, k, v = ex._gqa_cases()[1][1:]  # 9 query heads, 3 key/value heads
    for route in (via_eager, via_repeat_kv, via_mistral_copy, via_sdpa_integration):  # restored after the check
        out = route(q.double(), k.double(), v.double())  # (eager's softmax runs in float32)
        assert torch.allclose(out, ex._gqa_reference(q, k, v), atol=1e-6)
    ex.check_grouped_query_attention(gqa_repeat_then_sdpa)  # hand-shared heads, then SDPA: still passes


def test_gqa_sdpa_restored_after_the_check():
    q, k, v = ex._gqa_cases()[1][1:]  # 9 query heads, 3 key/value heads

    def raises_inside(q, k, v):  # a learner's function that raises something else while the refusal is on
        raise ValueError("a learner's bug")

    rejects(ex.check_grouped_query_attention, gqa_pytorch)
    with pytest.raises(ValueError, match="a learner's bug"):
        ex.check_grouped_query_attention(raises_inside)
    for sdpa in (F.scaled_dot_product_attention, imported_sdpa):  # both work again, outside the check
        out = sdpa(q.double(), k.double(), v.double(), is_causal=True, enable_gqa=True)
        assert torch.allclose(out, ex._gqa_reference(q, k, v), atol=1e-12)


def test_gqa_refuses_pytorchs_flex_attention_and_restores_it():
    # flex_attention(..., enable_gqa=True) is a plain Python function, which the torch-function mode does not see:
    # switched off by its code, also under a name taken before the check (the reviewer's route)
    flex = pytest.importorskip("torch.nn.attention.flex_attention")
    flex_attention = flex.flex_attention

    def causal(score, b, h, q_index, k_index):
        return torch.where(q_index >= k_index, score, -math.inf)

    def via_flex(q, k, v):
        return flex_attention(q, k, v, score_mod=causal, enable_gqa=True)

    def via_module(q, k, v):  # looked up on its module at call time
        return flex.flex_attention(q, k, v, score_mod=causal, enable_gqa=True)

    def via_operator(q, k, v):  # the higher-order operator under it, seen (and refused) by the torch-function mode
        mask = flex.create_block_mask(lambda b, h, q_index, k_index: q_index >= k_index, None, None, q.shape[2],
                                      q.shape[2], device="cpu")
        return flex.flex_attention_hop(q, k, v, lambda score, b, h, q_index, k_index: score, mask.as_tuple(),
                                       q.shape[-1] ** -0.5, {"OUTPUT_LOGSUMEXP": True, "OUTPUT_MAX": False}, (), ())[0]

    for route in (via_flex, via_module, via_operator):
        message = rejects(ex.check_grouped_query_attention, route)
        assert "flex_attention is switched off" in message or "flex_attention switched off" in message
        assert_hidden(message, expected_gqa_values())
    q, k, v = ex._gqa_cases()[1][1:]  # 9 query heads, 3 key/value heads: flex_attention works again afterwards
    assert torch.allclose(via_flex(q, k, v), ex._gqa_reference(q, k, v).float(), atol=1e-5)
    ex.check_grouped_query_attention(sol.grouped_query_attention)  # and the solution still passes


# ---------- exercise 3: the load-balancing loss ----------

def expected_balance_values():
    return [float(ex._balance_reference(logits, k)) for _, logits, k in ex._router_cases()]


def test_balance_reference_hand_values_and_package_agreement():
    two_tokens = torch.log(torch.tensor([[0.75, 0.25], [0.75, 0.25]]))  # f = (1, 0), P = (3/4, 1/4): 2 * 3/4
    assert float(ex._balance_reference(two_tokens, 1)) == pytest.approx(1.5)
    assert float(sol.load_balancing_loss(two_tokens, 1)) == pytest.approx(1.5)
    assert float(ex._balance_reference(two_tokens, 2)) == pytest.approx(1.0)  # top-2 of 2 experts: f uniform
    for _, logits, k in ex._router_cases():
        routing = moe.route(logits.double(), k)
        package = moe.load_balancing_loss(routing.probs, routing.experts)  # route's softmax runs in float32
        assert float(ex._balance_reference(logits, k)) == pytest.approx(float(package), abs=1e-6)
        if logits.eq(0).all():
            continue  # uniform router: the gradient depends on which of the tied experts each side picked
        mine = logits.double().requires_grad_(True)
        ex._balance_reference(mine, k).backward()
        theirs = logits.double().requires_grad_(True)
        routing = moe.route(theirs, k)
        moe.load_balancing_loss(routing.probs, routing.experts).backward()
        assert torch.allclose(mine.grad, theirs.grad, atol=1e-8)
    assert float(ex._balance_reference(torch.zeros(10, 4), 2)) == 1.0  # uniform router


def balance_one_hot_float64(router_logits, top_k):  # correct: one-hot sums in float64
    probs = router_logits.double().softmax(-1)
    E = probs.shape[1]
    chosen = F.one_hot(probs.topk(top_k, dim=-1, sorted=False).indices, E).sum(dim=(0, 1)).double()
    return E * (chosen / chosen.sum() * probs.mean(0)).sum()


def balance_ties_to_the_last_expert(router_logits, top_k):  # correct: a different tie order (stable ascending sort)
    probs = router_logits.softmax(-1)
    E = probs.shape[1]
    experts = probs.detach().argsort(dim=-1, stable=True)[:, -top_k:]
    fraction = torch.zeros(E).scatter_add_(0, experts.flatten(), torch.ones(experts.numel())) / experts.numel()
    return (E * fraction * probs.mean(0)).sum().reshape(1)


def test_balance_accepts_solution_and_other_forms():
    ex.check_load_balancing_loss(sol.load_balancing_loss)
    ex.check_load_balancing_loss(balance_one_hot_float64)
    ex.check_load_balancing_loss(balance_ties_to_the_last_expert)


def _parts(router_logits, top_k):
    probs = router_logits.softmax(-1)
    experts = probs.topk(top_k, dim=-1).indices
    return probs, experts, probs.shape[1]


def missing_e(router_logits, top_k):
    return sol.load_balancing_loss(router_logits, top_k) / router_logits.shape[1]


def gates_instead_of_probs(router_logits, top_k):  # P from the renormalised top-k gates
    probs, experts, E = _parts(router_logits, top_k)
    top = probs.gather(1, experts)
    gates = torch.zeros_like(probs).scatter(1, experts, top / top.sum(1, keepdim=True))
    fraction = torch.bincount(experts.flatten(), minlength=E) / experts.numel()
    return E * (fraction * gates.mean(0)).sum()


def top1_fraction_only(router_logits, top_k):  # f counts each token's first expert only
    probs, experts, E = _parts(router_logits, top_k)
    fraction = torch.bincount(experts[:, 0], minlength=E) / experts.shape[0]
    return E * (fraction * probs.mean(0)).sum()


def fraction_over_tokens(router_logits, top_k):  # f divided by N, so it sums to k
    probs, experts, E = _parts(router_logits, top_k)
    return E * (torch.bincount(experts.flatten(), minlength=E) / experts.shape[0] * probs.mean(0)).sum()


def soft_fraction(router_logits, top_k):  # f replaced by P: E * sum P_i^2
    probs = router_logits.softmax(-1)
    return probs.shape[1] * (probs.mean(0) ** 2).sum()


def softmax_over_tokens(router_logits, top_k):
    probs = router_logits.softmax(0)
    E = probs.shape[1]
    experts = router_logits.topk(top_k, dim=-1).indices
    return E * (torch.bincount(experts.flatten(), minlength=E) / experts.numel() * probs.mean(0)).sum()


def detached(router_logits, top_k):  # the right value, but no gradient reaches the router
    return sol.load_balancing_loss(router_logits.detach(), top_k)


def python_float(router_logits, top_k):
    return sol.load_balancing_loss(router_logits, top_k).item()


def straight_through_fraction(router_logits, top_k):  # the right value, but f also passes a gradient (it must not)
    probs, experts, E = _parts(router_logits, top_k)
    counts = torch.bincount(experts.flatten(), minlength=E) / experts.numel()
    fraction = counts + probs.mean(0) - probs.mean(0).detach()  # equal to the counts, differentiable like P
    return E * (fraction * probs.mean(0)).sum()


@pytest.mark.parametrize("wrong", [missing_e, gates_instead_of_probs, top1_fraction_only, fraction_over_tokens,
                                   soft_fraction, softmax_over_tokens, detached, python_float,
                                   straight_through_fraction])
def test_balance_rejects_likely_mistakes(wrong):
    assert_hidden(rejects(ex.check_load_balancing_loss, wrong), expected_balance_values())


def test_balance_gradient_message_says_why():
    assert "gradients flow through" in rejects(ex.check_load_balancing_loss, detached)
    assert "gradients flow through" in rejects(ex.check_load_balancing_loss, python_float)


def test_balance_cannot_call_the_package():
    def via_package(router_logits, top_k):
        routing = moe.route(router_logits, top_k)
        return moe.load_balancing_loss(routing.probs, routing.experts)

    assert "switched off" in rejects(ex.check_load_balancing_loss, via_package)
    assert moe.route(torch.zeros(1, 2), 1).probs.tolist() == [[0.5, 0.5]]  # restored afterwards


def test_transformers_mixtral_loss_is_top_k_times_this_one():
    # What cell 54 says: transformers sums f over the k slots (k when balanced), so it is top_k times this loss.
    from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func
    for _, logits, k in ex._router_cases():
        theirs = float(load_balancing_loss_func((logits,), logits.shape[1], k))
        assert theirs == pytest.approx(k * float(ex._balance_reference(logits, k)), rel=1e-6)
    assert float(load_balancing_loss_func((torch.zeros(10, 4),), 4, 2)) == 2.0  # a uniform router: k, not 1


def test_balance_refuses_transformers_mixtral_loss_and_restores_it():
    from transformers.models.mixtral import modeling_mixtral
    from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

    def via_transformers(router_logits, top_k):  # the right value in one library call
        return load_balancing_loss_func((router_logits,), router_logits.shape[1], top_k) / top_k

    def via_module(router_logits, top_k):  # the same function, looked up on its module at call time
        return modeling_mixtral.load_balancing_loss_func((router_logits,), router_logits.shape[1], top_k) / top_k

    for route in (via_transformers, via_module):
        message = rejects(ex.check_load_balancing_loss, route)
        assert "load_balancing_loss_func is switched off" in message
    logits = 2 * torch.randn(32, 8, generator=torch.Generator().manual_seed(0))
    assert float(via_transformers(logits, 2)) == pytest.approx(float(ex._balance_reference(logits, 2)), rel=1e-6)


@pytest.mark.parametrize("check, via_reference, right", [
    (ex.check_apply_rotary, lambda x, p, theta=10000.0: ex._rope_reference(x, p, theta), sol.apply_rotary),
    (ex.check_grouped_query_attention, lambda q, k, v: ex._gqa_reference(q, k, v), sol.grouped_query_attention),
    (ex.check_load_balancing_loss, lambda logits, k: ex._balance_reference(logits, k), sol.load_balancing_loss),
], ids=["rope", "gqa", "balance"])
def test_checks_refuse_their_own_reference_and_restore_it(check, via_reference, right):
    refuses_reference_then_passes(check, via_reference, right)


def test_balance_refuses_the_copies_in_other_moe_models():
    # transformers copies load_balancing_loss_func into each MoE model's module; a copy in a module loaded before the
    # check is switched off too, and restored afterwards
    from transformers.models.qwen2_moe.modeling_qwen2_moe import load_balancing_loss_func as qwen_copy

    def via_qwen_copy(router_logits, top_k):
        return qwen_copy((router_logits,), router_logits.shape[1], top_k) / top_k

    message = rejects(ex.check_load_balancing_loss, via_qwen_copy)
    assert "load_balancing_loss_func is switched off" in message
    logits = 2 * torch.randn(32, 8, generator=torch.Generator().manual_seed(0))
    assert float(via_qwen_copy(logits, 2)) == pytest.approx(float(ex._balance_reference(logits, 2)), rel=1e-6)


def test_balance_refuses_a_reloaded_library_copy():
    # importlib.reload makes new function objects with the old code; checks.package_functions_switched_off watches
    # for any function of the same file and name as a switched-off one (the reviewer's OLMoE route)
    importlib.import_module("transformers.models.olmoe.modeling_olmoe")  # loaded before the check: its copy is off

    def via_reloaded_olmoe(router_logits, top_k):
        module = importlib.reload(importlib.import_module("transformers.models.olmoe.modeling_olmoe"))
        return module.load_balancing_loss_func((router_logits,), router_logits.shape[1], top_k) / top_k

    message = rejects(ex.check_load_balancing_loss, via_reloaded_olmoe)
    assert "ran a copy of" in message and "load_balancing_loss_func" in message
    ex.check_load_balancing_loss(sol.load_balancing_loss)  # the watch is gone afterwards


# ---------- added by the mutation audit ----------

def test_rope_rejects_inputs_rounded_to_bfloat16():
    # a true rotation of bfloat16-rounded queries (the relative property holds exactly), 3e-3 to 7e-3 off: outside
    # the 5e-4 tolerance, inside one loosened a hundredfold
    def rounded_first(x, positions, theta=10000.0):
        return sol.apply_rotary(x.to(torch.bfloat16).to(x.dtype), positions, theta)

    assert_hidden(rejects(ex.check_apply_rotary, rounded_first), expected_rope_values())


def test_rope_cannot_call_the_packages_rotation_or_frequencies():
    def angles(x, positions, theta):  # (T, D): each pair's angle, written twice (the rotate-half layout)
        half = positions.double()[:, None] * theta ** (-torch.arange(0, x.shape[-1], 2).double() / x.shape[-1])
        return torch.cat((half, half), dim=-1).to(x.dtype)

    def via_rotate_half(x, positions, theta=10000.0):  # the package's 90-degree turn, the angles by hand
        a = angles(x, positions, theta)
        return x * a.cos() + modern.rotate_half(x) * a.sin()

    def via_inverse_frequencies(x, positions, theta=10000.0):  # the package's frequencies, the turn by hand
        half = positions.to(x.dtype)[:, None] * modern.rope_inverse_frequencies(x.shape[-1], theta, dtype=x.dtype)
        a = torch.cat((half, half), dim=-1)
        x1, x2 = x.chunk(2, dim=-1)
        return x * a.cos() + torch.cat((-x2, x1), dim=-1) * a.sin()

    x, positions = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(0)), torch.arange(3, 8)
    for cheat in (via_rotate_half, via_inverse_frequencies):
        torch.testing.assert_close(cheat(x, positions), sol.apply_rotary(x, positions))  # right when allowed
        assert "switched off" in rejects(ex.check_apply_rotary, cheat)


def test_gqa_rejects_an_output_kept_in_float16():  # up to 1e-3 off: outside 1e-5 + 1e-4 relative
    rejects(ex.check_grouped_query_attention, lambda q, k, v: sol.grouped_query_attention(q, k, v).half())


def test_balance_rejects_a_loss_returned_in_float16_and_the_packages_expert_counts():
    # float16 rounds the loss by up to 4.5e-4 (its gradient is untouched): outside 1e-5 + 1e-4 relative
    assert_hidden(rejects(ex.check_load_balancing_loss, lambda logits, k: sol.load_balancing_loss(logits, k).half()),
                  expected_balance_values())

    def via_expert_counts(router_logits, top_k):  # the package counts the assignments, the rest by hand
        probs = router_logits.softmax(-1)
        experts = probs.topk(top_k, dim=-1).indices
        fraction = moe.expert_counts(experts, probs.shape[1]).to(probs.dtype) / experts.numel()
        return probs.shape[1] * (fraction * probs.mean(0)).sum()

    logits = 2 * torch.randn(32, 8, generator=torch.Generator().manual_seed(0))
    assert float(via_expert_counts(logits, 2)) == pytest.approx(float(ex._balance_reference(logits, 2)), rel=1e-6)
    assert "switched off" in rejects(ex.check_load_balancing_loss, via_expert_counts)
