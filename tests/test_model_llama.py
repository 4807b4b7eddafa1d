"""Our from-scratch Llama (course_utils.model.llama) against transformers' LlamaForCausalLM: a tiny random config
(logits, KV cache, attention weights, padding, greedy and seeded sampling) and the real SmolLM2-135M weights."""

from dataclasses import replace

import numpy as np
import pytest
import torch
import transformers

from course_utils.model.llama import Llama, LlamaConfig, LlamaKVCache, load_from_transformers, parameter_groups

VOCAB, EOS = 97, 3


def tiny_hf_config(**overrides):
    settings = dict(vocab_size=VOCAB, hidden_size=48, intermediate_size=80, num_hidden_layers=3,
                    num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=64,
                    tie_word_embeddings=True, rope_parameters={"rope_type": "default", "rope_theta": 500.0},
                    rms_norm_eps=1e-5, initializer_range=0.3, bos_token_id=1, eos_token_id=EOS, pad_token_id=0)
    settings.update(overrides)
    return transformers.LlamaConfig(**settings)


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)  # initializer_range 0.3: logits of order 1-10, so a wrong piece shows up clearly
    hf = transformers.LlamaForCausalLM(tiny_hf_config()).eval()
    return hf, load_from_transformers(hf)


def prompts(B=3, T=11, seed=0):
    return torch.randint(4, VOCAB, (B, T), generator=torch.Generator().manual_seed(seed))  # no pad/eos


def left_padding(B=3, T=11):
    mask = torch.ones(B, T, dtype=torch.long)
    mask[0, :4], mask[1, :1] = 0, 0
    return mask, (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T) mask and the positions of real tokens


def test_config_from_hf_and_tied_head(pair):
    hf, ours = pair
    config = ours.config
    assert (config.n_layer, config.n_head, config.n_kv_head, config.n_embd, config.head_size) == (3, 6, 2, 48, 8)
    assert config.rope_theta == 500.0 and config.block_size == 64 and config.intermediate_size == 80
    assert ours.lm_head.weight is ours.tok_emb.weight  # tied: one tensor
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in hf.parameters())


@torch.no_grad()
def test_logits_equal_transformers(pair):
    hf, ours = pair
    idx = prompts()
    expected = hf(idx).logits
    assert expected.abs().max() > 1.0  # not a near-zero output that any implementation would match
    torch.testing.assert_close(ours(idx), expected, rtol=0, atol=1e-5)


@torch.no_grad()
def test_left_padded_batch_equals_transformers_on_real_tokens(pair):
    hf, ours = pair
    idx, (mask, positions) = prompts(), left_padding()
    expected = hf(idx, attention_mask=mask, position_ids=positions).logits
    got = ours(idx, attention_mask=mask, position_ids=positions)
    real = mask.bool()
    torch.testing.assert_close(got[real], expected[real], rtol=0, atol=1e-5)
    assert not got.isnan().any()  # padded queries see no key at all: zeros, not NaN
    with pytest.raises(ValueError, match="attention_mask must be"):
        ours(idx, attention_mask=mask[:, 1:])


@torch.no_grad()
def test_kv_cache_incremental_decoding_equals_the_full_forward(pair):
    _, ours = pair
    idx = prompts()
    full = ours(idx)
    cache = LlamaKVCache.empty(ours.config, batch_size=3, max_len=11, like=ours.tok_emb.weight)
    pieces = [ours(idx[:, a:b], cache=cache) for a, b in ((0, 5), (5, 8), (8, 9), (9, 10), (10, 11))]
    assert cache.length == 11 and cache.k.shape == (3, 3, 2, 11, 8)  # (L, B, H_kv, T_max, D): 2 kv heads, not 6
    # chunked and full forwards sum in other orders (other matmul shapes): float32 rounding reached 1.5e-5 on a
    # 2-core AMD EPYC (Zen 4, AVX-512); a cache bug (a wrong position, a missing or stale key) moves these logits,
    # of order 1-10, by far more than 1e-4
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="exceed the cache size"):
        ours(idx[:, :1], cache=cache)


