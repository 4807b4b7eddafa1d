import pytest
import numpy as np
import torch
import torch.nn.functional as F

from course_utils.model.gpt import GPT, GPTConfig

TINY = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16)


def make(config=TINY, seed=0):
    torch.manual_seed(seed)
    return GPT(config).eval()


def test_shapes_and_loss_at_init_is_near_uniform():
    model = make(GPTConfig(**{**TINY.__dict__, "tie_weights": False}))  # small untied head => near-uniform
    idx = torch.randint(0, 11, (3, 8), generator=torch.Generator().manual_seed(0))
    logits, loss = model(idx, idx)
    assert logits.shape == (3, 8, 11)
    assert abs(loss.item() - torch.log(torch.tensor(11.0)).item()) < 0.05


def test_default_mask_is_causal_and_equals_explicit_causal_mask():
    model = make()
    idx = torch.randint(0, 11, (2, 8), generator=torch.Generator().manual_seed(1))
    causal = torch.tril(torch.ones(8, 8, dtype=torch.bool))
    assert torch.allclose(model(idx)[0], model(idx, attn_mask=causal)[0], atol=1e-6)
    # changing a future token leaves earlier logits unchanged
    changed = idx.clone()
    changed[:, 5] = (changed[:, 5] + 1) % 11
    assert torch.allclose(model(idx)[0][:, :5], model(changed)[0][:, :5], atol=1e-6)
    assert not torch.allclose(model(idx)[0][:, 5:], model(changed)[0][:, 5:], atol=1e-6)
    # a bidirectional mask lets the future leak back
    full = torch.ones(8, 8, dtype=torch.bool)
    assert not torch.allclose(model(idx, attn_mask=full)[0][:, :5], model(changed, attn_mask=full)[0][:, :5])


def test_ignore_index_restricts_the_loss():
    model = make()
    idx = torch.randint(0, 11, (1, 8), generator=torch.Generator().manual_seed(2))
    targets = torch.full_like(idx, -100)
    targets[0, 3] = 4
    logits, loss = model(idx, targets)
    assert torch.allclose(loss, F.cross_entropy(logits[0, 3:4], torch.tensor([4])))


def test_weight_tying_and_parameter_count():
    tied, untied = make(), make(GPTConfig(**{**TINY.__dict__, "tie_weights": False}))
    assert tied.lm_head.weight is tied.tok_emb.weight
    assert untied.num_parameters(non_embedding=False) - tied.num_parameters(non_embedding=False) == 11 * 16
    per_block = 12 * 16 * 16 + 13 * 16  # 4 C^2 attention + 8 C^2 MLP weights, plus biases and LayerNorms
    assert tied.num_parameters() == 2 * per_block + 2 * 16  # blocks + final LayerNorm; the tied matrix is out
    assert tied.num_parameters(non_embedding=False) == tied.num_parameters() + 11 * 16 + 8 * 16  # + tok + pos once
    assert untied.num_parameters() == tied.num_parameters() + 11 * 16  # the untied output head stays counted


@pytest.mark.parametrize("kwargs,match", [
    ({"n_embd": 10, "n_head": 3}, "divisible"),
    ({"vocab_size": 0}, "positive int"),
    ({"dropout": 1.0}, "dropout"),
])
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GPTConfig(**kwargs)


def test_forward_input_validation():
    model = make()
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        model(torch.zeros(8, dtype=torch.long))
    with pytest.raises(TypeError, match="boolean"):
        model(torch.zeros(1, 8, dtype=torch.long), attn_mask=torch.zeros(8, 8))
    with pytest.raises(ValueError, match="shape"):
        model(torch.zeros(1, 8, dtype=torch.long), attn_mask=torch.ones(7, 7, dtype=torch.bool))


