import pytest
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
