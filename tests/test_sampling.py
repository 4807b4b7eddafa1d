"""Tests for course_utils.generate.sampling and course_utils.evaluate.diversity: hand-computed values, edge cases,
errors, and agreement with transformers' logits processors on random logits."""

import math

import numpy as np
import pytest
import torch
from transformers.generation import (MinPLogitsWarper, RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper,
                                     TopKLogitsWarper, TopPLogitsWarper)

from course_utils.evaluate.diversity import (distinct_n, distinct_n_at_count, distinct_n_at_equal_counts, ngram_count,
                                            ngrams, repeated_ngram_fraction)
from course_utils.generate.sampling import (SamplingConfig, apply_frequency_presence, apply_repetition_penalty,
                                            apply_temperature, constrain, decoded_token_mask, greedy, is_ascii_digits,
                                            min_p_filter, next_token, process_logits, sample, top_k_filter,
                                            top_p_filter)

INF = math.inf


def random_logits(seed, B=4, V=50, scale=3.0):
    return torch.randn(B, V, generator=torch.Generator().manual_seed(seed)) * scale


# ---------- exact small values ----------

def test_greedy_and_temperature_by_hand():
    logits = torch.tensor([[1.0, 3.0, 2.0], [0.0, -1.0, 5.0]])
    assert greedy(logits).tolist() == [1, 2]
    assert torch.equal(apply_temperature(logits, 2.0), torch.tensor([[0.5, 1.5, 1.0], [0.0, -0.5, 2.5]]))


def test_temperature_limits():
    logits = torch.tensor([[1.0, 3.0, 2.0]])
    cold = apply_temperature(logits, 1e-3).softmax(-1)
    hot = apply_temperature(logits, 1e4).softmax(-1)
    assert torch.allclose(cold, torch.tensor([[0.0, 1.0, 0.0]]), atol=1e-6)  # T -> 0: greedy
    assert torch.allclose(hot, torch.full((1, 3), 1 / 3), atol=1e-3)  # T -> inf: uniform


def test_top_k_by_hand_keeps_ties():
    logits = torch.tensor([[1.0, 4.0, 3.0, 2.0], [5.0, 5.0, 5.0, 0.0]])
    assert top_k_filter(logits, 2).tolist() == [[-INF, 4.0, 3.0, -INF], [5.0, 5.0, 5.0, -INF]]
    assert torch.equal(top_k_filter(logits, 10), logits)  # k >= V keeps everything


def test_top_p_by_hand():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert top_p_filter(logits, 0.5).isfinite().tolist() == [[True, False, False, False]]
    assert top_p_filter(logits, 0.6).isfinite().tolist() == [[True, True, False, False]]
    assert top_p_filter(logits, 0.9).isfinite().tolist() == [[True, True, True, False]]
    assert torch.equal(top_p_filter(logits, 1.0), logits)


def test_top_p_on_the_float_boundary():
    logits = random_logits(0, B=1, V=20)
    cumulative = torch.sort(logits, descending=True, stable=True).values.softmax(-1).cumsum(-1)[0]
    boundary = cumulative[2].item()  # mass of the top three tokens, exactly as the filter computes it
    assert top_p_filter(logits, boundary).isfinite().sum().item() == 3  # mass reached: stop at three
    # the filter compares in float32, so step to the next float32 above the boundary
    just_above = torch.nextafter(torch.tensor(boundary), torch.tensor(2.0)).item()
    assert top_p_filter(logits, just_above).isfinite().sum().item() == 4


def test_min_p_by_hand():
    logits = torch.log(torch.tensor([[0.6, 0.3, 0.07, 0.03]]))
    assert min_p_filter(logits, 0.1).isfinite().tolist() == [[True, True, True, False]]  # threshold 0.06
    assert min_p_filter(logits, 0.4).isfinite().tolist() == [[True, True, False, False]]  # threshold 0.24
    assert torch.equal(min_p_filter(logits, 0.0), logits)


