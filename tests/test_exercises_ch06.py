"""Chapter 06's exercise checks accept the reference solution and other correct forms, reject likely wrong answers
without revealing the expected value, and the solutions agree with peft (parameter counts of a wrapped tiny Llama,
DoRA's forward pass) where peft is installed."""

import copy
import types
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_utils import checks
from course_utils.exercises import ch06 as ex
from course_utils.solutions import ch06 as sol


from exercise_helpers import assert_hidden, refuses_reference_then_passes, rejects  # noqa: E402


# Answers written here, not taken from the solutions module: every check switches off the chapter's reference solutions
# (all of them but the one it is handed) while the learner's function runs, so a right answer must not call them.

def own_count(config, r, targets):
    h, f = config["hidden_size"], config["intermediate_size"]
    kv = h * config["num_key_value_heads"] // config["num_attention_heads"]
    in_plus_out = dict(q_proj=2 * h, k_proj=h + kv, v_proj=h + kv, o_proj=2 * h, gate_proj=h + f, up_proj=h + f,
                       down_proj=f + h)
    return config["num_hidden_layers"] * sum(r * in_plus_out[t] for t in targets)


def own_factors(d, r):  # truncated SVD, the singular values in B
    u, s, vh = torch.linalg.svd(d, full_matrices=False)
    return u[:, :r] * s[:r], vh[:r]


def own_fraction(d, r):
    energy = torch.linalg.svdvals(d) ** 2
    return float(energy[:r].sum() / energy.sum())


def own_dora(x, W, b, A, B, m, s):
    V = W + s * (B @ A)
    return F.linear(x, m.unsqueeze(1) * V / V.norm(dim=1, keepdim=True), b)


# ---------- exercise 1: LoRA parameter count ----------

def expected_counts():
    return [sol.lora_parameter_count(c, r, t) for _, c, r, t in ex._count_cases()]


def test_parameter_count_accepts_solution_and_other_forms():
    ex.check_lora_parameter_count(sol.lora_parameter_count)
    ex.check_lora_parameter_count(own_count)
    ex.check_lora_parameter_count(lambda c, r, t: float(own_count(c, r, t)))
    ex.check_lora_parameter_count(lambda c, r, t: torch.tensor(own_count(c, r, t)))
    ex.check_lora_parameter_count(lambda c, r, t: torch.tensor(float(own_count(c, r, t)), dtype=torch.float64))
    ex.check_lora_parameter_count(lambda c, r, t: np.int64(own_count(c, r, t)))

    def by_shapes(config, r, targets):  # build the (out, in) shapes of one layer, count A and B, times the layers
        h, f = config["hidden_size"], config["intermediate_size"]
        kv = h * config["num_key_value_heads"] // config["num_attention_heads"]
        shapes = dict(q_proj=(h, h), k_proj=(kv, h), v_proj=(kv, h), o_proj=(h, h), gate_proj=(f, h),
                      up_proj=(f, h), down_proj=(h, f))
        return config["num_hidden_layers"] * sum(r * sum(shapes[t]) for t in targets)

    ex.check_lora_parameter_count(by_shapes)


def without_gqa(config, r, targets):
    return own_count(dict(config, num_key_value_heads=config["num_attention_heads"]), r, targets)


def r_times_in_only(config, r, targets):
    h, f = config["hidden_size"], config["intermediate_size"]
    fan_in = dict(q_proj=h, k_proj=h, v_proj=h, o_proj=h, gate_proj=h, up_proj=h, down_proj=f)
    return config["num_hidden_layers"] * sum(r * fan_in[t] for t in targets)


def r_squared(config, r, targets):
    return config["num_hidden_layers"] * len(targets) * r * r


def per_model(config, r, targets):
    return own_count(config, r, targets) // config["num_hidden_layers"]


def a_fraction_off(config, r, targets):  # within half a parameter of the count, but not a whole number
    return own_count(config, r, targets) + 0.4


def full_matrices(config, r, targets):  # in * out: the size of the frozen matrix, not of its adapter
    h, f = config["hidden_size"], config["intermediate_size"]
    kv = h * config["num_key_value_heads"] // config["num_attention_heads"]
    sizes = dict(q_proj=h * h, k_proj=h * kv, v_proj=h * kv, o_proj=h * h, gate_proj=h * f, up_proj=h * f,
                 down_proj=f * h)
    return config["num_hidden_layers"] * sum(sizes[t] for t in targets)