@torch.no_grad()
def test_attention_weights_equal_transformers_eager_attention(pair):
    hf, ours = pair
    idx = prompts()
    eager = transformers.LlamaForCausalLM(tiny_hf_config(attn_implementation="eager")).eval()
    eager.load_state_dict(hf.state_dict())
    out = eager(idx, output_attentions=True)
    logits, attentions = ours(idx, return_attention=True)
    torch.testing.assert_close(logits, out.logits, rtol=0, atol=1e-5)
    assert len(attentions) == 3 and attentions[0].shape == (3, 6, 11, 11)  # (B, H, T, T) per layer
    for got, expected in zip(attentions, out.attentions):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(attentions[1].sum(-1), torch.ones(3, 6, 11))
    assert attentions[2].triu(diagonal=1).abs().max() == 0  # causal: no weight on future keys


@pytest.mark.parametrize("seed", range(2))
def test_greedy_generation_equals_transformers_generate(pair, seed):
    hf, ours = pair
    idx = prompts(seed=seed)
    expected = hf.generate(idx, attention_mask=torch.ones_like(idx), do_sample=False, max_new_tokens=20,
                           min_new_tokens=0, eos_token_id=EOS, pad_token_id=EOS)
    got = ours.generate(idx, 20, greedy=True, eos_token_id=EOS)
    assert torch.equal(got, expected)


def test_greedy_generation_of_a_left_padded_batch_equals_transformers(pair):
    hf, ours = pair
    idx, (mask, _) = prompts(), left_padding()
    expected = hf.generate(idx, attention_mask=mask, do_sample=False, max_new_tokens=15, min_new_tokens=0,
                           eos_token_id=EOS, pad_token_id=EOS)
    assert torch.equal(ours.generate(idx, 15, greedy=True, eos_token_id=EOS, attention_mask=mask), expected)


def test_seeded_sampling_equals_transformers_and_repeats(pair):
    hf, ours = pair
    idx = prompts(B=2, seed=5)
    torch.manual_seed(7)  # transformers draws from the global generator; ours from an explicit one
    expected = hf.generate(idx, attention_mask=torch.ones_like(idx), do_sample=True, temperature=0.7, top_k=0,
                           top_p=1.0, max_new_tokens=12, min_new_tokens=0, eos_token_id=EOS, pad_token_id=EOS)
    got = ours.generate(idx, 12, torch.Generator().manual_seed(7), temperature=0.7, eos_token_id=EOS)
    assert torch.equal(got, expected)
    again = ours.generate(idx, 12, torch.Generator().manual_seed(7), temperature=0.7, eos_token_id=EOS)
    assert torch.equal(again, got)


def test_generate_validates_its_arguments(pair):
    _, ours = pair
    idx = prompts()
    with pytest.raises(ValueError, match="explicit torch.Generator"):
        ours.generate(idx, 5)
    for bad in (0.0, 1e-39, float("inf")):  # 1e-39 overflowed inside multinomial; inf sampled uniformly
        with pytest.raises(ValueError, match="temperature must be a finite number >= 1e-4"):
            ours.generate(idx, 5, torch.Generator(), temperature=bad)
    with pytest.raises(ValueError, match="max_new_tokens must be an int >= 1"):
        ours.generate(idx, 0, greedy=True)
    with pytest.raises(ValueError, match="the generator is on cpu but `idx` is on meta"):
        ours.generate(idx.to("meta"), 5, torch.Generator())  # checked first, before any work
    with pytest.raises(ValueError, match=r"idx must have shape \(B, T\)"):
        ours(idx[0])
    with pytest.raises(ValueError, match="exceed the block_size"):
        ours(torch.zeros(1, 65, dtype=torch.long))


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_embd=50, n_head=6), "must be divisible by n_head"),
    (dict(n_head=6, n_kv_head=4, n_embd=48), "n_kv_head .* must divide n_head"),
    (dict(n_embd=36, n_head=4, n_kv_head=2), "must be even: RoPE rotates pairs"),
    (dict(n_layer=0), "n_layer must be a positive int"),
    (dict(rope_theta=1.0), "rope_theta must be a finite number > 1"),
    (dict(rope_theta=float("inf")), "rope_theta must be a finite number > 1, got inf"),
    (dict(rms_norm_eps=float("inf")), "rms_norm_eps must be a finite number > 0, got inf"),
    (dict(rms_norm_eps=float("nan")), "rms_norm_eps must be a finite number > 0, got nan"),
])
def test_bad_configs_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LlamaConfig(**kwargs)


