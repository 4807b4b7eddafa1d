"""Mask kinds against hand-written matrices and against Hugging Face's own mask builder; conversions; validation."""

import numpy as np
import pytest
import torch

from course_utils.model import masks

T_, F_ = True, False


def t(rows):
    return torch.tensor(rows, dtype=torch.bool)


def test_causal_and_bidirectional_by_hand():
    assert torch.equal(masks.causal_mask(3), t([[1, 0, 0], [1, 1, 0], [1, 1, 1]]))
    assert torch.equal(masks.bidirectional_mask(2), t([[1, 1], [1, 1]]))
    assert masks.causal_mask(5).dtype == torch.bool and masks.causal_mask(5).shape == (5, 5)


def test_prefix_lm_by_hand_and_its_limits():
    expected = t([[1, 1, 0, 0],
                  [1, 1, 0, 0],
                  [1, 1, 1, 0],
                  [1, 1, 1, 1]])
    assert torch.equal(masks.prefix_lm_mask(4, 2), expected)
    assert torch.equal(masks.prefix_lm_mask(4, 0), masks.causal_mask(4))
    assert torch.equal(masks.prefix_lm_mask(4, 4), masks.bidirectional_mask(4))


def test_sliding_window_by_hand():
    causal = t([[1, 0, 0, 0, 0],
                [1, 1, 0, 0, 0],
                [0, 1, 1, 0, 0],
                [0, 0, 1, 1, 0],
                [0, 0, 0, 1, 1]])
    assert torch.equal(masks.sliding_window_mask(5, 2), causal)
    symmetric = t([[1, 1, 0, 0],
                   [1, 1, 1, 0],
                   [0, 1, 1, 1],
                   [0, 0, 1, 1]])
    assert torch.equal(masks.sliding_window_mask(4, 2, causal=False), symmetric)
    assert torch.equal(masks.sliding_window_mask(4, 1), torch.eye(4, dtype=torch.bool))
    assert torch.equal(masks.sliding_window_mask(4, 9), masks.causal_mask(4))
    longformer = t([[1, 1, 1, 0, 0],  # window 4: 4 // 2 = 2 positions on each side (Longformer's w/2)
                    [1, 1, 1, 1, 0],
                    [1, 1, 1, 1, 1],
                    [0, 1, 1, 1, 1],
                    [0, 0, 1, 1, 1]])
    assert torch.equal(masks.sliding_window_mask(5, 4, causal=False), longformer)
    assert torch.equal(masks.sliding_window_mask(5, 1, causal=False), torch.eye(5, dtype=torch.bool))


def flash_window(T, left, right):
    # FlashAttention's window_size=(left, right): query i sees keys in [i - left, i + right], both inclusive
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    return (j >= i - left) & (j <= i + right)