def kv_width_hidden_over_kv_heads(config, r, targets):  # the K/V width as hidden // kv_heads: right only where
    h = config["hidden_size"]  # kv_heads ** 2 = heads (SmolLM2's 9 and 3), so the 8B-like cases must catch it
    kv_heads = config["num_key_value_heads"]
    head_dim = h // config["num_attention_heads"]
    return own_count(config, r, targets) + config["num_hidden_layers"] * r * (h // kv_heads - kv_heads * head_dim) * \
        sum(t in ("k_proj", "v_proj") for t in targets)


@pytest.mark.parametrize("wrong", [without_gqa, r_times_in_only, r_squared, per_model, full_matrices, a_fraction_off,
                                   kv_width_hidden_over_kv_heads])
def test_parameter_count_rejects_likely_mistakes(wrong):
    assert_hidden(rejects(ex.check_lora_parameter_count, wrong), expected_counts())


def test_parameter_count_hand_values():
    # SmolLM2-135M, r = 8 on q_proj and v_proj: 30 layers x 8 x ((576 + 576) + (576 + 192)) = 460,800
    assert sol.lora_parameter_count(ex.SMOLLM2_135M, 8, ("q_proj", "v_proj")) == 460_800
    # Llama-2-7B, r = 8 on q_proj and v_proj: 32 x 8 x 2 x 8192 = 4,194,304 (the figure peft prints for it)
    assert sol.lora_parameter_count(ex.LLAMA2_7B, 8, ("q_proj", "v_proj")) == 4_194_304


@pytest.mark.parametrize("targets", [("q_proj", "v_proj"), ex.PROJECTIONS, ("k_proj", "down_proj")])
@pytest.mark.parametrize("kv_heads", [1, 2, 4])
# peft 0.21.2's get_peft_model reads transformers 5's deprecated `is_gradient_checkpointing`: not ours to fix
@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_parameter_count_matches_peft_on_a_tiny_llama(targets, kv_heads):
    peft = pytest.importorskip("peft")
    from transformers import LlamaConfig, LlamaForCausalLM

    config = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
                  num_key_value_heads=kv_heads)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=50, max_position_embeddings=16, **config))
    wrapped = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=list(targets)))
    counted = sum(p.numel() for name, p in wrapped.named_parameters() if "lora_" in name)
    assert counted == sol.lora_parameter_count(config, 4, targets)


def test_parameter_count_matches_the_course_package():
    # the package wraps a built model and counts its tensors; the exercise counts from the config alone
    from transformers import LlamaConfig, LlamaForCausalLM

    from course_utils.lora.wrap import apply_lora

    config = dict(hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=8,
                  num_key_value_heads=2)
    for targets in [("q_proj", "v_proj"), ex.PROJECTIONS]:
        torch.manual_seed(0)
        model = LlamaForCausalLM(LlamaConfig(vocab_size=50, max_position_embeddings=16, **config))
        report = apply_lora(model, list(targets), r=3, alpha=6, generator=torch.Generator().manual_seed(0))
        assert report.trainable == sol.lora_parameter_count(config, 3, targets)


# ---------- exercise 2: best rank-r update and captured fraction ----------

def expected_products():
    return [float(x) for _, _, _, e, _ in ex._svd_cases()[:2] for x in e.flatten()[:50]]


def test_rank_r_update_accepts_solution_and_other_forms():
    ex.check_best_rank_r_update(sol.best_rank_r_update)
    ex.check_best_rank_r_update(own_factors)
    ex.check_best_rank_r_update(lambda d, r: [t.tolist() for t in own_factors(d, r)])
    ex.check_best_rank_r_update(lambda d, r: tuple(t.float() for t in own_factors(d.float(), r)))

    def balanced(d, r):  # sqrt(S) on each side, from numpy's SVD
        u, s, vh = np.linalg.svd(d.numpy(), full_matrices=False)
        return u[:, :r] * np.sqrt(s[:r]), np.sqrt(s[:r])[:, None] * vh[:r]

    ex.check_best_rank_r_update(balanced)

    def rotated(d, r):  # B Q and Q^T A for an orthogonal Q: another factorisation of the same product
        b, a = own_factors(d, r)
        q, _ = torch.linalg.qr(torch.randn(r, r, generator=torch.Generator().manual_seed(r), dtype=d.dtype))
        return b @ q, q.T @ a

    ex.check_best_rank_r_update(rotated)


def smallest_end(d, r):
    u, s, vh = torch.linalg.svd(d, full_matrices=False)
    return u[:, -r:] * s[-r:], vh[-r:]


def without_singular_values(d, r):
    u, _, vh = torch.linalg.svd(d, full_matrices=False)
    return u[:, :r], vh[:r]


def rank_r_plus_one(d, r):
    return own_factors(d, r + 1)


def swapped_pair(d, r):
    return tuple(reversed(own_factors(d, r)))


def first_r_columns(d, r):  # a rank-r piece of delta, but not the best one
    q, rr = torch.linalg.qr(d[:, :r])
    return q, q.T @ d


@pytest.mark.parametrize("wrong", [smallest_end, without_singular_values, rank_r_plus_one, swapped_pair,
                                   first_r_columns])
def test_rank_r_update_rejects_likely_mistakes(wrong):
    assert_hidden(rejects(ex.check_best_rank_r_update, wrong), expected_products())


def expected_fractions():
    return [f for *_, f in ex._svd_cases()]


def test_captured_fraction_accepts_solution_and_other_forms():
    ex.check_captured_fraction(sol.captured_fraction)
    ex.check_captured_fraction(own_fraction)
    ex.check_captured_fraction(lambda d, r: torch.tensor([own_fraction(d, r)]))

    def from_the_product(d, r):  # ||B A||_F^2 / ||delta||_F^2 in float32, from the learner's own factors
        b, a = own_factors(d.float(), r)
        return ((b @ a).norm() ** 2 / d.float().norm() ** 2).item()

    ex.check_captured_fraction(from_the_product)


def not_squared(d, r):
    s = torch.linalg.svdvals(d)
    return float(s[:r].sum() / s.sum())


def smallest_fraction(d, r):
    s = torch.linalg.svdvals(d) ** 2
    return float(s[-r:].sum() / s.sum())


def spectral_norm_ratio(d, r):
    s = torch.linalg.svdvals(d)
    return float(s[:r].sum() / d.norm())


