import json
import math
from dataclasses import replace

import pytest
import torch

from course_utils.device import make_generator
from course_utils.scaling.emergence import (
    EMERGENCE_GRIDS, VOCAB, AdditionRun, answer_length, decode, emergence_grid, encode, exact_match_if_independent,
    format_answer, format_problem, is_test_pair, parse_answer, problem_tokens, score_predictions, held_out_problems,
    train_addition_run, train_batch,
)


@pytest.mark.parametrize("a, b, digits, text", [
    (123, 456, 3, "123+456=9750"),  # no carry: 579 -> 0579 reversed
    (57, 968, 3, "057+968=5201"),  # carries into a fourth digit; operand zero-padded
    (999, 1, 3, "999+001=0001"),  # a carry ripples through every digit
    (0, 0, 2, "00+00=000"),
])
def test_format_and_tokens_round_trip(a, b, digits, text):
    assert format_problem(a, b, digits) + format_answer(a + b, digits) == text
    assert len(format_answer(a + b, digits)) == answer_length(digits) == digits + 1
    assert parse_answer(text[-answer_length(digits):], digits) == a + b
    tokens = problem_tokens(torch.tensor([a]), torch.tensor([b]), digits)  # (1, 3 * digits + 3)
    assert tokens.shape == (1, 3 * digits + 3)
    assert decode(tokens[0]) == text and encode(text) == tokens[0].tolist()


def test_every_sum_round_trips():
    a = torch.arange(100).repeat_interleave(100)
    b = torch.arange(100).repeat(100)
    for row, x, y in zip(problem_tokens(a, b, 2).tolist(), a.tolist(), b.tolist()):
        assert parse_answer(decode(row[-3:]), 2) == x + y


def test_format_rejects_bad_input():
    with pytest.raises(ValueError, match="digits"):
        format_problem(1, 2, 0)
    with pytest.raises(ValueError, match=r"\[0, 999\]"):
        format_problem(1000, 2, 3)
    with pytest.raises(ValueError, match="exactly 4 digits"):
        parse_answer("123", 3)
    with pytest.raises(ValueError, match="not in the vocabulary"):
        encode("1-2")
    assert len(VOCAB) == 12


def test_test_set_fixed_and_disjoint_from_training():
    a, b = held_out_problems(3, 500)
    a2, b2 = held_out_problems(3, 500)
    assert torch.equal(a, a2) and torch.equal(b, b2)  # fixed for every run
    assert is_test_pair(a, b, 3).all()
    assert len(set(zip(a.tolist(), b.tolist()))) == 500  # distinct problems
    small_a, small_b = held_out_problems(3, 100)
    assert torch.equal(small_a, a[:100]) and torch.equal(small_b, b[:100])  # a smaller set is a prefix
    test_set = set(zip(a.tolist(), b.tolist()))
    gen = make_generator(0, "cpu")
    for _ in range(20):
        idx, targets = train_batch(512, 3, gen, "cpu")  # (B, T) each
        a_train = (idx[:, :3] * torch.tensor([100, 10, 1])).sum(1)
        b_train = (idx[:, 4:7] * torch.tensor([100, 10, 1])).sum(1)
        assert not is_test_pair(a_train, b_train, 3).any()
        assert not test_set & set(zip(a_train.tolist(), b_train.tolist()))
        assert (targets[:, :7] == -100).all() and (targets[:, 7:] >= 0).all()  # loss on the 4 answer tokens only
    share = is_test_pair(torch.arange(1000).repeat_interleave(1000), torch.arange(1000).repeat(1000), 3).float().mean()
    assert 0.04 < share < 0.06  # about 5% of pairs are held out
    with pytest.raises(ValueError, match="held-out split"):
        held_out_problems(1, 50)


def test_scores_on_hand_made_predictions():
    truth = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    one_wrong = truth.clone()
    one_wrong[0, 2] = 0
    scores = score_predictions(one_wrong[:1], truth[:1])
    assert scores["exact_match"] == 0.0 and scores["mean_digit_accuracy"] == pytest.approx(3 / 4)
    assert scores["digit_accuracy"] == [1.0, 1.0, 0.0, 1.0]
    scores = score_predictions(one_wrong, truth)
    assert scores["exact_match"] == 0.5 and scores["digit_accuracy"] == [1.0, 1.0, 0.5, 1.0]
    assert score_predictions(truth, truth)["exact_match"] == 1.0
    assert exact_match_if_independent([0.9] * 4) == pytest.approx(0.9**4)
    with pytest.raises(ValueError, match="shape"):
        score_predictions(truth[:, :3], truth)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        exact_match_if_independent([1.2])


