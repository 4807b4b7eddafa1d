"""HFPolicy: a transformers causal LM behind chapter 05's policy interface, checked on a tiny random Llama (no asset)
and, once, on the real SmolLM2 (skipped when its asset is missing)."""

import copy

import pytest
import torch
import torch.nn.functional as F

from course_utils.device import make_generator
from course_utils.rlhf.grpo import GRPOConfig, train_grpo
from course_utils.rlhf.hf_policy import (HFPolicy, decode_hf_responses, end_token_id, make_chat_prompts,
                                         train_last_layers)
from course_utils.rlhf.ppo import PPOConfig, train_ppo
from course_utils.rlhf.reward_model import ScalarHeadModel
from course_utils.rlhf.rollout import response_logprobs, sample_rollout

V = 64


def tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=True)  # tied, as SmolLM2's are
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def reference_generate(model, idx, n, generator=None, temperature=1.0):
    """No cache: recompute the whole sequence for every new token."""
    for _ in range(n):
        logits = model(input_ids=idx, use_cache=False).logits[:, -1].float()  # (B, V)
        if generator is None:
            nxt = logits.argmax(-1, keepdim=True)
        else:
            nxt = torch.multinomial(F.softmax(logits / temperature, -1), 1, generator=generator)
        idx = torch.cat([idx, nxt], 1)
    return idx


def test_forward_and_hidden_states_match_the_model():
    model = tiny_llama()
    policy = HFPolicy(model, block_size=32)
    assert policy.config.block_size == 32 and policy.config.n_embd == 32
    ids = torch.randint(V, (3, 7), generator=make_generator(0, "cpu"))
    with torch.no_grad():
        logits, loss = policy(ids)
        hidden = policy.hidden_states(ids)
        expected = model(input_ids=ids).logits
        base = model.model(input_ids=ids).last_hidden_state
    assert loss is None and logits.dtype == torch.float32 and logits.shape == (3, 7, V)
    torch.testing.assert_close(logits, expected)
    assert hidden.shape == (3, 7, 32)
    torch.testing.assert_close(hidden, base)
    torch.testing.assert_close(model.lm_head(hidden), expected)  # hidden states are what the head reads
    with pytest.raises(ValueError, match="exceeds block_size"):
        policy(torch.zeros(1, 33, dtype=torch.long))
    with pytest.raises(ValueError, match="max_position_embeddings"):
        HFPolicy(model, block_size=65)
    with pytest.raises(TypeError, match="transformers causal LM"):
        HFPolicy(torch.nn.Linear(2, 2), block_size=8)


def test_cached_generation_equals_a_loop_without_cache():
    model = tiny_llama()
    policy = HFPolicy(model, block_size=40)
    prompts = torch.randint(V, (4, 6), generator=make_generator(1, "cpu"))
    greedy = policy.generate(prompts, 12, greedy=True)
    assert greedy.shape == (4, 18) and torch.equal(greedy[:, :6], prompts)
    with torch.no_grad():
        assert torch.equal(greedy, reference_generate(model, prompts, 12))
        sampled = policy.generate(prompts, 12, generator=make_generator(5, "cpu"), temperature=1.3)
        assert torch.equal(sampled, reference_generate(model, prompts, 12, make_generator(5, "cpu"), 1.3))
    model.train()
    policy.generate(prompts, 2, generator=make_generator(5, "cpu"))
    assert model.training  # mode restored
    assert torch.equal(policy.generate(prompts, 0), prompts)


def test_generation_checks_its_arguments():
    policy = HFPolicy(tiny_llama(), block_size=16)
    prompts = torch.zeros(2, 6, dtype=torch.long)
    with pytest.raises(ValueError, match="generator is on cpu but `idx` is on meta"):
        policy.generate(prompts.to("meta"), 3, generator=make_generator(0, "cpu"))  # as CUDA prompts would be
    with pytest.raises(ValueError, match="generator is on cpu but `prompts` is on meta"):
        sample_rollout(policy, prompts.to("meta"), 3, 0, make_generator(0, "cpu"))
    with pytest.raises(ValueError, match="exceed"):
        policy.generate(prompts, 11, generator=make_generator(0, "cpu"))
    with pytest.raises(ValueError, match="temperature"):
        policy.generate(prompts, 2, generator=make_generator(0, "cpu"), temperature=0.0)