def test_numpy_ints_become_python_ints():
    import numpy as np

    config = LlamaConfig(n_layer=np.int64(2), n_head=np.int32(4), n_kv_head=np.int64(2), n_embd=np.int64(32))
    assert config == LlamaConfig(n_layer=2, n_head=4, n_kv_head=2, n_embd=32)
    assert all(type(getattr(config, name)) is int for name in ("n_layer", "n_head", "n_kv_head", "n_embd"))
    with pytest.raises(ValueError, match="n_layer must be a positive int"):
        LlamaConfig(n_layer=2.0)


def test_unsupported_transformers_configs_are_refused():
    with pytest.raises(ValueError, match="attention_bias=True"):
        LlamaConfig.from_hf(tiny_hf_config(attention_bias=True))
    with pytest.raises(ValueError, match="rope_type 'linear'"):
        LlamaConfig.from_hf(tiny_hf_config(rope_parameters={"rope_type": "linear", "rope_theta": 500.0,
                                                            "factor": 2.0}))
    with pytest.raises(ValueError, match="head_dim 16"):
        LlamaConfig.from_hf(tiny_hf_config(head_dim=16))


def test_untied_output_head_is_loaded_separately():
    torch.manual_seed(1)
    hf = transformers.LlamaForCausalLM(tiny_hf_config(tie_word_embeddings=False)).eval()
    ours = load_from_transformers(hf)
    assert ours.lm_head.weight is not ours.tok_emb.weight
    assert torch.equal(ours.lm_head.weight, hf.lm_head.weight)
    idx = prompts()
    with torch.no_grad():
        torch.testing.assert_close(ours(idx), hf(idx).logits, rtol=0, atol=1e-5)


def test_a_wrong_shape_is_refused():
    torch.manual_seed(2)
    hf = transformers.LlamaForCausalLM(tiny_hf_config()).eval()
    hf.model.layers[0].self_attn.k_proj = torch.nn.Linear(48, 8, bias=False)  # one kv head's worth, not two
    with pytest.raises(ValueError, match="shape mismatch for blocks.0.attn.k_proj.weight"):
        load_from_transformers(hf)


def test_smollm2_parameter_groups_by_hand():
    with torch.device("meta"):  # shapes only, no memory
        model = Llama(LlamaConfig())
    groups = parameter_groups(model)
    per_layer_attention = 576 * 576 * 2 + 576 * (3 * 64) * 2  # q and o: C x C; k and v: C x (3 kv heads x 64)
    assert groups == {"embedding": 49152 * 576, "attention": 30 * per_layer_attention, "mlp": 30 * 3 * 576 * 1536,
                      "norms": (2 * 30 + 1) * 576, "output head": 0}  # tied head: counted with the embedding
    assert sum(groups.values()) == sum(p.numel() for p in model.parameters()) == 134_515_008


@pytest.mark.slow
@torch.no_grad()
def test_real_smollm2_logits_and_greedy_generation_equal_transformers():
    from course_utils.model.pretrained import load_smollm2

    smol = load_smollm2(verbose=False)
    hf, tokenizer = smol.model, smol.tokenizer
    ours = load_from_transformers(hf)
    assert isinstance(ours, Llama)
    assert replace(ours.config, rms_norm_eps=1e-5) == LlamaConfig()  # SmolLM2-135M is our default (eps as float32)
    tokenizer.padding_side = "left"
    batch = tokenizer(["The capital of France is", "def fibonacci(n):"], return_tensors="pt", padding=True)
    mask = batch.attention_mask
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    expected = hf(batch.input_ids, attention_mask=mask, position_ids=positions).logits
    got = ours(batch.input_ids, attention_mask=mask, position_ids=positions)
    real = mask.bool()
    torch.testing.assert_close(got[real], expected[real], rtol=0, atol=1e-4)  # measured: 0.0 on this machine
    eos = tokenizer.eos_token_id
    reference = hf.generate(batch.input_ids, attention_mask=mask, do_sample=False, max_new_tokens=20,
                            min_new_tokens=0, eos_token_id=eos, pad_token_id=eos)
    assert torch.equal(ours.generate(batch.input_ids, 20, greedy=True, eos_token_id=eos, attention_mask=mask),
                       reference)
    assert "Paris" in tokenizer.decode(reference[0, batch.input_ids.shape[1]:])


