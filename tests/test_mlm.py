"""BERT masking: determinism under a generator, 15% and 80/10/10 proportions, targets, validation, the wrapper."""

import pytest
import torch

from course_utils.train import mlm
from course_utils.model.gpt import GPT, GPTConfig


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_deterministic_under_a_generator_and_different_across_seeds():
    idx = torch.randint(0, 50, (8, 40), generator=gen(1))
    a = mlm.mask_tokens(idx, mask_id=50, vocab_size=50, generator=gen(7))
    b = mlm.mask_tokens(idx, mask_id=50, vocab_size=50, generator=gen(7))
    c = mlm.mask_tokens(idx, mask_id=50, vocab_size=50, generator=gen(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_exactly_fifteen_percent_per_row_and_80_10_10_split():
    B, T = 400, 100
    plan = mlm.mlm_plan((B, T), gen(2))
    chosen = plan != mlm.NOT_CHOSEN
    assert (chosen.sum(1) == 15).all()  # round(0.15 * 100) in every row
    n = chosen.sum().item()  # 6000 chosen positions; binomial std of each fraction is about 0.005
    fractions = [(plan == code).sum().item() / n for code in (mlm.MASKED, mlm.RANDOM, mlm.KEPT)]
    assert abs(fractions[0] - 0.8) < 0.025 and abs(fractions[1] - 0.1) < 0.02 and abs(fractions[2] - 0.1) < 0.02
    # chosen positions are spread over the whole row, not bunched at the start
    per_position = chosen.float().mean(0)
    assert per_position.min() > 0.05 and per_position.max() < 0.25


def test_choice_equals_the_rank_trick_and_the_docstring_example():
    # the plan chooses the n smallest scores per row; the classic "argsort of argsort" (rank) form must agree
    B, T = 50, 37
    maskable = torch.rand(B, T, generator=gen(10)) > 0.3
    plan = mlm.mlm_plan((B, T), gen(11), maskable=maskable)
    scores = torch.rand(B, T, generator=gen(11)).masked_fill(~maskable, 2.0)  # the same first draw
    n = torch.where(maskable.sum(1) > 0, (0.15 * maskable.sum(1)).round().long().clamp(min=1), 0)
    rank = scores.argsort(dim=1).argsort(dim=1)  # rank of each position's score within its row
    assert torch.equal(plan != mlm.NOT_CHOSEN, rank < n[:, None])
    assert not (plan[~maskable] != mlm.NOT_CHOSEN).any()
    # the docstring's example: scores [0.7, 0.1, 0.9, 0.4], n = 2 -> positions 1 and 3
    order = torch.tensor([[0.7, 0.1, 0.9, 0.4]]).argsort(dim=1)
    chosen = torch.zeros(1, 4, dtype=torch.bool).scatter(1, order, torch.tensor([[True, True, False, False]]))
    assert chosen.tolist() == [[False, True, False, True]]


def test_draws_happen_on_the_generator_device_and_results_land_on_the_data_device():
    idx = torch.randint(0, 30, (3, 20), generator=gen(12))
    plan = mlm.mlm_plan((3, 20), gen(13))
    assert plan.device == torch.device("cpu")  # a CPU generator draws (and returns) on the CPU
    inputs, targets = mlm.mask_tokens(idx.to("meta"), mask_id=30, vocab_size=30, generator=gen(13))
    assert inputs.device == targets.device == torch.device("meta") and inputs.dtype == torch.long
    a = mlm.mask_tokens(idx, mask_id=30, vocab_size=30, generator=gen(13))
    b = mlm.mask_tokens(idx.int(), mask_id=30, vocab_size=30, generator=gen(13))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and b[0].dtype == torch.long


def test_inputs_and_targets_follow_the_plan():
    idx = torch.randint(0, 1000, (64, 50), generator=gen(3))
    inputs, targets = mlm.mask_tokens(idx, mask_id=1000, vocab_size=1000, generator=gen(4))
    plan = mlm.mlm_plan((64, 50), gen(4))  # same generator state => same plan
    chosen = plan != mlm.NOT_CHOSEN
    assert torch.equal(targets[chosen], idx[chosen]) and (targets[~chosen] == -100).all()
    assert torch.equal(inputs[~chosen], idx[~chosen])
    assert (inputs[plan == mlm.MASKED] == 1000).all()
    assert torch.equal(inputs[plan == mlm.KEPT], idx[plan == mlm.KEPT])
    random = inputs[plan == mlm.RANDOM]
    assert ((random >= 0) & (random < 1000)).all()  # never the [MASK] id
    assert (random != idx[plan == mlm.RANDOM]).float().mean() > 0.95  # 1/1000 chance to draw the same id


def test_hand_checked_small_case_and_maskable():
    idx = torch.arange(10).view(1, 10)
    maskable = torch.zeros(1, 10, dtype=torch.bool)
    maskable[0, 6] = True
    inputs, targets = mlm.mask_tokens(idx, mask_id=99, vocab_size=10, generator=gen(5), maskable=maskable,
                                      mask_frac=1.0, random_frac=0.0)
    assert inputs.tolist() == [[0, 1, 2, 3, 4, 5, 99, 7, 8, 9]]  # at least one position; only the maskable one
    assert targets.tolist() == [[-100] * 6 + [6] + [-100] * 3]
    none = torch.zeros(1, 10, dtype=torch.bool)
    assert (mlm.mlm_plan((1, 10), gen(5), maskable=none) == mlm.NOT_CHOSEN).all()


def test_gpt_loss_ignores_unchosen_positions():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=12, block_size=16, n_layer=1, n_head=2, n_embd=16)).eval()
    idx = torch.randint(0, 11, (4, 16), generator=gen(6))
    inputs, targets = mlm.mask_tokens(idx, mask_id=11, vocab_size=11, generator=gen(7))
    wrapped = mlm.BidirectionalLM(model)
    logits, loss = wrapped(inputs, targets)
    chosen = targets != -100
    expected = torch.nn.functional.cross_entropy(logits[chosen], targets[chosen])
    assert torch.allclose(loss, expected)
    full = torch.ones(16, 16, dtype=torch.bool)
    assert torch.allclose(logits, model(inputs, attn_mask=full)[0])
    assert not torch.allclose(logits, model(inputs)[0])  # the causal default would differ