def test_train_last_layers_counts_and_freezes():
    policy = HFPolicy(tiny_llama(), block_size=16)
    layer = sum(p.numel() for p in policy.model.model.layers[-1].parameters())
    norm = sum(p.numel() for p in policy.model.model.norm.parameters())
    assert train_last_layers(policy, 1) == layer + norm
    assert not policy.model.model.embed_tokens.weight.requires_grad
    assert not policy.model.lm_head.weight.requires_grad  # tied to the embeddings
    assert not any(p.requires_grad for p in policy.model.model.layers[0].parameters())
    assert train_last_layers(policy, 2) == 2 * layer + norm
    for bad in (0, 3, 1.5):
        with pytest.raises(ValueError, match=r"n_layers must be an int in \[1, 2\]"):
            train_last_layers(policy, bad)


def test_rollouts_logprobs_and_scalar_heads_run_on_an_hf_policy():
    policy = HFPolicy(tiny_llama(), block_size=20)
    prompts = torch.randint(V, (5, 6), generator=make_generator(2, "cpu"))
    rollout = sample_rollout(policy, prompts, 8, eos_id=3, generator=make_generator(3, "cpu"))
    assert rollout.ids.shape == (5, 14) and rollout.mask.shape == (5, 8)
    logp = response_logprobs(policy, rollout.ids, 6)
    assert logp.shape == (5, 8) and bool((logp <= 0).all())
    value = ScalarHeadModel(policy)
    assert torch.equal(value.score(rollout.ids, rollout.last_index), torch.zeros(5))  # zero-initialised head
    with torch.no_grad():
        value.head.weight.fill_(0.1)
        expected = (0.1 * policy.hidden_states(rollout.ids).sum(-1))  # (B, T): trunk is a copy of the policy
    torch.testing.assert_close(value(rollout.ids), expected)


def _toy_setup(n_layers: int = 1):
    policy = HFPolicy(tiny_llama(), block_size=20)
    train_last_layers(policy, n_layers)
    reference = copy.deepcopy(policy)
    prompts = lambda n, g: torch.randint(4, V, (n, 5), generator=g, device=g.device)  # noqa: E731
    count7 = lambda r: ((r.response == 7) & r.mask).sum(1).float()  # noqa: E731
    before = {name: p.detach().clone() for name, p in policy.named_parameters()}
    return policy, reference, prompts, count7, before


def _check_updates(policy, before):
    frozen_same = [torch.equal(p, before[n]) for n, p in policy.named_parameters() if not p.requires_grad]
    trained_moved = [not torch.equal(p, before[n]) for n, p in policy.named_parameters() if p.requires_grad]
    assert frozen_same and all(frozen_same)
    assert trained_moved and any(trained_moved)


def test_three_iterations_of_grpo_on_an_hf_policy():
    policy, reference, prompts, count7, before = _toy_setup()
    config = GRPOConfig(iterations=3, prompts_per_iteration=4, group_size=4, minibatch_groups=2, lr=1e-3,
                        max_new_tokens=6, sample_every=1)
    history = train_grpo(policy, reference, count7, count7, prompts, 3, config, make_generator(0, "cpu"),
                         decode=lambda r: [str(row) for row in r.response.tolist()], progress=False)
    assert len(history.reward) == 3 and set(history.samples) == {0, 1, 2}
    assert all(torch.isfinite(torch.tensor(x)).all() for x in (history.reward, history.kl, history.clip_fraction))
    _check_updates(policy, before)


