import json

import pytest
import torch

from course_utils.model import pretrained
from course_utils.assets import asset_path
from course_utils.cache import MANIFEST, is_complete_dir


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


def test_a_cache_converted_by_other_library_versions_is_rebuilt(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    tiny, stand_in = _tiny_llama_and_tokenizer()
    conversions = []
    monkeypatch.setattr(pretrained, "_from_gguf", lambda gguf: conversions.append(gguf) or (tiny, stand_in))
    pretrained.load_smollm2()
    stamp = pretrained.smollm2_cache_path() / pretrained.CONVERTED_WITH
    assert json.loads(stamp.read_text()) == pretrained.converter_versions()
    assert set(pretrained.converter_versions()) == {"transformers", "gguf", "tokenizers"}
    assert pretrained.load_smollm2().source == "cache" and len(conversions) == 1

    now = pretrained.converter_versions()
    monkeypatch.setattr(pretrained, "converter_versions", lambda: now | {"transformers": "99.0"})  # an upgrade
    capsys.readouterr()
    assert len(pretrained.load_smollm2_tokenizer()) == 49152  # the GGUF file's, not the stale cache's stand-in
    said = capsys.readouterr().out
    assert f"transformers {now['transformers']} -> 99.0" in said and "from the GGUF file" in said
    assert pretrained.load_smollm2().source == "gguf" and len(conversions) == 2
    assert "rebuilding" in capsys.readouterr().out
    assert json.loads(stamp.read_text())["transformers"] == "99.0"
    assert pretrained.load_smollm2().source == "cache" and len(conversions) == 2

    stamp.unlink()  # a cache made before the versions were recorded: complete, without the stamp
    manifest = stamp.parent / MANIFEST
    manifest.write_text(json.dumps({k: v for k, v in json.loads(manifest.read_text()).items() if k != stamp.name}))
    assert is_complete_dir(stamp.parent)
    assert pretrained.load_smollm2().source == "gguf" and "records no library versions" in capsys.readouterr().out


SMOL_PROBES = ["The capital of France is", " goblinmode naïve 🤖", "To be, or not to be:\n\tthat is 2024!"]


def _smol_ids(tokenizer):
    return [tokenizer(s, add_special_tokens=False)["input_ids"] for s in SMOL_PROBES]


def test_smollm2_tokenizer_alone_gives_load_smollm2s_ids_without_converting(tmp_path, monkeypatch, capsys):
    from transformers import AutoTokenizer

    real_cache = pretrained.smollm2_cache_path()  # the course cache, when an earlier run converted the model
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))

    def no_conversion(gguf):
        raise AssertionError("the tokenizer alone must not convert the model")

    monkeypatch.setattr(pretrained, "_from_gguf", no_conversion)
    from_gguf = pretrained.load_smollm2_tokenizer()  # no cache here: read from the GGUF file
    assert len(from_gguf) == 49152 and not pretrained.smollm2_cache_path().exists()

    # load_smollm2 writes its cache as usual; a tiny model stands in for the 135M one, so nothing is converted
    tiny, _ = _tiny_llama_and_tokenizer()
    monkeypatch.setattr(pretrained, "_from_gguf", lambda gguf: (tiny, pretrained._gguf_tokenizer(gguf)))
    converted = pretrained.load_smollm2()
    cached = pretrained.load_smollm2()
    assert converted.source == "gguf" and cached.source == "cache"
    monkeypatch.setattr(pretrained, "_gguf_tokenizer", no_conversion)  # a complete cache is read, not the GGUF
    from_cache = pretrained.load_smollm2_tokenizer()
    assert _smol_ids(from_gguf) == _smol_ids(converted.tokenizer) == _smol_ids(cached.tokenizer) == \
        _smol_ids(from_cache)
    assert _smol_ids(from_gguf)[1] != _smol_ids(from_gguf)[2]  # the probes are not all the same ids
    if is_complete_dir(real_cache):  # what load_smollm2 returns on this machine, when converted by a real run
        assert _smol_ids(AutoTokenizer.from_pretrained(real_cache)) == _smol_ids(from_gguf)


