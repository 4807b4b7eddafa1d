"""Parameter and FLOP accounting against the real model and against torch's FLOP counter."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from course_utils.model.gpt import GPT, GPTConfig
from course_utils.scaling.compute import gpt_parameter_count, gpt_train_flops_per_token, training_flops


@pytest.mark.parametrize("kwargs", [
    {}, {"tie_weights": False}, {"bias": False}, {"n_layer": 3, "n_head": 2, "n_embd": 24, "vocab_size": 50},
])
def test_parameter_count_matches_the_model(kwargs):
    config = GPTConfig(**{"vocab_size": 65, "block_size": 32, "n_layer": 2, "n_head": 4, "n_embd": 32, **kwargs})
    model = GPT(config)
    for non_embedding in (True, False):
        assert gpt_parameter_count(config, non_embedding) == model.num_parameters(non_embedding)


def test_twelve_c_squared_per_layer_dominates_at_width():
    config = GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=512)
    assert gpt_parameter_count(config) == pytest.approx(12 * 4 * 512**2, rel=0.01)


@pytest.mark.parametrize("seq_len", [8, 32])
def test_flops_per_token_match_torch_flop_counter(seq_len):
    config = GPTConfig(vocab_size=65, block_size=32, n_layer=2, n_head=4, n_embd=32)
    torch.manual_seed(0)
    model = GPT(config)
    B = 3
    idx = torch.randint(0, 65, (B, seq_len), generator=torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as counter:
        _, loss = model(idx, idx)
        loss.backward()
    counted = counter.get_total_flops() / (B * seq_len)
    expected = gpt_train_flops_per_token(config, seq_len)
    # torch's counter does not see inside the fused CPU attention kernel, so it counts the weights and the head...
    assert counted == expected["weights"] + expected["head"]
    # ...and the attention products are counted on the same shapes written as plain matmuls
    H, D = config.n_head, config.head_size
    q, k, v = (torch.randn(B, H, seq_len, D, requires_grad=True) for _ in range(3))
    with FlopCounterMode(display=False) as counter:
        out = (q @ k.transpose(-2, -1)).softmax(-1) @ v  # (B, H, T, D)
        out.sum().backward()
    per_layer = counter.get_total_flops() / (B * seq_len)
    assert config.n_layer * per_layer == expected["attention"]


def test_six_n_d_and_bad_input():
    assert training_flops(1e6, 2e6) == 1.2e13
    with pytest.raises(ValueError, match="n_tokens"):
        training_flops(1e6, 0)
    with pytest.raises(ValueError, match="seq_len"):
        gpt_train_flops_per_token(GPTConfig(block_size=16), seq_len=17)
    with pytest.raises(TypeError, match="GPTConfig"):
        gpt_parameter_count({"n_embd": 8})


def test_training_flops_takes_numpy_numbers():
    import numpy as np

    assert training_flops(np.int64(1000), 10) == training_flops(1000, 10) == 60_000.0  # np.int64 was refused
    assert training_flops(np.float32(2.0), np.int32(3)) == training_flops(2.0, 3)
    with pytest.raises(ValueError, match="n_params must be a positive number"):
        training_flops(True, 10)


def test_flops_per_token_take_a_numpy_sequence_length():
    import numpy as np

    config = GPTConfig(block_size=16)
    flops = gpt_train_flops_per_token(config, np.int64(8))
    assert flops == gpt_train_flops_per_token(config, 8) and all(type(v) is int for v in flops.values())
    for bad in (True, np.float64(8.0)):
        with pytest.raises(ValueError, match="seq_len must be an int"):
            gpt_train_flops_per_token(config, bad)