def test_three_iterations_of_ppo_on_an_hf_policy():
    policy, reference, prompts, count7, before = _toy_setup()
    value = ScalarHeadModel(policy)
    config = PPOConfig(iterations=3, batch_size=8, minibatch_size=4, epochs=2, lr=1e-3, max_new_tokens=6)
    history = train_ppo(policy, reference, value, count7, count7, prompts, 3, config, make_generator(0, "cpu"),
                        progress=False)
    assert len(history.reward) == 3
    assert all(torch.isfinite(torch.tensor(x)).all() for x in (history.reward, history.kl, history.clip_fraction))
    _check_updates(policy, before)


def test_chat_prompts_hold_the_last_tokens_of_each_text():
    from test_lora_sft import tiny_chat_tokenizer  # one token per byte, a ChatML template

    tok = tiny_chat_tokenizer()
    prompts = make_chat_prompts(tok, ["abcdef", "uvwxyz"], prompt_tokens=3)
    rendered = [tok.decode(row) for row in prompts.tolist()]
    assert rendered[0].endswith("Continue with one line of verse:\ndef<|im_end|>\n<|im_start|>assistant\n")
    assert rendered[1].endswith(":\nxyz<|im_end|>\n<|im_start|>assistant\n") and prompts.dtype == torch.long
    assert make_chat_prompts(tok, ["abc"], prompt_tokens=3).shape == (1, prompts.shape[1])  # exactly enough
    with pytest.raises(ValueError, match="fewer than prompt_tokens"):
        make_chat_prompts(tok, ["ab"], prompt_tokens=3)


@pytest.mark.slow
def test_smollm2_chat_prompts_and_a_rollout():
    from course_utils.assets import missing_assets

    if "smollm2" in missing_assets():
        pytest.skip("the smollm2 asset is not installed")
    from course_utils.model.pretrained import load_smollm2

    loaded = load_smollm2("cpu", verbose=False)
    tok = loaded.tokenizer
    texts = ["Shall I compare thee to a summer's day?\n", "Now is the winter of our discontent\n",
             "To be, or not to be, that is the question:\n", "If music be the food of love, play on;\n"]
    prompts = make_chat_prompts(tok, texts, prompt_tokens=6)
    assert prompts.dim() == 2 and prompts.shape[0] == 4
    rendered = tok.decode(prompts[0])
    assert "Continue with one line of verse:" in rendered and rendered.endswith("assistant\n")
    with pytest.raises(ValueError, match="fewer than prompt_tokens"):
        make_chat_prompts(tok, ["Hi"], prompt_tokens=6)
    eos = end_token_id(tok)
    policy = HFPolicy(loaded.model, block_size=prompts.shape[1] + 8)
    rollout = sample_rollout(policy, prompts, 8, eos, make_generator(0, "cpu"))
    texts_out = decode_hf_responses(rollout, tok)
    assert len(texts_out) == 4 and all(isinstance(t, str) and "<|im_end|>" not in t for t in texts_out)


def test_numpy_ints_are_taken_as_python_ints():
    import numpy as np

    from test_lora_sft import tiny_chat_tokenizer

    policy = HFPolicy(tiny_llama(), block_size=np.int64(16))
    assert type(policy.config.block_size) is int and policy.config == HFPolicy(tiny_llama(), block_size=16).config
    prompts = torch.randint(V, (2, 6), generator=make_generator(1, "cpu"))
    assert torch.equal(policy.generate(prompts, np.int64(4), greedy=True), policy.generate(prompts, 4, greedy=True))
    assert train_last_layers(policy, np.int64(1)) == train_last_layers(policy, 1)
    tok = tiny_chat_tokenizer()
    assert torch.equal(make_chat_prompts(tok, ["abcdef"], prompt_tokens=np.int64(3)),
                       make_chat_prompts(tok, ["abcdef"], prompt_tokens=3))
    for bad in (True, np.float64(16.0)):
        with pytest.raises(ValueError, match="block_size must be an int >= 2"):
            HFPolicy(tiny_llama(), block_size=bad)
    with pytest.raises(ValueError, match=r"n_layers must be an int in \[1, 2\]"):
        train_last_layers(policy, True)  # True froze all but the last layer
    with pytest.raises(ValueError, match="max_new_tokens must be an int >= 0"):
        policy.generate(prompts, True, greedy=True)