def test_batch_fn_is_deterministic_and_shaped():
    data = torch.randint(0, 20, (500,), generator=gen(8))
    get_batch = mlm.make_mlm_batch_fn(data, data, batch_size=3, block_size=12, mask_id=20, vocab_size=20)
    x1, y1 = get_batch("train", gen(9))
    x2, y2 = get_batch("train", gen(9))
    assert x1.shape == y1.shape == (3, 12) and torch.equal(x1, x2) and torch.equal(y1, y2)
    assert ((y1 != -100).sum(1) == 2).all()  # round(0.15 * 12) = 2
    with pytest.raises(ValueError, match="split"):
        get_batch("test", gen(0))


@pytest.mark.parametrize("kwargs,error,match", [
    ({"mask_prob": 1.5}, ValueError, "mask_prob"),
    ({"mask_frac": 0.8, "random_frac": 0.3}, ValueError, "<= 1"),
    ({"vocab_size": 0}, ValueError, "vocab_size"),
    ({"mask_id": -1}, ValueError, "mask_id"),
    ({"maskable": torch.ones(2, 3)}, TypeError, "maskable"),
    ({"generator": 0}, TypeError, "torch.Generator"),
])
def test_validation(kwargs, error, match):
    args = dict(idx=torch.zeros(2, 5, dtype=torch.long), mask_id=9, vocab_size=9, generator=gen(0))
    args.update(kwargs)
    with pytest.raises(error, match=match):
        mlm.mask_tokens(**args)


def test_numpy_ids_and_probabilities_give_the_same_corruption():
    import numpy as np

    idx = torch.randint(50, (4, 20), generator=gen(1))
    ours = mlm.mask_tokens(idx, mask_id=np.int64(50), vocab_size=np.int32(50), generator=gen(7),
                           mask_prob=np.float32(0.25), mask_frac=np.float64(0.5), random_frac=np.float32(0.25))
    plain = mlm.mask_tokens(idx, mask_id=50, vocab_size=50, generator=gen(7), mask_prob=0.25, mask_frac=0.5,
                            random_frac=0.25)
    assert all(torch.equal(a, b) for a, b in zip(ours, plain))
    for kwargs in ({"mask_id": True}, {"vocab_size": np.float64(50.0)}, {"mask_prob": np.float32(np.nan)}):
        with pytest.raises(ValueError, match="must be"):
            mlm.mask_tokens(idx, **{"mask_id": 50, "vocab_size": 50, **kwargs}, generator=gen(7))
