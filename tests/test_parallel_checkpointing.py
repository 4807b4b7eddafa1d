"""Activation checkpointing of the course GPT (course_utils.parallel.checkpointing)."""

import pytest
import torch

from course_utils.model.gpt import GPT, GPTConfig
from course_utils.parallel.checkpointing import (RECOMPUTE_VERDICTS, CheckpointCost, CheckpointedBlock,
                                                 activation_checkpointing, checkpoint_costs, saved_activation_bytes)

CONFIG = GPTConfig(vocab_size=13, block_size=16, n_layer=4, n_head=2, n_embd=16, dropout=0.0)


def make(config=CONFIG, batch=3):
    torch.manual_seed(0)
    model = GPT(config)
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(config.vocab_size, (batch, config.block_size), generator=g)
    targets = torch.randint(config.vocab_size, (batch, config.block_size), generator=g)
    return model, idx, targets


def grads_of(model, idx, targets, seed=0):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # the dropout masks, when there is dropout
    _, loss = model(idx, targets)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]  # the same tensors in the same order


@pytest.mark.parametrize("blocks", [None, [0, 2], [3]])
@pytest.mark.parametrize("attention", ["sdpa", "manual"])
def test_checkpointed_gradients_equal_the_plain_model(blocks, attention):
    model, idx, targets = make(GPTConfig(**{**CONFIG.__dict__, "attention": attention}))
    loss, reference = grads_of(model, idx, targets)
    with activation_checkpointing(model, blocks):
        ck_loss, grads = grads_of(model, idx, targets)
    # the recomputation runs the same float32 operations on the same inputs: equal up to rounding at most
    torch.testing.assert_close(ck_loss, loss, rtol=0, atol=0)
    assert len(grads) == len(reference)
    for grad, ref in zip(grads, reference):
        torch.testing.assert_close(grad, ref, rtol=1e-6, atol=1e-9)


def test_dropout_masks_are_replayed_in_the_recomputation():
    # checkpoint restores the RNG state before recomputing, so the same dropout masks are drawn again
    model, idx, targets = make(GPTConfig(**{**CONFIG.__dict__, "dropout": 0.2}))
    loss, reference = grads_of(model, idx, targets, seed=5)
    with activation_checkpointing(model):
        ck_loss, grads = grads_of(model, idx, targets, seed=5)
    assert torch.equal(ck_loss, loss)
    assert len(grads) == len(reference)
    for grad, ref in zip(grads, reference):
        torch.testing.assert_close(grad, ref, rtol=1e-6, atol=1e-9)


def test_blocks_are_wrapped_inside_and_restored_after_even_on_error():
    model, idx, targets = make()
    names = list(model.state_dict())
    plain = list(model.blocks)
    with activation_checkpointing(model, [1]):
        assert [type(b) for b in model.blocks] == [type(plain[0]), CheckpointedBlock, type(plain[0]), type(plain[0])]
        assert model.blocks[1].block is plain[1]
        inside = list(model.state_dict())
        assert inside[2] == "blocks.0.ln_1.weight" and "blocks.1.block.ln_1.weight" in inside
    assert list(model.blocks) == plain and list(model.state_dict()) == names
    with pytest.raises(RuntimeError, match="boom"):
        with activation_checkpointing(model):
            raise RuntimeError("boom")
    assert list(model.blocks) == plain


