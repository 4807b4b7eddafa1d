"""Chapter 11's memory arithmetic: parameter counts from shapes against real (and meta-device) models, bytes per
parameter of training recipes against real tensors after an optimizer step, activation memory against the bytes
autograd saves, and ZeRO's per-rank memory against the paper's worked example."""

import pytest
import torch
from transformers import LlamaConfig as HFLlamaConfig

from course_utils.lora.memory import LLAMA2_7B_CONFIG, meta_model, training_memory
from course_utils.model.gpt import GPT, GPTConfig
from course_utils.parallel.activations import (SavedTensorMeter, gpt_activation_bytes, korthikanti_layer_bytes,
                                               layer_activation_bytes)
from course_utils.parallel.memory import (FP32_ADAMW, LLAMA2_70B, LLAMA2_7B, MIXED_ADAMW, PRESETS, SMOLLM2_135M,
                                          ModelShape, TrainingRecipe, measured_state_bytes, model_state_memory,
                                          state_memory)
from course_utils.parallel.zero import zero_memory_per_rank, zero_table
from course_utils.scaling.compute import gpt_parameter_count

SMOLLM2_HF = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                  num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True)
LLAMA2_70B_HF = dict(vocab_size=32000, hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
                     num_attention_heads=64, num_key_value_heads=8, tie_word_embeddings=False)


@pytest.mark.parametrize("config", [GPTConfig(), GPTConfig(bias=False, tie_weights=False, n_layer=2, n_embd=32),
                                    GPTConfig(vocab_size=11, block_size=5, n_layer=1, n_head=1, n_embd=4)])
def test_gpt_shape_counts_every_parameter(config):
    shape = ModelShape.from_gpt_config(config)
    torch.manual_seed(0)
    assert shape.n_params() == gpt_parameter_count(config, non_embedding=False)
    assert shape.n_params() == sum(p.numel() for p in GPT(config).parameters())


@pytest.mark.parametrize("kwargs, preset, published", [
    (SMOLLM2_HF, SMOLLM2_135M, 134_515_008),
    (LLAMA2_7B_CONFIG, LLAMA2_7B, 6_738_415_616),  # Touvron et al. 2023's "7B"
    (LLAMA2_70B_HF, LLAMA2_70B, 68_976_648_192),  # and "70B"
])
def test_llama_shapes_match_transformers_models_on_the_meta_device(kwargs, preset, published):
    hf_config = HFLlamaConfig(**kwargs)
    shape = ModelShape.from_hf_config(hf_config, name=preset.name)
    assert shape == preset
    assert preset.n_params() == sum(p.numel() for p in meta_model(kwargs).parameters()) == published
    assert PRESETS[preset.name] is preset


def test_shape_and_recipe_validation():
    with pytest.raises(ValueError, match="n_kv_head"):
        ModelShape("x", 1, 8, 4, 3, 16, 10, True)
    with pytest.raises(ValueError, match="divisible by n_head"):
        ModelShape("x", 1, 10, 4, 4, 16, 10, True)
    with pytest.raises(ValueError, match="mlp must be"):
        ModelShape("x", 1, 8, 4, 4, 16, 10, True, mlp="relu")
    with pytest.raises(TypeError, match="n_layer must be an int"):
        ModelShape("x", 2.0, 8, 4, 4, 16, 10, True)
    with pytest.raises(TypeError, match="GPTConfig"):
        ModelShape.from_gpt_config({"n_layer": 2})
    with pytest.raises(TypeError, match="lacks"):
        ModelShape.from_hf_config(object())
    with pytest.raises(ValueError, match=">= 0"):
        TrainingRecipe("bad", 2, -2, 4, 8)
    with pytest.raises(TypeError, match="TrainingRecipe"):
        state_memory(10, recipe="fp32")
    with pytest.raises(ValueError, match="n_params must be an int >= 1"):
        state_memory(0)