def test_generate_is_seeded_and_validates():
    model = make()
    start = torch.zeros(2, 1, dtype=torch.long)
    a = model.generate(start, 12, generator=torch.Generator().manual_seed(3))
    b = model.generate(start, 12, generator=torch.Generator().manual_seed(3))
    assert a.shape == (2, 13) and torch.equal(a, b)  # longer than block_size: the context is cropped
    greedy = model.generate(start, 4, greedy=True)
    assert torch.equal(greedy, model.generate(start, 4, greedy=True))
    with pytest.raises(ValueError, match="temperature"):
        model.generate(start, 2, temperature=0.0)


def _pair(config=TINY, seed=0):
    """The same weights under both attention implementations."""
    sdpa = make(GPTConfig(**{**config.__dict__, "attention": "sdpa"}), seed)
    manual = make(GPTConfig(**{**config.__dict__, "attention": "manual"}), seed)
    manual.load_state_dict(sdpa.state_dict())
    return sdpa, manual


def _masks(B=3, T=8):
    g = torch.Generator().manual_seed(5)
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    padded = causal.expand(B, T, T).clone()  # (B, T, T)
    padded[0, :, :2] = False  # left padding in sequence 0: rows 0 and 1 have every key blocked
    return {
        "none (causal)": None,
        "(T, T) bidirectional": torch.ones(T, T, dtype=torch.bool),
        "(T, T) random": torch.rand(T, T, generator=g) < 0.6,
        "(B, T, T) padded": padded,
        "(B, 1, T, T) random": torch.rand(B, 1, T, T, generator=g) < 0.5,
        "(1, 1, T, T) causal": causal[None, None],
    }


@pytest.mark.parametrize("name", list(_masks()))
def test_manual_attention_equals_sdpa_for_every_mask_shape(name):
    sdpa, manual = _pair()
    mask = _masks()[name]
    idx = torch.randint(0, 11, (3, 8), generator=torch.Generator().manual_seed(4))
    a, b = sdpa(idx, attn_mask=mask)[0], manual(idx, attn_mask=mask)[0]  # (B, T, V)
    assert torch.isfinite(b).all()  # rows with every key blocked give zeros, not NaN, as in SDPA
    assert torch.allclose(a, b, atol=1e-6, rtol=0)


def test_manual_attention_equals_sdpa_forward_and_backward():
    sdpa, manual = _pair()
    idx = torch.randint(0, 11, (4, 8), generator=torch.Generator().manual_seed(6))
    targets = torch.randint(0, 11, (4, 8), generator=torch.Generator().manual_seed(7))
    for model in (sdpa, manual):
        model.train()
        model.zero_grad()
        model(idx, targets)[1].backward()
    assert torch.allclose(sdpa(idx, targets)[1], manual(idx, targets)[1], atol=1e-6)
    for (name, p), q in zip(sdpa.named_parameters(), manual.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6, rtol=1e-5), name


def test_manual_attention_dropout_is_active_in_training_only():
    config = GPTConfig(**{**TINY.__dict__, "dropout": 0.5, "attention": "manual"})
    model = make(config)
    idx = torch.randint(0, 11, (2, 8), generator=torch.Generator().manual_seed(8))
    assert torch.equal(model(idx)[0], model(idx)[0])  # eval: deterministic
    model.train()
    torch.manual_seed(0)
    assert not torch.equal(model(idx)[0], model(idx)[0])  # training: weights dropped at random


def test_attention_implementation_is_validated():
    with pytest.raises(ValueError, match=r"attention must be one of \['manual', 'sdpa'\]"):
        GPTConfig(attention="flash")


