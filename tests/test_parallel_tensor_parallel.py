"""Megatron-style tensor parallelism on two gloo ranks: the split MLP and attention give the unsplit layers'
outputs, input gradients and (sliced) weight gradients, with one all-reduce each way per part; bad splits are
refused."""

import numpy as np
import pytest
import torch

from course_utils.model.gpt import MLP, CausalSelfAttention, GPTConfig
from course_utils.parallel.launch import launch
from course_utils.parallel.tensor_parallel import (ColumnParallelLinear, RowParallelLinear, TensorParallelAttention,
                                                   TensorParallelMLP, _shard_index, tensor_parallel_bytes_per_layer,
                                                   tensor_parallel_check_rank)

CONFIG = GPTConfig(vocab_size=65, block_size=8, n_layer=1, n_head=4, n_embd=32)
BATCH = 3
# float32 sums of partial products in another order: rounding of ~1e-7 (float32's eps) of the values summed, a few
# times that after a few hundred terms; relative to each tensor's largest |value|, so that it does not depend on
# the batch (a bias gradient sums B * T tokens).
TOLERANCE = 1e-5


def test_split_layers_equal_the_unsplit_ones_with_one_all_reduce_each_way():
    ranks = launch(tensor_parallel_check_rank, world_size=2, args=(CONFIG, BATCH, 0), backend="gloo", timeout_s=120)
    one_all_reduce = BATCH * CONFIG.block_size * CONFIG.n_embd * 4  # bytes of a (B, T, C) float32 activation
    for result in ranks:
        for part in ("mlp", "attention"):
            diffs, relative = result[part]["max_abs_diff"], result[part]["max_rel_diff"]
            assert {"output", "input_grad"} <= diffs.keys() and len(diffs) == 6  # 2 + weight/bias of 2 layers
            assert relative.keys() == diffs.keys()
            assert max(relative.values()) < TOLERANCE, (part, relative)
            assert result[part]["comm"] == {"forward": {"count": 1, "bytes": one_all_reduce},
                                            "backward": {"count": 1, "bytes": one_all_reduce}}
        assert result["mlp"]["local_weight_shapes"] == {"fc.weight": (64, 32), "proj.weight": (32, 64)}
        assert result["attention"]["local_weight_shapes"] == {"qkv.weight": (48, 32), "proj.weight": (32, 16)}


def test_qkv_rows_take_each_ranks_heads_from_q_k_and_v():
    # out = 3 * 8 rows (q, k, v of width 8), 2 ranks: rank 1 holds rows 4-7 of q, 12-15 of k, 20-23 of v.
    assert _shard_index(24, 1, 2, groups=3).tolist() == [4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23]
    assert _shard_index(8, 0, 2).tolist() == [0, 1, 2, 3]


def test_communication_per_layer_is_megatrons_two_all_reduces_each_way():
    counts = tensor_parallel_bytes_per_layer(batch=2, seq_len=10, n_embd=16, world_size=4)
    assert counts["all_reduces_forward"] == counts["all_reduces_backward"] == 2
    assert counts["bytes_per_all_reduce"] == 2 * 10 * 16 * 4
    assert counts["sent_per_rank_per_step"] == 4 * 1.5 * 2 * 10 * 16 * 4  # 4 all-reduces, 2 (p-1)/p = 1.5


def test_world_sizes_that_do_not_divide_are_refused():
    config = GPTConfig(n_head=6, n_embd=96)
    with pytest.raises(ValueError, match=r"number of attention heads \(6\) is not divisible by .* 4"):
        TensorParallelAttention(CausalSelfAttention(config), 0, 4)
    with pytest.raises(ValueError, match=r"hidden size \(4 \* n_embd\) \(384\) is not divisible by .* 5"):
        TensorParallelMLP(MLP(config), 0, 5)
    with pytest.raises(ValueError, match="output features per group"):
        ColumnParallelLinear.from_linear(torch.nn.Linear(4, 6), 0, 4)
    with pytest.raises(ValueError, match="input features per group"):
        RowParallelLinear.from_linear(torch.nn.Linear(6, 4), 0, 4)
    with pytest.raises(ValueError, match="batch must be an int >= 1"):
        tensor_parallel_bytes_per_layer(batch=0, seq_len=1, n_embd=1, world_size=1)
    for bad in (True, 2.0):  # True was a world of one rank
        with pytest.raises(ValueError, match=f"world_size must be a positive int, got {bad}"):
            TensorParallelMLP(MLP(config), 0, bad)


def test_communication_sizes_must_be_counts():
    for name in ("batch", "world_size", "bytes_per_element"):
        for bad in (float("nan"), 2.5, True, 0):  # NaN bytes, 39321.6 bytes, 0 bytes came back without a word
            kwargs = dict(batch=2, seq_len=10, n_embd=16, world_size=4, bytes_per_element=4) | {name: bad}
            with pytest.raises(ValueError, match=f"{name} must be an int >= 1"):
                tensor_parallel_bytes_per_layer(**kwargs)
    counts = tensor_parallel_bytes_per_layer(batch=np.int64(2), seq_len=10, n_embd=16, world_size=np.int64(4))
    assert counts["bytes_per_all_reduce"] == 2 * 10 * 16 * 4