def test_both_adamw_recipes_cost_16_bytes_per_parameter():
    assert FP32_ADAMW.bytes_per_param == MIXED_ADAMW.bytes_per_param == 16
    assert MIXED_ADAMW.optimizer_state_bytes == 12  # the ZeRO paper's K
    memory = state_memory(LLAMA2_7B.n_params(), MIXED_ADAMW)
    n = 6_738_415_616
    assert (memory.weights, memory.gradients, memory.optimizer_states) == (2 * n, 2 * n, 12 * n)


def test_state_bytes_of_real_tensors_after_one_adamw_step_equal_the_formula():
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=30, block_size=8, n_layer=2, n_head=2, n_embd=16)
    model = GPT(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    idx = torch.randint(0, 30, (2, 8))
    model(idx, idx)[1].backward()
    optimizer.step()
    measured = measured_state_bytes(model, optimizer)
    formula = model_state_memory(model, FP32_ADAMW)
    assert formula == training_memory(model)  # chapter 06's count, reused
    assert formula == state_memory(ModelShape.from_gpt_config(config).n_params(), FP32_ADAMW)
    assert (measured["weights"], measured["gradients"], measured["adam_moments"]) == (
        formula.weights, formula.gradients, formula.optimizer_states)
    assert measured["step_counters"] == 4 * len(list(model.parameters()))  # one float32 scalar per tensor


def test_measuring_before_a_step_is_refused():
    model = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="optimizer.step"):
        measured_state_bytes(model, torch.optim.AdamW(model.parameters()))


def test_korthikanti_table_2_by_hand():
    s, b, h, a, t = 2048, 2, 1024, 16, 4
    sbh = s * b * h
    assert korthikanti_layer_bytes(s, b, h, a) == sbh * (34 + 5 * a * s / h)
    assert korthikanti_layer_bytes(s, b, h, a, tp=t) == sbh * (10 + 24 / t + 5 * a * s / (h * t))
    assert korthikanti_layer_bytes(s, b, h, a, tp=t, sequence_parallel=True) == sbh * (34 / t + 5 * a * s / (h * t))
    assert korthikanti_layer_bytes(s, b, h, a, tp=t, sequence_parallel=True, recompute="selective") == sbh * 34 / t
    assert korthikanti_layer_bytes(s, b, h, a, recompute="full") == 2 * sbh
    with pytest.raises(ValueError, match="recompute"):
        korthikanti_layer_bytes(s, b, h, a, recompute="some")
    with pytest.raises(ValueError, match="tp must be"):
        korthikanti_layer_bytes(s, b, h, a, tp=0)


@pytest.mark.parametrize("tp", [1, 2, 8])
def test_the_general_count_reproduces_the_paper_for_the_papers_block(tp):
    gpt_block = ModelShape("paper", 1, 1024, 16, 16, 4096, 100, True, mlp="gelu", norm="layernorm", bias=True)
    for recompute in ("none", "selective"):
        ours = layer_activation_bytes(gpt_block, 2048, 2, bytes_per_value=2, flash_attention=False, dropout=True,
                                      tp=tp, recompute=recompute)["total"]
        paper = korthikanti_layer_bytes(2048, 2, 1024, 16, tp=tp, sequence_parallel=True, recompute=recompute)
        assert ours == pytest.approx(paper, rel=1e-12)


def test_swiglu_and_gqa_change_the_count_as_documented():
    # Llama-2-70B: 4 + 1 + 2 * 8/64 + 1 norms/Q/K/V/attention-out values, 4 * 28672/8192 = 14 MLP values per token
    parts = layer_activation_bytes(LLAMA2_70B, 4096, 1, bytes_per_value=2)
    assert parts["total"] == parts["linear"] == 4096 * 8192 * 20.25 * 2
    assert layer_activation_bytes(LLAMA2_70B, 4096, 1, recompute="full")["total"] == 4096 * 8192 * 2


