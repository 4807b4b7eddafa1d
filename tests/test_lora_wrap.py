"""apply_lora and friends on a tiny random Llama (transformers) and on a tiny course GPT: identity at step 0, counts
by hand, target matching, merge, remove, adapter files (round trip, corrupt files, interrupted saves)."""

import pytest
import torch
import torch.nn as nn

from course_utils.device import make_generator
from course_utils.lora import wrap
from course_utils.lora.layer import LoRALinear
from course_utils.lora.wrap import (LoRAReport, apply_lora, count_parameters, load_adapter, lora_layers,
                                    lora_state_dict, merge_lora, remove_lora, save_adapter, unmerge_lora)
from course_utils.model.gpt import GPT, GPTConfig

V = 64
LLAMA_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Merged and unmerged logits differ only by float32 rounding of the same sums taken in another order, through two
# small layers: a few ulps of values of size ~1, far below 1e-5.
ATOL = RTOL = 1e-5


def tiny_llama(seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=True)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def tiny_gpt(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=V, block_size=16, n_layer=2, n_head=2, n_embd=16)).eval()


def logits_of(model, ids):
    with torch.no_grad():
        out = model(ids)
        return out[0] if isinstance(out, tuple) else out.logits  # GPT returns (logits, loss)


def ids(seed=0):
    return torch.randint(V, (2, 9), generator=make_generator(seed, "cpu"))


def randomise_B(model, seed=3):
    gen = make_generator(seed, "cpu")
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B.copy_(0.1 * torch.randn(layer.lora_B.shape, generator=gen))


MODELS = {
    "llama": (tiny_llama, ["q_proj", "v_proj"]),
    "gpt": (tiny_gpt, ["attn.qkv", "proj"]),  # "proj" matches attn.proj and mlp.proj
}


@pytest.mark.parametrize("kind", MODELS)
def test_step0_logits_are_identical_and_counts_match_a_hand_count(kind):
    make, targets = MODELS[kind]
    model, reference = make(), make()
    x = ids()
    before = sum(p.numel() for p in reference.parameters())
    report = apply_lora(model, targets, r=4, alpha=8.0, generator=make_generator(0, "cpu"))
    assert torch.equal(logits_of(model, x), logits_of(reference, x))
    modules = dict(reference.named_modules())
    by_hand = sum(4 * (modules[n].in_features + modules[n].out_features) for n in report.wrapped)
    assert isinstance(report, LoRAReport) and report.r == 4
    assert report.trainable == by_hand and report.total == before + by_hand
    assert count_parameters(model) == (report.trainable, report.total)
    assert report.trainable_fraction == pytest.approx(by_hand / (before + by_hand))
    assert str(report) == (f"LoRA r=4 on {len(report.wrapped)} modules: {by_hand:,} trainable of "
                           f"{before + by_hand:,} parameters ({100 * by_hand / (before + by_hand):.3f}%)")
    assert set(report.wrapped) == set(lora_layers(model))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"{n}.lora_{m}" for n in report.wrapped for m in "AB"}


def test_target_names_match_whole_dotted_suffixes():
    names = apply_lora(tiny_llama(), "self_attn.q_proj", 2, 4.0).wrapped
    assert names == ("model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj")
    assert apply_lora(tiny_llama(), ["q_proj"], 2, 4.0).wrapped == names
    gpt_names = apply_lora(tiny_gpt(), ["attn.proj"], 2, 4.0).wrapped
    assert gpt_names == ("blocks.0.attn.proj", "blocks.1.attn.proj")  # not mlp.proj
    with pytest.raises(ValueError, match="'proj' matches no module"):
        apply_lora(tiny_llama(), "proj", 2, 4.0)  # q_proj ends in "proj", but its dotted name is not "proj"


@pytest.mark.parametrize("kind", MODELS)
def test_all_linear_wraps_every_linear_except_the_head(kind):
    model = MODELS[kind][0]()
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    report = apply_lora(model, "all-linear", 2, 4.0)
    assert "lm_head" in linears and "lm_head" not in report.wrapped
    assert list(report.wrapped) == [n for n in linears if n != "lm_head"]
    if kind == "llama":
        assert {n.split(".")[-1] for n in report.wrapped} == set(LLAMA_LINEARS)


