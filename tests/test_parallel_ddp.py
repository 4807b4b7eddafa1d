"""DDP and FSDP2 on two gloo ranks follow single-process training on the combined batch (same init, same data,
AdamW), checked in float64 where a real mistake (summing the ranks' gradients) is caught by many orders of
magnitude; FSDP2 holds half of DDP's parameter, gradient and AdamW bytes per rank and sends more bytes per step."""

import dataclasses

import numpy as np
import pytest
import torch

from course_utils.model.gpt import GPTConfig
from course_utils.parallel.ddp import (DataParallelSetup, gradient_bytes, build_model, make_batches, tokens_per_second,
                                       max_abs_difference, ring_allreduce_bytes_per_rank, shard_batch,
                                       time_all_reduce, train_single_process, ddp_training_rank)
from course_utils.parallel.fsdp import fsdp_training_rank
from course_utils.parallel.launch import launch

CONFIG = GPTConfig(vocab_size=65, block_size=16, n_layer=2, n_head=2, n_embd=32)
# float32 sums in another order (two half-batch means averaged vs one mean) differ by rounding, ~1e-7 relative;
# AdamW turns a gradient into an update of at most about lr = 1e-3 per step, so after 5 steps rounding leaves the
# weights within ~1e-6 of each other (measured 1.3e-6), while training itself moves them by ~lr per step.
TOLERANCE = 1e-5
# In float64 the same reordering leaves ~1e-16 relative per sum, and AdamW carries such gaps from step to step.
# Measured as a fraction of the largest change training made to a weight: 6.2e-13 here (5 steps; gap 3.1e-15, the
# weights having moved by 5.0e-3), 5.4e-13 and 5.2e-13 after 20 and 30 steps of this setup, and more at chapter 11's
# sizes: 4.3e-12 in its cpu profile (20 steps), 9.7e-12 and 3.7e-12 on the full corpus its gpu profile trains on
# (20 steps of batch 16; the profile's 30 steps of batch 32; gloo). 1e-8 of the weights' change leaves 1,000x
# head-room over the largest of these, and the mistakes stay far above it: summing instead of averaging measured
# 3.4e-2 of the change here (1.7e-4, 3.4e6 times the tolerance), one rank's shard alone 1.8.
RELATIVE_TOLERANCE_64 = 1e-8


@pytest.fixture(scope="module")
def setup():
    ids = torch.randint(0, CONFIG.vocab_size, (4000,), generator=torch.Generator().manual_seed(0))
    return DataParallelSetup(CONFIG, make_batches(ids, steps=5, batch_size=8, block_size=CONFIG.block_size, seed=1))


@pytest.fixture(scope="module")
def single(setup):
    return train_single_process(setup)


@pytest.fixture(scope="module")
def setup64(setup):
    return dataclasses.replace(setup, dtype=torch.float64)


@pytest.fixture(scope="module")
def single64(setup64):
    params = train_single_process(setup64)[0]
    initial = {k: v.detach() for k, v in build_model(CONFIG, setup64.seed, dtype=torch.float64).named_parameters()}
    moved = max_abs_difference(params, initial)
    assert moved > 1e-3  # training really moved the weights (5 steps of lr 1e-3)
    return params, RELATIVE_TOLERANCE_64 * moved