def test_tiny_run_is_deterministic_and_json_serialisable():
    spec = AdditionRun(n_layer=1, n_head=2, n_embd=16, digits=2, steps=30, batch_size=32, test_size=64)
    first, second = train_addition_run(spec), train_addition_run(spec)
    first.pop("seconds"), second.pop("seconds")
    assert first == second
    assert json.loads(json.dumps(first)) == first
    assert len(first["digit_accuracy"]) == first["answer_length"] == 3
    assert 0 <= first["exact_match"] <= min(first["digit_accuracy"]) <= 1
    assert math.isfinite(first["answer_token_loss"]) and first["n_params"] < first["n_params_total"]


@pytest.mark.parametrize("change, message", [
    ({"digits": 0}, "digits"), ({"digits": 7}, "digits"), ({"steps": 0}, "steps"), ({"batch_size": 1.5}, "batch_size"),
    ({"lr": 0.0}, "lr"), ({"seed": -1}, "seed"), ({"n_embd": 30, "n_head": 4}, "divisible"),
    ({"device": "tpu"}, "device"), ({"precision": "fp16"}, "precision"), ({"test_size": 0}, "test_size"),
    ({"digits": 2, "test_size": 300}, "too large"),
])
def test_bad_specs_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        replace(AdditionRun(n_layer=1, n_head=2, n_embd=16), **change)
    with pytest.raises(TypeError, match="AdditionRun"):
        train_addition_run({"n_layer": 1})


def test_grids_differ_only_in_model_size():
    for profile, specs in EMERGENCE_GRIDS.items():
        assert len(specs) >= (5 if profile != "smoke" else 3)
        recipes = {replace(s, n_layer=1, n_head=1, n_embd=1) for s in specs}
        assert len(recipes) == 1, profile
        sizes = [s.n_layer * s.n_embd**2 for s in specs]
        assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
        # one depth and head count per profile: only the width, and so N, changes (a depth change at a step of the
        # curve would measure depth as much as size)
        assert len({(s.n_layer, s.n_head) for s in specs}) == 1, profile
    assert {s.device for s in emergence_grid("cpu")} == {"cpu"}
    with pytest.raises(ValueError, match="profile"):
        emergence_grid("laptop")


def test_a_run_in_the_callers_process_leaves_its_global_generator_alone():
    spec = AdditionRun(n_layer=1, n_head=2, n_embd=16, digits=2, steps=5, batch_size=8, test_size=16)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = train_addition_run(spec)
    assert torch.equal(torch.rand(3), expected)  # the caller's next draws do not depend on the run
    torch.manual_seed(7)  # another caller state: the run's weights come from spec.seed alone
    second = train_addition_run(spec)
    first.pop("seconds"), second.pop("seconds")
    assert first == second


def test_numpy_ints_format_like_python_ints():
    import numpy as np

    a, b, digits = np.int64(57), np.int32(968), np.int64(3)  # as drawn from a numpy array
    assert format_problem(a, b, digits) + format_answer(a + b, digits) == "057+968=5201"
    assert answer_length(digits) == 4 and type(answer_length(digits)) is int
    operands = torch.tensor([57, 999]), torch.tensor([968, 1])
    assert torch.equal(problem_tokens(*operands, digits), problem_tokens(*operands, 3))
    assert torch.equal(is_test_pair(*operands, digits), is_test_pair(*operands, 3))
    run = AdditionRun(n_layer=1, n_head=1, n_embd=8, digits=np.int64(2))
    assert run == AdditionRun(n_layer=1, n_head=1, n_embd=8, digits=2) and type(run.digits) is int
    run = AdditionRun(**{name: np.int64(v) for name, v in dict(n_layer=1, n_head=1, n_embd=8, steps=5, batch_size=4,
                                                              seed=3, test_size=10, threads=1).items()})
    assert run == AdditionRun(n_layer=1, n_head=1, n_embd=8, steps=5, batch_size=4, seed=3, test_size=10)
    assert all(type(getattr(run, name)) is int for name in ("n_layer", "n_embd", "steps", "seed", "test_size"))
    with pytest.raises(ValueError, match="AdditionRun.steps must be a positive int"):
        AdditionRun(n_layer=1, n_head=1, n_embd=8, steps=5.0)
    with pytest.raises(ValueError, match="digits must be an int"):
        answer_length(np.float64(3.0))
    with pytest.raises(ValueError, match="total must be an int"):
        format_answer(True, 3)