def test_bad_targets_raise_and_leave_the_model_untouched():
    model = tiny_llama()
    with pytest.raises(ValueError, match=r"'qproj' matches no module.*'down_proj'.*'q_proj'"):
        apply_lora(model, ["q_proj", "qproj"], 2, 4.0)
    with pytest.raises(TypeError, match="embed_tokens.*Embedding"):
        apply_lora(model, "embed_tokens", 2, 4.0)
    with pytest.raises(ValueError, match="r=40 does not fit .*allowed: 1 <= r <= 32"):
        apply_lora(model, "q_proj", 40, 4.0)
    with pytest.raises(ValueError, match=r"r=40 does not fit .*k_proj, the narrowest of the 14 targets.*<= r <= 16"):
        apply_lora(model, "all-linear", 40, 4.0)  # the bound of every target (GQA's k/v), not the first layer's 32
    with pytest.raises(TypeError, match="target_modules"):
        apply_lora(model, [], 2, 4.0)
    with pytest.raises(ValueError, match="'all-linear' must be the only target"):
        apply_lora(model, ["all-linear", "q_proj"], 2, 4.0)
    with pytest.raises(ValueError, match="alpha must be a finite number > 0"):
        apply_lora(model, "q_proj", 2, -1.0)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        apply_lora(model, "q_proj", 2, 1.0, dropout=1.5)
    with pytest.raises(ValueError, match="tied to .*embed_tokens"):
        apply_lora(model, "lm_head", 2, 4.0)  # SmolLM2-style tied head: merging would change the embedding
    assert not lora_layers(model) and all(p.requires_grad for p in model.parameters())
    apply_lora(model, "q_proj", 2, 4.0)
    with pytest.raises(ValueError, match="remove_lora"):
        apply_lora(model, "v_proj", 2, 4.0)


@pytest.mark.parametrize("kind", MODELS)
def test_merge_unmerge_and_remove(kind):
    make, targets = MODELS[kind]
    model, original = make(), make()
    x = ids(1)
    report = apply_lora(model, targets, 4, 8.0, generator=make_generator(0, "cpu"))
    randomise_B(model)
    unmerged = logits_of(model, x)
    assert not torch.allclose(unmerged, logits_of(original, x), atol=1e-4)  # B != 0: the comparison is not trivial
    assert merge_lora(model) == len(report.wrapped)
    merged = logits_of(model, x)
    torch.testing.assert_close(merged, unmerged, atol=ATOL, rtol=RTOL)
    with pytest.warns(UserWarning, match="already merged"):
        assert merge_lora(model) == 0
    assert unmerge_lora(model) == len(report.wrapped)
    torch.testing.assert_close(logits_of(model, x), unmerged, atol=ATOL, rtol=RTOL)
    merge_lora(model)
    assert remove_lora(model, merge=True) == len(report.wrapped)
    assert not lora_layers(model)
    assert list(model.state_dict()) == list(original.state_dict())
    assert torch.equal(logits_of(model, x), merged)
    with pytest.raises(ValueError, match="no LoRA layers"):
        merge_lora(model)


def test_remove_without_merge_restores_the_original_weights():
    model, original = tiny_gpt(), tiny_gpt()
    apply_lora(model, "all-linear", 4, 8.0)
    randomise_B(model)
    merge_lora(model)
    assert remove_lora(model, merge=False) == 8
    for (name, p), q in zip(model.state_dict().items(), original.state_dict().values()):
        torch.testing.assert_close(p, q, atol=ATOL, rtol=RTOL, msg=name)
    with pytest.raises(TypeError, match="merge must be a bool"):
        remove_lora(tiny_gpt(), merge="yes")


@pytest.mark.parametrize("kind", MODELS)
def test_adapter_round_trip_into_a_fresh_wrapped_model(kind, tmp_path):
    make, targets = MODELS[kind]
    model = make()
    apply_lora(model, targets, 4, 8.0, generator=make_generator(0, "cpu"))
    randomise_B(model)
    path = save_adapter(model, tmp_path / "adapter.safetensors", metadata={"note": "test"})
    assert path == tmp_path / "adapter.safetensors" and [p.name for p in tmp_path.iterdir()] == [path.name]
    state = lora_state_dict(model)
    assert all(k.endswith((".lora_A", ".lora_B")) and v.device.type == "cpu" for k, v in state.items())
    fresh = make()
    apply_lora(fresh, targets, 4, 8.0, generator=make_generator(1, "cpu"))  # another A, B = 0
    metadata = load_adapter(fresh, path)
    assert metadata["note"] == "test" and metadata["r"] == "4" and metadata["rslora"] == "false"
    assert torch.equal(logits_of(fresh, ids()), logits_of(model, ids()))