def test_min_p_keeps_a_token_exactly_on_the_threshold():
    # p = [2/3, 1/3] in float32: the second is exactly min_p = 0.5 times the top, so it stays (transformers removes
    # only probs < min_p * top)
    logits = torch.tensor([[0.0, -math.log(2)]])
    assert min_p_filter(logits, 0.5).isfinite().tolist() == [[True, True]]
    assert MinPLogitsWarper(0.5)(None, logits).isfinite().tolist() == [[True, True]]


def test_repetition_penalty_by_hand():
    logits = torch.tensor([[2.0, -2.0, 1.0, 0.5]])
    prev = torch.tensor([[0, 1, 0]])
    assert apply_repetition_penalty(logits, prev, 2.0).tolist() == [[1.0, -4.0, 1.0, 0.5]]


def test_frequency_presence_count_only_generated_tokens():
    # OpenAI: logit[j] -= c[j] * frequency + (c[j] > 0) * presence, c[j] = count of j among the SAMPLED tokens
    logits = torch.tensor([[2.0, -2.0, 1.0, 0.5]])
    context = torch.tensor([[1, 1, 1, 2, 2, 0]])  # prompt (3 tokens: 1, 1, 1), then generated 2, 2, 0
    config = SamplingConfig(greedy=True, frequency_penalty=0.5, presence_penalty=1.0)
    out = process_logits(logits, context, config, prompt_length=3)
    # c = [1, 0, 2, 0]: token 1 appears only in the prompt, so it is not penalised
    expected = torch.tensor([[2.0 - 0.5 - 1.0, -2.0, 1.0 - 1.0 - 1.0, 0.5]])
    assert torch.allclose(out, expected)
    assert torch.equal(process_logits(logits, context[:, :3], config, prompt_length=3), logits)  # nothing sampled
    # the CTRL penalty, as in transformers, counts the whole context, prompt included
    ctrl = process_logits(logits, context, SamplingConfig(greedy=True, repetition_penalty=2.0), prompt_length=3)
    assert ctrl.tolist() == [[1.0, -4.0, 0.5, 0.5]]


def test_ctrl_sign_rule_lowers_every_seen_logit():
    logits = torch.tensor([[3.0, -3.0, 0.5, -0.5]])
    seen = torch.tensor([[0, 1, 2, 3]])
    out = apply_repetition_penalty(logits, seen, 1.5)
    assert (out < logits).all()  # both signs move down
    naive = logits / 1.5  # dividing every logit: a negative one moves UP, towards 0
    assert naive[0, 1] > logits[0, 1]


def test_frequency_presence_by_hand():
    logits = torch.tensor([[2.0, -2.0, 1.0, 0.5]])
    prev = torch.tensor([[0, 1, 0, 0]])  # counts 3, 1, 0, 0
    out = apply_frequency_presence(logits, prev, frequency_penalty=0.5, presence_penalty=1.0)
    assert torch.allclose(out, torch.tensor([[2.0 - 1.5 - 1.0, -2.0 - 0.5 - 1.0, 1.0, 0.5]]))


def test_constrain_and_sample():
    logits = torch.zeros(2, 5)
    allowed = torch.tensor([False, True, False, True, False])
    out = constrain(logits, allowed)
    draws = torch.stack([sample(out, torch.Generator().manual_seed(s)) for s in range(50)])
    assert set(draws.unique().tolist()) <= {1, 3}
    with pytest.raises(ValueError):
        constrain(logits, torch.zeros(5, dtype=torch.bool))


# ---------- edge cases ----------

def test_all_equal_logits():
    logits = torch.zeros(1, 10)
    assert top_k_filter(logits, 3).isfinite().sum() == 10  # every token ties with the 3rd
    assert top_p_filter(logits, 0.5).isfinite().sum() == 5
    assert min_p_filter(logits, 0.9).isfinite().sum() == 10
    counts = torch.bincount(torch.stack([sample(logits, torch.Generator().manual_seed(s)) for s in range(2000)])
                            .view(-1), minlength=10)
    assert counts.min() > 120  # roughly uniform: expected 200 each


def test_one_huge_logit():
    logits = torch.tensor([[0.0, 1e30, -5.0, 2.0]])
    for filtered in (top_k_filter(logits, 1), top_p_filter(logits, 0.9), min_p_filter(logits, 0.5)):
        assert filtered.isfinite().tolist() == [[False, True, False, False]]
    assert sample(top_p_filter(logits, 0.99), torch.Generator().manual_seed(0)).item() == 1