def test_saved_bytes_drop_to_the_block_inputs():
    # Checkpointing every block leaves, of each block, only its input (B, T, C) float32; what lies outside the
    # blocks is unchanged: the final LayerNorm's input and output (2 x B T C x 4 bytes) and its two float32
    # statistics per token, the log-probabilities (B T V x 4), token ids, targets (B T x 8 each), positions (T x 8),
    # and one scalar (4). All hand-computed below.
    model, idx, targets = make()
    B, T = idx.shape
    C, V, L = CONFIG.n_embd, CONFIG.vocab_size, CONFIG.n_layer
    outside = 2 * B * T * C * 4 + 2 * B * T * 4 + B * T * V * 4 + 2 * B * T * 8 + T * 8 + 4
    plain = saved_activation_bytes(model, idx, targets)
    with activation_checkpointing(model):
        assert saved_activation_bytes(model, idx, targets) == outside + L * B * T * C * 4
    with activation_checkpointing(model, [0, 1]):
        half = saved_activation_bytes(model, idx, targets)
    per_block = (plain - half) / 2 + B * T * C * 4  # every block saves the same number of bytes
    assert plain == outside + L * per_block


def test_evaluation_skips_the_wrapper_and_gives_the_same_logits():
    model, idx, _ = make()
    with torch.no_grad():
        plain = model(idx)[0]
        with activation_checkpointing(model):
            assert torch.equal(model(idx)[0], plain)


def test_checkpoint_costs_reports_both_arms():
    model, idx, targets = make()
    cost = checkpoint_costs(model, idx, targets, repeats=1)
    assert (cost.batch_size, cost.seq_len) == tuple(idx.shape)
    assert len(cost.plain_rounds) == len(cost.checkpointed_rounds) == len(cost.forward_rounds) == 1
    assert cost.recompute_verdict in RECOMPUTE_VERDICTS
    assert cost.checkpointed_bytes < cost.plain_bytes and 0 < cost.memory_saved < 1
    assert cost.plain_seconds > 0 and cost.checkpointed_seconds > 0 and cost.forward_seconds > 0
    assert cost.forward_share == cost.forward_seconds / cost.plain_seconds
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(ValueError, match="repeats"):
        checkpoint_costs(model, idx, targets, repeats=0)
    with pytest.raises(ValueError, match="repeats"):
        checkpoint_costs(model, idx, targets, repeats=True)


def test_forward_share_is_timed_on_the_forward_pass_alone(monkeypatch):
    # each arm timed with a fake clock: 3 s per forward+backward, 1 s per forward alone -> a share of exactly 1/3
    from course_utils.parallel import checkpointing
    monkeypatch.setattr(checkpointing, "_forward_backward_seconds", lambda *a: 3.0)
    monkeypatch.setattr(checkpointing, "_forward_seconds", lambda *a: 1.0)
    model, idx, targets = make()
    cost = checkpoint_costs(model, idx, targets, repeats=2)
    assert (cost.plain_seconds, cost.checkpointed_seconds, cost.forward_seconds) == (3.0, 3.0, 1.0)
    assert cost.forward_share == pytest.approx(1 / 3) and cost.time_added == 0.0


def test_rounds_are_kept_and_the_arms_alternate_their_order(monkeypatch):
    # a fake clock that records which arm ran: round i of every arm returns its own time, so the medians and the
    # kept rounds can be checked exactly; odd rounds run the arms in reverse order
    from course_utils.parallel import checkpointing
    order, count = [], {"plain": 0, "checkpointed": 0, "forward": 0}
    times = {"plain": [0.0, 3.0, 9.0, 4.0], "checkpointed": [0.0, 5.0, 4.5, 20.0], "forward": [0.0, 1.0, 2.0, 1.5]}

    def clock(arm):
        order.append(arm)
        count[arm] += 1
        return times[arm][count[arm] - 1] or 1.0   # round 0 (the warm-up) gets 1 s, then discarded

    def forward_backward(model, *a):
        return clock("checkpointed" if isinstance(model.blocks[0], CheckpointedBlock) else "plain")

    monkeypatch.setattr(checkpointing, "_forward_backward_seconds", forward_backward)
    monkeypatch.setattr(checkpointing, "_forward_seconds", lambda *a: clock("forward"))
    model, idx, targets = make()
    cost = checkpoint_costs(model, idx, targets, repeats=3)
    forward, backward = ["plain", "checkpointed", "forward"], ["forward", "checkpointed", "plain"]
    assert order == forward + backward + forward + backward            # warm-up, then 3 rounds, alternating
    assert cost.plain_rounds == (3.0, 9.0, 4.0) and cost.checkpointed_rounds == (5.0, 4.5, 20.0)
    assert cost.forward_rounds == (1.0, 2.0, 1.5)
    assert (cost.plain_seconds, cost.checkpointed_seconds, cost.forward_seconds) == (4.0, 5.0, 1.5)
    assert cost.expected_rounds == (4.0, 11.0, 5.5)
    assert cost.recompute_verdict == "not separable" and not cost.slower_every_round


