"""Chapter 07 compares decoders token for token: exactly on the CPU, and off the CPU up to the first near-tie
(course_utils.generate.loop.check_same_tokens, BeamResult.min_gap). These tests run the off-CPU rule on the CPU."""

import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from course_utils.generate.beam_search import beam_search, hf_next_logits_fn
from course_utils.generate.loop import check_same_tokens, generate
from course_utils.generate.sampling import SamplingConfig

EOS = 0


def logits_with_margins(margins, vocab_size=6):
    """A logits_fn whose step t (predicting position P + t) has top-2 margin margins[t]: (B, T) -> (B, T, V)."""
    def fn(ids):
        B, T = ids.shape
        out = torch.zeros(B, T, vocab_size)
        P = T + 1 - len(margins)  # ids are ours[:, :-1]
        for t, m in enumerate(margins):
            out[:, P - 1 + t, 1] = 5.0
            out[:, P - 1 + t, 2] = 5.0 - m
        return out
    return fn


def test_exact_counts_tokens_up_to_eos_and_refuses_any_difference():
    ours = torch.tensor([[7, 7, 3, 4, EOS, EOS], [7, 7, 3, 4, 5, 1]])
    assert check_same_tokens(ours, ours.clone(), 2, None, exact=True, eos_token_id=EOS) == [(3, 3), (4, 4)]
    other = ours.clone()
    other[1, -1] = 2  # the very last token differs
    with pytest.raises(AssertionError):
        check_same_tokens(ours, other, 2, None, exact=True, eos_token_id=EOS)


def test_off_the_cpu_a_near_tie_may_flip_the_rest():
    ours = torch.tensor([[9, 1, 1, 1, 1]])
    fn = logits_with_margins([1.0, 1.0, 1e-6, 1.0])  # step 2 is a near-tie
    flipped = torch.tensor([[9, 1, 1, 2, 3]])  # differs from step 2 on
    assert check_same_tokens(ours, flipped, 1, fn, exact=False) == [(2, 4)]
    assert check_same_tokens(ours, ours.clone(), 1, fn, exact=False) == [(2, 4)]  # compared only before the tie
    with pytest.raises(AssertionError):  # exact on the CPU: the flip is not excused
        check_same_tokens(ours, flipped, 1, fn, exact=True)
    early = torch.tensor([[9, 1, 2, 1, 1]])  # differs at step 1, before the near-tie
    with pytest.raises(AssertionError, match="before the first near-tie"):
        check_same_tokens(ours, early, 1, fn, exact=False)
    no_tie = logits_with_margins([1.0, 1.0, 1.0, 1.0])
    assert check_same_tokens(ours, ours.clone(), 1, no_tie, exact=False) == [(4, 4)]
    with pytest.raises(AssertionError):
        check_same_tokens(ours, flipped, 1, no_tie, exact=False)
    with pytest.raises(ValueError):
        check_same_tokens(ours[0], ours[0], 1, fn, exact=False)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


def test_both_rules_accept_our_loop_against_generate_on_a_real_model(tiny):
    prompt = torch.tensor([[3, 14, 15, 9, 2]])
    ours = generate(tiny, prompt, 12, SamplingConfig(greedy=True), eos_token_id=EOS)
    theirs = tiny.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=12,
                           eos_token_id=EOS, pad_token_id=EOS)
    logits_fn = lambda ids: tiny(input_ids=ids).logits  # noqa: E731
    exact = check_same_tokens(ours.ids, theirs, 5, logits_fn, exact=True, eos_token_id=EOS)
    tolerant = check_same_tokens(ours.ids, theirs, 5, logits_fn, exact=False, eos_token_id=EOS)
    assert exact[0][1] == tolerant[0][1] and tolerant[0][0] <= tolerant[0][1]


def test_beam_search_records_its_closest_decision(tiny):
    probs = {(): [0.4, 0.4, 0.2], (0,): [0.6, 0.3, 0.1], (1,): [0.1, 0.2, 0.7], (2,): [0.5, 0.3, 0.2]}

    def fn(ids):
        return torch.stack([torch.tensor(probs[tuple(r[1:2].tolist())], dtype=torch.float64).log() for r in ids])

    tied = beam_search(fn, torch.tensor([9]), num_beams=1, max_new_tokens=2)
    assert tied.min_gap == 0.0  # the first step's two best tokens tie exactly: either path is right
    untied = beam_search(fn, torch.tensor([9, 0]), num_beams=1, max_new_tokens=1)
    assert untied.min_gap == pytest.approx(math.log(0.6 / 0.3))  # one decision, 0.6 against 0.3
    result = beam_search(hf_next_logits_fn(tiny), torch.tensor([3, 14, 15]), num_beams=3, max_new_tokens=4)
    assert 0 < result.min_gap < math.inf
    assert result.min_gap <= result.hypotheses[0][0] - result.hypotheses[1][0]


def test_beam_min_gap_ignores_the_order_of_beams_it_keeps():
    # step 1 keeps tokens 1 (0.4) and 2 (0.39): their near-tie decides nothing; 0.39 against 0.21 decides the cut.
    # step 2: after 1 -> [0.9, 0.05, 0.05], after 2 -> [0.5, 0.25, 0.25]; kept 0.36 and 0.195 against 0.0975 left out.
    after = {9: [0.0, 0.4, 0.39, 0.21], 1: [0.0, 0.9, 0.05, 0.05], 2: [0.0, 0.5, 0.25, 0.25]}

    def fn(ids):  # (K, T) -> (K, V) log-probabilities of the next token, by the last token
        rows = [torch.tensor(after.get(int(r[-1]), [0.25] * 4), dtype=torch.float64) for r in ids]
        return torch.stack(rows).clamp_min(1e-30).log()

    result = beam_search(fn, torch.tensor([9]), num_beams=2, max_new_tokens=2)
    decisive = min(math.log(0.39 / 0.21), math.log(0.195 / 0.0975), math.log(0.36 / 0.195) / 2)  # pick: per token
    assert result.min_gap == pytest.approx(decisive)  # not log(0.4 / 0.39), the gap between two kept beams