def residual_fraction(d, r):
    return 1.0 - own_fraction(d, r)


@pytest.mark.parametrize("wrong", [not_squared, smallest_fraction, spectral_norm_ratio, residual_fraction])
def test_captured_fraction_rejects_likely_mistakes(wrong):
    assert_hidden(rejects(ex.check_captured_fraction, wrong), expected_fractions())


def test_eckart_young_and_case_gaps():
    # no other rank-r product of the factors beats the truncated SVD, and every case has the gap the docstring claims
    for _, delta, r, expected, fraction in ex._svd_cases():
        b, a = sol.best_rank_r_update(delta, r)
        best_error = (delta - b @ a).norm()
        g = torch.Generator().manual_seed(1)
        for _ in range(5):
            other = torch.randn(delta.shape[0], r, generator=g, dtype=delta.dtype) @ torch.randn(
                r, delta.shape[1], generator=g, dtype=delta.dtype)
            assert (delta - other).norm() >= best_error
        s = torch.linalg.svdvals(delta)
        if r < len(s) and s[r] > 1e-9 * s[0]:
            assert (s[r - 1] - s[r]) / s[0] > 0.05
        assert fraction == pytest.approx(1 - float(best_error ** 2 / delta.norm() ** 2), abs=1e-9)


# ---------- exercise 3: DoRA ----------

def expected_dora():
    return [float(x) for _, _, e in ex._dora_cases() for x in e.flatten()[:40]]


def test_dora_accepts_solution_and_other_forms():
    ex.check_dora_forward(sol.dora_forward)

    def float32_split(x, W, b, A, B, m, s):  # peft's form: base output rescaled plus the rescaled LoRA path
        x, W, b, A, B, m = (t.float() for t in (x, W, b, A, B, m))
        scale = m / torch.linalg.vector_norm(W + s * B @ A, dim=1)  # (out,)
        return (x @ W.T) * scale + (x @ A.T @ B.T) * s * scale + b

    ex.check_dora_forward(float32_split)
    ex.check_dora_forward(own_dora)
    ex.check_dora_forward(lambda *args: own_dora(*args).tolist())


def norm_over_outputs(x, W, b, A, B, m, s):  # the wrong axis: each input column normalised
    V = W + s * B @ A
    return F.linear(x, m.unsqueeze(1) * V / V.norm(dim=0, keepdim=True), b)


def without_scaling(x, W, b, A, B, m, s):
    return own_dora(x, W, b, A, B, m, 1.0)


def norm_of_w(x, W, b, A, B, m, s):
    V = W + s * B @ A
    return F.linear(x, m.unsqueeze(1) * V / W.norm(dim=1, keepdim=True), b)


def lora_after_normalising(x, W, b, A, B, m, s):
    return F.linear(x, m.unsqueeze(1) * W / W.norm(dim=1, keepdim=True) + s * B @ A, b)


def frobenius_norm(x, W, b, A, B, m, s):
    V = W + s * B @ A
    return F.linear(x, m.unsqueeze(1) * V / V.norm(), b)


def without_bias(x, W, b, A, B, m, s):
    return own_dora(x, W, torch.zeros_like(b), A, B, m, s)


def plain_lora(x, W, b, A, B, m, s):  # no magnitude, no normalisation
    return F.linear(x, W + s * B @ A, b)


@pytest.mark.parametrize("wrong", [norm_over_outputs, without_scaling, norm_of_w, lora_after_normalising,
                                   frobenius_norm, without_bias, plain_lora])
def test_dora_rejects_likely_mistakes(wrong):
    assert_hidden(rejects(ex.check_dora_forward, wrong), expected_dora())


