from dataclasses import asdict

import pytest
import torch

from course_utils.cache import atomic_dir, atomic_torch_save, cache_dir, is_complete_dir
from course_utils.train.checkpoint import CorruptCheckpointError, load_checkpoint, load_or_train, save_checkpoint
from course_utils.model.gpt import GPT, GPTConfig

CONFIG = GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=8)


def test_cache_dir_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir("x") == tmp_path / "c" / "x" and (tmp_path / "c" / "x").is_dir()


def test_atomic_dir_keeps_old_contents_when_the_write_fails(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "weights.bin").write_bytes(b"good")
    assert is_complete_dir(target)
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "weights.bin").write_bytes(b"ha")
            raise RuntimeError("interrupted")
    assert (target / "weights.bin").read_bytes() == b"good" and is_complete_dir(target)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary left behind
    (target / "weights.bin").write_bytes(b"go")  # truncated behind our back
    assert not is_complete_dir(target)


def test_checkpoint_round_trip_and_corruption(tmp_path):
    torch.manual_seed(0)
    model = GPT(CONFIG)
    path = tmp_path / "ckpt.pt"
    save_checkpoint(model, path, {"val_loss": 1.5})
    loaded, extra = load_checkpoint(path)
    assert extra == {"val_loss": 1.5} and loaded.config == CONFIG
    assert model.training and not loaded.training  # saved in training mode, loaded in eval mode
    idx = torch.zeros(1, 4, dtype=torch.long)
    assert torch.equal(model.eval()(idx)[0], loaded(idx)[0])
    path.write_bytes(path.read_bytes()[:100])  # truncate
    with pytest.raises(CorruptCheckpointError, match="cannot be read"):
        load_checkpoint(path)
    atomic_torch_save({"something": "else"}, path)
    with pytest.raises(CorruptCheckpointError, match="not a course GPT checkpoint"):
        load_checkpoint(path)


def test_load_or_train_rebuilds_a_corrupt_checkpoint(tmp_path, capsys):
    path = tmp_path / "ckpt.pt"
    path.write_bytes(b"garbage")
    calls = []

    def train_fn():
        calls.append(1)
        return GPT(CONFIG), {"n": len(calls)}

    _, extra, trained = load_or_train(path, train_fn, CONFIG)
    assert trained and extra == {"n": 1} and "training afresh" in capsys.readouterr().out
    _, extra, trained = load_or_train(path, train_fn, CONFIG)
    assert not trained and extra == {"n": 1}
    other = GPTConfig(vocab_size=6, block_size=4, n_layer=1, n_head=1, n_embd=8)
    _, _, trained = load_or_train(path, lambda: (GPT(other), {}), other)
    assert trained


def test_a_failed_atomic_write_keeps_the_old_file(tmp_path):
    from course_utils.cache import atomic_file, atomic_write_text

    target = tmp_path / "result.json"
    atomic_write_text("old", target)
    with pytest.raises(RuntimeError):
        with atomic_file(target, "w") as f:
            f.write("half of the new")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_atomic_files_get_ordinary_permissions(tmp_path):
    import os
    import stat

    from course_utils.cache import atomic_write_text

    previous = os.umask(0o022)
    try:
        atomic_write_text("page", tmp_path / "index.html")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "index.html").stat().st_mode) == 0o644


def test_an_extra_the_safe_load_would_refuse_fails_at_save_time(tmp_path):
    import dataclasses

    import numpy as np

    @dataclasses.dataclass
    class Stats:
        loss: float

    path = tmp_path / "ckpt.pt"
    model = GPT(CONFIG)
    for bad in (np.float64(1.5), np.float32(1.5), np.int64(3), np.zeros(2), Stats(1.5)):
        with pytest.raises(TypeError, match=r"extra\['val_loss'\].*float\(x\)"):
            save_checkpoint(model, path, {"val_loss": bad, "steps": 10})
        assert list(tmp_path.iterdir()) == []  # nothing written, no temporary left behind
    plain = {"val_loss": 1.5, "steps": 10, "curve": [2.0, 1.5], "name": "x", "w": torch.ones(2), "none": None,
             "pair": (1, 2), "nested": {"a": [1]}}
    save_checkpoint(model, path, plain)
    good = path.read_bytes()
    with pytest.raises(TypeError, match="val_loss"):
        save_checkpoint(model, path, {"val_loss": np.float64(1.0)})
    assert path.read_bytes() == good  # the readable checkpoint is untouched
    _, extra = load_checkpoint(path)
    assert extra["curve"] == [2.0, 1.5] and torch.equal(extra["w"], torch.ones(2)) and extra["pair"] == (1, 2)
    with pytest.raises(TypeError, match="val_loss"):  # through load_or_train too: the error, not a silent file
        load_or_train(tmp_path / "other.pt", lambda: (GPT(CONFIG), {"val_loss": np.float64(1.5)}), CONFIG)
    assert not (tmp_path / "other.pt").exists()


