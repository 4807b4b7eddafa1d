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