def test_dora_matches_peft():
    peft = pytest.importorskip("peft")

    class OneLinear(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(20, 12)

        def forward(self, x):
            return self.proj(x)

    torch.manual_seed(0)
    model = peft.get_peft_model(OneLinear(), peft.LoraConfig(r=4, lora_alpha=6, target_modules=["proj"],
                                                             use_dora=True))
    layer = model.base_model.model.proj
    g = torch.Generator().manual_seed(3)
    base = layer.base_layer
    magnitude = layer.lora_magnitude_vector["default"].weight  # (out,), initialised to the row norms of W
    torch.testing.assert_close(magnitude, base.weight.norm(dim=1))
    x = torch.randn(5, 20, generator=g)
    with torch.no_grad():
        layer.lora_B["default"].weight.copy_(0.3 * torch.randn(12, 4, generator=g))
        magnitude.mul_(1 + 0.2 * torch.randn(12, generator=g))
        ours = sol.dora_forward(x, base.weight, base.bias, layer.lora_A["default"].weight,
                                layer.lora_B["default"].weight, magnitude, layer.scaling["default"])
        torch.testing.assert_close(model(x), ours, atol=1e-5, rtol=1e-5)


def dora_through_get_peft_model(x, W, b, A, B, magnitude, scaling):  # the review's cheat (rev06/dora_peft.py)
    peft = pytest.importorskip("peft")
    net = torch.nn.Sequential(torch.nn.Linear(W.shape[1], W.shape[0])).to(W.dtype)
    r = A.shape[0]
    with torch.no_grad():
        net[0].weight.copy_(W)
        net[0].bias.copy_(b)
    model = peft.get_peft_model(net, peft.LoraConfig(r=r, lora_alpha=scaling * r, target_modules=["0"],
                                                     use_dora=True))
    layer = model.base_model.model[0]
    with torch.no_grad():
        layer.lora_A["default"].weight.copy_(A)
        layer.lora_B["default"].weight.copy_(B)
        layer.lora_magnitude_vector["default"].weight.copy_(magnitude)
        return model(x)


def dora_through_peft_dora_layer(x, W, b, A, B, magnitude, scaling):  # peft's DoRA layer alone, no LoraLayer
    pytest.importorskip("peft")
    from peft.tuners.lora.dora import DoraLinearLayer

    base, lora_a, lora_b = (torch.nn.Linear(i, o, bias=False).to(W.dtype) for i, o in
                            ((W.shape[1], W.shape[0]), (A.shape[1], A.shape[0]), (B.shape[1], B.shape[0])))
    dora = DoraLinearLayer(fan_in_fan_out=False)
    with torch.no_grad():
        for module, weight in ((base, W), (lora_a, A), (lora_b, B)):
            module.weight.copy_(weight)
        dora.weight = torch.nn.Parameter(magnitude.clone())
        return F.linear(x, W, b) + dora(x, lora_A=lora_a, lora_B=lora_b, scaling=scaling, base_layer=base)


def dora_through_a_layer_made_by_new(x, W, b, A, B, magnitude, scaling):  # no __init__ (refused): forward is reached
    pytest.importorskip("peft")
    from peft.tuners.lora.dora import DoraLinearLayer

    dora = DoraLinearLayer.__new__(DoraLinearLayer)
    torch.nn.Module.__init__(dora)
    dora.fan_in_fan_out, dora._dora_cache, dora.weight = False, {}, torch.nn.Parameter(magnitude.clone())
    lora_a, lora_b = (torch.nn.Linear(w.shape[1], w.shape[0], bias=False).to(W.dtype) for w in (A, B))
    with torch.no_grad():
        lora_a.weight.copy_(A)
        lora_b.weight.copy_(B)
        return F.linear(x, W, b) + dora.forward(x, lora_A=lora_a, lora_B=lora_b, scaling=scaling,
                                                base_layer=types.SimpleNamespace(weight=W, bias=b))


def dora_with_peft_weight_norm(x, W, b, A, B, magnitude, scaling):  # peft's norm under its caching decorator
    pytest.importorskip("peft")
    from peft.tuners.lora.dora import DoraLinearLayer

    norm = DoraLinearLayer.get_weight_norm.__wrapped__(types.SimpleNamespace(fan_in_fan_out=False), W, B @ A, scaling)
    return F.linear(x, (magnitude / norm)[:, None] * (W + scaling * B @ A), b)


def dora_with_peft_conv_weight_norm(x, W, b, A, B, magnitude, scaling):  # the conv layer's norm, on a 2-D weight
    pytest.importorskip("peft")
    from peft.tuners.lora.dora import _DoraConvNdLayer

    norm = _DoraConvNdLayer.get_weight_norm.__wrapped__(None, W, B @ A, scaling)[0]  # (1, out) -> (out,)
    return F.linear(x, (magnitude / norm)[:, None] * (W + scaling * B @ A), b)


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
@pytest.mark.parametrize("cheat", [dora_through_get_peft_model, dora_through_peft_dora_layer,
                                   dora_through_a_layer_made_by_new, dora_with_peft_weight_norm,
                                   dora_with_peft_conv_weight_norm])
def test_exercise_3_refuses_peft(cheat):
    args = ex._dora_cases()[0][1]
    # the cheat computes the right forward outside the check (so this test can fail) ...
    torch.testing.assert_close(cheat(*args), sol.dora_forward(*args), atol=1e-10, rtol=1e-10)
    # ... and the check refuses it, directly and through the notebook's call, without the expected values
    message = rejects(ex.check_dora_forward, cheat)
    assert "switched off" in message
    assert_hidden(message, expected_dora())
    with pytest.raises(AssertionError, match="switched off"):
        checks.exercise("3", cheat, sol.dora_forward, ex.check_dora_forward)
    # everything is restored afterwards: the cheat works again, and right answers still pass
    torch.testing.assert_close(cheat(*args), sol.dora_forward(*args), atol=1e-10, rtol=1e-10)
    ex.check_dora_forward(own_dora)
    ex.check_dora_forward(sol.dora_forward)


def factors_via_peft_conversion(delta, r):  # peft's LoRA conversion of a stand-in module whose delta is delta
    from peft.tuners.lora.conversion import _convert_module_to_lora

    stand_in = types.SimpleNamespace(get_delta_weight=lambda name: delta, get_base_layer=lambda: torch.nn.Identity())
    a, b, _ = _convert_module_to_lora(stand_in, r)
    return b, a


def factors_via_loftq(delta, r):
    from peft.utils.loftq_utils import _low_rank_decomposition

    parts = _low_rank_decomposition(delta, reduced_rank=r)
    return parts["L"], parts["R"]


def factors_via_pissa_init(delta, r):  # PiSSA's initialisation on a stand-in for the layer: B @ A is the top-r part
    from peft.tuners.lora import LoraLayer

    base = types.SimpleNamespace(weight=torch.nn.Parameter(delta.float()))
    factors = {name: {"a": types.SimpleNamespace(weight=torch.nn.Parameter(torch.zeros(1)))} for name in "AB"}
    stand_in = types.SimpleNamespace(get_base_layer=lambda: base, fan_in_fan_out=False, r={"a": r},
                                     scaling={"a": 1.0}, lora_A=factors["A"], lora_B=factors["B"])
    LoraLayer.pissa_init(stand_in, "a", "pissa")
    return stand_in.lora_B["a"].weight.data.double(), stand_in.lora_A["a"].weight.data.double()


def factors_via_svd_merge(delta, r):  # the SVD merge of adapters, one adapter of weight 1 on a stand-in layer
    from peft.tuners.lora.model import LoraModel

    target = types.SimpleNamespace(get_delta_weight=lambda name: delta, lora_A={"a": None}, lora_embedding_A={},
                                   fan_in_fan_out=False)
    a, b = LoraModel._svd_generalized_task_arithmetic_weighted_adapter(None, "svd", ["a"], [1.0], r, target, None,
                                                                         None, None, None, None, False)
    return b, a


def factors_via_osf(delta, r):  # OSF's split of a weight into its top-r singular triplets and the rest
    from peft.tuners.osf.utils import decompose_weight_matrix

    parts = decompose_weight_matrix(delta, r)
    return parts["U_high"] * parts["S_high"], parts["V_high"]


def factors_via_psoft(delta, r):  # PSOFT's SVD factors, on an empty stand-in
    from peft.tuners.psoft.layer import PsoftLayer

    v, s, uh = PsoftLayer._compute_svd_factors(types.SimpleNamespace(), delta, r, svd_mode="full", niter=0)
    return v * s, uh


def factors_via_tinylora(delta, r):  # TinyLoRA's SVD start, on a stand-in layer
    from peft.tuners.tinylora.layer import TinyLoraLayer

    base = types.SimpleNamespace(weight=types.SimpleNamespace(data=delta))
    stand_in = types.SimpleNamespace(tinylora_A={}, tinylora_B={}, r={}, get_base_layer=lambda: base)
    TinyLoraLayer._init_svd(stand_in, "a", r, False)
    return stand_in.tinylora_B["a"], stand_in.tinylora_A["a"]


def factors_via_incremental_pca(delta, r):  # peft's IncrementalPCA on [delta; -delta] (zero mean, so no centring)
    from peft.utils.incremental_pca import IncrementalPCA

    v = IncrementalPCA().partial_fit(torch.cat([delta, -delta]).clone()).components_[:r].T  # (in, r)
    return delta @ v, v.T


def factors_via_corda(delta, r):  # CorDA's eigens with an identity covariance
    from peft.tuners.lora.corda import collect_eigens_for_layer

    layer = torch.nn.Module()
    layer.weight = torch.nn.Parameter(delta.clone())
    layer.covariance_matrix = torch.eye(delta.shape[1], dtype=delta.dtype)
    eigens = collect_eigens_for_layer(layer, None)
    return eigens.U_WC[:, :r] * eigens.S_WC[:r], eigens.V_WC[:, :r].T


PEFT_ROUTE_MODULES = {factors_via_osf: "peft.tuners.osf.utils", factors_via_psoft: "peft.tuners.psoft.layer",
                      factors_via_tinylora: "peft.tuners.tinylora.layer",
                      factors_via_incremental_pca: "peft.utils.incremental_pca",
                      factors_via_corda: "peft.tuners.lora.corda"}  # those an older peft may lack


@pytest.mark.parametrize("route", [factors_via_peft_conversion, factors_via_loftq, factors_via_pissa_init,
                                   factors_via_svd_merge, *PEFT_ROUTE_MODULES])
def test_exercise_2_refuses_peft_svd_routes_and_restores_them(route):
    pytest.importorskip("peft")
    pytest.importorskip(PEFT_ROUTE_MODULES.get(route, "peft"))  # e.g. peft 0.19 has no OSF
    _, delta, r, product, fraction = ex._svd_cases()[0]

    def fraction_via_route(d, rank):  # exercise 2b from the route's factors
        b, a = route(d, rank)
        return float(((b.double() @ a.double()) ** 2).sum() / (d * d).sum())

    # the route is right outside the check (so this test can fail) ...
    b, a = route(delta, r)
    torch.testing.assert_close(b.double() @ a.double(), product, atol=1e-5, rtol=1e-5)
    assert fraction_via_route(delta, r) == pytest.approx(fraction, abs=1e-6)
    # ... refused by both checks, and restored afterwards: it works again and a right answer passes
    assert "switched off" in rejects(ex.check_best_rank_r_update, route)
    assert "switched off" in rejects(ex.check_captured_fraction, fraction_via_route)
    assert fraction_via_route(delta, r) == pytest.approx(fraction, abs=1e-6)
    ex.check_best_rank_r_update(own_factors)
    ex.check_captured_fraction(own_fraction)


def test_exercise_1_cannot_be_passed_by_wrapping_a_meta_model_with_the_package():
    from course_utils.lora.memory import meta_model
    from course_utils.lora.wrap import apply_lora

    def cheat(config, r, targets):
        return apply_lora(meta_model(dict(config)), tuple(targets), r=r, alpha=16.0).trainable

    assert "switched off" in rejects(ex.check_lora_parameter_count, cheat)


def _build_meta_llama(config):
    from transformers import LlamaConfig, LlamaForCausalLM

    with torch.device("meta"):
        return LlamaForCausalLM(LlamaConfig(vocab_size=8, **config))


_PREBUILT_LLAMAS = {}


def _prebuild_own_llamas():
    # the check switches off building transformers models; so that each cheat below meets only the switch it tests,
    # its meta Llamas are built before the check runs, and each cheat works on a copy (deepcopy calls no __init__)
    for _, config, _, _ in ex._count_cases() + [("", ex.SMOLLM2_135M, 0, ())]:
        key = tuple(sorted(config.items()))
        if key not in _PREBUILT_LLAMAS:
            _PREBUILT_LLAMAS[key] = _build_meta_llama(config)


def _own_meta_llama(config):
    # a meta-device Llama built without the package's meta_model (prebuilt, see above)
    return copy.deepcopy(_PREBUILT_LLAMAS[tuple(sorted(config.items()))])


def _lora_layer_sum(model, r, targets):
    # the notebook's own name: `from course_utils.lora.layer import LoRALinear`, not the attribute of wrap
    from course_utils.lora.layer import LoRALinear

    return sum(p.numel() for name, module in model.named_modules() if name.split(".")[-1] in targets
               for p in LoRALinear(module, r, 1.0).parameters() if p.requires_grad)


def layer_over_meta_model(config, r, targets):  # the first cheat of the chapter-06 review
    from course_utils.lora.memory import meta_model

    return _lora_layer_sum(meta_model(dict(config)), r, targets)


def layer_over_own_llama(config, r, targets):
    return _lora_layer_sum(_own_meta_llama(config), r, targets)


def peft_over_meta_model(config, r, targets):  # the second cheat of the review: peft's one-liner
    peft = pytest.importorskip("peft")
    from course_utils.lora.memory import meta_model

    return peft.get_peft_model(meta_model(dict(config)), peft.LoraConfig(
        r=r, target_modules=list(targets))).get_nb_trainable_parameters()[0]


def peft_over_own_llama(config, r, targets):
    peft = pytest.importorskip("peft")
    return peft.get_peft_model(_own_meta_llama(config), peft.LoraConfig(
        r=r, target_modules=list(targets))).get_nb_trainable_parameters()[0]


def peft_model_class_over_own_llama(config, r, targets):  # peft without get_peft_model
    peft = pytest.importorskip("peft")
    return peft.PeftModel(_own_meta_llama(config), peft.LoraConfig(
        r=r, target_modules=list(targets))).get_nb_trainable_parameters()[0]


def peft_layer_over_own_llama(config, r, targets):  # peft's LoRA layer, one Linear at a time
    peft = pytest.importorskip("peft")
    from peft.tuners.lora import Linear

    lora_config = peft.LoraConfig(r=r)
    return sum(p.numel() for name, module in _own_meta_llama(config).named_modules()
               if name.split(".")[-1] in targets
               for n, p in Linear(module, "default", lora_config, r=r, lora_alpha=r).named_parameters()
               if n.startswith("lora_"))


def transformers_llama_counted_by_hand(config, r, targets):  # the second review's route: read the widths off a model
    return sum(r * (module.in_features + module.out_features)
               for name, module in _build_meta_llama(config).named_modules() if name.split(".")[-1] in targets)


def transformers_decoder_layers_counted_by_hand(config, r, targets):  # the layers alone, no PreTrainedModel
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    llama_config = LlamaConfig(vocab_size=8, **config)
    with torch.device("meta"):
        layers = [LlamaDecoderLayer(llama_config, i) for i in range(llama_config.num_hidden_layers)]
    return sum(r * (module.in_features + module.out_features)
               for layer in layers for name, module in layer.named_modules() if name.split(".")[-1] in targets)


MODEL_CHEATS = [layer_over_meta_model, layer_over_own_llama, peft_over_meta_model, peft_over_own_llama,
                peft_model_class_over_own_llama, peft_layer_over_own_llama, transformers_llama_counted_by_hand,
                transformers_decoder_layers_counted_by_hand]


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
@pytest.mark.parametrize("cheat", MODEL_CHEATS)
def test_exercise_1_refuses_every_model_based_route(cheat):
    _prebuild_own_llamas()
    config, r, targets = dict(ex.SMOLLM2_135M), 2, ("q_proj", "up_proj")
    # each cheat gives the right count when nothing is switched off (so this test can fail) ...
    assert cheat(config, r, targets) == sol.lora_parameter_count(config, r, targets)
    # ... and is refused by the check, without the expected values in the message
    message = rejects(ex.check_lora_parameter_count, cheat)
    assert "switched off" in message
    assert_hidden(message, expected_counts())
    # everything is restored afterwards: the cheat works again, and a right answer still passes
    assert cheat(config, r, targets) == sol.lora_parameter_count(config, r, targets)
    ex.check_lora_parameter_count(sol.lora_parameter_count)


def test_exercise_1_restores_transformers_when_the_learners_function_raises():
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedModel

    init, linear_init = PreTrainedModel.__init__, torch.nn.Linear.__init__

    def raises(config, r, targets):
        raise ValueError("the learner's own error")

    with pytest.raises(ValueError, match="the learner's own error"):
        ex.check_lora_parameter_count(raises)
    assert PreTrainedModel.__init__ is init and torch.nn.Linear.__init__ is linear_init
    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(vocab_size=8, **ex.SMOLLM2_135M))
    assert model.model.layers[0].self_attn.k_proj.out_features == 192   # 3 KV heads of 64