# ---------- errors ----------

@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_temperature_errors(bad):
    with pytest.raises(ValueError, match="temperature"):
        apply_temperature(torch.zeros(1, 3), bad)
    with pytest.raises(ValueError, match="greedy=True"):
        SamplingConfig(temperature=bad)
    SamplingConfig(greedy=True, temperature=bad)  # explicit greedy mode is allowed


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.0001, 2.0])
def test_top_p_errors(bad):
    with pytest.raises(ValueError, match="top_p"):
        top_p_filter(torch.zeros(1, 3), bad)
    with pytest.raises(ValueError, match="top_p"):
        SamplingConfig(top_p=bad)


@pytest.mark.parametrize("bad", [0, -3, 2.5])
def test_top_k_errors(bad):
    with pytest.raises(ValueError, match="top_k"):
        top_k_filter(torch.zeros(1, 3), bad)
    with pytest.raises(ValueError, match="top_k"):
        SamplingConfig(top_k=bad)


@pytest.mark.parametrize("bad", [1.0, -0.01, 1.5])
def test_min_p_errors(bad):
    with pytest.raises(ValueError, match="min_p"):
        min_p_filter(torch.zeros(1, 3), bad)
    with pytest.raises(ValueError, match="min_p"):
        SamplingConfig(min_p=bad)


