"""Tests for course_utils.generate.loop: our decoding loop reproduces transformers' generate token for token
(greedy and seeded sampling) on a tiny random Llama, and continuation_nll against a hand computation."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from course_utils.generate.loop import check_same_tokens, continuation_nll, generate
from course_utils.generate.sampling import SamplingConfig

EOS = 3


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         bos_token_id=1, eos_token_id=EOS, pad_token_id=0)
    return LlamaForCausalLM(config).eval()


def prompt(B=2, T=6, seed=0):
    return torch.randint(4, 64, (B, T), generator=torch.Generator().manual_seed(seed))  # no pad/eos in prompts


def hf(model, ids, **kwargs):
    return model.generate(ids, attention_mask=torch.ones_like(ids), eos_token_id=EOS, pad_token_id=0, **kwargs)


@pytest.mark.parametrize("seed", range(3))
def test_greedy_matches_generate(tiny, seed):
    ids = prompt(seed=seed)
    ours = generate(tiny, ids, 20, SamplingConfig(greedy=True), eos_token_id=EOS, pad_token_id=0)
    assert torch.equal(ours.ids, hf(tiny, ids, max_new_tokens=20, do_sample=False))


def test_greedy_with_repetition_penalty_matches_generate(tiny):
    ids = prompt(seed=5)
    ours = generate(tiny, ids, 20, SamplingConfig(greedy=True, repetition_penalty=1.5), eos_token_id=EOS,
                    pad_token_id=0)
    assert torch.equal(ours.ids, hf(tiny, ids, max_new_tokens=20, do_sample=False, repetition_penalty=1.5))


@pytest.mark.parametrize("settings", [dict(temperature=0.7, top_k=10), dict(top_p=0.8),
                                      dict(temperature=1.5, min_p=0.1, repetition_penalty=1.3)])
def test_seeded_sampling_matches_generate(tiny, settings):
    ids = prompt(B=3, seed=1)
    ours = generate(tiny, ids, 15, SamplingConfig(**settings), torch.Generator().manual_seed(11), eos_token_id=EOS,
                    pad_token_id=0)
    torch.manual_seed(11)  # generate draws from the global generator; ours from an explicit one with the same seed
    theirs = hf(tiny, ids, max_new_tokens=15, do_sample=True, top_k=settings.pop("top_k", 0), **settings)
    assert torch.equal(ours.ids, theirs)


def test_eos_then_padding():
    class AlwaysEos(torch.nn.Module):  # a fake model whose row 0 prefers EOS immediately, row 1 never does
        config = LlamaConfig(vocab_size=8, hidden_size=8, num_hidden_layers=1, num_attention_heads=1)

        def forward(self, input_ids, past_key_values=None, use_cache=True, logits_to_keep=0):
            logits = torch.zeros(input_ids.shape[0], input_ids.shape[1], 8)
            logits[0, :, EOS] = 5.0
            logits[1, :, 6] = 5.0
            return type("Out", (), {"logits": logits})()

    out = generate(AlwaysEos(), torch.tensor([[1, 2], [1, 2]]), 4, SamplingConfig(greedy=True), eos_token_id=EOS,
                   pad_token_id=0)
    assert out.new_ids.tolist() == [[EOS, 0, 0, 0], [6, 6, 6, 6]]


class Favourite(torch.nn.Module):
    """A fake causal LM whose logits never change: token 5 scores 2.0, token 6 scores 1.5, the rest 0."""
    config = LlamaConfig(vocab_size=8, hidden_size=8, num_hidden_layers=1, num_attention_heads=1)

    def forward(self, input_ids, past_key_values=None, use_cache=True, logits_to_keep=0):
        logits = torch.zeros(input_ids.shape[0], input_ids.shape[1], 8)
        logits[:, :, 5], logits[:, :, 6] = 2.0, 1.5
        return type("Out", (), {"logits": logits})()


def test_presence_penalty_counts_generated_tokens_only():
    # OpenAI semantics: the prompt's 5s do not count, so greedy first picks 5 (2.0); then 5 is at 2.0 - 1.0 < 1.5,
    # so 6; then both have been generated once: 5 (1.0) beats 6 (0.5) again. Counting the prompt would start with 6.
    out = generate(Favourite(), torch.tensor([[5, 5, 5]]), 3, SamplingConfig(greedy=True, presence_penalty=1.0))
    assert out.new_ids.tolist() == [[5, 6, 5]]
    # frequency 0.3: 5 (2.0) -> 5 (1.7) -> 6 (1.5 vs 1.4) -> 5 (1.4 vs 1.2)
    out = generate(Favourite(), torch.tensor([[5, 5, 5]]), 4, SamplingConfig(greedy=True, frequency_penalty=0.3))
    assert out.new_ids.tolist() == [[5, 5, 6, 5]]


def test_inputs_are_validated_once_not_per_token(monkeypatch):
    import course_utils.generate.sampling as sampling

    calls = []
    for name in ("check_logits", "check_finite"):
        monkeypatch.setattr(sampling, name, lambda *args: calls.append(1))
    generate(Favourite(), torch.tensor([[1, 2]]), 12, SamplingConfig(top_k=3, top_p=0.9), torch.Generator())
    assert calls == []


def test_refuses_a_generator_on_another_device_before_any_work():
    class Untouchable(Favourite):
        def forward(self, *args, **kwargs):
            raise AssertionError("the model must not run")

    with pytest.raises(ValueError, match="generator is on cpu"):
        generate(Untouchable(), torch.zeros(1, 3, dtype=torch.long, device="meta"), 2, SamplingConfig(),
                 torch.Generator())


def test_continuation_nll_by_hand(tiny):
    ids = prompt(B=1, T=8)
    logp = F.log_softmax(tiny(input_ids=ids).logits[0], dim=-1)  # (T, V)
    expected = -(logp[4, ids[0, 5]] + logp[5, ids[0, 6]] + logp[6, ids[0, 7]]) / 3
    assert torch.allclose(continuation_nll(tiny, ids, 5), expected.view(1), atol=1e-5)


def test_continuation_nll_skips_the_padding_after_the_first_eos(tiny):
    ids = torch.cat([prompt(B=1, T=5), torch.tensor([[17, EOS, EOS, EOS]])], dim=1)  # a token, EOS, then padding
    logp = F.log_softmax(tiny(input_ids=ids).logits[0], dim=-1)  # (T, V)
    expected = -(logp[4, 17] + logp[5, EOS]) / 2  # the first EOS counts, the two pads after it do not
    assert torch.allclose(continuation_nll(tiny, ids, 5, pad_token_id=EOS), expected.view(1), atol=1e-5)
    everything = -(logp[4, 17] + logp[5, EOS] + logp[6, EOS] + logp[7, EOS]) / 4
    assert torch.allclose(continuation_nll(tiny, ids, 5), everything.view(1), atol=1e-5)


def test_errors(tiny):
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(tiny, prompt(), 0, SamplingConfig(greedy=True))
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        generate(tiny, prompt()[0], 3, SamplingConfig(greedy=True))
    with pytest.raises(ValueError, match="Generator"):
        generate(tiny, prompt(), 3, SamplingConfig())
    with pytest.raises(ValueError, match="vocabulary"):
        generate(tiny, prompt() + 100, 3, SamplingConfig(greedy=True))
    with pytest.raises(TypeError, match="SamplingConfig"):
        generate(tiny, prompt(), 3, dict(greedy=True))


def test_steps_count_the_forward_passes_after_the_prefill():
    out = generate(Favourite(), torch.tensor([[1, 2]]), 4, SamplingConfig(greedy=True))
    assert out.new_ids.tolist() == [[5, 5, 5, 5]] and out.steps == 3
    out = generate(Favourite(), torch.tensor([[1, 2]]), 4, SamplingConfig(greedy=True), eos_token_id=5)
    assert out.new_ids.tolist() == [[5]] and out.steps == 0  # every row finished at once: no forward after prefill


def test_check_same_tokens_excuses_only_margins_strictly_below_the_tie_margin():
    def margin_half(ids):  # every step: token 1 at 5.0, token 2 at 4.5, a top-2 margin of exactly 0.5
        out = torch.zeros(*ids.shape, 6)
        out[..., 1], out[..., 2] = 5.0, 4.5
        return out

    ours, flipped = torch.tensor([[9, 1, 1, 1]]), torch.tensor([[9, 1, 2, 2]])
    assert check_same_tokens(ours, ours.clone(), 1, margin_half, exact=False, tie_margin=0.5) == [(3, 3)]
    with pytest.raises(AssertionError, match="before the first near-tie"):
        check_same_tokens(ours, flipped, 1, margin_half, exact=False, tie_margin=0.5)
    assert check_same_tokens(ours, flipped, 1, margin_half, exact=False, tie_margin=0.6) == [(0, 3)]


def test_empty_batches_bad_ids_and_prompt_lengths_are_named(tiny):
    greedy = SamplingConfig(greedy=True)
    with pytest.raises(ValueError, match=r"input_ids must be a non-empty \(B, T\) tensor .* got \(0, 6\)"):
        generate(tiny, torch.zeros(0, 6, dtype=torch.long), 3, greedy)  # was RuntimeError from min()
    assert torch.equal(generate(tiny, prompt(), np.int64(3), greedy).ids, generate(tiny, prompt(), 3, greedy).ids)
    ids = generate(tiny, prompt(), 3, greedy).ids
    for bad in (None, ids.tolist()):  # AttributeError: 'list' object has no attribute 'dim', before
        with pytest.raises(ValueError, match=r"ids must be a non-empty \(B, T\) tensor"):
            continuation_nll(tiny, bad, 6)
    with pytest.raises(ValueError, match=r"ids must be a non-empty \(B, T\) tensor"):
        continuation_nll(tiny, ids[:0], 6)  # was a reshape error deep in the attention
    with pytest.raises(TypeError, match="ids must be torch.long"):
        continuation_nll(tiny, ids.float(), 6)
    for bad in (True, 2.5, 0, 9):  # True was read as 1
        with pytest.raises(ValueError, match=r"prompt_length must be an int with 0 < prompt_length < T = 9"):
            continuation_nll(tiny, ids, bad)
    assert torch.equal(continuation_nll(tiny, ids, np.int64(6)), continuation_nll(tiny, ids, 6))