# ---------- every exercise: the check's own references and the chapter's solutions are switched off ----------
# The cheats of the chapter-06 review (cheats.py): each calls something the check module or the solutions module has in
# reach. Each works when nothing is switched off (so each test can fail), is refused by the check and by the notebook's
# checks.exercise call, and a right answer still passes afterwards (the switches are restored).

def _refused_everywhere(check, reference, cheat, right, *args):
    assert cheat(*args) is not None   # the cheat works outside the check
    if "sol" not in cheat.__code__.co_names:   # the solutions are switched off by checks.exercise, not by the check
        refuses_reference_then_passes(check, cheat, right)
    with pytest.raises(AssertionError, match="switched off"):
        checks.exercise("cheat", cheat, reference, check)
    check(right)


@pytest.mark.parametrize("cheat", [
    lambda c, r, t: ex._count_reference(c, r, t),   # the check's own enumeration
    lambda c, r, t: sol.lora_parameter_count(c, r, t),   # the solution, handed to the check directly
])
def test_exercise_1_refuses_the_checks_reference_and_the_solution(cheat):
    _refused_everywhere(ex.check_lora_parameter_count, sol.lora_parameter_count, cheat, own_count,
                        dict(ex.SMOLLM2_135M), 2, ("q_proj", "up_proj"))