@pytest.mark.parametrize("W", [1, 2, 3, 7, 20])
def test_sliding_windows_match_flash_attention_window_size(W):
    assert masks.sliding_window_mask(12, W).sum(-1).max() == min(W, 12)  # W keys, the query itself included
    assert torch.equal(masks.sliding_window_mask(12, W), flash_window(12, W - 1, 0))
    assert torch.equal(masks.sliding_window_mask(12, W, causal=False), flash_window(12, W // 2, W // 2))


def test_padding_right_and_left_by_hand():
    assert torch.equal(masks.key_padding_mask([3, 1], 4), t([[1, 1, 1, 0], [1, 0, 0, 0]]))
    assert torch.equal(masks.key_padding_mask([3, 1], 4, side="left"), t([[0, 1, 1, 1], [0, 0, 0, 1]]))
    full = masks.padding_mask([2], 3)
    assert full.shape == (1, 1, 3, 3)
    assert torch.equal(full[0, 0], t([[1, 1, 0], [1, 1, 0], [1, 1, 0]]))


def test_combine_causal_and_left_padding_by_hand():
    combined = masks.combine(masks.causal_mask(3), masks.padding_mask([2], 3, side="left"))
    assert combined.shape == (1, 1, 3, 3)
    assert torch.equal(combined[0, 0], t([[0, 0, 0],  # a padding query with nothing to attend to
                                          [0, 1, 0],
                                          [0, 1, 1]]))


def test_additive_round_trip_and_hf_finfo_min():
    mask = masks.prefix_lm_mask(5, 2)
    additive = masks.to_additive(mask)
    assert additive.dtype == torch.float32
    assert torch.equal(additive == 0, mask) and torch.isinf(additive[~mask]).all()
    assert torch.equal(masks.from_additive(additive), mask)
    hf_style = torch.zeros(5, 5, dtype=torch.float16).masked_fill(~mask, torch.finfo(torch.float16).min)
    assert torch.equal(masks.from_additive(hf_style), mask)
    with pytest.raises(ValueError, match="bias"):
        masks.from_additive(torch.tensor([[0.0, -1.5], [0.0, 0.0]]))


def test_hf_attention_mask_and_position_ids():
    attention_mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    ours = masks.from_hf_attention_mask(attention_mask)
    assert ours.shape == (2, 1, 4, 4)
    assert torch.equal(ours[0, 0], t([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]]))
    assert torch.equal(ours[1, 0], masks.causal_mask(4))
    encoder = masks.from_hf_attention_mask(attention_mask, causal=False)
    assert torch.equal(encoder[0, 0], t([[0, 0, 1, 1]] * 4))
    assert masks.position_ids_from_attention_mask(attention_mask).tolist() == [[1, 1, 0, 1], [0, 1, 2, 3]]


@pytest.mark.parametrize("side", ["left", "right"])
def test_against_hugging_face_sdpa_mask(side):
    mu = pytest.importorskip("transformers.masking_utils")
    lengths, T = [5, 2, 7], 7
    keys = masks.key_padding_mask(lengths, T, side=side)
    hf = mu.sdpa_mask(batch_size=3, q_length=T, kv_length=T, attention_mask=keys, allow_is_causal_skip=False)
    assert torch.equal(hf, masks.combine(masks.causal_mask(T), masks.padding_mask(lengths, T, side)))
    assert torch.equal(hf, masks.from_hf_attention_mask(keys.long()))
    window = mu.sdpa_mask(batch_size=1, q_length=T, kv_length=T, allow_is_causal_skip=False,
                          mask_function=mu.sliding_window_causal_mask_function(3))
    assert torch.equal(window[0, 0], masks.sliding_window_mask(T, 3))
    # with no padding HF builds no tensor at all and lets SDPA use is_causal=True
    assert mu.sdpa_mask(batch_size=1, q_length=T, kv_length=T) is None


@pytest.mark.parametrize("call,error,match", [
    (lambda: masks.causal_mask(0), ValueError, "positive int"),
    (lambda: masks.prefix_lm_mask(4, 5), ValueError, "prefix_len"),
    (lambda: masks.prefix_lm_mask(4, -1), ValueError, "prefix_len"),
    (lambda: masks.sliding_window_mask(4, 0), ValueError, "window"),
    (lambda: masks.key_padding_mask([2, 5], 4), ValueError, "length"),
    (lambda: masks.key_padding_mask([0], 4), ValueError, "length"),
    (lambda: masks.key_padding_mask([2.0], 4), TypeError, "integers"),
    (lambda: masks.key_padding_mask([2], 4, side="middle"), ValueError, "side"),
    (lambda: masks.combine(masks.causal_mask(3), torch.ones(3, 3)), TypeError, "boolean"),
    (lambda: masks.combine(masks.causal_mask(3), masks.causal_mask(4)), ValueError, "broadcast"),
    (lambda: masks.combine(), ValueError, "at least one"),
    (lambda: masks.to_additive(torch.zeros(3, 3)), TypeError, "boolean"),
    (lambda: masks.from_additive(masks.causal_mask(3)), TypeError, "floating"),
    (lambda: masks.from_hf_attention_mask(torch.tensor([[0, 2]])), ValueError, "0 .padding. or 1"),
    (lambda: masks.from_hf_attention_mask(torch.ones(4)), ValueError, r"\(B, T\)"),
    (lambda: masks.from_hf_attention_mask(torch.ones(1, 4)), TypeError, "integers"),
])
def test_validation_errors_are_clear(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_mask_bytes_grows_quadratically():
    assert masks.mask_bytes(1024) == 1024 * 1024
    assert masks.mask_bytes(2048, batch=2, heads=3, dtype=torch.float32) == 2 * 3 * 2048 * 2048 * 4


def test_mask_bytes_checks_batch_and_heads_and_masks_take_numpy_lengths():
    for name in ("batch", "heads"):
        for bad in (float("nan"), 2.5, -1, 0, True):  # NaN, -16 or 40.0 bytes came back without a word
            with pytest.raises(ValueError, match=f"{name} must be a positive int"):
                masks.mask_bytes(4, **{name: bad})
    assert masks.mask_bytes(np.int64(4), batch=np.int64(2)) == 32 and type(masks.mask_bytes(4, np.int64(2))) is int
    assert torch.equal(masks.causal_mask(np.int64(3)), masks.causal_mask(3))  # refused before: "must be a positive int"
    assert torch.equal(masks.sliding_window_mask(np.int64(4), np.int64(2)), masks.sliding_window_mask(4, 2))
    assert torch.equal(masks.prefix_lm_mask(4, np.int64(2)), masks.prefix_lm_mask(4, 2))
