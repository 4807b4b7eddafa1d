"""The parallelism planner on a toy model whose memory per GPU is computed by hand, on Llama-2-70B's known limits,
and on bad input."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from course_utils.parallel.memory import LLAMA2_70B, ModelShape  # noqa: E402
from course_utils.parallel.planner import best_plans, draw_plans, plan_parallelism  # noqa: E402

# 4 blocks of 784 parameters (attention 4 * 8 * 8, GELU MLP 2 * 8 * 32, two bias-free LayerNorms 2 * 8), untied
# 16 x 8 embedding and head, final norm 8: 3,400 parameters. Each block keeps 16 values per token (4 norm, 3 Q/K/V,
# 1 attention output, 8 MLP) of 2 bytes: 16 * 2 * s * b * h = 1,024 bytes at s = 4, b = 1, h = 8.
TOY = ModelShape("toy", n_layer=4, hidden=8, n_head=2, n_kv_head=2, ffn_hidden=32, vocab_size=16,
                 tied_embeddings=False, mlp="gelu", norm="layernorm")
BY_HAND = {  # (dp, tp, pp, cp): total bytes per GPU, ZeRO-1 over dp * cp, 16 bytes per parameter
    (1, 2, 1, 1): 3400 // 2 * 16 + 4 * 1024 // 2,  # half of every matrix; activations split by tp
    (1, 1, 2, 1): (2 * 784 + 16 * 8) * 16 + 2 * 2 * 1024,  # 2 blocks + embedding; 2 micro-batches in flight
    (1, 1, 1, 2): 3400 * 4 + 3400 * 12 // 2 + 4 * 1024 // 2,  # optimizer sharded over cp; half the tokens
    (2, 1, 1, 1): 3400 * 4 + 3400 * 12 // 2 + 4 * 1024,  # ZeRO-1 over dp = 2
}


def test_toy_plans_equal_the_hand_computed_memory():
    plans = plan_parallelism(TOY, seq_len=4, micro_batch=1, global_batch=2, n_gpus=2, gpu_memory_gb=33e-6)
    assert {(p.dp, p.tp, p.pp, p.cp): p.total for p in plans} == BY_HAND
    assert [p.total for p in plans] == sorted(BY_HAND.values())  # sorted by memory
    assert {p.label for p in plans if p.fits} == {"dp1 tp2 pp1 cp1", "dp1 tp1 pp2 cp1"}  # <= 33,000 bytes
    assert all(p.total == p.weights + p.gradients + p.optimizer_states + p.activations for p in plans)
    assert [p.label for p in best_plans(TOY, 2, seq_len=4, global_batch=2, top=2, gpu_memory_gb=33e-6)] == [
        "dp1 tp2 pp1 cp1", "dp1 tp1 pp2 cp1"]  # both split 2 ways; pipeline last


def test_best_plans_prefer_data_parallelism_and_fit_in_decimal_gb():
    # everything fits in 1 GB: least model parallelism first, then no pipeline, then least memory
    labels = [p.label for p in best_plans(TOY, 2, seq_len=4, global_batch=2, top=4, gpu_memory_gb=1.0)]
    assert labels == ["dp2 tp1 pp1 cp1", "dp1 tp2 pp1 cp1", "dp1 tp1 pp1 cp2", "dp1 tp1 pp2 cp1"]
    # 29.248e-6 GB is exactly the 29,248 bytes of the tp2 plan (a plan that fills the GPU fits); 30e-6 GB is 30,000
    # bytes, short of the pipeline plan's 31,232 (in GiB it would be 32,212 bytes and hold it)
    fits = {p.label: p.fits for p in plan_parallelism(TOY, 4, 1, 2, 2, gpu_memory_gb=29.248e-6)}
    assert fits == {"dp1 tp2 pp1 cp1": True, "dp1 tp1 pp2 cp1": False, "dp1 tp1 pp1 cp2": False,
                    "dp2 tp1 pp1 cp1": False}
    assert {p.label for p in plan_parallelism(TOY, 4, 1, 2, 2, gpu_memory_gb=30e-6) if p.fits} == {"dp1 tp2 pp1 cp1"}


def test_stage_zero_holds_no_more_micro_batches_than_there_are():
    pp2 = next(p for p in plan_parallelism(TOY, 4, 1, 1, 2) if p.pp == 2)  # global batch 1: m = 1 micro-batch
    assert (pp2.micro_batches, pp2.in_flight, pp2.activations) == (1, 1, 2 * 1024)  # 2 blocks, 1 in flight
    # micro-batches of 2 sequences: a global batch of 2 feeds one data-parallel replica, not two
    assert {p.dp for p in plan_parallelism(TOY, 4, 2, 2, 2)} == {1}


def test_uneven_tensor_parallel_shards_are_padded():
    # RMSNorm (gain only) and a biased GELU MLP of odd width 33: attention 4 * 64 + 2 * 8 + 2 * 8, MLP 2 * 8 * 33 +
    # 33 + 8, norms 2 * 8, untied 16 x 8 embedding and head, final norm 8: 1,137 parameters, ceil(1137 / 2) = 569 a rank
    odd = ModelShape("odd", n_layer=1, hidden=8, n_head=2, n_kv_head=2, ffn_hidden=33, vocab_size=16,
                     tied_embeddings=False, mlp="gelu", norm="rmsnorm", bias=True)
    assert odd.n_params() == 1137
    tp2 = next(p for p in plan_parallelism(odd, 4, 1, 2, 2) if p.tp == 2)
    assert (tp2.weights, tp2.gradients, tp2.optimizer_states) == (569 * 2, 569 * 2, 569 * 12)


def test_full_recompute_keeps_layer_inputs_plus_one_block():
    plans = plan_parallelism(TOY, 4, 1, 2, 1, recompute="full")
    assert plans[0].activations == 4 * (4 * 1 * 8 * 2) + 1024


def test_llama2_70b_does_not_fit_on_8_gpus_but_does_on_64():
    assert not any(p.fits for p in plan_parallelism(LLAMA2_70B, 4096, 1, 32, 8))  # 16 B x 69 B / 8 > 80 GB
    best = best_plans(LLAMA2_70B, 64, seq_len=4096)
    assert best and all(p.fits for p in best)
    assert all(64 % p.tp == 0 and p.tp <= 8 and 8 % p.tp == 0 and 80 % p.pp == 0 for p in best)
    fig, ax = plt.subplots()
    draw_plans(ax, best)
    assert ax.get_xlabel().startswith("memory per GPU (GB")
    plt.close(fig)


def test_splits_respect_heads_layers_sequence_and_node_size():
    plans = plan_parallelism(TOY, 4, 1, 8, 8, gpus_per_node=2)
    assert plans and all(p.tp in (1, 2) and p.pp in (1, 2, 4) and p.cp in (1, 2, 4) for p in plans)
    assert all(p.dp * p.tp * p.pp * p.cp == 8 for p in plans)
    gqa = ModelShape("gqa", n_layer=4, hidden=8, n_head=4, n_kv_head=2, ffn_hidden=32, vocab_size=16,
                     tied_embeddings=False, mlp="gelu", norm="layernorm")
    assert {p.tp for p in plan_parallelism(gqa, 4, 1, 4, 4)} == {1, 2}  # tp = 4 would split 2 key/value heads 4 ways


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(n_gpus=3), ValueError, "no split of 3 GPUs"),  # dp = 3 does not divide the global batch of 2
    (dict(n_gpus=0), ValueError, "n_gpus must be"),
    (dict(global_batch=3, micro_batch=2), ValueError, "multiple of micro_batch"),
    (dict(zero_stage=4), ValueError, "zero_stage"),
    (dict(recompute="half"), ValueError, "recompute"),
    (dict(gpu_memory_gb=-1), ValueError, "gpu_memory_gb"),
    (dict(shape="70B"), TypeError, "ModelShape"),
])
def test_bad_input_raises_clear_errors(kwargs, error, match):
    args = dict(shape=TOY, seq_len=4, micro_batch=1, global_batch=2, n_gpus=2) | kwargs
    with pytest.raises(error, match=match):
        plan_parallelism(**args)


def test_drawing_nothing_is_refused():
    with pytest.raises(ValueError, match="empty"):
        draw_plans(None, [])


def test_one_gpu_holds_every_parameter_of_a_biased_layernorm_model():
    # the final LayerNorm with bias has 2 * hidden parameters; the planner counted hidden (1,153 of 1,161 here)
    shape = ModelShape("b", n_layer=1, hidden=8, n_head=2, n_kv_head=2, ffn_hidden=33, vocab_size=16,
                       tied_embeddings=False, mlp="gelu", norm="layernorm", bias=True)
    (plan,) = plan_parallelism(shape, seq_len=4, micro_batch=1, global_batch=1, n_gpus=1)
    assert shape.n_params() == 1161 and plan.weights == 2 * 1161  # bf16 weights


def test_numpy_sizes_are_taken_and_give_python_numbers():
    import dataclasses

    import numpy as np

    from course_utils.parallel.memory import state_memory
    from course_utils.parallel.zero import zero_memory_per_rank

    shape = ModelShape("toy", n_layer=np.int64(4), hidden=np.int64(8), n_head=np.int32(2), n_kv_head=np.int64(2),
                       ffn_hidden=np.int64(32), vocab_size=np.int64(16), tied_embeddings=False, mlp="gelu",
                       norm="layernorm", positions=np.int64(0))
    assert shape == TOY and all(type(getattr(shape, f)) is int for f in (
        "n_layer", "hidden", "n_head", "n_kv_head", "ffn_hidden", "vocab_size", "positions"))
    as_tuples = lambda plans: [dataclasses.astuple(p) for p in plans]  # noqa: E731 (Plan compares a few fields)
    plans = plan_parallelism(TOY, np.int64(4), np.int64(1), np.int64(2), np.int64(2), gpu_memory_gb=np.float32(1.0))
    assert as_tuples(plans) == as_tuples(plan_parallelism(TOY, 4, 1, 2, 2, gpu_memory_gb=1.0))
    assert all(type(v) in (int, float, bool) for p in plans for v in dataclasses.astuple(p))
    assert as_tuples(best_plans(TOY, np.int64(2), seq_len=np.int64(4), global_batch=np.int64(2), top=np.int64(2))) \
        == as_tuples(best_plans(TOY, 2, seq_len=4, global_batch=2, top=2))
    big = np.int64(70_000_000_000)
    assert state_memory(big) == state_memory(70_000_000_000) and type(state_memory(big).weights) is int
    assert zero_memory_per_rank(big, np.int64(64), np.int64(3)) == zero_memory_per_rank(70_000_000_000, 64, 3)
    with pytest.raises(TypeError, match="n_layer must be an int"):
        dataclasses.replace(TOY, n_layer=np.float64(4.0))
    with pytest.raises(ValueError, match="dp must be a positive int"):
        zero_memory_per_rank(1000, True, 1)
