"""The linear probe's pieces: hidden-state features (padding masked, batching and order irrelevant, last token =
the last real position), the torch logistic regression (separable data, the optimum's gradient, determinism,
devices) and bag-of-words features, on hand-made and synthetic data."""

import numpy as np
import pytest
import torch
from test_lora_sft import tiny_chat_tokenizer, tiny_llama

from course_utils.classify.bow import fit_bag_of_words, words
from course_utils.classify.features import hidden_state_features, right_pad
from course_utils.classify.probe import objective, train_logistic_regression
from course_utils.device import torch_threads

TEXTS = ["Hi", "To be, or not to be: that is the question.", "A horse!", "Now is the winter of our discontent"]


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):
        yield


def test_right_pad_left_aligns_rows():
    ids, mask = right_pad([(5, 6, 7), (8,)], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def test_features_ignore_padding_and_batching():
    tok, model = tiny_chat_tokenizer(), tiny_llama()
    batched = hidden_state_features(model, tok, TEXTS, layers=[0, 1, 2], batch_size=4, progress=False)
    assert set(batched) == {(l, p) for l in (0, 1, 2) for p in ("last", "mean")}
    for i, text in enumerate(TEXTS):
        ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            hidden = model(input_ids=ids, output_hidden_states=True).hidden_states  # no padding at all
        for layer in (0, 1, 2):
            torch.testing.assert_close(batched[(layer, "last")][i], hidden[layer][0, -1], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(batched[(layer, "mean")][i], hidden[layer][0].mean(0), atol=1e-5, rtol=1e-5)
    one_by_one = hidden_state_features(model, tok, TEXTS, layers=[2], batch_size=1, progress=False)
    torch.testing.assert_close(one_by_one[(2, "mean")], batched[(2, "mean")], atol=1e-5, rtol=1e-5)


def test_features_truncate_and_reject_bad_input():
    tok, model = tiny_chat_tokenizer(), tiny_llama()
    cut = hidden_state_features(model, tok, ["abcdefgh"], layers=[1], max_tokens=3, progress=False)
    full = hidden_state_features(model, tok, ["abc"], layers=[1], progress=False)
    torch.testing.assert_close(cut[(1, "last")], full[(1, "last")])
    with pytest.raises(ValueError, match="layers"):
        hidden_state_features(model, tok, TEXTS, layers=[3])
    with pytest.raises(ValueError, match="layers"):
        hidden_state_features(model, tok, TEXTS, layers=2)
    with pytest.raises(ValueError, match="non-empty"):
        hidden_state_features(model, tok, [], layers=[1])
    with pytest.raises(ValueError, match="batch_size"):
        hidden_state_features(model, tok, TEXTS, layers=[1], batch_size=0)


def blobs(n_per_class=40, n_classes=3, dim=5, spread=0.3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    centres = torch.eye(n_classes, dim) * 4 + 10  # far apart, and far from the origin (standardisation matters)
    x = torch.cat([c + spread * torch.randn(n_per_class, dim, generator=generator) for c in centres])
    y = torch.arange(n_classes).repeat_interleave(n_per_class)
    return x, y


def test_logistic_regression_separates_separable_data_and_reaches_the_optimum():
    x, y = blobs()
    probe = train_logistic_regression(x, y, n_classes=3, l2=1e-2)
    assert (probe.predict_proba(x).argmax(1) == y).all()
    test_x, test_y = blobs(seed=1)
    assert (probe.predict_proba(test_x).argmax(1) == test_y).float().mean() == 1.0
    probe.zero_grad()
    objective(probe, x, y, 1e-2).backward()  # a convex problem: at the optimum the gradient vanishes
    assert max(p.grad.abs().max().item() for p in probe.parameters()) < 1e-4


def test_probe_standardises_and_meets_the_penalised_optimality_conditions():
    x, y = blobs(spread=2.0)
    x, y = x[30:], y[30:]  # 10, 40 and 40 examples: unbalanced classes, so the optimal bias is not 0
    l2 = 0.1
    probe = train_logistic_regression(x, y, 3, l2=l2)
    z = (x - x.mean(0)) / x.std(0, unbiased=False)  # standardised by the population std
    weight, bias = probe.linear.weight.detach(), probe.linear.bias.detach()
    p = torch.softmax(z @ weight.T + bias, dim=1)  # (N, K)
    with torch.no_grad():
        torch.testing.assert_close(probe(x), z @ weight.T + bias, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(probe.predict_proba(x), p, atol=1e-6, rtol=1e-5)  # rows are distributions
    # mean cross-entropy + (l2 / 2) ||W||^2, the bias unpenalised: at the optimum (P - Y)^T z / N + l2 W = 0 and the
    # mean of P - Y = 0
    residual = p - torch.nn.functional.one_hot(y, 3).float()
    assert (residual.T @ z / len(y) + l2 * weight).abs().max() < 1e-4
    assert residual.mean(0).abs().max() < 1e-4 and bias.abs().max() > 0.1


def test_l2_shrinks_weights_and_the_fit_is_deterministic():
    x, y = blobs(spread=2.0)
    weak, strong = (train_logistic_regression(x, y, 3, l2=l2) for l2 in (1e-3, 1.0))
    assert strong.linear.weight.norm() < weak.linear.weight.norm()
    again = train_logistic_regression(x, y, 3, l2=1e-3)
    torch.testing.assert_close(again.linear.weight, weak.linear.weight, atol=0, rtol=0)


def test_logistic_regression_runs_where_its_data_is_and_checks_input():
    x, y = blobs()
    probe = train_logistic_regression(x, y, 3, device="cpu")
    assert probe.mean.device == probe.linear.weight.device == x.device
    assert probe.predict_proba(x).device == probe.mean.device  # inputs are moved to the probe, not the reverse
    if torch.cuda.is_available():  # on a GPU machine: the probe follows its data
        gpu = train_logistic_regression(x.cuda(), y.cuda(), 3)
        assert gpu.linear.weight.is_cuda and gpu.predict_proba(x).is_cuda
    with pytest.raises(ValueError, match="long tensor"):
        train_logistic_regression(x, y.float(), 3)
    with pytest.raises(ValueError, match="lie in"):
        train_logistic_regression(x, y, 2)
    with pytest.raises(ValueError, match="l2"):
        train_logistic_regression(x, y, 3, l2=-1.0)
    with pytest.raises(ValueError, match="finite"):
        train_logistic_regression(x * float("nan"), y, 3)


def test_bag_of_words_on_a_hand_made_example():
    assert words("Ne'er, 'tis O ROMEO!") == ["ne'er", "tis", "o", "romeo"]
    bow = fit_bag_of_words(["the king, the crown", "the fool and the king", "a jest"], min_count=2)
    assert bow.vocabulary == {"the": 0, "king": 1}  # 4 and 2 occurrences; the rest occur once
    features = bow.transform(["The king the king the", "no known word"])
    torch.testing.assert_close(features, torch.tensor([[3.0, 2.0], [0.0, 0.0]]).log1p())
    assert list(fit_bag_of_words(["b a c", "c a b"], max_features=2, min_count=1).vocabulary) == ["a", "b"]
    with pytest.raises(ValueError, match="min_count"):
        fit_bag_of_words(["one two"], min_count=2)
    with pytest.raises(ValueError, match="non-empty"):
        fit_bag_of_words("the king")


def test_bag_of_words_probe_learns_word_genres():
    texts = ["merry jest and laughter"] * 5 + ["king crown and battle"] * 5 + ["death grief and blood"] * 5
    y = torch.arange(3).repeat_interleave(5)
    bow = fit_bag_of_words(texts)
    probe = train_logistic_regression(bow.transform(texts), y, 3)
    assert probe.predict_proba(bow.transform(["a jest", "the crown", "blood"])).argmax(1).tolist() == [0, 1, 2]


def test_classify_draws_use_generators_on_the_device_they_draw_for():
    from test_device_portability import GeneratorDeviceGuard

    from course_utils.classify.passages import Passage, sample_per_genre, split_by_play
    from course_utils.classify.prompts import draw_shots

    pool = [Passage(f"w{i % 4}{g}", g, i, 0, "t") for g in ("comedy", "history", "tragedy") for i in range(8)]
    with GeneratorDeviceGuard() as guard:
        split_by_play(pool, 0.5, seed=0)
        sample_per_genre(pool, 2, seed=0)
        draw_shots(pool, 4, seed=0)
    assert guard.draws > 0


def test_classify_modules_never_hard_code_a_device_or_call_numpy():
    import pathlib

    import course_utils.classify as classify

    for path in pathlib.Path(classify.__file__).parent.glob("*.py"):
        source = path.read_text()
        assert ".numpy()" not in source, f"{path.name}: .numpy() fails on device tensors; use .cpu().tolist()"
        assert '"cuda"' not in source and "'cuda'" not in source, f"{path.name} hard-codes a device"


def test_a_nan_or_infinite_penalty_is_refused():
    x, y = blobs()
    for bad in (float("nan"), float("inf"), True):  # NaN and inf returned a probe fitted to a NaN objective
        with pytest.raises(ValueError, match="l2 must be a finite number >= 0"):
            train_logistic_regression(x, y, 3, l2=bad, max_iter=5)
    a = train_logistic_regression(x, y, np.int64(3), l2=np.float32(0.01), max_iter=np.int64(5))  # numpy: refused
    b = train_logistic_regression(x, y, 3, l2=0.01, max_iter=5)
    assert torch.allclose(a.linear.weight, b.linear.weight)


def test_numpy_ints_give_the_same_features_and_vocabulary():
    tok, model = tiny_chat_tokenizer(), tiny_llama()
    ours = hidden_state_features(model, tok, TEXTS, layers=[np.int64(0), np.int64(2)], batch_size=np.int64(2),
                                 max_tokens=np.int32(5), progress=False)
    plain = hidden_state_features(model, tok, TEXTS, layers=[0, 2], batch_size=2, max_tokens=5, progress=False)
    assert list(ours) == list(plain) and all(type(layer) is int for layer, _ in ours)
    assert all(torch.equal(ours[key], plain[key]) for key in plain)
    with pytest.raises(ValueError, match="layers must be a non-empty list of ints"):
        hidden_state_features(model, tok, TEXTS, layers=[True], progress=False)  # True was layer 1
    texts = ["the cat sat on the mat", "the dog sat", "a cat and a dog"]
    assert fit_bag_of_words(texts, max_features=np.int64(3), min_count=np.int64(2)) == \
        fit_bag_of_words(texts, max_features=3, min_count=2)
    with pytest.raises(ValueError, match="min_count must be a positive int"):
        fit_bag_of_words(texts, min_count=np.float64(2.0))
