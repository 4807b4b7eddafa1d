"""Gradient accumulation (course_utils.parallel.accumulation) against one big batch."""

import pytest
import torch

from course_utils.model.gpt import GPT, GPTConfig
from course_utils.parallel.accumulation import accumulate_gradients, split_micro_batches

CONFIG = GPTConfig(vocab_size=17, block_size=12, n_layer=2, n_head=2, n_embd=16, dropout=0.0)


def make_model(dtype=torch.float32) -> GPT:
    torch.manual_seed(0)
    return GPT(CONFIG).to(dtype)


def make_batch(batch=8, seq=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(CONFIG.vocab_size, (batch, seq), generator=g)
    targets = torch.randint(CONFIG.vocab_size, (batch, seq), generator=g)
    return idx, targets


def big_batch_grads(model, idx, targets):
    model.zero_grad(set_to_none=True)
    _, loss = model(idx, targets)
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}


def accumulated_grads(model, idx, targets, n_micro):
    model.zero_grad(set_to_none=True)
    loss = accumulate_gradients(model, idx, targets, n_micro)
    return loss, {n: p.grad.clone() for n, p in model.named_parameters()}


def max_relative_difference(a: dict, b: dict) -> float:
    """Largest |a - b| of any parameter, relative to that parameter's largest gradient entry."""
    return max(((a[n] - b[n]).abs().max() / b[n].abs().max()).item() for n in b)


@pytest.mark.parametrize("n_micro", [1, 2, 4, 8])
def test_float32_accumulation_equals_the_big_batch(n_micro):
    # The sums run in another order, so float32 agrees to rounding only. A gradient entry sums B * T = 96 token
    # terms; reordering a float32 sum of n terms changes it by at most about n * 6e-8 (unit roundoff) times the
    # sum of the terms' magnitudes: 6e-6 for n = 96, so 1e-5 of the largest entry is the bound (measured: ~5e-7).
    # The float64 test below shows that the difference is rounding and not a missing term.
    model = make_model()
    idx, targets = make_batch()
    loss, reference = big_batch_grads(model, idx, targets)
    acc_loss, grads = accumulated_grads(model, idx, targets, n_micro)
    assert acc_loss == pytest.approx(loss, rel=1e-6)
    assert max_relative_difference(grads, reference) < 1e-5


def test_float64_shows_the_difference_is_rounding_only():
    model = make_model(torch.float64)
    idx, targets = make_batch()
    _, reference = big_batch_grads(model, idx, targets)
    _, grads = accumulated_grads(model, idx, targets, 4)
    assert max_relative_difference(grads, reference) < 1e-13  # float64 unit roundoff 1.1e-16, times ~100 terms


def test_ignored_targets_need_token_weighting():
    # Micro-batches with different numbers of counted targets: the token-count weights give the big batch's
    # gradient; the naive mean of micro-batch losses (loss / n_micro) does not.
    model = make_model(torch.float64)
    idx, targets = make_batch()
    targets[:4, :9] = -100  # the first half of the batch counts 3 targets per row, the second half 12
    loss, reference = big_batch_grads(model, idx, targets)
    acc_loss, grads = accumulated_grads(model, idx, targets, 2)
    assert acc_loss == pytest.approx(loss, rel=1e-12)
    assert max_relative_difference(grads, reference) < 1e-13
    model.zero_grad(set_to_none=True)
    for micro_idx, micro_targets in split_micro_batches(idx, targets, 2):
        (model(micro_idx, micro_targets)[1] / 2).backward()
    naive = {n: p.grad.clone() for n, p in model.named_parameters()}
    assert max_relative_difference(naive, reference) > 1e-3


def test_micro_batch_without_counted_targets_is_skipped():
    model = make_model(torch.float64)
    idx, targets = make_batch()
    targets[:2] = -100  # the first micro-batch of 4 has nothing to count
    loss, reference = big_batch_grads(model, idx, targets)
    acc_loss, grads = accumulated_grads(model, idx, targets, 4)
    assert acc_loss == pytest.approx(loss, rel=1e-12)  # its 0/0 mean loss (NaN) is not added in
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert max_relative_difference(grads, reference) < 1e-13


def test_accumulation_adds_to_existing_grads():
    model = make_model(torch.float64)
    idx, targets = make_batch()
    _, once = accumulated_grads(model, idx, targets, 2)
    accumulate_gradients(model, idx, targets, 2)  # no zero_grad: a second, identical contribution
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, 2 * once[n])


def test_bad_input_raises_clear_errors():
    model = make_model()
    idx, targets = make_batch(batch=6)
    with pytest.raises(ValueError, match=r"batch size 6 is not divisible by n_micro=4.*\[1, 2, 3, 6\]"):
        accumulate_gradients(model, idx, targets, 4)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="n_micro must be an int >= 1"):
            accumulate_gradients(model, idx, targets, bad)
    with pytest.raises(ValueError, match="must both be"):
        accumulate_gradients(model, idx, targets[:, :5], 2)
    with pytest.raises(ValueError, match="every target is ignore_index"):
        accumulate_gradients(model, idx, torch.full_like(targets, -100), 2)


def test_numpy_micro_batch_counts_are_taken():
    import numpy as np

    idx, targets = make_batch()
    pieces, plain = split_micro_batches(idx, targets, np.int64(4)), split_micro_batches(idx, targets, 4)
    assert len(pieces) == 4 and all(torch.equal(a, b) for p, q in zip(pieces, plain) for a, b in zip(p, q))
    model = make_model(torch.float64)
    assert accumulated_grads(model, idx, targets, np.int64(2))[0] == accumulated_grads(model, idx, targets, 2)[0]
    with pytest.raises(ValueError, match="n_micro must be an int >= 1"):
        split_micro_batches(idx, targets, np.float64(2.0))
