"""Tests for course_utils.generate.kv_cache: cached and uncached forward/generation agree, the memory formula by
hand."""

import numpy as np
import pytest
import torch

from course_utils.generate.kv_cache import KVCache, cached_forward, generate_cached, generate_uncached, kv_cache_bytes
from course_utils.model.gpt import GPT, GPTConfig
from course_utils.generate.sampling import SamplingConfig


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=37, block_size=48, n_layer=2, n_head=2, n_embd=32)).eval()


def prompt(B=2, T=5, seed=0, V=37):
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


def test_cached_forward_matches_full_forward_in_any_chunking(model):
    idx = prompt(T=30)
    full = model(idx)[0]  # (B, T, V)
    cache = KVCache.empty(model, batch_size=2)
    pieces = [cached_forward(model, idx[:, :7], cache), cached_forward(model, idx[:, 7:19], cache)]
    pieces += [cached_forward(model, idx[:, t:t + 1], cache) for t in range(19, 30)]
    assert cache.length == 30
    assert torch.allclose(torch.cat(pieces, dim=1), full, atol=1e-5)


def test_cache_holds_the_models_own_keys(model):
    idx = prompt(B=1, T=6)
    cache = KVCache.empty(model, batch_size=1)
    cached_forward(model, idx, cache)
    x = model.tok_emb(idx) + model.pos_emb(torch.arange(6))
    k = model.blocks[0].attn.qkv(model.blocks[0].ln_1(x)).split(32, dim=2)[1]  # (1, T, C)
    assert torch.allclose(cache.k[0, 0, :, :6], k.view(1, 6, 2, 16).transpose(1, 2)[0], atol=1e-6)


@pytest.mark.parametrize("config", [SamplingConfig(greedy=True),
                                    SamplingConfig(temperature=0.9, top_k=10, top_p=0.9, repetition_penalty=1.2)])
def test_cached_and_uncached_generation_identical(model, config):
    idx = prompt()
    a = generate_cached(model, idx, 40, config, torch.Generator().manual_seed(3))
    b = generate_uncached(model, idx, 40, config, torch.Generator().manual_seed(3))
    assert a.shape == (2, 45)
    assert torch.equal(a, b)