def test_nan_and_shape_errors():
    with pytest.raises(ValueError, match="NaN"):
        greedy(torch.tensor([[0.0, math.nan]]))
    with pytest.raises(ValueError, match="NaN"):
        process_logits(torch.tensor([[0.0, math.nan]]), None, SamplingConfig())
    with pytest.raises(ValueError, match=r"\(B, V\)"):
        top_k_filter(torch.zeros(1, 2, 3), 1)
    with pytest.raises(ValueError, match=r"\(B, V\)"):
        next_token(torch.zeros(3), None, SamplingConfig(), torch.Generator())
    with pytest.raises(ValueError, match="-inf"):
        constrain(torch.zeros(1, 3), torch.zeros(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="penalty"):
        apply_repetition_penalty(torch.zeros(1, 3), torch.zeros(1, 1, dtype=torch.long), 0.0)
    for inf_penalty in (math.inf, np.float64(math.inf)):  # divides every seen positive logit to 0: refused too
        with pytest.raises(ValueError, match="repetition_penalty must be a finite number"):
            apply_repetition_penalty(torch.zeros(1, 3), torch.zeros(1, 1, dtype=torch.long), inf_penalty)
        with pytest.raises(ValueError, match="repetition_penalty must be a finite number"):
            SamplingConfig(repetition_penalty=inf_penalty)
    with pytest.raises(ValueError, match="prev_ids"):
        apply_repetition_penalty(torch.zeros(1, 3), torch.tensor([[7]]), 1.2)
    with pytest.raises(ValueError, match="prev_ids"):
        apply_repetition_penalty(torch.zeros(1, 3), torch.tensor([[3]]), 1.2)  # V itself is out of range
    with pytest.raises(ValueError, match="entirely -inf"):
        greedy(torch.tensor([[0.0, 1.0], [-INF, -INF]]))  # one dead row in a batch is enough
    with pytest.raises(ValueError, match="Generator"):
        next_token(torch.zeros(1, 3), None, SamplingConfig())
    with pytest.raises(TypeError, match="SamplingConfig"):
        next_token(torch.zeros(1, 3), None, dict(greedy=True))
    with pytest.raises(ValueError, match="min_tokens_to_keep"):
        SamplingConfig(min_tokens_to_keep=0)
    with pytest.raises(ValueError, match="min_tokens_to_keep"):
        top_p_filter(torch.zeros(1, 3), 0.5, min_tokens_to_keep=0)
    with pytest.raises(ValueError, match="frequency_penalty"):
        SamplingConfig(frequency_penalty=math.inf)


def test_per_step_primitives_never_scan_the_values(monkeypatch):
    # next_token and sample are called once per generated token: shape/config checks only, no NaN scan (a device
    # sync per token); the scan belongs to the one-shot entry points.
    import course_utils.generate.sampling as sampling

    calls = []
    monkeypatch.setattr(sampling, "check_finite", lambda logits: calls.append(1))
    logits = random_logits(0)
    next_token(logits, None, SamplingConfig(temperature=0.7, top_k=5, top_p=0.9, min_p=0.05), torch.Generator())
    sample(logits, torch.Generator())
    assert calls == []
    process_logits(logits, None, SamplingConfig())
    assert calls == [1]


# ---------- agreement with transformers ----------

@pytest.mark.parametrize("seed", range(5))
def test_matches_transformers_processors(seed):
    logits = random_logits(seed)
    ids = torch.randint(0, 50, (4, 12), generator=torch.Generator().manual_seed(100 + seed))
    pairs = [
        (apply_temperature(logits, 0.7), TemperatureLogitsWarper(0.7)(ids, logits.clone())),
        (top_k_filter(logits, 7), TopKLogitsWarper(7)(ids, logits.clone())),
        (top_p_filter(logits, 0.8), TopPLogitsWarper(0.8)(ids, logits.clone())),
        (top_p_filter(logits, 0.3), TopPLogitsWarper(0.3)(ids, logits.clone())),
        (min_p_filter(logits, 0.1), MinPLogitsWarper(0.1)(ids, logits.clone())),
        (apply_repetition_penalty(logits, ids, 1.3), RepetitionPenaltyLogitsProcessor(1.3)(ids, logits.clone())),
    ]
    for ours, theirs in pairs:
        assert torch.equal(ours.isfinite(), theirs.isfinite())
        assert torch.allclose(ours.softmax(-1), theirs.softmax(-1), atol=1e-7)


def test_pipeline_matches_transformers_chain():
    logits = random_logits(7)
    ids = torch.randint(0, 50, (4, 12), generator=torch.Generator().manual_seed(1))
    config = SamplingConfig(temperature=0.8, top_k=20, top_p=0.9, min_p=0.05, repetition_penalty=1.2)
    theirs = logits.clone()
    for proc in (RepetitionPenaltyLogitsProcessor(1.2), TemperatureLogitsWarper(0.8), TopKLogitsWarper(20),
                 TopPLogitsWarper(0.9), MinPLogitsWarper(0.05)):
        theirs = proc(ids, theirs)
    ours = process_logits(logits, ids, config)
    assert torch.allclose(ours.softmax(-1), theirs.softmax(-1), atol=1e-7)


def test_sampling_frequencies_follow_filtered_distribution():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    gen = torch.Generator().manual_seed(0)
    config = SamplingConfig(top_p=0.9)
    draws = torch.cat([next_token(logits.expand(500, 4), None, config, gen) for _ in range(4)])
    freq = torch.bincount(draws, minlength=4).float() / draws.numel()
    expected = torch.tensor([0.5, 0.3, 0.15, 0.0]) / 0.95
    assert (freq - expected).abs().max() < 0.03
    assert freq[3] == 0


# ---------- min_tokens_to_keep and the order of temperature ----------

@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("keep", [1, 2, 5, 60])
def test_min_tokens_to_keep_matches_transformers(seed, keep):
    logits = random_logits(seed) * 2  # peaked rows, so the filters alone would keep very few tokens
    ids = torch.zeros(4, 1, dtype=torch.long)
    pairs = [
        (top_k_filter(logits, 1, keep), TopKLogitsWarper(1, min_tokens_to_keep=keep)(ids, logits.clone())),
        (top_k_filter(logits, 3, keep), TopKLogitsWarper(3, min_tokens_to_keep=keep)(ids, logits.clone())),
        (top_p_filter(logits, 0.1, keep), TopPLogitsWarper(0.1, min_tokens_to_keep=keep)(ids, logits.clone())),
        (top_p_filter(logits, 0.7, keep), TopPLogitsWarper(0.7, min_tokens_to_keep=keep)(ids, logits.clone())),
        (min_p_filter(logits, 0.5, keep), MinPLogitsWarper(0.5, min_tokens_to_keep=keep)(ids, logits.clone())),
        (min_p_filter(logits, 0.9, keep), MinPLogitsWarper(0.9, min_tokens_to_keep=keep)(ids, logits.clone())),
    ]
    for ours, theirs in pairs:
        assert torch.equal(ours.isfinite(), theirs.isfinite())
        assert ours.isfinite().sum(-1).min() >= min(keep, logits.shape[-1])


def test_min_tokens_to_keep_by_hand():
    logits = torch.log(torch.tensor([[0.9, 0.05, 0.03, 0.02]]))
    assert top_p_filter(logits, 0.5).isfinite().sum() == 1
    assert top_p_filter(logits, 0.5, min_tokens_to_keep=3).isfinite().tolist() == [[True, True, True, False]]
    assert min_p_filter(logits, 0.5, min_tokens_to_keep=2).isfinite().tolist() == [[True, True, False, False]]
    assert top_k_filter(logits, 1, min_tokens_to_keep=4).isfinite().all()
    config = SamplingConfig(top_p=0.5, min_tokens_to_keep=2)
    assert process_logits(logits, None, config).isfinite().sum() == 2


def test_temperature_first_and_last_match_the_two_library_orders():
    logits = random_logits(3, V=200)
    ids = torch.zeros(4, 1, dtype=torch.long)
    hf_order = TemperatureLogitsWarper(3.0)(ids, logits.clone())  # transformers: temperature, then min-p
    hf_order = MinPLogitsWarper(0.1)(ids, hf_order)
    last = MinPLogitsWarper(0.1)(ids, logits.clone()) / 3.0  # llama.cpp default chain: min-p, then temperature
    first = process_logits(logits, None, SamplingConfig(temperature=3.0, min_p=0.1))
    after = process_logits(logits, None, SamplingConfig(temperature=3.0, min_p=0.1, temperature_last=True))
    assert torch.allclose(first.softmax(-1), hf_order.softmax(-1), atol=1e-7)
    assert torch.allclose(after.softmax(-1), last.softmax(-1), atol=1e-7)
    # at T = 3 the filter after temperature sees a flatter distribution and keeps more tokens
    assert (first.isfinite().sum(-1) > after.isfinite().sum(-1)).all()
    # at T = 1 the order does not matter
    same = [process_logits(logits, None, SamplingConfig(min_p=0.1, temperature_last=flag)) for flag in (False, True)]
    assert torch.equal(same[0], same[1])


# ---------- constraints by decoded text ----------

def test_digit_constraint_decides_by_decoded_text():
    texts = ["1", "²", "٣", "12", " 3", "", "a1", "0", "\ufffd", "¹⁰"]
    mask = decoded_token_mask(lambda i: texts[i], len(texts), is_ascii_digits)
    assert mask.tolist() == [True, False, False, True, False, False, False, True, False, False]
    assert "²".isdigit() and "٣".isdigit()  # why str.isdigit is the wrong test
    logits = torch.zeros(1, len(texts))
    logits[0, 1] = 5.0  # the look-alike '²' is the model's favourite
    assert greedy(constrain(logits, mask)).item() in (0, 3, 7)


def test_digit_constraint_with_a_byte_level_tokenizer():
    # GPT-2-style byte-level BPE stores raw byte 0xB2 as the stand-in character '²' (a token string that
    # str.isdigit accepts), but that token decodes to an invalid byte, not to a digit.
    byte_to_char = {0xB2: "²", 0x31: "1"}
    stored = [byte_to_char[0xB2], byte_to_char[0x31]]
    decoded = [bytes([0xB2]).decode("utf-8", errors="replace"), "1"]
    assert stored[0].isdigit()
    assert decoded_token_mask(lambda i: decoded[i], 2, is_ascii_digits).tolist() == [False, True]


# ---------- diversity ----------

def test_diversity_by_hand():
    assert ngrams([1, 2, 3], 2) == [(1, 2), (2, 3)]
    assert distinct_n([[1, 2, 1, 2], [1, 2, 3]], 2) == pytest.approx(3 / 5)  # (1,2) x3, (2,1), (2,3)
    assert distinct_n(torch.tensor([[1, 2, 3]]), 1) == 1.0
    assert repeated_ngram_fraction([1, 2, 1, 2, 1, 2], 2) == pytest.approx(3 / 5)
    assert repeated_ngram_fraction([1, 2, 3, 4], 2) == 0.0
    assert repeated_ngram_fraction([1, 2, 3, 1, 2, 3, 1]) == pytest.approx(1 / 4)  # default n = 4: (1, 2, 3, 1) twice
    assert distinct_n([[1], [2]], 2) == 0.0 and repeated_ngram_fraction([1, 2], 3) == 0.0  # no n-grams at all
    with pytest.raises(ValueError):
        distinct_n([[1, 2]], 0)


def test_distinct_n_at_count_by_hand():
    samples = [[1, 2, 1, 2], [1, 2, 3]]  # bigrams in order: (1,2) (2,1) (1,2) | (1,2) (2,3)
    assert ngram_count(samples, 2) == 5 and ngram_count(samples, 1) == 7 and ngram_count([[7], []], 2) == 0
    assert distinct_n_at_count(samples, 2, 3) == pytest.approx(2 / 3)  # the first sample's three: (1,2) twice
    assert distinct_n_at_count(samples, 2, 4) == pytest.approx(2 / 4)  # cut inside the second sample: (1,2) again
    assert distinct_n_at_count(samples, 2, 5) == pytest.approx(3 / 5) == distinct_n(samples, 2)  # all of them
    assert distinct_n_at_count(samples, 1, 3) == pytest.approx(2 / 3)  # tokens 1, 2, 1
    assert distinct_n_at_count(torch.tensor([[1, 2, 1, 2]]), 2, 3) == pytest.approx(2 / 3)  # an (N, T) tensor
    # no n-gram crosses two samples: joined, [1, 2] + [1, 2] would count (1,2) (2,1) = 1.0; a one-token sample has none
    assert distinct_n_at_count([[1, 2], [1, 2]], 2, 2) == 0.5
    assert distinct_n_at_count([[5], [1, 2], [1, 2]], 2, 2) == 0.5  # not (5,1)
    with pytest.raises(ValueError, match="at most the number of 2-grams the samples hold, 5; got 6"):
        distinct_n_at_count(samples, 2, 6)
    with pytest.raises(ValueError, match="hold, 0; got 1"):
        distinct_n_at_count([[1], [2]], 2, 1)
    for bad in (0, -1, True, 2.0, np.float64(3.0)):
        with pytest.raises(ValueError, match="n_grams must be an int >= 1"):
            distinct_n_at_count(samples, 2, bad)
    assert distinct_n_at_count(samples, np.int64(2), np.int32(3)) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        distinct_n_at_count(samples, 0, 3)
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        ngram_count(samples, True)
    with pytest.raises(TypeError, match="list of token-id lists"):
        distinct_n_at_count([1, 2, 3], 2, 1)  # one sample, not a list of samples
    with pytest.raises(ValueError, match=r"\(N, T\)"):
        distinct_n_at_count(torch.zeros(2, 2, 2, dtype=torch.long), 2, 1)


def test_distinct_n_at_equal_counts_uses_the_smallest_count():
    arms = {"a": [[1, 2, 1, 2], [1, 2, 3]], "b": [[4, 5, 6]], "c": [[1, 1, 1, 1]]}  # 5, 2 and 3 bigrams
    values, count = distinct_n_at_equal_counts(arms, 2)
    assert count == 2 and list(values) == ["a", "b", "c"]  # the minimum, whatever its place; names kept in order
    assert values == pytest.approx({"a": 1.0, "b": 1.0, "c": 0.5})  # a: (1,2) (2,1); b: (4,5) (5,6); c: (1,1) twice
    values, count = distinct_n_at_equal_counts(arms, 1)  # 7, 3 and 4 tokens
    assert count == 3 and values == pytest.approx({"a": 2 / 3, "b": 1.0, "c": 1 / 3})
    values, count = distinct_n_at_equal_counts({"only": torch.tensor([[1, 2, 1, 2]])}, 2)
    assert count == 3 and values["only"] == pytest.approx(2 / 3)  # one arm: its own count, plain distinct-n
    with pytest.raises(ValueError, match="'short' has no 2-grams"):
        distinct_n_at_equal_counts({"long": [[1, 2, 3]], "short": [[1], [2]]}, 2)
    with pytest.raises(ValueError, match="arms is empty"):
        distinct_n_at_equal_counts({}, 2)
    with pytest.raises(TypeError, match="arms must be a mapping"):
        distinct_n_at_equal_counts([[[1, 2]], [[3, 4]]], 2)
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        distinct_n_at_equal_counts(arms, 0)


def test_sample_requires_a_generator_and_draws_as_before():
    logits = torch.randn(4, 9, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="explicit torch.Generator"):
        sample(logits, None)  # would have drawn from the global generator
    expected = torch.multinomial(logits.softmax(dim=-1), 1, generator=torch.Generator().manual_seed(5)).squeeze(1)
    assert torch.equal(sample(logits, torch.Generator().manual_seed(5)), expected)
    with pytest.raises(ValueError, match=r"\(B, V\)"):
        sample(logits[0], torch.Generator())


# ---------- argument validation (reliability audit 2026-12-02) ----------

def test_repeated_ngram_fraction_reads_a_tensor_as_its_ids():
    ids = [1, 2, 1, 2, 1, 2]
    assert repeated_ngram_fraction(torch.tensor(ids), 2) == repeated_ngram_fraction(ids, 2) == pytest.approx(3 / 5)
    assert ngrams(torch.tensor(ids), 2) == ngrams(ids, 2)  # tuples of ints, not of 0-d tensors (identity hash)
    with pytest.raises(ValueError, match=r"1-D.*\(1, 6\)"):
        repeated_ngram_fraction(torch.tensor([ids]), 2)  # a (1, T) batch gave 0.0


def test_numpy_numbers_are_accepted_and_stored_as_python_numbers():
    import numpy as np

    config = SamplingConfig(top_k=np.int64(5), top_p=np.float32(0.5), min_tokens_to_keep=np.int32(2))
    assert (config.top_k, config.top_p, config.min_tokens_to_keep) == (5, 0.5, 2)
    assert type(config.top_k) is int and type(config.top_p) is float
    logits = torch.randn(3, 20, generator=torch.Generator().manual_seed(0))
    plain = SamplingConfig(top_k=5, top_p=0.5, min_tokens_to_keep=2)
    assert torch.equal(process_logits(logits, None, config), process_logits(logits, None, plain))
    assert torch.equal(top_p_filter(logits, np.float32(0.5)), top_p_filter(logits, 0.5))
    assert torch.equal(top_k_filter(logits, np.int64(3)), top_k_filter(logits, 3))
    with pytest.raises(ValueError, match="top_k must be an int >= 1"):
        SamplingConfig(top_k=5.0)


@pytest.mark.parametrize("bad", [1e-45, 1e-5, float("inf"), float("nan")])
def test_temperatures_that_overflow_or_break_the_softmax_are_refused(bad):
    # 1e-45 passed and overflowed to inf inside multinomial; inf turns -inf logits into NaN
    with pytest.raises(ValueError, match=r"temperature must be a finite number >= 1e-4.*greedy=True"):
        SamplingConfig(temperature=bad)
    with pytest.raises(ValueError, match=r"temperature must be a finite number >= 1e-4"):
        apply_temperature(torch.zeros(1, 3), bad)


def test_the_smallest_temperature_stays_finite_on_huge_logits():
    logits = torch.tensor([[0.0, 1e30, -5.0, 2.0]])
    scaled = apply_temperature(logits, 1e-4)
    assert scaled.isfinite().all() and scaled.softmax(-1).tolist() == [[0.0, 1.0, 0.0, 0.0]]
    assert SamplingConfig(temperature=1e-4).temperature == 1e-4


def test_greedy_ignores_temperature_and_filters():
    logits = torch.tensor([[1.0, 3.0, 2.0], [0.0, -1.0, 5.0]])
    for bad in (0.0, -1.0):  # allowed with greedy=True; dividing by it would give inf/NaN or reverse the order
        assert next_token(logits, None, SamplingConfig(greedy=True, temperature=bad)).tolist() == [1, 2]
    config = SamplingConfig(greedy=True, temperature=0.5, top_k=1, top_p=0.1, min_p=0.5)
    assert torch.equal(process_logits(logits, None, config), logits)  # greedy: penalties only


def test_low_precision_logits_are_processed_in_float32():
    logits = random_logits(3, B=2, V=30).to(torch.bfloat16)
    config = SamplingConfig(temperature=0.7, top_p=0.9, min_p=0.05)
    out = process_logits(logits, None, config)
    assert out.dtype == torch.float32
    assert torch.equal(out, process_logits(logits.float(), None, config))


def test_plus_inf_logits_are_refused_by_the_scanning_entry_points():
    # -inf is a mask; +inf is an overflow: softmax gives NaN and the filters passed inf/NaN on without a word
    logits = torch.tensor([[INF, 1.0, 2.0], [0.0, -INF, 1.0]])
    for process in (greedy, lambda x: apply_temperature(x, 0.7), lambda x: top_k_filter(x, 2),
                    lambda x: top_p_filter(x, 0.9), lambda x: min_p_filter(x, 0.1),
                    lambda x: process_logits(x, None, SamplingConfig())):
        with pytest.raises(ValueError, match=r"NaN or \+inf"):
            process(logits)
    assert top_k_filter(torch.tensor([[-INF, 1.0, 2.0]]), 1).tolist() == [[-INF, -INF, 2.0]]  # masks stay allowed


def test_float_token_ids_are_refused_and_named():
    logits = torch.zeros(2, 4)
    with pytest.raises(TypeError, match=r"prev_ids must hold integer token ids.*float32"):  # was a scatter error
        apply_repetition_penalty(logits, torch.tensor([[1.0], [2.0]]), 1.3)
    with pytest.raises(TypeError, match=r"generated_ids must hold integer token ids"):
        apply_frequency_presence(logits, torch.tensor([[1.0], [2.0]]), 0.5)
    with pytest.raises(ValueError, match=r"generated_ids must lie in \[0, 4\)"):  # named prev_ids before
        apply_frequency_presence(logits, torch.tensor([[9], [1]]), 0.5)
    with pytest.raises(TypeError, match="prev_ids must hold integer"):  # next_token: a dtype check, no scan
        next_token(logits, torch.tensor([[1.0], [2.0]]), SamplingConfig(repetition_penalty=1.2), torch.Generator())


def test_constrain_refuses_a_mask_for_another_batch():
    with pytest.raises(ValueError, match=r"allowed must be a boolean tensor of shape \(V,\) or \(B, V\) = \(2, 4\)"):
        constrain(torch.zeros(2, 4), torch.ones(3, 4, dtype=torch.bool))  # was a RuntimeError from expand
    assert constrain(torch.zeros(2, 4), torch.tensor([[True, False] * 2] * 2)).isinf().sum() == 4


def test_next_token_names_bad_logits_before_reading_their_device():
    for bad in (None, [[0.0, 1.0]]):  # AttributeError: 'list' object has no attribute 'device', before
        with pytest.raises(TypeError, match="logits must be a torch.Tensor"):
            sample(bad, torch.Generator())
    with pytest.raises(ValueError, match=r"V >= 1, got \(2, 0\)"):  # was multinomial's 'cannot sample n_sample'
        sample(torch.zeros(2, 0), torch.Generator())


def test_diversity_measures_take_a_numpy_n():
    samples = [[1, 2, 1, 2], [1, 2, 3]]
    assert distinct_n(samples, np.int64(2)) == distinct_n(samples, 2)
    assert repeated_ngram_fraction([1, 2, 1, 2, 1, 2], np.int32(2)) == repeated_ngram_fraction([1, 2, 1, 2, 1, 2], 2)
    assert ngrams([1, 2, 3], np.int64(2)) == [(1, 2), (2, 3)]
    for bad in (True, np.float64(2.0)):
        with pytest.raises(ValueError, match="n must be an int >= 1"):
            distinct_n(samples, bad)