def test_load_or_train_never_replaces_an_intact_file_the_safe_load_refuses(tmp_path):
    import numpy as np

    from course_utils.train.checkpoint import FORMAT, UnsafeCheckpointError

    path = tmp_path / "ckpt.pt"
    model = GPT(CONFIG)
    old_style = {"format": FORMAT, "config": asdict(CONFIG), "state_dict": model.state_dict(),
                 "extra": {"val_loss": np.float64(1.5)}}  # what the unchecked save used to write
    atomic_torch_save(old_style, path)
    before = path.read_bytes()
    with pytest.raises(UnsafeCheckpointError, match="numpy"):
        load_checkpoint(path)
    calls = []
    for _ in range(2):
        with pytest.raises(UnsafeCheckpointError, match="move or delete it"):
            load_or_train(path, lambda: calls.append(1) or (GPT(CONFIG), {}), CONFIG)
    assert calls == [] and path.read_bytes() == before  # not retrained, not overwritten


@pytest.mark.parametrize("damage", ["unknown config key", "invalid config", "missing weight", "wrong shape",
                                    "no extra", "config not a dict"])
def test_a_checkpoint_that_does_not_build_the_model_counts_as_corrupt(tmp_path, damage, capsys):
    from course_utils.train.checkpoint import FORMAT

    path = tmp_path / "ckpt.pt"
    state = GPT(CONFIG).state_dict()
    payload = {"format": FORMAT, "config": asdict(CONFIG), "state_dict": dict(state), "extra": {}}
    if damage == "unknown config key":
        payload["config"]["n_experts"] = 4
    elif damage == "invalid config":
        payload["config"]["n_head"] = 3  # 8 is not divisible by 3
    elif damage == "missing weight":
        payload["state_dict"].pop(next(iter(state)))
    elif damage == "wrong shape":
        key = next(k for k, v in state.items() if v.dim() == 2)
        payload["state_dict"][key] = torch.zeros(1, 1)
    elif damage == "no extra":
        del payload["extra"]
    else:
        payload["config"] = [1, 2]
    atomic_torch_save(payload, path)
    with pytest.raises(CorruptCheckpointError, match="does not hold a loadable course GPT"):
        load_checkpoint(path)
    _, extra, trained = load_or_train(path, lambda: (GPT(CONFIG), {"fresh": True}), CONFIG)
    assert trained and extra == {"fresh": True} and "training afresh" in capsys.readouterr().out
    assert load_checkpoint(path)[1] == {"fresh": True}


def test_recipe_key_is_short_stable_and_changes_with_the_recipe():
    import hashlib

    from course_utils.train.checkpoint import recipe_key

    key = recipe_key(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=1, n_embd=8), 32, 0)
    assert len(key) == 12 and set(key) <= set("0123456789abcdef")
    assert key == recipe_key(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=1, n_embd=8), 32, 0)
    assert key != recipe_key(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=1, n_embd=8), 32, 1)
    # the digest of the parts' repr, as chapter 06 named its cache before the helper (its file names are unchanged)
    assert recipe_key("a", 1) == hashlib.sha256(repr(("a", 1)).encode()).hexdigest()[:12]


def test_an_atomic_dir_with_no_files_is_not_complete(tmp_path):
    target = tmp_path / "empty"
    with atomic_dir(target):
        pass  # nothing written: an empty manifest must not count as a finished download or build
    assert (target / "COMPLETE.json").exists() and not is_complete_dir(target)


def test_load_or_train_refuses_a_config_of_another_type_before_touching_the_checkpoint(tmp_path):
    import dataclasses

    path = tmp_path / "model.pt"
    save_checkpoint(GPT(CONFIG), path, {"note": "trained for hours"})
    before = path.read_bytes()
    with pytest.raises(TypeError, match="expected_config must be a GPTConfig or None, got dict"):
        load_or_train(path, lambda: (GPT(CONFIG), {"note": "retrained"}), dataclasses.asdict(CONFIG))
    assert path.read_bytes() == before  # the dict used to compare unequal: retrained and overwritten


def test_cache_dir_stays_inside_the_cache(tmp_path, monkeypatch):
    from course_utils.cache import cache_dir

    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))
    assert cache_dir("scaling", "sweep") == tmp_path / "cache" / "scaling" / "sweep"
    for bad in ("..", "a/../../b", str(tmp_path / "elsewhere"), "", None):
        with pytest.raises(ValueError, match="relative folder names inside the cache"):
            cache_dir("rag", bad)
    assert not (tmp_path / "elsewhere").exists()