def test_frequency_presence_see_only_generated_tokens(model):
    idx = prompt(B=1, seed=6)
    config = SamplingConfig(greedy=True, frequency_penalty=0.7, presence_penalty=0.4)
    expected = idx
    with torch.no_grad():
        for _ in range(12):  # by hand: penalise the counts of the generated part only
            logits = model(expected)[0][:, -1, :]
            generated = expected[:, idx.shape[1]:]
            counts = torch.zeros_like(logits).scatter_add_(1, generated, torch.ones_like(generated, dtype=logits.dtype))
            logits = logits - 0.7 * counts - 0.4 * (counts > 0).float()
            expected = torch.cat([expected, logits.argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(generate_cached(model, idx, 12, config), expected)
    assert torch.equal(generate_uncached(model, idx, 12, config), expected)


def test_matches_models_own_generate(model):
    idx = prompt(seed=4)
    assert torch.equal(generate_cached(model, idx, 25, SamplingConfig(greedy=True)),
                       model.generate(idx, 25, greedy=True))
    assert torch.equal(generate_cached(model, idx, 25, SamplingConfig(), torch.Generator().manual_seed(9)),
                       model.generate(idx, 25, generator=torch.Generator().manual_seed(9)))


def test_memory_formula_by_hand(model):
    assert kv_cache_bytes(n_layer=2, n_kv_head=3, head_size=4, n_tokens=5, bytes_per_value=2) == 2 * 2 * 3 * 4 * 5 * 2
    # Llama-2-7B (Touvron et al., 2023): 32 layers, 32 heads of 128, 4096 tokens, fp16 -> 2 GiB per sequence
    assert kv_cache_bytes(32, 32, 128, 4096, 2) == 2 * 1024**3
    cache = KVCache.empty(model, batch_size=1)
    cached_forward(model, prompt(B=1, T=10), cache)
    assert cache.nbytes() == kv_cache_bytes(2, 2, 16, 10, 4)
    assert cache.nbytes(filled_only=False) == kv_cache_bytes(2, 2, 16, 48, 4)


def test_errors(model):
    with pytest.raises(ValueError, match="block_size"):
        generate_cached(model, prompt(T=40), 20, SamplingConfig(greedy=True))
    for generate in (generate_cached, generate_uncached):  # 40 + 8 fills block_size 48 exactly; one more is refused
        assert generate(model, prompt(T=40), 8, SamplingConfig(greedy=True)).shape == (2, 48)
        with pytest.raises(ValueError, match="exceeds block_size"):
            generate(model, prompt(T=40), 9, SamplingConfig(greedy=True))
    cache = KVCache.empty(model, batch_size=2, max_len=8)
    with pytest.raises(ValueError, match="overflow"):
        cached_forward(model, prompt(T=9), cache)
    with pytest.raises(ValueError, match="batch size"):
        cached_forward(model, prompt(B=3), cache)
    with pytest.raises(ValueError, match="n_tokens"):
        kv_cache_bytes(1, 1, 1, -1)
    with pytest.raises(TypeError, match="GPT"):
        generate_cached(torch.nn.Linear(2, 2), prompt(), 1, SamplingConfig(greedy=True))
    with pytest.raises(ValueError, match="Generator"):
        generate_uncached(model, prompt(), 1, SamplingConfig())


def test_prompt_ids_are_checked_once_at_the_entry(model):
    for bad in (torch.tensor([[1, 37]]), torch.tensor([[-1, 2]])):
        for generate in (generate_cached, generate_uncached):
            with pytest.raises(ValueError, match=r"\[0, 37\), the model's vocabulary"):
                generate(model, bad, 2, SamplingConfig(greedy=True))  # was an IndexError inside the embedding
    with pytest.raises(TypeError, match="integer token ids"):
        generate_cached(model, prompt().float(), 2, SamplingConfig(greedy=True))
    assert torch.equal(generate_cached(model, prompt().int(), 4, SamplingConfig(greedy=True)),
                       generate_cached(model, prompt(), 4, SamplingConfig(greedy=True)))


def test_generation_restores_training_mode():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=37, block_size=16, n_layer=1, n_head=2, n_embd=16))
    for generate in (generate_cached, generate_uncached):
        for training in (True, False):
            model.train(training)
            generate(model, prompt(B=1, T=3), 2, SamplingConfig(greedy=True))
            assert model.training is training


def test_an_empty_batch_is_refused_and_numpy_lengths_are_accepted(model):
    greedy = SamplingConfig(greedy=True)
    for generate in (generate_cached, generate_uncached):
        with pytest.raises(ValueError, match=r"idx must be a non-empty \(B, T\) prompt, B and T >= 1, got \(0, 5\)"):
            generate(model, torch.zeros(0, 5, dtype=torch.long), 3, greedy)  # was RuntimeError from min()
        out = generate(model, prompt(), np.int64(3), greedy)  # e.g. a length from np.arange: refused before
        assert out.shape == (2, 8) and torch.equal(out, generate(model, prompt(), 3, greedy))


def test_kv_cache_bytes_takes_numpy_ints_as_python_ints():
    args = (32, 32, 128, 1 << 20, 2, 64)  # 2**40 bytes: an int64 product would still fit, but the answer is an int
    got = kv_cache_bytes(*(np.int64(a) for a in args))
    assert got == kv_cache_bytes(*args) == 2 * 32 * 32 * 128 * (1 << 20) * 2 * 64 and type(got) is int
    assert kv_cache_bytes(np.int32(1 << 10), np.int32(1 << 10), np.int32(1 << 10), np.int32(1 << 10)) == 2 ** 43
    for bad in (True, 2.0, np.float64(3.0)):
        with pytest.raises(ValueError, match="n_layer must be a positive int"):
            kv_cache_bytes(bad, 1, 1, 1)


def test_empty_cache_refuses_sizes_that_are_not_ints():
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8))
    for bad in (2.5, True, "2"):  # 2.5 failed inside torch.zeros; True made a batch of one
        with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
            KVCache.empty(model, bad)
    with pytest.raises(ValueError, match=r"max_len must be an int in \[1, block_size=8\]"):
        KVCache.empty(model, 1, max_len=4.0)
    assert KVCache.empty(model, np.int64(2), max_len=np.int64(4)).k.shape[1] == 2
