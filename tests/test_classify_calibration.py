"""Contextual calibration on hand-computed values and on a tiny model (a content-free prompt calibrates to uniform);
macro-F1, accuracy, the confusion matrix and the top-label ECE on hand-computed values (and against scikit-learn
where it is installed)."""

import math

import numpy as np
import pytest
import torch
from test_lora_sft import tiny_chat_tokenizer, tiny_llama

from course_utils.classify.calibration import CONTENT_FREE, content_free_probabilities, contextual_calibration
from course_utils.classify.metrics import accuracy, calibrated_ece_samples, confusion_matrix, macro_f1, top_label_ece
from course_utils.classify.passages import Passage
from course_utils.classify.prompts import build_prompt, get_template
from course_utils.classify.scoring import label_logprobs_many, label_probabilities
from course_utils.device import make_generator, torch_threads


def test_contextual_calibration_on_hand_computed_values():
    probs = torch.tensor([[0.5, 0.3, 0.2], [0.2, 0.2, 0.6]])
    p_cf = torch.tensor([0.5, 0.25, 0.25])
    # row 0: W p = [1, 1.2, 0.8] / 3; row 1: [0.4, 0.8, 2.4] / 3.6
    expected = torch.tensor([[1 / 3, 0.4, 0.8 / 3], [0.4 / 3.6, 0.8 / 3.6, 2.4 / 3.6]])
    calibrated = contextual_calibration(probs, p_cf)
    torch.testing.assert_close(calibrated, expected)
    assert calibrated[0].argmax() == 1 != probs[0].argmax()  # the favoured label loses its head start
    torch.testing.assert_close(contextual_calibration(probs, torch.full((3,), 1 / 3)), probs)  # fair: no change
    torch.testing.assert_close(contextual_calibration(probs[0], p_cf), expected[0])


def test_contextual_calibration_rejects_bad_input():
    probs = torch.tensor([[0.5, 0.3, 0.2]])
    with pytest.raises(ValueError, match="positive"):
        contextual_calibration(probs, torch.tensor([1.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match="not log-probabilities"):
        contextual_calibration(probs.log(), torch.tensor([0.5, 0.25, 0.25]))
    with pytest.raises(ValueError, match="sum to 1"):
        contextual_calibration(probs * 2, torch.tensor([0.5, 0.25, 0.25]))
    with pytest.raises(ValueError, match="labels"):
        contextual_calibration(probs, torch.tensor([0.5, 0.5]))
    with pytest.raises(TypeError, match="tensor"):
        contextual_calibration([[0.5, 0.5]], torch.tensor([0.5, 0.5]))


def test_content_free_probabilities_average_the_prompts_and_calibrate_them_to_uniform():
    tok, model = tiny_chat_tokenizer(), tiny_llama()
    shots = [Passage("w", "tragedy", 0, 0, "Out, out, brief candle."), Passage("v", "comedy", 0, 0, "Ha!")]
    template = get_template("genre")
    with torch_threads(1):
        p_cf = content_free_probabilities(model, tok, template, shots)
        prompts = [build_prompt(template, text, shots) for text in CONTENT_FREE]
        each = label_probabilities(label_logprobs_many(model, tok, prompts, template.labels(), progress=False))
        torch.testing.assert_close(p_cf, each.mean(0))
        only_na = content_free_probabilities(model, tok, "genre", shots, content_free=["N/A"])
    assert not torch.allclose(each[0], torch.full((3,), 1 / 3), atol=1e-3)  # the raw prompt is biased ...
    torch.testing.assert_close(contextual_calibration(each[0], only_na), torch.full((3,), 1 / 3))  # ... not after
    with pytest.raises(ValueError, match="content_free"):
        content_free_probabilities(model, tok, template, shots, content_free="N/A")


def test_content_free_probabilities_average_probabilities_not_log_probabilities(monkeypatch):
    # label probabilities of the 3 content-free prompts; p_cf is their mean [0.4, 0.7/3, 1.1/3], not the softmax of
    # the mean log-probabilities (the normalised geometric mean, [0.375, 0.283, 0.341])
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7], [0.4, 0.3, 0.3]])
    monkeypatch.setattr("course_utils.classify.calibration.label_logprobs_many",
                        lambda model, tokenizer, prompts, labels, progress: probs[:len(prompts)].log())
    p_cf = content_free_probabilities(None, None, "genre")
    torch.testing.assert_close(p_cf, torch.tensor([0.4, 0.7 / 3, 1.1 / 3]))