def cost_of(plain, checkpointed, forward):
    return CheckpointCost(4, 8, 100, 10, tuple(plain), tuple(checkpointed), tuple(forward))


def test_recompute_verdict_blames_the_machinery_only_when_the_ranges_separate():
    plain, forward = (30.0, 31.0, 30.5), (10.0, 10.0, 10.5)          # plain + forward: 40 to 41 (ms, say)
    above = cost_of(plain, (44.0, 46.0, 45.0), forward)
    assert above.recompute_verdict == RECOMPUTE_VERDICTS[0] == "more than the recomputation"
    assert above.slower_every_round and above.time_added > above.forward_share
    assert above.memory_saved == pytest.approx(0.9) and above.time_added == pytest.approx(45.0 / 30.5 - 1)  # 10/100 B
    assert cost_of(plain, (35.0, 37.0, 36.0), forward).recompute_verdict == "less than the recomputation"
    assert cost_of(plain, (39.0, 42.0, 40.0), forward).recompute_verdict == "not separable"
    assert cost_of(plain, (41.0, 45.0, 44.0), forward).recompute_verdict == "not separable"   # a shared end
    # a busy machine (the reviewer's chapter 11 run): one slow round inflates every arm; the medians alone would
    # put checkpointing 13 points above the forward pass's share, but the ranges overlap, so no verdict
    busy = cost_of((30.0, 900.0, 31.0), (43.0, 1800.0, 45.0), (10.0, 300.0, 10.0))
    assert busy.time_added - busy.forward_share > 0.10
    assert busy.recompute_verdict == "not separable" and not busy.slower_every_round
    slower_not_beyond = cost_of((30.0, 31.0), (33.0, 34.0), (10.0, 10.0))
    assert slower_not_beyond.slower_every_round and slower_not_beyond.recompute_verdict == RECOMPUTE_VERDICTS[2]


def test_checkpoint_cost_rejects_inconsistent_rounds():
    with pytest.raises(ValueError, match="same number"):
        cost_of((1.0, 2.0), (1.0,), (1.0, 2.0))
    with pytest.raises(ValueError, match="same number"):
        cost_of((), (), ())
    with pytest.raises(ValueError, match="positive"):
        cost_of((1.0,), (0.0,), (1.0,))


def test_forward_alone_leaves_no_gradients_and_is_faster_than_forward_backward():
    from course_utils.parallel.checkpointing import _forward_backward_seconds, _forward_seconds
    model, idx, targets = make(GPTConfig(**{**CONFIG.__dict__, "n_embd": 64, "block_size": 64}), batch=8)
    forward = min(_forward_seconds(model, idx, targets) for _ in range(5))
    assert all(p.grad is None for p in model.parameters())
    assert forward < min(_forward_backward_seconds(model, idx, targets) for _ in range(5))