def test_generate_requires_a_generator_to_sample_and_checks_its_prompt_once():
    import numpy as np

    model = make()
    start = torch.zeros(2, 1, dtype=torch.long)
    with pytest.raises(ValueError, match="explicit torch.Generator"):
        model.generate(start, 3)  # would have drawn from the global generator
    assert model.generate(start, 3, greedy=True).shape == (2, 4)  # greedy needs none
    g = torch.Generator().manual_seed(3)
    assert torch.equal(model.generate(start, np.int64(3), generator=g),
                       model.generate(start, 3, generator=torch.Generator().manual_seed(3)))
    for bad in (0, -1, 2.5, True, "3", None):
        with pytest.raises(ValueError, match="max_new_tokens must be an int >= 1"):
            model.generate(start, bad, greedy=True)
    for bad in (torch.zeros(1, 0, dtype=torch.long), torch.zeros(3, dtype=torch.long), [[1, 2]]):
        with pytest.raises(ValueError, match="non-empty"):
            model.generate(bad, 2, greedy=True)
    with pytest.raises(TypeError, match="torch.long"):
        model.generate(torch.zeros(1, 2), 2, greedy=True)
    for bad in (11, 12, -1):  # vocab_size is 11
        with pytest.raises(ValueError, match=r"\[0, 11\)"):
            model.generate(torch.tensor([[1, bad, 2]]), 2, greedy=True)
    assert model.generate(torch.tensor([[0, 10]]), 1, greedy=True).shape == (1, 3)  # both ends of the range


def test_gpt2_initialisation_scales_the_residual_projections():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, block_size=8, n_layer=8, n_head=4, n_embd=64))
    for block in model.blocks:  # std 0.02, and 0.02 / sqrt(2 * n_layer) = 0.005 on the two residual projections
        assert block.mlp.fc.weight.std().item() == pytest.approx(0.02, rel=0.1)
        assert block.mlp.proj.weight.std().item() == pytest.approx(0.005, rel=0.1)
        assert block.attn.proj.weight.std().item() == pytest.approx(0.005, rel=0.15)


def test_generate_restores_the_training_mode():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=1, n_embd=8))
    for training in (True, False):
        model.train(training)
        model.generate(torch.zeros(1, 2, dtype=torch.long), 3, greedy=True)
        assert model.training is training


def test_config_accepts_numpy_integers_as_python_ints():
    # a grid built with numpy (np.arange, np.int64 sizes) gave 'must be a positive int, got np.int64(64)'
    config = GPTConfig(vocab_size=np.int64(11), block_size=np.int32(8), n_layer=np.int64(1), n_head=np.int64(2),
                       n_embd=np.int64(16))
    assert all(type(getattr(config, name)) is int
               for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"))
    assert type(config.head_size) is int and config.head_size == 8
    with pytest.raises(ValueError, match="n_layer must be a positive integer"):
        GPTConfig(n_layer=2.0)


@pytest.mark.parametrize("bad", [1e-45, 1e-5, float("nan"), float("inf")])
def test_generate_refuses_a_temperature_that_overflows(bad):
    # 1e-45 passed the old 'temperature > 0' check and turned logits / temperature into inf (multinomial then failed)
    model, start = make(), torch.zeros(1, 2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"temperature must be a finite number >= 1e-4.*greedy=True"):
        model.generate(start, 2, generator=torch.Generator().manual_seed(0), temperature=bad)
    out = model.generate(start, 2, generator=torch.Generator().manual_seed(0), temperature=np.float64(1e-4))
    assert out.shape == (1, 4)
    # float32's 1e-4 is 9.99999975e-05, below the limit under numpy 1.x and 2 alike (numpy 2 alone had let it pass)
    with pytest.raises(ValueError, match=r"got (np.float32\()?1e-04\)? \(= 9.99999974\d*e-05\)"):
        model.generate(start, 2, generator=torch.Generator().manual_seed(0), temperature=np.float32(1e-4))
    assert model.generate(start, 2, generator=torch.Generator().manual_seed(0), temperature=np.float32(0.5)).shape \
        == (1, 4)


def test_generate_refuses_an_empty_batch_clearly():
    model = make()
    with pytest.raises(ValueError, match=r"idx must be a non-empty \(B, T\) tensor .* B and T >= 1, got \(0, 3\)"):
        model.generate(torch.zeros(0, 3, dtype=torch.long), 2, greedy=True)  # was RuntimeError from min()


@pytest.mark.parametrize("dropout", [True, "0.1", float("nan")])
def test_gpt_config_refuses_a_dropout_that_is_not_a_probability(dropout):
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        GPTConfig(dropout=dropout)