def _factor_product(product, r):  # B, A with B @ A = product, for a product of rank r
    q = torch.linalg.qr(product)[0][:, :r]
    return q, q.T @ product


def _case_lookup(delta):  # the expected value read off the check's own case list
    return next(case for case in ex._svd_cases() if torch.equal(case[1], delta))


@pytest.mark.parametrize("cheat", [
    lambda d, r: _factor_product(ex._projected_truth(d, r)[0], r),   # the check's eigh reference
    lambda d, r: _factor_product(_case_lookup(d)[3], r),   # the case list, which carries the expected product
    lambda d, r: sol.best_rank_r_update(d, r),
])
def test_exercise_2a_refuses_the_checks_reference_and_the_solution(cheat):
    delta = ex._svd_cases()[0][1]
    _refused_everywhere(ex.check_best_rank_r_update, sol.best_rank_r_update, cheat, own_factors, delta.clone(), 2)


def _through_2as_solution(d, r):  # the review's cheat: ||B A||^2 / ||delta||^2 with exercise 2a's solution
    b, a = sol.best_rank_r_update(d, r)
    return float((b @ a).pow(2).sum() / d.pow(2).sum())


@pytest.mark.parametrize("cheat", [
    lambda d, r: ex._projected_truth(d, r)[1],   # the check's reference
    lambda d, r: _case_lookup(d)[4],   # the case list, which carries the expected fraction
    _through_2as_solution,   # another exercise's solution
    lambda d, r: sol.captured_fraction(d, r),
])
def test_exercise_2b_refuses_the_checks_reference_and_every_solution(cheat):
    delta = ex._svd_cases()[0][1]
    _refused_everywhere(ex.check_captured_fraction, sol.captured_fraction, cheat, own_fraction, delta.clone(), 2)


