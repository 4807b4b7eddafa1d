"""Our LoRA against Hugging Face peft (the reference implementation), on a tiny random Llama and on SmolLM2:
the same configuration gives the same parameter counts, and with the same A and B (B non-zero) the same logits,
unmerged and merged. Skipped when peft is not installed (it is pinned in requirements/lock.txt for this test only)."""

import copy

import pytest
import torch

peft = pytest.importorskip("peft")
# peft 0.21.2 calls a transformers method that transformers 5 deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

from course_utils.device import make_generator  # noqa: E402
from course_utils.lora.wrap import apply_lora, count_parameters, lora_layers, merge_lora  # noqa: E402
from test_lora_wrap import V, tiny_llama  # noqa: E402  (one copy of the tiny random Llama)

# Both sides compute base(x) + s (x A^T) B^T with the same tensors; the sums may be taken in another order (and
# merging rounds W + s B A), so logits of size ~1 agree to a few float32 ulps after a few layers: 1e-5.
ATOL = RTOL = 1e-5


def peft_twin(model, r, alpha, targets, rslora):
    """peft's LoRA with the same settings on a deep copy of the unwrapped ``model``."""
    config = peft.LoraConfig(r=r, lora_alpha=alpha, target_modules=targets, lora_dropout=0.0, use_rslora=rslora)
    return peft.get_peft_model(copy.deepcopy(model), config).eval()


def copy_into_peft(ours, theirs, seed=7):
    """Random B on our side (A is our seeded init), then both copied into peft's lora_A/lora_B ("default")."""
    gen = make_generator(seed, "cpu")
    with torch.no_grad():
        for name, layer in lora_layers(ours).items():
            layer.lora_B.copy_(0.1 * torch.randn(layer.lora_B.shape, generator=gen))
            twin = theirs.base_model.model.get_submodule(name)
            assert twin.scaling["default"] == pytest.approx(layer.scaling)
            twin.lora_A["default"].weight.copy_(layer.lora_A)  # (r, in)
            twin.lora_B["default"].weight.copy_(layer.lora_B)  # (out, r)


def compare_with_peft(model, targets, r, alpha, rslora, ids):
    theirs = peft_twin(model, r, alpha, targets, rslora)
    ours = copy.deepcopy(model)
    report = apply_lora(ours, targets, r, alpha, rslora=rslora, generator=make_generator(0, "cpu"))
    assert (report.trainable, report.total) == theirs.get_nb_trainable_parameters()
    peft_names = {n.removeprefix("base_model.model.") for n, m in theirs.named_modules() if hasattr(m, "lora_A")}
    assert set(report.wrapped) == peft_names
    copy_into_peft(ours, theirs)
    with torch.no_grad():
        expected = theirs(input_ids=ids).logits
        base = model(input_ids=ids).logits
        got = ours(input_ids=ids).logits
    assert not torch.allclose(expected, base, atol=1e-3)  # B != 0: the LoRA path really contributes
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=RTOL)
    merged_peft = theirs.merge_and_unload()
    assert merge_lora(ours) == len(report.wrapped)
    with torch.no_grad():
        torch.testing.assert_close(ours(input_ids=ids).logits, merged_peft(input_ids=ids).logits, atol=ATOL,
                                   rtol=RTOL)
    return report


@pytest.mark.parametrize("targets, r, alpha, rslora", [
    (["q_proj", "v_proj"], 4, 8, False),
    ("all-linear", 8, 16, False),
    (["k_proj", "o_proj", "down_proj"], 2, 4, True),
])
def test_tiny_llama_matches_peft(targets, r, alpha, rslora):
    ids = torch.randint(V, (2, 11), generator=make_generator(1, "cpu"))
    compare_with_peft(tiny_llama(), targets, r, alpha, rslora, ids)


def test_smollm2_matches_peft():
    from course_utils.assets import missing_assets

    if "smollm2" in missing_assets():
        pytest.skip("the smollm2 asset is not installed")
    from course_utils.model.pretrained import load_smollm2

    model = load_smollm2("cpu", verbose=False).model.eval()
    before = count_parameters(model)
    ids = torch.randint(model.config.vocab_size, (1, 8), generator=make_generator(2, "cpu"))
    report = compare_with_peft(model, ["q_proj", "v_proj"], 8, 16, False, ids)
    assert str(report) == "LoRA r=8 on 60 modules: 460,800 trainable of 134,975,808 parameters (0.341%)"
    assert count_parameters(model) == before and not lora_layers(model)  # the loaded model itself is untouched
