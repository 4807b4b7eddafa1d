"""Optional packages: a missing one and one that is installed but fails to import are both named, with the fix."""

import tomllib
from pathlib import Path

import pytest

from course_utils.optional import PEFT, import_problem

ROOT = Path(__file__).resolve().parents[1]


def test_peft_line_is_pyprojects():
    with open(ROOT / "pyproject.toml", "rb") as f:
        dev = tomllib.load(f)["project"]["optional-dependencies"]["dev"]
    assert PEFT in dev


def test_an_importable_package_has_no_problem():
    assert import_problem("json", "json") is None


def test_a_missing_package_says_how_to_install_it():
    said = import_problem("no_such_package_xyz", "no-such-package-xyz>=1.0")
    assert said == "no_such_package_xyz is not installed (pip install 'no-such-package-xyz>=1.0')"


def test_an_installed_package_that_fails_to_import_is_named_with_its_error(tmp_path, monkeypatch):
    # what Colab's own old peft does under transformers 5: the files are there, the import fails
    package = tmp_path / "broken_optional_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("from json import HybridCache\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    said = import_problem("broken_optional_pkg", "broken-optional-pkg>=0.19.0")
    assert said.startswith("broken_optional_pkg is installed but does not import (ImportError: cannot import name "
                           "'HybridCache'")
    assert "pip install -U 'broken-optional-pkg>=0.19.0', then restart the kernel" in said


@pytest.mark.parametrize("module, requirement", [("", "x"), ("x", " "), (None, "x")])
def test_bad_arguments_are_refused(module, requirement):
    with pytest.raises((TypeError, ValueError)):
        import_problem(module, requirement)