def test_ddp_on_two_ranks_equals_one_process_on_the_combined_batch(setup, single):
    reference, losses, _ = single
    ranks = launch(ddp_training_rank, world_size=2, args=(setup, 2, (4096,), True, 3), backend="gloo", timeout_s=120)
    assert max_abs_difference(ranks[0]["params"], ranks[1]["params"]) == 0.0  # the replicas never drift apart
    assert max_abs_difference(ranks[0]["params"], reference) < TOLERANCE
    initial = {k: v.detach() for k, v in build_model(CONFIG, setup.seed).named_parameters()}
    assert max_abs_difference(reference, initial) > 100 * TOLERANCE  # training really moved the weights
    combined = [(a + b) / 2 for a, b in zip(ranks[0]["losses"], ranks[1]["losses"])]  # equal-size shards
    assert combined == pytest.approx(losses, abs=1e-5)
    assert ranks[0]["grad_bytes"] == gradient_bytes(build_model(CONFIG, 0)) == 4 * sum(
        p.numel() for p in build_model(CONFIG, 0).parameters())
    assert ranks[0]["allreduce_seconds"] > 0 and list(ranks[0]["allreduce_by_size"]) == [4096]
    assert ranks[0]["allreduce_by_size"][4096] > 0
    assert sum(ranks[0]["bucket_bytes"]) == ranks[0]["grad_bytes"]  # the buckets in use hold the whole gradient
    assert ranks[0]["allreduced_bytes_per_step"] == ranks[0]["grad_bytes"]  # counted by the hook, every step


def test_in_float64_ddp_equals_one_process_and_summing_the_gradients_is_caught(setup64, single64):
    reference, tolerance = single64
    right = launch(ddp_training_rank, world_size=2, args=(setup64, 1), backend="gloo", timeout_s=120)
    wrong = launch(ddp_training_rank, world_size=2, args=(setup64, 1, (), False), backend="gloo", timeout_s=120)
    assert all(v.dtype == torch.float64 for v in right[0]["params"].values())
    assert max_abs_difference(right[0]["params"], reference) < tolerance
    assert max_abs_difference(right[0]["params"], right[1]["params"]) == 0.0
    assert max_abs_difference(wrong[0]["params"], reference) > 1e5 * tolerance  # many orders of magnitude above


def test_in_float64_one_rank_on_the_wrong_shard_is_caught(setup64, single64):
    reference, tolerance = single64
    half = dataclasses.replace(setup64, batches=[shard_batch(i, t, 0, 2) for i, t in setup64.batches])
    assert max_abs_difference(train_single_process(half)[0], reference) > 1e5 * tolerance


def test_the_equality_check_can_fail_one_rank_alone_is_not_the_combined_batch(setup, single):
    half = DataParallelSetup(CONFIG, [shard_batch(i, t, 0, 2) for i, t in setup.batches])
    assert max_abs_difference(train_single_process(half)[0], single[0]) > 100 * TOLERANCE


def test_fsdp2_matches_ddp_and_holds_half_the_state_per_rank(setup, single, setup64, single64):
    ranks = launch(fsdp_training_rank, world_size=2, args=(setup, setup64), backend="gloo", timeout_s=180)
    for r in ranks:
        assert max_abs_difference(r["fsdp"]["params"], single[0]) < TOLERANCE
        assert max_abs_difference(r["fsdp"]["params"], r["ddp"]["params"]) < TOLERANCE
        assert max_abs_difference(r["fsdp_equality_params"], single64[0]) < single64[1]  # float64, tight
    ddp_sent, fsdp_sent = ranks[0]["ddp"]["sent_bytes_per_step"], ranks[0]["fsdp"]["sent_bytes_per_step"]
    assert ddp_sent == ranks[0]["ddp"]["bytes"]["gradients"]  # 2 (p - 1) / p = 1 gradient for p = 2
    assert 1.2 < fsdp_sent / ddp_sent <= 1.5  # gathers twice and reduce-scatters once; the root is kept after forward
    full = ranks[0]["ddp"]["bytes"]
    n_params = sum(p.numel() for p in build_model(CONFIG, 0).parameters())
    assert {k: full[k] for k in ("weights", "gradients", "adam_moments")} == {
        "weights": 4 * n_params, "gradients": 4 * n_params, "adam_moments": 8 * n_params}
    for part in ("weights", "gradients", "adam_moments"):
        shards = [r["fsdp"]["bytes"][part] for r in ranks]
        assert sum(shards) == full[part]  # every byte held exactly once across the ranks
        assert max(shards) < 0.55 * full[part]  # about half each (shards along dim 0 are not all even)