@torch.no_grad()
def test_attention_weights_of_a_left_padded_batch(pair):
    _, ours = pair
    idx, (mask, positions) = prompts(), left_padding()
    logits, attentions = ours(idx, attention_mask=mask, position_ids=positions, return_attention=True)
    real = mask.bool()
    # Two kernels (the explicit matmul-softmax that returns weights, SDPA's fused one) sum in different orders; with
    # logits of order 1-10 (initializer_range 0.3) float32 rounding left 1.3e-5 on a Zen 3 (AVX2) box, none above
    # 1e-5 on Zen 4. A mask or position bug moves logits by order 1, so 1e-4 (about 80 ulps of a logit of 10) still
    # catches it.
    torch.testing.assert_close(logits[real], ours(idx, attention_mask=mask, position_ids=positions)[real],
                               rtol=0, atol=1e-4)
    assert not logits.isnan().any()
    for weights in attentions:  # row 0's first four queries see only padding: zero weights, not NaN
        assert weights[0, :, :4].abs().max() == 0
        torch.testing.assert_close(weights[0, :, 4:].sum(-1), torch.ones(6, 7))
        assert weights[0, :, :, :4].abs().max() == 0  # no weight on padded keys


@torch.no_grad()
def test_generation_stops_once_every_row_has_ended():
    torch.manual_seed(0)
    model = Llama(LlamaConfig.from_hf(tiny_hf_config())).eval()
    model.norm_f.weight.zero_()  # all logits 0: greedy picks token 0 every time
    out = model.generate(prompts(B=2, T=4), 10, greedy=True, eos_token_id=0)
    assert out[:, 4:].tolist() == [[0], [0]]
    assert model.generate(prompts(B=2, T=4), 3, greedy=True)[:, 4:].tolist() == [[0, 0, 0], [0, 0, 0]]


def test_a_tensor_left_unused_is_refused():
    torch.manual_seed(3)
    hf = transformers.LlamaForCausalLM(tiny_hf_config()).eval()
    hf.model.register_buffer("extra", torch.zeros(2))  # a state_dict entry our model has no place for
    with pytest.raises(ValueError, match=r"left unused: \['model.extra'\]"):
        load_from_transformers(hf)


def test_generate_checks_its_prompt_ids_once(pair):
    _, ours = pair
    with pytest.raises(TypeError, match="idx must be torch.long token ids"):
        ours.generate(prompts().float(), 2, greedy=True)  # was an embedding error
    with pytest.raises(ValueError, match=r"idx must lie in \[0, 97\)"):
        ours.generate(prompts() + 200, 2, greedy=True)  # was IndexError: index out of range in self
    with pytest.raises(ValueError, match=r"idx must be a non-empty \(B, T\) tensor"):
        ours.generate(prompts().tolist(), 2, greedy=True)  # was AttributeError
    assert torch.equal(ours.generate(prompts(), np.int64(2), greedy=True), ours.generate(prompts(), 2, greedy=True))


@pytest.mark.parametrize("field, value", [("rope_theta", True), ("rope_theta", "500"), ("rms_norm_eps", True),
                                          ("rms_norm_eps", float("nan"))])
def test_llama_config_refuses_bools_strings_and_nan_in_its_real_fields(field, value):
    config = LlamaConfig.from_hf(tiny_hf_config())
    with pytest.raises(ValueError, match=f"^{field} must be a finite number > "):
        replace(config, **{field: value})
