"""course_utils.parallel.fsdp: the collective counter and the ring volume it feeds (in-process, the collectives
replaced by stand-ins), and what fsdp_training_rank returns beyond the parameters test_parallel_ddp compares: each
rank's own losses, the calls per step, and an equality run on batches of its own."""


import pytest
import torch
import torch.distributed as dist

from course_utils.model.gpt import GPTConfig
from course_utils.parallel.ddp import (DataParallelSetup, build_model, make_batches, max_abs_difference,
                                       train_single_process)
from course_utils.parallel.fsdp import count_collectives, fsdp_training_rank, ring_bytes_sent_per_rank
from course_utils.parallel.launch import launch

CONFIG = GPTConfig(vocab_size=65, block_size=16, n_layer=2, n_head=2, n_embd=32)
TOLERANCE = 1e-5  # float32, as in test_parallel_ddp
RELATIVE_TOLERANCE_64 = 1e-8  # float64, of the largest change training made to a weight (see test_parallel_ddp)


def test_the_counter_counts_each_call_at_its_largest_tensor_and_restores_the_functions(monkeypatch):
    calls = []
    names = ("all_gather_into_tensor", "reduce_scatter_tensor", "all_reduce")
    for name in names:  # stand-ins that record the call: no process group needed
        monkeypatch.setattr(dist, name, lambda *args, _name=name, **kwargs: calls.append(_name) or _name)
    stand_ins = {name: getattr(dist, name) for name in names}
    shard, full = torch.zeros(4), torch.zeros(8)  # float32: 16 and 32 bytes
    with count_collectives() as counts:
        assert dist.all_gather_into_tensor(full, shard) == "all_gather_into_tensor"  # the call goes through
        dist.all_gather_into_tensor(output_tensor=full, input_tensor=shard)  # FSDP2 passes its tensors by keyword
        dist.reduce_scatter_tensor(shard, full)
        dist.all_reduce(torch.zeros(3, dtype=torch.float64), op=None)
    assert counts == {"all_gather_into_tensor": [2, 64], "reduce_scatter_tensor": [1, 32], "all_reduce": [1, 24]}
    assert calls == ["all_gather_into_tensor"] * 2 + ["reduce_scatter_tensor", "all_reduce"]
    assert {name: getattr(dist, name) for name in stand_ins} == stand_ins  # nothing stays wrapped


def test_ring_volume_per_rank_beyond_two_ranks():
    counts = {"all_gather_into_tensor": [2, 400], "reduce_scatter_tensor": [1, 400], "all_reduce": [1, 400]}
    assert ring_bytes_sent_per_rank(counts, 4) == 300 + 300 + 600  # (p - 1) / p, twice that for an all-reduce
    assert ring_bytes_sent_per_rank(counts, 1) == 0
    assert ring_bytes_sent_per_rank({}, 4) == 0


@pytest.fixture(scope="module")
def runs():
    ids = torch.randint(0, CONFIG.vocab_size, (4000,), generator=torch.Generator().manual_seed(0))
    setup = DataParallelSetup(CONFIG, make_batches(ids, steps=3, batch_size=8, block_size=CONFIG.block_size, seed=1))
    # the equality run has batches of its own (not setup's in float64), so using the wrong ones shows
    check = DataParallelSetup(CONFIG, make_batches(ids, steps=3, batch_size=8, block_size=CONFIG.block_size, seed=2),
                              dtype=torch.float64)
    ranks = launch(fsdp_training_rank, world_size=2, args=(setup, check), backend="gloo", timeout_s=180)
    return setup, check, ranks


def test_fsdp2_trains_each_rank_on_its_shard_and_the_equality_run_on_its_own_batches(runs):
    setup, check, ranks = runs
    reference = train_single_process(setup)[0]
    reference64 = train_single_process(check)[0]
    initial64 = {k: v.detach() for k, v in build_model(CONFIG, check.seed, dtype=torch.float64).named_parameters()}
    tolerance64 = RELATIVE_TOLERANCE_64 * max_abs_difference(reference64, initial64)
    for r in ranks:
        assert all(v.dtype == torch.float32 for v in r["fsdp"]["params"].values())  # setup's run, not the check's
        assert max_abs_difference(r["fsdp"]["params"], reference) < TOLERANCE
        assert max_abs_difference(r["fsdp_equality_params"], reference64) < tolerance64
        # each rank's loss is its shard's, as DDP's: a rank trained on the combined batch gives the same weights
        assert r["fsdp"]["losses"] == pytest.approx(r["ddp"]["losses"], abs=1e-5)
    assert ranks[0]["fsdp"]["losses"][0] != pytest.approx(ranks[1]["fsdp"]["losses"][0], abs=1e-4)


def test_fsdp2_calls_per_step_one_gather_per_unit_and_block_backward_one_reduce_scatter_per_unit(runs):
    _, _, ranks = runs
    units = CONFIG.n_layer + 1  # one fully_shard per block, one for the root
    for r in ranks:
        per_step = r["fsdp"]["collectives_per_step"]  # the names FSDP2 calls differ between torch versions
        gathers = sum(calls for name, (calls, _) in per_step.items() if name.startswith("all_gather"))
        scatters = sum(calls for name, (calls, _) in per_step.items() if name.startswith("reduce_scatter"))
        assert (gathers, scatters) == (units + CONFIG.n_layer, units)  # blocks gathered again for backward
        assert r["ddp"]["collectives_per_step"]["all_reduce"][0] == 1  # this model's gradient fits one bucket
        for run in ("ddp", "fsdp"):
            assert r[run]["sent_bytes_per_step"] == ring_bytes_sent_per_rank(r[run]["collectives_per_step"], 2)
