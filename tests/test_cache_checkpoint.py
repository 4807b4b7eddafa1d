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
