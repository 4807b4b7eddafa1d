"""The Colab set-up: one repository URL, the same first cell in every notebook, and a fresh runtime simulated."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import types

import pytest

from course_utils.delivery import colab
from course_utils.delivery.chapters import notebook_filenames
from course_utils.optional import PEFT

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def first_code_cell(path):
    nb = json.loads(path.read_text())
    return "".join(next(c for c in nb["cells"] if c["cell_type"] == "code")["source"])


def test_every_notebook_starts_with_the_setup_cell_written_from_pyproject():
    stale = colab.write_setup_cells(NOTEBOOKS, check=True)
    assert not stale, (f"stale set-up cell in {[p.name for p in stale]}: run "
                       "`python -m course_utils.delivery.colab --write-cells`")
    url = colab.repository_url()
    assert url.startswith("https://github.com/")
    for path in NOTEBOOKS:
        assert f'COURSE_REPOSITORY = "{url}"' in first_code_cell(path)
        # the URL appears nowhere else in the notebook: one configured place, one generated copy
        assert path.read_text().count(url) == 1, f"{path.name} repeats the repository URL"


def test_check_mode_finds_a_stale_cell_and_write_mode_fixes_it(tmp_path):
    path = tmp_path / NOTEBOOKS[0].name
    shutil.copy(NOTEBOOKS[0], path)
    other = "https://github.com/someone/fork"
    assert colab.write_setup_cells([path], repository=other, check=True) == [path]
    assert first_code_cell(path) == colab.setup_cell_source()  # check mode wrote nothing
    colab.write_setup_cells([path], repository=other)
    assert f'"{other}"' in first_code_cell(path)
    assert colab.write_setup_cells([path], repository=other, check=True) == []


def test_repository_url_comes_from_pyproject(tmp_path):
    good = tmp_path / "pyproject.toml"
    good.write_text('[project]\nname = "x"\n[project.urls]\nRepository = "https://github.com/a/b"\n')
    assert colab.repository_url(good) == "https://github.com/a/b"
    bad = tmp_path / "bad.toml"
    bad.write_text('[project]\nname = "x"\n')
    with pytest.raises(LookupError, match="Repository"):
        colab.repository_url(bad)


def test_repository_url_falls_back_to_the_installed_metadata(tmp_path, monkeypatch):
    import importlib.metadata

    urls = ["Homepage, https://example.org", "Repository, https://github.com/a/b "]
    monkeypatch.setattr(importlib.metadata, "metadata",
                        lambda name: types.SimpleNamespace(get_all=lambda key: urls if key == "Project-URL" else None))
    no_checkout = tmp_path / "pyproject.toml"  # absent: an installed (not editable) package
    assert colab.repository_url(no_checkout) == "https://github.com/a/b"
    urls.pop()
    with pytest.raises(LookupError, match="metadata"):
        colab.repository_url(no_checkout)


def test_repository_url_without_a_checkout_or_an_installed_package_is_a_lookup_error(tmp_path, monkeypatch):
    import importlib.metadata

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "metadata", not_installed)  # was PackageNotFoundError, not LookupError
    with pytest.raises(LookupError, match="not installed.*pip install -e"):
        colab.repository_url(tmp_path / "pyproject.toml")


def test_colab_links():
    url = colab.colab_url("01_language_modelling.ipynb", "https://github.com/owner/course.git")
    assert url == ("https://colab.research.google.com/github/owner/course/blob/main/notebooks/"
                   "01_language_modelling.ipynb")
    assert colab.colab_url("02_attention_masks.ipynb", "https://github.com/o/r", branch="dev").endswith(
        "/o/r/blob/dev/notebooks/02_attention_masks.ipynb")
    assert colab.colab_url("02_attention_masks.ipynb", "https://github.com/o/r/") == colab.colab_url(
        "02_attention_masks.ipynb", "https://github.com/o/r")  # a trailing slash, as a browser copies it
    with pytest.raises(ValueError, match="GitHub"):
        colab.colab_url("01_language_modelling.ipynb", "https://gitlab.com/o/r")
    with pytest.raises(ValueError, match="file name"):
        colab.colab_url("notebooks/01_language_modelling.ipynb", "https://github.com/o/r")
    for name in notebook_filenames():
        assert colab.colab_url(name).endswith(name)


def test_missing_requirements_keep_colabs_torch_and_widgets():
    versions = {"torch": "2.1.0", "ipywidgets": "7.7.1", "numpy": "2.0.2", "gguf": None, "tiktoken": "0.5.0"}
    got = colab.missing_requirements(["torch>=2.4", "ipywidgets>=8.1", "numpy>=1.26", "gguf>=0.10", "tiktoken>=0.8"],
                                     versions.get)
    assert got == ["gguf>=0.10", "tiktoken>=0.8"]  # torch and ipywidgets are Colab's, never reinstalled
    markers = ["tomli>=1.1; python_version < '3.0'", "regex>=2023.0; python_version >= '3.0'"]
    assert colab.missing_requirements(markers, lambda name: None) == markers[1:]  # a requirement for another Python
    assert colab.missing_requirements(["Torch>=2.4", "IPyWidgets>=8.1"], lambda name: None) == []  # names as PyPI
    assert colab.missing_requirements(["pyyaml>=6"], lambda name: None, keep=("PyYAML",)) == []
    assert colab.missing_requirements(["tokenizers>=0.21"], {"tokenizers": "0.22.0rc1"}.get) == []  # a pre-release


def test_setup_commands_install_the_package_alone_when_nothing_is_missing():
    assert colab.setup_commands("llm-course", [], "c.txt", python="py") == [
        ["py", "-m", "pip", "install", "--quiet", "--no-deps", "-e", "llm-course"]]
    assert colab.setup_commands("llm-course", ["gguf>=0.10"], "c.txt", python="py")[1] == [
        "py", "-m", "pip", "install", "--quiet", "-c", "c.txt", "gguf>=0.10"]


def fake_repo(tmp_path):
    repo = tmp_path / colab.CLONE_DIR
    repo.mkdir()
    shutil.copy(ROOT / "pyproject.toml", repo / "pyproject.toml")
    return repo


def test_kept_packages_below_the_tested_range_are_named():
    requirements = ["torch>=2.9.0", "numpy>=1.26.0", "ipywidgets>=8.1.0"]
    assert colab.untested_kept(requirements, {"torch": "2.9.0+cu126", "ipywidgets": "8.1.5"}) == []
    assert colab.untested_kept(requirements, {"Torch": "2.8.0+cu126"}) == [
        "Torch 2.8.0+cu126 (the course is tested with Torch>=2.9.0)"]
    assert colab.untested_kept(requirements, {"scipy": "1.0"}) == []  # not a requirement: nothing to say


def test_prepare_colab_installs_only_what_is_missing_and_pins_torch(tmp_path, capsys):
    repo = fake_repo(tmp_path)
    ran = []
    versions = {"torch": "2.8.0+cu126", "ipywidgets": "7.7.1", "numpy": "2.0.2"}
    environ = {}
    setup = colab.prepare_colab(str(repo), run=lambda cmd, check: ran.append(cmd), environ=environ,
                                cuda_available=True, installed_version=versions.get)
    assert setup.commands == ran and len(ran) == 2
    assert ran[0][-3:] == ["--no-deps", "-e", str(repo)]
    assert "-c" in ran[1]
    installed = ran[1][ran[1].index("-c") + 2:]
    assert not any(r.startswith(("torch", "ipywidgets", "numpy")) for r in installed)
    assert any(r.startswith("faiss-cpu") for r in installed) and any(r.startswith("gguf") for r in installed)
    constraints = pathlib.Path(ran[1][ran[1].index("-c") + 1]).read_text()
    assert "torch==2.8.0+cu126" in constraints and "ipywidgets==7.7.1" in constraints
    assert (setup.profile, environ["COURSE_PROFILE"]) == ("gpu", "gpu")
    said = capsys.readouterr().out  # kept, but named: both are older than the versions the course is tested with
    assert "note: Colab's torch 2.8.0+cu126 (the course is tested with torch>=" in said
    assert "note: Colab's ipywidgets 7.7.1" in said and "numpy" not in said.split("kept;")[1]


def test_prepare_colab_upgrades_an_old_preinstalled_peft_and_installs_no_absent_one(tmp_path, capsys):
    # Colab ships its own peft (0.15 in 2025); below 0.19 it does not import under transformers 5 (HybridCache)
    repo = fake_repo(tmp_path)
    current = {"torch": "2.9.0+cu126", "ipywidgets": "8.1.5"}
    for peft, upgraded in ((None, False), ("0.15.1", True), ("0.21.0", False)):
        ran = []
        versions = {**current, **({"peft": peft} if peft else {})}
        colab.prepare_colab(str(repo), run=lambda cmd, check: ran.append(cmd), environ={}, cuda_available=True,
                            installed_version=versions.get)
        installed = ran[1][ran[1].index("-c") + 2:]
        assert (PEFT in installed) is upgraded, (peft, installed)
    assert "missing or outdated requirement(s) installed" in capsys.readouterr().out


def test_prepare_colab_profile_choice(tmp_path):
    repo = fake_repo(tmp_path)
    quiet = dict(run=lambda cmd, check: None, installed_version=lambda name: "999")
    assert colab.prepare_colab(str(repo), environ={}, cuda_available=False, **quiet).profile == "cpu"
    chosen = {"COURSE_PROFILE": "smoke"}
    assert colab.prepare_colab(str(repo), environ=chosen, cuda_available=True, **quiet).profile == "smoke"
    rerun = {}  # the cell run twice in one runtime: the second run chooses again, it was not the learner's choice
    first = colab.prepare_colab(str(repo), environ=rerun, cuda_available=True, **quiet)
    second = colab.prepare_colab(str(repo), environ=rerun, cuda_available=True, **quiet)
    assert first.reason == second.reason == "a CUDA GPU is attached" and second.profile == "gpu"
    rerun["COURSE_PROFILE"] = "cpu"  # then the learner sets one
    assert colab.prepare_colab(str(repo), environ=rerun, cuda_available=True, **quiet).reason.startswith("set by you")
    with pytest.raises(FileNotFoundError, match="not a course checkout"):
        colab.prepare_colab(str(tmp_path / "nothing"), environ={}, cuda_available=False, **quiet)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a course checkout"):
        colab.prepare_colab(str(tmp_path / "empty"), environ={}, cuda_available=False, **quiet)


def test_prepare_colab_stops_when_pip_fails_and_pins_only_what_is_installed(tmp_path):
    repo = fake_repo(tmp_path)

    def pip(cmd, check):  # like subprocess.run: a failure raises only with check=True
        if check:
            raise subprocess.CalledProcessError(1, cmd)
        return subprocess.CompletedProcess(cmd, 1)

    without_widgets = {"torch": "2.8.0"}.get
    with pytest.raises(subprocess.CalledProcessError):
        colab.prepare_colab(str(repo), run=pip, environ={}, cuda_available=False, installed_version=without_widgets)
    assert (repo / ".colab-constraints.txt").read_text() == "torch==2.8.0\n"  # no pin for an absent ipywidgets


@pytest.mark.parametrize("signal", ["module", "environment"])
def test_the_setup_cell_on_a_simulated_fresh_colab_runtime(signal, tmp_path, monkeypatch):
    """Run the real first cell with one of Colab's signals present (the google.colab module its kernel imports, or
    the COLAB_RELEASE_TAG variable it sets) and subprocess faked: it clones, installs, picks the profile."""
    ran = []

    def fake_run(cmd, check=False, **kwargs):
        ran.append(cmd)
        if cmd[:2] == ["git", "clone"]:  # the clone: a checkout whose package is this repository's
            repo = fake_repo(tmp_path)
            (repo / "course_utils").symlink_to(ROOT / "course_utils")
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.chdir(tmp_path)
    if signal == "module":
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
        monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
        monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab_2026")
    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    monkeypatch.delenv("COURSE_REPO_URL", raising=False)
    exec(compile(colab.setup_cell_source(), "setup-cell", "exec"), {})
    assert ran[0] == ["git", "clone", "--depth=1", colab.repository_url(), colab.CLONE_DIR]
    assert ran[1][-3:] == ["--no-deps", "-e", colab.CLONE_DIR]
    installed_names = {part.split(">")[0].split("=")[0].split("<")[0] for cmd in ran[1:] for part in cmd}
    assert "torch" not in installed_names and "ipywidgets" not in installed_names  # Colab's own stay
    assert sys.path[0] == str(tmp_path / colab.CLONE_DIR)
    import os
    assert os.environ["COURSE_PROFILE"] in ("cpu", "gpu")  # picked from the hardware, since none was set


def test_the_setup_cell_clones_once_and_from_course_repo_url_when_set(tmp_path, monkeypatch):
    ran = []

    def fake_run(cmd, check=False, **kwargs):
        ran.append(cmd)
        if cmd[:2] == ["git", "clone"]:
            (fake_repo(tmp_path) / "course_utils").symlink_to(ROOT / "course_utils")
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab_2026")
    monkeypatch.setenv("COURSE_REPO_URL", "https://github.com/someone/fork")
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setattr(sys, "path", list(sys.path))
    for _ in range(2):  # the learner runs the cell again: the clone is there already
        exec(compile(colab.setup_cell_source(), "setup-cell", "exec"), {})
    clones = [cmd for cmd in ran if cmd[:2] == ["git", "clone"]]
    assert clones == [["git", "clone", "--depth=1", "https://github.com/someone/fork", colab.CLONE_DIR]]
    assert sum(cmd[-3:] == ["--no-deps", "-e", colab.CLONE_DIR] for cmd in ran) == 2


def test_the_setup_cell_off_colab_without_the_package_says_how_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))  # another google package is not Colab
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "course_utils" else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match="make lab"):
        exec(compile(colab.setup_cell_source(), "setup-cell", "exec"), {})


def test_a_failed_rewrite_leaves_the_notebook_whole(tmp_path, monkeypatch):
    import os

    path = tmp_path / NOTEBOOKS[0].name
    shutil.copy(NOTEBOOKS[0], path)
    before = path.read_bytes()

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)  # the write fails after the new text went to the temporary file
    with pytest.raises(OSError, match="No space"):
        colab.write_setup_cells([path], repository="https://github.com/someone/fork")
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_notebook_without_a_code_cell_is_refused(tmp_path):
    path = tmp_path / "99_prose.ipynb"
    path.write_text(json.dumps({"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# prose"]}],
                                "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    with pytest.raises(ValueError, match="no code cell"):
        colab.write_setup_cells([path], check=True)


def test_a_failed_clone_on_colab_says_how_to_point_at_the_course(tmp_path, monkeypatch):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    git = fake_bin / "git"  # a git that fails like a wrong URL with prompts off: exit 128, its reason on stderr
    git.write_text(f"#!/bin/sh\necho \"$GIT_TERMINAL_PROMPT\" > {tmp_path / 'prompt'}\n"
                   "echo \"fatal: could not read Username for 'https://github.com'\" >&2\nexit 128\n")
    git.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")
    monkeypatch.setenv("COLAB_RELEASE_TAG", "test")  # the set-up cell's sign of a Colab runtime
    monkeypatch.setenv("COURSE_REPO_URL", "https://github.com/nobody/not-the-course")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RuntimeError, match=r"could not clone the course from https://github.com/nobody/not-the-course"
                                           r".*COURSE_REPO_URL"):
        exec(colab.setup_cell_source(), {})
    assert not (tmp_path / colab.CLONE_DIR).exists()
    assert (tmp_path / "prompt").read_text().strip() == "0"  # git was told not to ask for a password