@pytest.mark.parametrize("attention", ["sdpa", "manual"])
@pytest.mark.parametrize("batch, seq_len", [(3, 32), (2, 17)])
def test_saved_tensor_bytes_of_the_course_gpt_match_the_count(attention, batch, seq_len):
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=65, block_size=32, n_layer=2, n_head=4, n_embd=64, attention=attention)
    model = GPT(config)
    idx, targets = torch.randint(0, 65, (2, batch, seq_len))
    with SavedTensorMeter(model) as meter:
        loss = model(idx, targets)[1]
    loss.backward()  # the meter passes tensors through unchanged
    count = gpt_activation_bytes(config, batch, seq_len)
    assert meter.bytes == count["total"]  # every saved byte accounted for on CPU
    assert abs(meter.bytes - count["formula"]) / meter.bytes < 0.02  # the ignored small tensors are < 2 % here
    assert (count["scores"] > 0) == (attention == "manual")  # SDPA keeps no (T, T) scores
    assert meter.by_dtype["float32"] > 0.99 * meter.bytes


def test_the_meter_leaves_out_parameters_and_rejects_non_modules():
    layer = torch.nn.Linear(4, 4, bias=False)
    x = torch.randn(3, 4)
    with SavedTensorMeter(layer) as meter:
        layer(x).sum().backward()
    assert meter.bytes == x.numel() * 4 and meter.n_tensors == 1  # the input, not the weight
    with pytest.raises(TypeError, match="nn.Module"):
        SavedTensorMeter("model")
    with pytest.raises(ValueError, match="dropout 0"):
        gpt_activation_bytes(GPTConfig(dropout=0.1), 1)


def test_zero_stages_reproduce_the_papers_figure_1():
    psi, nd = 7_500_000_000, 64
    totals = [zero_memory_per_rank(psi, nd, stage).total / 1e9 for stage in range(4)]
    assert totals == pytest.approx([120.0, 31.4, 16.6, 1.9], abs=0.05)
    assert totals == [120.0, 31.40625, 16.640625, 1.875]  # (2+2+12)Ψ, 4Ψ + 12Ψ/Nd, 2Ψ + 14Ψ/Nd, 16Ψ/Nd
    assert zero_table(psi, [1, 64])[1]["stage 3"] == 1.875e9
    assert zero_memory_per_rank(10, 4, 3).weights == 2 * 3  # shards padded to ceil(10 / 4) parameters


@pytest.mark.parametrize("args, error", [((10, 0, 1), ValueError), ((10, 2, 4), ValueError),
                                         ((0, 2, 1), ValueError), ((10, 2, True), ValueError)])
def test_zero_rejects_bad_input(args, error):
    with pytest.raises(error):
        zero_memory_per_rank(*args)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("attention", ["sdpa", "manual"])
def test_cuda_allocator_holds_about_the_saved_bytes(attention):
    # The chapter's "allocator line": after the forward pass, torch.cuda.memory_allocated grows by what autograd
    # saved (the meter), the loss, and the allocator's rounding of each block up to 512 bytes. A warm-up step first:
    # the first matmul allocates cuBLAS's workspace through the same allocator, and it stays allocated. The count
    # agrees with the CPU formula to a relative 1e-3 (the memory-efficient SDPA kernel keeps two 16-byte random-number
    # tensors per block and pads its log-sum-exp to a multiple of 32 queries).
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=65, block_size=64, n_layer=2, n_head=4, n_embd=64, attention=attention,
                       dropout=0.0)
    model = GPT(config).to("cuda")
    idx, targets = torch.randint(0, 65, (2, 8, 64), device="cuda")
    model(idx, targets)[1].backward()  # warm-up: cuBLAS workspace, kernel selection
    model.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    with SavedTensorMeter(model) as meter:
        loss = model(idx, targets)[1]
    torch.cuda.synchronize()
    held = torch.cuda.memory_allocated() - before
    count = gpt_activation_bytes(config, 8, 64)
    assert abs(meter.bytes - count["total"]) / count["total"] < 1e-3
    rounding = 512 * (meter.n_tensors + 8)  # each storage rounded up to 512 B, plus the loss and a few scalars
    assert meter.bytes - 2 * idx.numel() * 8 <= held <= meter.bytes + rounding  # ids/targets predate `before`
    loss.backward()
