"""Cleaning a notebook for a commit: an executed notebook becomes one that the hygiene test accepts, a committed
notebook is left byte for byte as it is, and bad input is refused without writing anything."""

import json
import pathlib
import shutil
import subprocess
import sys

import pytest

from course_utils.delivery.clean import clean_notebook, main
from test_notebooks import NOTEBOOKS, test_notebook_is_committed_clean as check_committed_clean

ROOT = pathlib.Path(__file__).resolve().parents[1]
WIDGET_STATE = {"application/vnd.jupyter.widget-state+json": {"state": {"abc": {"model_name": "FloatSliderModel"}},
                                                               "version_major": 2, "version_minor": 0}}


def executed_copy(tmp_path: pathlib.Path) -> tuple[pathlib.Path, dict]:
    """The start-here notebook as an executed run saves it: outputs (text, a PNG, a widget view), execution counts,
    timing metadata in its cells, widget state in its metadata; one code cell's source is a single string."""
    nb = json.loads((ROOT / "notebooks" / "00_start_here.ipynb").read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert len(code) >= 3
    for count, cell in enumerate(code, start=1):
        cell["execution_count"] = count
        cell["metadata"] = {"execution": {"iopub.status.idle": "2026-12-05T09:41:32.611468Z"}, "scrolled": True}
        cell["outputs"] = [{"name": "stdout", "output_type": "stream", "text": ["profile smoke · ok\n"]},
                           {"data": {"image/png": "iVBORw0KGgo=", "text/plain": ["<Figure>"]}, "metadata": {},
                            "output_type": "display_data"},
                           {"data": {"application/vnd.jupyter.widget-view+json": {"model_id": "abc"}},
                            "execution_count": count, "metadata": {}, "output_type": "execute_result"}]
    code[-1]["source"] = "".join(code[-1]["source"])  # the other form a cell's source may take
    nb["metadata"]["widgets"] = WIDGET_STATE
    path = tmp_path / "00_start_here.ipynb"
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path, nb


def test_an_executed_notebook_becomes_one_the_hygiene_test_accepts(tmp_path):
    path, executed = executed_copy(tmp_path)
    with pytest.raises(AssertionError):
        check_committed_clean(path)  # the copy really is dirty
    assert clean_notebook(path) is True
    check_committed_clean(path)  # the very check tests/test_notebooks.py applies to every committed notebook
    cleaned = json.loads(path.read_text(encoding="utf-8"))
    assert cleaned["metadata"] == {k: v for k, v in executed["metadata"].items() if k != "widgets"}
    assert set(cleaned["metadata"]) >= {"kernelspec", "language_info"}
    for before, after in zip(executed["cells"], cleaned["cells"], strict=True):
        assert after["source"] == before["source"] and type(after["source"]) is type(before["source"])
        assert after["metadata"] == {k: v for k, v in before["metadata"].items() if k != "execution"}  # run timings
        assert after.get("id") == before.get("id")
        assert list(after) == list(before), "keys keep their order"
        if after["cell_type"] == "code":
            assert after["outputs"] == [] and after["execution_count"] is None
    assert not any(p.name != path.name for p in tmp_path.iterdir()), "no temporary file left behind"
    assert clean_notebook(path) is False, "a clean notebook needs no second pass"


def test_a_clean_notebook_with_string_sources_keeps_its_bytes(tmp_path):
    path, _ = executed_copy(tmp_path)
    clean_notebook(path)
    before = path.read_bytes()
    clean_notebook(path)
    assert path.read_bytes() == before


@pytest.mark.parametrize("committed", NOTEBOOKS, ids=lambda p: p.name)
def test_cleaning_a_committed_notebook_changes_no_byte(committed, tmp_path):
    path = tmp_path / committed.name
    shutil.copyfile(committed, path)
    assert clean_notebook(path) is False
    assert path.read_bytes() == committed.read_bytes()


def test_bad_input_is_refused_and_nothing_is_written(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        clean_notebook(tmp_path / "missing.ipynb")
    with pytest.raises(ValueError, match="not a notebook"):
        clean_notebook(tmp_path)  # a folder
    cases = {"text.ipynb": "# a Markdown file\n", "list.ipynb": "[1, 2]\n", "config.ipynb": '{"name": "x"}\n',
             "old.ipynb": '{"cells": [], "nbformat": 3}\n', "cell.ipynb": '{"cells": [{}], "nbformat": 4}\n'}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match="not a notebook|not an nbformat 4 notebook"):
            clean_notebook(tmp_path / name)
        assert (tmp_path / name).read_text() == text, name
    with pytest.raises(TypeError, match="str or a Path"):
        clean_notebook(None)


def test_the_command_cleans_each_file_and_reports_failures(tmp_path, capsys):
    path, _ = executed_copy(tmp_path)
    assert main([str(path)]) == 0
    assert "cleaned" in capsys.readouterr().out
    check_committed_clean(path)
    assert main([str(path), str(tmp_path / "missing.ipynb")]) == 1
    out = capsys.readouterr()
    assert "already clean" in out.out and "missing.ipynb: no such file" in out.err


def test_python_dash_m_runs_it(tmp_path):
    path, _ = executed_copy(tmp_path)
    done = subprocess.run([sys.executable, "-m", "course_utils.delivery.clean", str(path)], capture_output=True,
                          text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    check_committed_clean(path)