@pytest.mark.parametrize("cheat", [
    lambda *a: ex._dora_reference(*a),   # the check's reference
    lambda *a: next(e for _, args, e in ex._dora_cases() if torch.equal(args[0], a[0])),   # the case list
    lambda *a: sol.dora_forward(*a),
])
def test_exercise_3_refuses_the_checks_reference_and_the_solution(cheat):
    args = ex._dora_cases()[0][1]
    _refused_everywhere(ex.check_dora_forward, sol.dora_forward, cheat, own_dora, *args)


def test_the_reference_solutions_still_pass_their_own_checks_through_the_notebook_call(capsys):
    # checks.exercise hands a check the reference when the learner's answer is the stub; nothing is switched off then,
    # and the reference handed in as the answer is reported as [ref]
    def stub(*args):
        raise NotImplementedError

    for name, reference, check in [("1", sol.lora_parameter_count, ex.check_lora_parameter_count),
                                   ("2a", sol.best_rank_r_update, ex.check_best_rank_r_update),
                                   ("2b", sol.captured_fraction, ex.check_captured_fraction),
                                   ("3", sol.dora_forward, ex.check_dora_forward)]:
        checks.exercise(name, stub, reference, check)
        checks.exercise(name, reference, reference, check)
    out = capsys.readouterr().out
    assert out.count("[todo]") == 4 and out.count("[ref]") == 4


# ---------- added by the mutation audit: near misses inside a loosened tolerance, and factors of the wrong shape ----

def one_scalar_per_adapter(config, r, targets):  # a learnable scale counted beside each A and B: 224 too many at most
    return own_count(config, r, targets) + config["num_hidden_layers"] * len(targets)


def test_parameter_count_must_be_exact():
    assert_hidden(rejects(ex.check_lora_parameter_count, one_scalar_per_adapter), expected_counts())


def zeroed_tail(d, r):  # the best product, but as full-width factors with the small singular values set to zero
    u, s, vh = torch.linalg.svd(d, full_matrices=False)
    return u * torch.where(torch.arange(len(s)) < r, s, torch.zeros_like(s)), vh


def svd_of_bfloat16(d, r):  # delta rounded to bfloat16 first: the product is 1e-3 to 3e-3 of the largest entry off
    return own_factors(d.to(torch.bfloat16).double(), r)


