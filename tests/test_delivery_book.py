"""The book build: executed notebooks and static HTML with embedded figures, widgets as notes, failures reported
without losing the previous build."""

import json
import os

import nbformat
import pytest

from course_utils.delivery import book

FIGURE_CELL = """
import os
import matplotlib.pyplot as plt
print("profile", os.environ["COURSE_PROFILE"], "backend", os.environ.get("MPLBACKEND"))
plt.plot([0, 1], [1, 0]); plt.xlabel("x (units)"); plt.show()
"""
WIDGET_CELL = """
import ipywidgets as widgets
from tqdm.auto import tqdm
for _ in tqdm(range(3), desc="steps"):
    pass
for _ in tqdm(range(4), desc="hidden when done", leave=False):
    pass
display(widgets.VBox([widgets.IntSlider(value=3, description="k")]))
"""


def write_notebook(path, *sources):
    nb = nbformat.v4.new_notebook()
    nb.cells = ([nbformat.v4.new_markdown_cell("# A tiny chapter\nNext: [chapter 02](02_tiny.ipynb#start).")]
                + [nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.mark.slow
def test_book_build_writes_notebook_html_index_and_timings(tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")  # as under the test command: the book must still embed figures
    source = write_notebook(tmp_path / "01_tiny.ipynb", FIGURE_CELL, WIDGET_CELL)
    entries = book.build_book([source], tmp_path / "build", "smoke", timeout=120, progress=False)
    assert [e.ok for e in entries] == [True], entries[0].error
    out = tmp_path / "build" / "smoke"
    executed = nbformat.read(out / "01_tiny.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for o in executed.cells[1].outputs)
    assert "profile smoke" in printed and "inline" in printed
    page = (out / "01_tiny.html").read_text()
    assert "data:image/png;base64" in page or "image/png" in page, "the figure is embedded in the page"
    assert "interactive controls" in page and "VBox(children" not in page and "IntSlider(" not in page
    assert "steps: 100%" in page, "a progress bar keeps its final text"
    assert "hidden when done:" not in page, "a bar tqdm hid (leave=False) is not shown, as in JupyterLab"
    assert 'href="02_tiny.html#start"' in page, "links between chapters point to their pages"
    index = (out / "index.html").read_text()
    assert "01_tiny.html" in index and "ok" in index and "Smoke profile" in index
    timings = json.loads((out / "timings.json").read_text())
    assert timings["profile"] == "smoke" and timings["notebooks"][0]["seconds"] > 0


@pytest.mark.slow
def test_a_failing_notebook_is_reported_and_the_previous_build_kept(tmp_path):
    source = write_notebook(tmp_path / "02_tiny.ipynb", "x = 1\nprint('first build')")
    assert book.build_book([source], tmp_path / "build", "smoke", timeout=60, progress=False)[0].ok
    good = (tmp_path / "build" / "smoke" / "02_tiny.html").read_text()
    write_notebook(source, "raise RuntimeError('broken cell')")
    entry = book.build_book([source], tmp_path / "build", "smoke", timeout=60, progress=False)[0]
    assert not entry.ok and "broken cell" in entry.error
    out = tmp_path / "build" / "smoke"
    assert (out / "02_tiny.html").read_text() == good, "the previous good page is kept"
    assert (out / "02_tiny.failed.ipynb").exists()
    assert "FAILED" in (out / "index.html").read_text()
    assert book.main(["--profile", "smoke", "--out", str(tmp_path / "build"), str(source)]) == 1
    assert not [p for p in os.listdir(out) if p.startswith(".")], "no temporary files left behind"


def test_static_outputs_keep_progress_text_and_replace_controls():
    nb = nbformat.v4.new_notebook()
    nb.metadata["widgets"] = {"state": {}}
    cell = nbformat.v4.new_code_cell("")
    cell.outputs = [nbformat.v4.new_output("display_data", {book.WIDGET_MIME: {"model_id": "a"},
                                                            "text/plain": "interactive(children=(IntSlider(...)))"}),
                    nbformat.v4.new_output("display_data", {book.WIDGET_MIME: {"model_id": "b"},
                                                            "text/plain": "steps: 100%|##########| 3/3"})]
    nb.cells = [cell]
    static = book.static_outputs(nb)
    assert "widgets" not in static.metadata and "widgets" in nb.metadata  # a copy; the original is untouched
    assert static.cells[0].outputs[0]["data"] == {"text/html": book.WIDGET_NOTE}
    assert static.cells[0].outputs[1]["data"] == {"text/plain": "steps: 100%|##########| 3/3"}


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="allowed: smoke, cpu, gpu"):
        book.build_book([tmp_path / "x.ipynb"], tmp_path, "laptop")
    with pytest.raises(FileNotFoundError, match="missing"):
        book.build_book([tmp_path / "absent.ipynb"], tmp_path, "smoke")