def test_macro_f1_accuracy_and_confusion_on_hand_computed_values():
    y_true, y_pred = [0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 0, 2]
    assert macro_f1(y_true, y_pred) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)  # F1 = 2TP / (2TP + FP + FN)
    assert accuracy(y_true, y_pred) == pytest.approx(4 / 6)
    assert confusion_matrix(y_true, y_pred, [0, 1, 2]).tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert macro_f1([0, 0, 0, 1], [0, 0, 0, 0]) == pytest.approx((6 / 7 + 0) / 2)  # the majority answer
    assert accuracy([0, 0, 0, 1], [0, 0, 0, 0]) == 0.75
    assert macro_f1([0, 1], [0, 1], classes=[0, 1, 2]) == pytest.approx(2 / 3)  # an absent class counts 0
    assert macro_f1(["comedy", "tragedy"], ["comedy", "comedy"]) == pytest.approx((2 / 3 + 0) / 2)
    assert macro_f1(torch.tensor(y_true), torch.tensor(y_pred)) == macro_f1(y_true, y_pred)


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="one prediction per example"):
        macro_f1([0, 1], [0])
    with pytest.raises(ValueError, match="empty"):
        accuracy([], [])
    with pytest.raises(ValueError, match="not in classes"):
        macro_f1([0, 1], [0, 3], classes=[0, 1])
    with pytest.raises(TypeError, match="list"):
        accuracy("ab", "ab")


def test_macro_f1_matches_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        y_true = torch.randint(0, 4, (50,), generator=generator).tolist()
        y_pred = torch.randint(0, 4, (50,), generator=generator).tolist()
        assert macro_f1(y_true, y_pred) == pytest.approx(metrics.f1_score(y_true, y_pred, average="macro"))


def test_top_label_ece_on_hand_computed_values():
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4]])
    # confidences 0.9 (right: gap 0.1) and 0.6 (wrong: gap 0.6), in different bins: (0.1 + 0.6) / 2
    assert top_label_ece(probs, [0, 1]) == pytest.approx(0.35)
    assert top_label_ece(torch.tensor([[1.0, 0.0]] * 3), [0, 0, 0]) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="entries"):
        top_label_ece(probs, [0])


def test_the_ece_of_a_calibrated_model_is_zero_only_without_noise():
    sure = torch.eye(3)[[0, 1, 2, 0]]  # confidence 1: every drawn label is the predicted one
    assert calibrated_ece_samples(sure, 20, make_generator(0, "cpu")).abs().max() < 1e-6
    uniform = torch.full((12, 3), 1 / 3)
    # one bin at confidence 1/3; its accuracy is a binomial share of 12 draws, so ECE = |share - 1/3| > 0 mostly
    draws = calibrated_ece_samples(uniform, 2000, make_generator(1, "cpu"))
    assert draws.shape == (2000,) and (draws >= 0).all()
    assert 0.08 < draws.mean().item() < 0.14  # E|Bin(12, 1/3)/12 - 1/3| = 0.106 (exact sum over the binomial)
    big = calibrated_ece_samples(torch.full((1200, 3), 1 / 3), 200, make_generator(1, "cpu"))
    assert big.mean() < draws.mean() / 5  # the floor falls like 1 / sqrt(n)
    torch.testing.assert_close(calibrated_ece_samples(uniform, 5, make_generator(2, "cpu")),
                               calibrated_ece_samples(uniform, 5, make_generator(2, "cpu")))  # seeded
    with pytest.raises(ValueError, match="n_draws"):
        calibrated_ece_samples(uniform, 0, make_generator(0, "cpu"))
    with pytest.raises(TypeError, match="generator"):
        calibrated_ece_samples(uniform, 5, None)
    with pytest.raises(ValueError, match="non-empty"):
        calibrated_ece_samples(torch.zeros(0, 3), 5, make_generator(0, "cpu"))