def test_all_reduce_timing_refuses_bad_counts():
    with pytest.raises(ValueError, match="calls must be an int >= 1, got 0"):
        time_all_reduce(1024, torch.device("cpu"), repeats=5, calls=0)
    with pytest.raises(ValueError, match="repeats must be an int >= 1, got 0"):
        time_all_reduce(1024, torch.device("cpu"), repeats=0)
    with pytest.raises(ValueError, match="repeats must be an int >= 1, got True"):  # True timed one repeat
        time_all_reduce(1024, torch.device("cpu"), repeats=True)


def test_ring_all_reduce_volume_and_bad_batches():
    assert ring_allreduce_bytes_per_rank(1000, 2) == 1000  # 2 (p - 1) / p = 1 for p = 2
    assert ring_allreduce_bytes_per_rank(1000, 4) == 1500
    assert ring_allreduce_bytes_per_rank(1000, 1) == 0
    idx = torch.zeros(6, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="not divisible by world_size=4"):
        shard_batch(idx, idx, 0, 4)
    assert shard_batch(idx, idx, 2, 3)[0].shape == (2, 4)
    with pytest.raises(ValueError, match="dropout must be 0"):
        DataParallelSetup(GPTConfig(dropout=0.1), [(idx, idx)])
    with pytest.raises(ValueError, match="batches is empty"):
        DataParallelSetup(CONFIG, [])


def test_batch_and_rate_helpers_refuse_counts_that_mean_nothing():
    ids = torch.arange(200) % 11
    for bad in (0, -1, True, 2.5):  # 0 and -1 returned [] (an empty run), True one batch
        with pytest.raises(ValueError, match="steps must be an int >= 1"):
            make_batches(ids, bad, 2, 4, seed=0)
    for bad in (2.5, None, -1):  # RuntimeError: manual_seed expected a long
        with pytest.raises(ValueError, match="seed must be a non-negative int"):
            make_batches(ids, 2, 2, 4, seed=bad)
    first = make_batches(ids, np.int64(2), np.int64(2), np.int64(4), seed=np.int64(1))  # TypeError before
    assert all(torch.equal(a, b) for x, y in zip(first, make_batches(ids, 2, 2, 4, seed=1)) for a, b in zip(x, y))
    idx = torch.zeros(6, 4, dtype=torch.long)
    for bad in (-1, 3, True):  # -1 returned the last shard, 3 was an IndexError
        with pytest.raises(ValueError, match=r"rank must be an int in \[0, world_size=3\)"):
            shard_batch(idx, idx, bad, 3)
    with pytest.raises(ValueError, match="world_size must be an int >= 1"):
        shard_batch(idx, idx, 0, 0)  # ZeroDivisionError before
    for nbytes, world, match in ((float("nan"), 2, "nbytes must be a finite number >= 0, got nan"),
                                 (float("inf"), 2, "nbytes must be a finite number >= 0, got inf"),
                                 (1000, 2.5, "world_size must be an int >= 1, got 2.5"),
                                 (1000, True, "world_size must be an int >= 1, got True")):  # NaN, inf, 1200.0
        with pytest.raises(ValueError, match=match):
            ring_allreduce_bytes_per_rank(nbytes, world)
    assert ring_allreduce_bytes_per_rank(np.int64(1000), np.int64(4)) == 1500
    for bad in (float("nan"), -1, 0, 2.5):  # NaN, -5.0, 0.0 tokens per second
        with pytest.raises(ValueError, match="tokens_per_step must be an int >= 1"):
            tokens_per_second([0.1, 0.2], bad)
    with pytest.raises(ValueError, match="seconds must be positive finite step times"):
        tokens_per_second([0.1, 0.0], 100)  # ZeroDivisionError before
    assert tokens_per_second([0.1, 0.2], np.int64(100)) == pytest.approx(500.0)
