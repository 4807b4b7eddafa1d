import pytest
import torch

from course_utils.model import pretrained
from course_utils.assets import asset_path
from course_utils.cache import is_complete_dir


def test_smollm2_is_a_real_causal_lm():
    loaded = pretrained.load_smollm2(verbose=False)
    tok = loaded.tokenizer
    ids = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        logits = loaded.model(**ids).logits
    assert logits.shape == (1, ids["input_ids"].shape[1], 49152)
    out = loaded.model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids["input_ids"].shape[1]:])


def _tiny_llama_and_tokenizer():
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(asset_path("minilm"))
    config = LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, intermediate_size=32,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)
    torch.manual_seed(0)
    return LlamaForCausalLM(config), tokenizer


def test_cache_is_written_atomically_and_rebuilt_when_corrupt(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    conversions = []

    def fake_convert(gguf):
        conversions.append(gguf)
        return _tiny_llama_and_tokenizer()

    monkeypatch.setattr(pretrained, "_from_gguf", fake_convert)
    first = pretrained.load_smollm2()
    assert first.source == "gguf" and is_complete_dir(pretrained.smollm2_cache_path())
    second = pretrained.load_smollm2()
    assert second.source == "cache" and len(conversions) == 1
    ids = torch.tensor([[1, 2, 3]])
    assert torch.equal(first.model(input_ids=ids).logits, second.model(input_ids=ids).logits)

    weights = next(pretrained.smollm2_cache_path().glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a truncated write
    capsys.readouterr()
    third = pretrained.load_smollm2()
    assert third.source == "gguf" and len(conversions) == 2
    assert "incomplete" in capsys.readouterr().out and is_complete_dir(pretrained.smollm2_cache_path())

    size = weights.stat().st_size  # same size, garbage content: detected when loading
    weights.write_bytes(b"\0" * size)
    fourth = pretrained.load_smollm2()
    assert fourth.source == "gguf" and "failed to load" in capsys.readouterr().out


def test_minilm_embeddings_rank_paraphrases_first():
    loaded = pretrained.load_minilm()
    emb = pretrained.embed_sentences(loaded, ["A man is playing a guitar.", "Someone plays an instrument.",
                                              "The stock market fell sharply today."])
    assert emb.shape == (3, 384)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(3), atol=1e-5)
    sims = emb @ emb.T
    assert sims[0, 1] > sims[0, 2] + 0.3
    with pytest.raises(TypeError, match="sequence of strings"):
        pretrained.embed_sentences(loaded, "one sentence")
    with pytest.raises(ValueError, match="empty"):
        pretrained.embed_sentences(loaded, [])


def test_mean_pool_by_hand():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])  # (1, 3, 2); last position is padding
    mask = torch.tensor([[1, 1, 0]])
    assert torch.equal(pretrained.mean_pool(hidden, mask), torch.tensor([[2.0, 3.0]]))
    with pytest.raises(ValueError, match="attention_mask"):
        pretrained.mean_pool(hidden, torch.ones(1, 2))