def test_rank_r_update_rejects_full_width_factors_and_a_bfloat16_svd():
    b, a = zeroed_tail(ex._svd_cases()[0][1], 2)
    assert torch.allclose(b @ a, ex._svd_cases()[0][3])  # the product itself is right
    assert "shape" in rejects(ex.check_best_rank_r_update, zeroed_tail)
    assert_hidden(rejects(ex.check_best_rank_r_update, svd_of_bfloat16), expected_products())


def test_captured_fraction_rejects_a_bfloat16_svd():  # up to 5e-4 off
    assert_hidden(rejects(ex.check_captured_fraction, lambda d, r: own_fraction(d.to(torch.bfloat16).double(), r)),
                  expected_fractions())


def merged_in_float16(x, W, b, A, B, m, s):  # W' stored in float16, as a merged adapter would be: up to 1.4e-3 off
    V = W + s * (B @ A)
    return F.linear(x, (m.unsqueeze(1) * V / V.norm(dim=1, keepdim=True)).half().double(), b)


def test_dora_rejects_a_float16_merged_weight():
    assert_hidden(rejects(ex.check_dora_forward, merged_in_float16), expected_dora())


# ---------- exercise 3: torch's weight norm is DoRA's weight in one call ----------

def dora_with_torch_weight_norm(x, W, b, A, B, magnitude, scaling):  # m * V / ||V|| row by row (dim 0)
    return F.linear(x, torch._weight_norm(W + scaling * B @ A, magnitude[:, None], 0), b)


def dora_with_weight_norm_interface(x, W, b, A, B, magnitude, scaling):  # the builtin under it, with the norms
    return F.linear(x, torch._weight_norm_interface(W + scaling * B @ A, magnitude[:, None], 0)[0], b)


def _adapted_linear(W, b, A, B, scaling):
    lin = torch.nn.Linear(W.shape[1], W.shape[0]).to(W.dtype)
    with torch.no_grad():
        lin.weight.copy_(W + scaling * B @ A)
        lin.bias.copy_(b)
    return lin


def dora_with_parametrized_weight_norm(x, W, b, A, B, magnitude, scaling):  # the public API on an nn.Linear
    lin = torch.nn.utils.parametrizations.weight_norm(_adapted_linear(W, b, A, B, scaling), dim=0)
    with torch.no_grad():
        lin.parametrizations.weight.original0.copy_(magnitude[:, None])
    return lin(x)


def dora_with_legacy_weight_norm(x, W, b, A, B, magnitude, scaling):  # the deprecated hook-based version
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        lin = torch.nn.utils.weight_norm(_adapted_linear(W, b, A, B, scaling), dim=0)
    with torch.no_grad():
        lin.weight_g.copy_(magnitude[:, None])
    return lin(x)


_weight_norm_cell = {}
exec("from torch import _weight_norm as wn\n"  # a notebook cell that imported the builtin by name
     "import torch.nn.functional as F\n"
     "def answer(x, W, b, A, B, magnitude, scaling):\n"
     "    return F.linear(x, wn(W + scaling * B @ A, magnitude[:, None], 0), b)\n", _weight_norm_cell)


@pytest.mark.parametrize("route", [dora_with_torch_weight_norm, dora_with_weight_norm_interface,
                                   dora_with_parametrized_weight_norm, dora_with_legacy_weight_norm,
                                   _weight_norm_cell["answer"]])
def test_exercise_3_refuses_torch_weight_norm_and_restores_it(route):
    args = ex._dora_cases()[0][1]
    torch.testing.assert_close(route(*args), sol.dora_forward(*args), atol=1e-10, rtol=1e-10)  # right outside
    message = rejects(ex.check_dora_forward, route)
    assert "switched off" in message and "torch._weight_norm" in message, message
    assert_hidden(message, expected_dora())
    torch.testing.assert_close(route(*args), sol.dora_forward(*args), atol=1e-10, rtol=1e-10)  # restored
    assert _weight_norm_cell["wn"] is torch._weight_norm
    ex.check_dora_forward(own_dora)


def test_best_rank_r_update_accepts_numpy_eigh_in_descending_order():  # vectors[:, ::-1] has a negative stride
    def eigh_numpy(delta, r):
        d = delta.numpy()
        _, vectors = np.linalg.eigh(d.T @ d)  # ascending
        top = vectors[:, ::-1][:, :r]
        return d @ top, top.T
    ex.check_best_rank_r_update(eigh_numpy)


@pytest.mark.parametrize("route", [lambda v, g: torch.ops.aten._weight_norm(v, g, 0),
                                   lambda v, g: torch._C._VariableFunctions._weight_norm(v, g, 0),
                                   lambda v, g: torch.ops.aten._weight_norm.default(v, g, 0),
                                   lambda v, g: torch.ops.aten._weight_norm_interface.default(v, g, 0)[0],
                                   lambda v, g: torch._decomp.decomposition_table[  # torch's Python version
                                       torch.ops.aten._weight_norm_interface.default](v, g, 0)[0]])
def test_dora_refuses_weight_norm_under_its_other_names(route):
    def via(x, W, b, A, B, m, s):
        return F.linear(x, route(W + s * B @ A, m[:, None]), b)
    assert "switched off" in rejects(ex.check_dora_forward, via)
    ex.check_dora_forward(sol.dora_forward)