def test_smollm2_tokenizer_alone_falls_back_to_the_gguf_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    tiny, stand_in = _tiny_llama_and_tokenizer()  # MiniLM's tokenizer in the cache: easy to tell from SmolLM2's
    monkeypatch.setattr(pretrained, "_from_gguf", lambda gguf: (tiny, stand_in))
    pretrained.load_smollm2()
    assert len(pretrained.load_smollm2_tokenizer()) == len(stand_in) != 49152  # the cache is read when complete

    monkeypatch.setattr(pretrained, "_from_gguf", None)  # never converts the model
    (path,) = pretrained.smollm2_cache_path().glob("tokenizer.json")
    path.write_text(path.read_text()[:100])  # a truncated write
    capsys.readouterr()
    assert len(pretrained.load_smollm2_tokenizer()) == 49152 and "incomplete" in capsys.readouterr().out

    pretrained.shutil.rmtree(pretrained.smollm2_cache_path())
    monkeypatch.setattr(pretrained, "_from_gguf", lambda gguf: (tiny, stand_in))
    pretrained.load_smollm2()
    (path,) = pretrained.smollm2_cache_path().glob("tokenizer.json")
    path.write_bytes(b"\0" * path.stat().st_size)  # same size, garbage content: detected when loading
    tokenizer = pretrained.load_smollm2_tokenizer()
    assert len(tokenizer) == 49152 and "failed to load" in capsys.readouterr().out
    assert pretrained.smollm2_cache_path().exists()  # left for load_smollm2 to rebuild when the model is needed


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


def test_minilm_truncates_long_inputs_at_sentence_transformers_256_tokens():
    loaded = pretrained.load_minilm()
    config = json.loads((asset_path("minilm") / "sentence_bert_config.json").read_text())
    assert config["max_seq_length"] == 256 and loaded.tokenizer.model_max_length == 512  # the two limits differ
    head = " ".join(f"word{i % 50}" for i in range(150))  # between 256 and 512 tokens
    assert 256 < len(loaded.tokenizer(head)["input_ids"]) < 500
    a, b = pretrained.embed_sentences(loaded, [head + " lighthouse keeper", head + " stock market crash"])
    assert torch.allclose(a, b)  # the endings differ only after token 256: cut off, as sentence-transformers does
    ids = loaded.tokenizer([head], truncation=True, max_length=256, return_tensors="pt")  # by hand: 256 tokens
    assert ids["input_ids"].shape[1] == 256
    with torch.no_grad():
        hidden = loaded.model(**ids).last_hidden_state
    by_hand = torch.nn.functional.normalize(pretrained.mean_pool(hidden, ids["attention_mask"]), dim=-1)[0]
    torch.testing.assert_close(a, by_hand, atol=1e-5, rtol=0)
    short_a, short_b = pretrained.embed_sentences(loaded, ["word1 lighthouse keeper", "word1 stock market crash"])
    assert not torch.allclose(short_a, short_b)  # within 256 tokens the endings still count


def test_mean_pool_by_hand():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])  # (1, 3, 2); last position is padding
    mask = torch.tensor([[1, 1, 0]])
    assert torch.equal(pretrained.mean_pool(hidden, mask), torch.tensor([[2.0, 3.0]]))
    with pytest.raises(ValueError, match="attention_mask"):
        pretrained.mean_pool(hidden, torch.ones(1, 2))


def test_a_gguf_tokenizer_without_a_padding_token_is_refused_with_the_fix(monkeypatch):
    # transformers 5.17 (the version the one lent GPU machine had) reads SmolLM2's GGUF tokenizer with no padding token,
    # and a batch collated with pad_id None failed far from the cause; the loader now names the version floor
    import transformers

    class NoPad:
        pad_token_id = None

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *args, **kwargs: NoPad())
    with pytest.raises(RuntimeError, match=r"without a padding token.*transformers>=5\.18"):
        pretrained._gguf_tokenizer(asset_path("smollm2"))
    monkeypatch.undo()  # the real file, under this environment's transformers (>= 5.18), has one
    assert pretrained._gguf_tokenizer(asset_path("smollm2")).pad_token_id is not None