def test_bad_input_raises_clear_errors():
    model, _, _ = make()
    with pytest.raises(ValueError, match=r"block indices must be ints in \[0, 4\)"):
        with activation_checkpointing(model, [4]):
            pass
    with pytest.raises(ValueError, match="already checkpointed"):
        with activation_checkpointing(model):
            with activation_checkpointing(model):
                pass
    with pytest.raises(TypeError, match="course GPT"):
        with activation_checkpointing(torch.nn.Linear(2, 2)):
            pass


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_checkpoint_costs_on_cuda_agree_with_the_count_to_a_relative_tolerance():
    # On CUDA a float32 SDPA call runs the memory-efficient kernel, which keeps a slightly different set of small
    # tensors for backward than the CPU kernel: per block two 0-dim int64 random-number tensors (seed and offset,
    # 16 B), and a log-sum-exp padded to a multiple of 32 queries. The counts therefore agree with the CPU count to a
    # relative 1e-3 (here 32 bytes out of about 2 MiB), not to the byte.
    from course_utils.parallel.activations import gpt_activation_bytes
    config = GPTConfig(vocab_size=65, block_size=64, n_layer=2, n_head=2, n_embd=64, dropout=0.0)
    torch.manual_seed(0)
    model = GPT(config).to("cuda")
    g = torch.Generator(device="cuda").manual_seed(1)
    idx = torch.randint(65, (4, 64), generator=g, device="cuda")
    targets = torch.randint(65, (4, 64), generator=g, device="cuda")
    cost = checkpoint_costs(model, idx, targets, repeats=2)
    B, T, C, L = 4, 64, config.n_embd, config.n_layer
    formula = gpt_activation_bytes(config, B, T)
    outside = formula["output"] + 2 * 4 * B * T + 8 * (2 * B * T + T) + 4
    assert abs(cost.plain_bytes - formula["total"]) / formula["total"] < 1e-3
    expected_checkpointed = outside + L * 4 * B * T * C
    assert abs(cost.checkpointed_bytes - expected_checkpointed) / expected_checkpointed < 1e-3
    assert cost.plain_seconds > 0 and cost.checkpointed_seconds > 0 and 0.5 < cost.memory_saved < 1


def test_numpy_ints_are_taken_as_python_ints(monkeypatch):
    import numpy as np

    from course_utils.parallel import checkpointing
    from course_utils.parallel.activations import gpt_activation_bytes, korthikanti_layer_bytes, layer_activation_bytes
    from course_utils.parallel.memory import ModelShape

    model, idx, targets = make()
    with activation_checkpointing(model, np.array([0, 2])):  # the indices a learner gets from np.arange or np.where
        wrapped = [isinstance(b, CheckpointedBlock) for b in model.blocks]
    assert wrapped == [True, False, True, False]
    monkeypatch.setattr(checkpointing, "_forward_backward_seconds", lambda *a: 3.0)
    monkeypatch.setattr(checkpointing, "_forward_seconds", lambda *a: 1.0)
    assert checkpoint_costs(model, idx, targets, repeats=np.int64(2)) == checkpoint_costs(model, idx, targets, 2)
    with pytest.raises(ValueError, match="repeats must be an int >= 1"):
        checkpoint_costs(model, idx, targets, repeats=np.float64(2.0))
    shape = ModelShape.from_gpt_config(CONFIG)
    assert layer_activation_bytes(shape, np.int64(16), np.int32(3), np.int64(4), tp=np.int64(2), flash_attention=False,
                                  dropout=True) == layer_activation_bytes(shape, 16, 3, 4, tp=2, flash_attention=False,
                                                                          dropout=True)
    big = layer_activation_bytes(shape, np.int32(1 << 16), np.int32(1 << 12), recompute="full")["linear"]
    assert big == (1 << 16) * (1 << 12) * CONFIG.n_embd * 2  # an int32 product would have wrapped around
    assert gpt_activation_bytes(CONFIG, np.int64(3), np.int64(8)) == gpt_activation_bytes(CONFIG, 3, 8)
    assert korthikanti_layer_bytes(np.int64(2048), np.int64(1), np.int64(4096), np.int64(32)) == \
        korthikanti_layer_bytes(2048, 1, 4096, 32)
    for bad in (True, 2.0, np.float32(3.0)):
        with pytest.raises(ValueError, match="batch must be a positive int"):
            gpt_activation_bytes(CONFIG, bad)
