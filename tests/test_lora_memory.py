"""Training-memory accounting from real parameter shapes, on a meta-device Llama-2-7B (no memory used) and on small
models: 16 bytes per parameter for float32 AdamW, LoRA's gradients and Adam states for A and B only."""

import pytest
import torch
import torch.nn as nn

from course_utils.lora.memory import LLAMA2_7B_CONFIG, TrainingMemory, meta_model, training_memory
from course_utils.lora.wrap import apply_lora, lora_layers
from course_utils.model.gpt import GPT, GPTConfig


def llama2_7b_by_hand() -> int:
    # Llama 2 7B (Touvron et al., 2023, "Llama 2: Open Foundation and Fine-Tuned Chat Models", Table 1: "7B"; the
    # 6.74B usually quoted is this exact count rounded), from the released configuration: untied input and output
    # embeddings (V x C each), 32 blocks of attention (4 square C x C projections, no biases), a SwiGLU MLP
    # (3 matrices C x 11008) and two RMSNorm gains, and a final RMSNorm gain.
    V, C, F, L = 32000, 4096, 11008, 32
    per_block = 4 * C * C + 3 * C * F + 2 * C
    return 2 * V * C + L * per_block + C


@pytest.fixture(scope="module")
def llama2_7b():
    return meta_model(LLAMA2_7B_CONFIG)


def test_meta_llama2_7b_has_its_published_parameter_count(llama2_7b):
    assert llama2_7b_by_hand() == 6_738_415_616
    assert sum(p.numel() for p in llama2_7b.parameters()) == 6_738_415_616
    assert all(p.device.type == "meta" for p in llama2_7b.parameters())
    assert llama2_7b.lm_head.weight is not llama2_7b.model.embed_tokens.weight  # untied


def test_full_fp32_finetuning_costs_16_bytes_per_parameter(llama2_7b):
    memory = training_memory(llama2_7b)
    n = 6_738_415_616
    assert memory == TrainingMemory(weights=4 * n, gradients=4 * n, optimizer_states=8 * n, trainable_params=n,
                                    total_params=n)
    assert memory.total == 16 * n  # about 108 GB before activations
    bf16 = training_memory(llama2_7b, weight_bytes=2, grad_bytes=2, adam_state_bytes=4)
    assert bf16.total == 8 * n


def test_lora_on_the_meta_7b_counts_only_A_and_B_for_gradients_and_adam():
    model = meta_model(LLAMA2_7B_CONFIG)
    report = apply_lora(model, ["q_proj", "v_proj"], r=8, alpha=16.0)
    lora = 32 * 2 * 8 * (4096 + 4096)  # 32 blocks x (q, v) x r (in + out)
    assert report.trainable == lora == 4_194_304
    assert all(layer.lora_A.device.type == "meta" for layer in lora_layers(model).values())
    memory = training_memory(model)
    total = 6_738_415_616 + lora
    assert (memory.trainable_params, memory.total_params) == (lora, total)
    assert memory.weights == 4 * total
    assert memory.gradients == 4 * lora and memory.optimizer_states == 8 * lora


def test_frozen_bf16_weights_with_a_float32_adapter():
    # peft's default on a bf16 model: frozen weights 2 bytes, the adapter's own weights upcast to float32 (4 bytes),
    # their gradients float32 (4) and both Adam moments float32 (8)
    model = meta_model(LLAMA2_7B_CONFIG)
    apply_lora(model, ["q_proj", "v_proj"], r=8, alpha=16.0)
    lora, total = 4_194_304, 6_738_415_616 + 4_194_304
    memory = training_memory(model, weight_bytes=2, trainable_weight_bytes=4)
    assert memory.weights == 2 * (total - lora) + 4 * lora
    assert memory.gradients == 4 * lora and memory.optimizer_states == 8 * lora
    assert training_memory(model, weight_bytes=2).weights == 2 * total  # default: every weight at weight_bytes


def test_tied_weights_count_once_and_frozen_ones_have_no_gradients():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, block_size=8, n_layer=1, n_head=2, n_embd=8, tie_weights=True))
    n = sum(p.numel() for p in model.parameters())
    assert n == sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False)) - 50 * 8
    assert training_memory(model).weights == 4 * n
    model.tok_emb.weight.requires_grad_(False)  # also the head's weight (tied)
    memory = training_memory(model, adam_state_bytes=0)
    assert memory.trainable_params == n - 50 * 8
    assert memory.gradients == 4 * (n - 50 * 8) and memory.optimizer_states == 0


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(weight_bytes=0), ValueError, "weight_bytes must be an int >= 1"),
    (dict(grad_bytes=-1), ValueError, "grad_bytes must be an int >= 0"),
    (dict(adam_state_bytes=-8), ValueError, "adam_state_bytes must be an int >= 0"),
    (dict(weight_bytes=2.0), TypeError, "weight_bytes must be an int"),
    (dict(grad_bytes=True), TypeError, "grad_bytes must be an int"),
    (dict(trainable_weight_bytes=0), ValueError, "trainable_weight_bytes must be an int >= 1"),
    (dict(trainable_weight_bytes=4.0), TypeError, "trainable_weight_bytes must be an int"),
])
def test_byte_arguments_are_validated(kwargs, error, match):
    with pytest.raises(error, match=match):
        training_memory(nn.Linear(2, 2), **kwargs)


def test_bad_model_arguments():
    with pytest.raises(TypeError, match="nn.Module"):
        training_memory("llama")
    with pytest.raises(TypeError, match="dict of LlamaConfig arguments"):
        meta_model(["hidden_size", 64])


def test_meta_model_refuses_a_key_llama_config_would_ignore():
    # LlamaConfig keeps an unknown key as a bare attribute: 'hiden_size' built the default 4096-wide model.
    with pytest.raises(ValueError, match="'hiden_size' \\(did you mean 'hidden_size'\\?\\)"):
        meta_model(dict(LLAMA2_7B_CONFIG, hiden_size=64))
    with pytest.raises(ValueError, match="'layers'"):
        meta_model({"layers": 2})


def test_meta_model_takes_every_key_transformers_writes():
    from transformers import LlamaConfig

    small = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=1)
    written = LlamaConfig(**small).to_dict()
    written.update(_model_name_or_path="x", unk_token_id=0, quantization_config={"quant_method": "gguf"})
    model = meta_model(written)
    assert model.config.hidden_size == 16 and model.config.num_hidden_layers == 2
    legacy = meta_model(dict(small, rope_theta=500000.0))  # converted by transformers into rope_parameters
    assert legacy.config.rope_parameters["rope_theta"] == 500000.0


def test_numpy_byte_counts_are_taken_as_python_ints(llama2_7b):
    import numpy as np

    memory = training_memory(llama2_7b, weight_bytes=np.int64(2), grad_bytes=np.int32(2),
                             adam_state_bytes=np.int64(4), trainable_weight_bytes=np.int64(4))
    assert memory == training_memory(llama2_7b, weight_bytes=2, grad_bytes=2, adam_state_bytes=4,
                                     trainable_weight_bytes=4)
    assert all(type(v) is int for v in (memory.weights, memory.gradients, memory.optimizer_states))
    with pytest.raises(TypeError, match="weight_bytes must be an int >= 1"):
        training_memory(nn.Linear(2, 2), weight_bytes=np.float64(2.0))