# ---------- argument validation (reliability audit 2026-12-02) ----------

def test_labels_must_be_one_per_example():
    y = torch.tensor([1, 0, 2])
    with pytest.raises(ValueError, match=r"1-D.*\(3, 1\)"):
        accuracy(torch.tensor([[1], [0], [2]]), y)  # a column: was compared row by row, accuracy 0.0
    with pytest.raises(ValueError, match=r"argmax"):
        accuracy(y, torch.rand(3, 4))  # probabilities instead of predicted labels
    with pytest.raises(TypeError, match=r"y_true\[0\].*one value"):
        macro_f1([[1], [0], [2]], [1, 0, 2])  # nested lists: was "unhashable type: 'list'"
    with pytest.raises(TypeError, match="tolist"):
        accuracy([torch.tensor(1), torch.tensor(0)], [1, 0])  # 0-d tensors hash by identity


def test_tensor_and_numpy_labels_give_the_list_result():
    import numpy as np

    truth, guess = [1, 0, 2, 2, 1], [1, 2, 2, 0, 1]
    for a, b in ((torch.tensor(truth), torch.tensor(guess)), (np.array(truth), np.array(guess))):
        assert accuracy(a, b) == accuracy(truth, guess)
        assert macro_f1(a, b) == macro_f1(truth, guess)
        assert torch.equal(confusion_matrix(a, b, [0, 1, 2]), confusion_matrix(truth, guess, [0, 1, 2]))


def test_top_label_ece_needs_class_indices():
    import numpy as np

    probs = torch.tensor([[0.7, 0.3], [0.4, 0.6]])
    with pytest.raises(ValueError, match=r"class indices.*\[0, 2\).*'a'"):
        top_label_ece(probs, ["a", "b"])  # was "too many dimensions 'str'"
    with pytest.raises(ValueError, match="class indices"):
        top_label_ece(probs, [0, 2])  # no such column
    with pytest.raises(ValueError, match="class indices"):
        top_label_ece(probs, [True, False])
    expected = top_label_ece(probs, [0, 1])
    assert top_label_ece(probs, torch.tensor([0, 1])) == expected == top_label_ece(probs, np.array([0, 1]))


def test_calibrated_ece_samples_refuses_nan_and_negative_probabilities():
    probs = torch.tensor([[0.7, 0.3], [0.2, 0.8]])
    for bad in (torch.tensor([[math.nan, 0.5], [0.2, 0.8]]), probs - 0.5):  # RuntimeError inside torch.multinomial
        with pytest.raises(ValueError, match=r"probs must be label probabilities in \[0, 1\] \(no NaN\)"):
            calibrated_ece_samples(bad, 3, make_generator(0, "cpu"))
    a = calibrated_ece_samples(probs, np.int64(3), make_generator(0, "cpu"))  # 'n_draws must be a positive int'
    assert torch.equal(a, calibrated_ece_samples(probs, 3, make_generator(0, "cpu")))


def test_numpy_bin_and_draw_counts_give_the_same_ece():
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    assert top_label_ece(probs, [0, 1, 1], n_bins=np.int64(4)) == top_label_ece(probs, [0, 1, 1], n_bins=4)
    assert torch.equal(calibrated_ece_samples(probs, np.int64(5), make_generator(2, "cpu"), n_bins=np.int32(4)),
                       calibrated_ece_samples(probs, 5, make_generator(2, "cpu"), n_bins=4))
    with pytest.raises(ValueError, match="n_bins must be an int >= 1"):
        top_label_ece(probs, [0, 1, 1], n_bins=np.float64(4.0))