def test_load_adapter_names_what_does_not_match(tmp_path):
    model = tiny_llama()
    apply_lora(model, ["q_proj", "v_proj"], 4, 8.0)
    path = save_adapter(model, tmp_path / "a.safetensors")
    cases = [(["q_proj", "v_proj"], 2, 8.0, False, "r=4 but .* r=2"),
             (["q_proj", "v_proj"], 4, 16.0, False, "alpha=8.0 but .* alpha=16.0"),
             (["q_proj", "v_proj"], 4, 8.0, True, "rslora=false but .* rslora=true"),
             (["q_proj", "k_proj"], 4, 8.0, False, "missing .*k_proj.lora_A.*unexpected .*v_proj.lora_A")]
    for targets, r, alpha, rslora, match in cases:
        other = tiny_llama()
        apply_lora(other, targets, r, alpha, rslora=rslora)
        with pytest.raises(ValueError, match=match):
            load_adapter(other, path)
    # same names and settings, other shapes: a wider model
    from transformers import LlamaConfig, LlamaForCausalLM
    wide = LlamaForCausalLM(LlamaConfig(vocab_size=V, hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2))
    apply_lora(wide, ["q_proj", "v_proj"], 4, 8.0)
    with pytest.raises(ValueError, match=r"lora_A: adapter shape \(4, 32\) but model \(4, 48\)"):
        load_adapter(wide, path)
    merge_lora(model)
    with pytest.raises(ValueError, match="unmerge_lora"):
        load_adapter(model, path)


def test_corrupt_adapter_raises_and_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    model = tiny_gpt()
    apply_lora(model, "all-linear", 2, 4.0)
    path = save_adapter(model, tmp_path / "a.safetensors")
    good = path.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="not a readable safetensors adapter"):
        load_adapter(model, truncated)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 7)
    with pytest.raises(ValueError, match="not a readable safetensors adapter"):
        load_adapter(model, garbage)
    with pytest.raises(FileNotFoundError, match="no adapter file"):
        load_adapter(model, tmp_path / "missing.safetensors")

    def write_half_then_fail(f, data):
        f.write(data[: len(data) // 2])
        raise OSError("disk full")

    randomise_B(model)
    monkeypatch.setattr(wrap, "_write_bytes", write_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        save_adapter(model, path)
    assert path.read_bytes() == good and sorted(p.name for p in tmp_path.iterdir()) == [
        "a.safetensors", "garbage.safetensors", "truncated.safetensors"]  # no temporary file left


def test_save_adapter_checks_its_metadata(tmp_path):
    model = tiny_gpt()
    apply_lora(model, "mlp.fc", 2, 4.0)
    with pytest.raises(TypeError, match="str -> str"):
        save_adapter(model, tmp_path / "a.safetensors", metadata={"steps": 10})
    with pytest.raises(ValueError, match=r"\['r'\] are reserved"):
        save_adapter(model, tmp_path / "a.safetensors", metadata={"r": "8"})
    with pytest.raises(ValueError, match="no LoRA layers"):
        save_adapter(tiny_gpt(), tmp_path / "a.safetensors")


def test_lora_layers_keep_device_dtype_and_train_only_A_and_B():
    model = tiny_gpt().to(torch.float64)
    apply_lora(model, "all-linear", 2, 4.0)
    layer = next(iter(lora_layers(model).values()))
    assert isinstance(layer, LoRALinear) and layer.lora_A.dtype == layer.lora_B.dtype == torch.float64
    model.train()
    _, loss = model(ids(), targets=ids(1))
    loss.backward()
    assert all((p.grad is not None) == p.requires_grad for p in model.parameters())
    assert all(p.grad is None for n, p in model.named_parameters() if "lora_" not in n)


def test_apply_lora_takes_numpy_hyperparameters_and_writes_the_same_adapter(tmp_path):
    import numpy as np

    model, plain = tiny_llama(), tiny_llama()
    report = apply_lora(model, ["q_proj", "v_proj"], np.int64(4), np.float32(8.0), dropout=np.float64(0.0),
                        generator=make_generator(0, "cpu"))
    assert report == apply_lora(plain, ["q_proj", "v_proj"], 4, 8.0, generator=make_generator(0, "cpu"))
    assert type(report.r) is int and all(type(layer.alpha) is float for layer in lora_layers(model).values())
    ours, theirs = save_adapter(model, tmp_path / "np.safetensors"), save_adapter(plain, tmp_path / "py.safetensors")
    fresh = tiny_llama()
    apply_lora(fresh, ["q_proj", "v_proj"], 4, 8.0)
    assert load_adapter(fresh, ours) == load_adapter(fresh, theirs)  # the same header: r "4", alpha "8.0"
    assert all(torch.equal(a, b) for a, b in zip(lora_state_dict(model).values(), lora_state_dict(plain).values()))
    with pytest.raises(TypeError, match="must be an int"):
        apply_lora(tiny_llama(), "q_proj", np.float64(4.0), 8.0)
