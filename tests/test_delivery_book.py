"""The book build: executed notebooks and static HTML with embedded figures, widgets as notes, failures reported
without losing the previous build."""

import importlib
import json
import os
import re

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


def fake_mathjax(folder):
    """A folder shaped like MathJax 2's (the entry script and a config file), standing in for the real 10 MB."""
    (folder / "config").mkdir(parents=True)
    (folder / "MathJax.js").write_text("/* MathJax stand-in */")
    (folder / "config" / "TeX-AMS-MML_HTMLorMML-full.js").write_text("/* config */")
    return folder


@pytest.mark.slow
def test_book_build_writes_notebook_html_index_and_timings(tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")  # as under the test command: the book must still embed figures
    monkeypatch.setattr(book, "local_mathjax", lambda: fake_mathjax(tmp_path / "mathjax_source"))
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
    assert f'<script src="mathjax/MathJax.js?config={book.MATHJAX_CONFIG}">' in page, "math from the local copy"
    assert (out / "mathjax" / "config" / "TeX-AMS-MML_HTMLorMML-full.js").is_file(), "MathJax copied beside the pages"
    remote = re.findall(r'<(?:script|link)[^>]*(?:src|href)="(?:https?:)?//[^"]*"', page)
    assert remote == [], f"the page loads nothing from the network: {remote}"
    index = (out / "index.html").read_text()
    assert "01_tiny.html" in index and "ok" in index and "Smoke profile" in index
    assert "jupyter-server-mathjax" not in index, "no CDN note when the math renders offline"
    timings = json.loads((out / "timings.json").read_text())
    assert timings["profile"] == "smoke" and timings["notebooks"][0]["seconds"] > 0
    assert timings["math"] == "local MathJax"


@pytest.mark.slow
def test_a_failing_notebook_is_reported_and_the_previous_build_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(book, "local_mathjax", lambda: None)  # no MathJax installed: the pages keep the CDN
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
    assert "jupyter-server-mathjax" in (out / "index.html").read_text(), "the index says math needs the internet"
    assert "require.js" not in good and "cdnjs.cloudflare.com/ajax/libs/mathjax" in good, "only the math is remote"
    assert not (out / "mathjax").exists()
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


def test_local_mathjax_is_found_without_importing_the_package(tmp_path, monkeypatch):
    package = tmp_path / "site" / book.MATHJAX_PACKAGE
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('the book must not import this package')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    assert book.local_mathjax() is None, "a package without static/MathJax.js is not a MathJax copy"
    fake_mathjax(package / "static")
    assert book.local_mathjax() == package / "static"
    monkeypatch.setattr(book, "MATHJAX_PACKAGE", "course_utils_no_such_package")
    assert book.local_mathjax() is None


def test_pages_load_the_copied_mathjax_or_else_the_cdn(tmp_path):
    out = tmp_path / "out"
    url = book.copy_mathjax(fake_mathjax(tmp_path / "source"), out)
    assert url == f"mathjax/MathJax.js?config={book.MATHJAX_CONFIG}" and (out / "mathjax" / "MathJax.js").is_file()
    assert book.copy_mathjax(fake_mathjax(tmp_path / "source2"), out) == url, "a second build copies over the first"
    assert book.copy_mathjax(None, out) is None
    with pytest.raises(FileNotFoundError, match="no MathJax.js"):
        book.copy_mathjax(tmp_path, out)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("Perplexity is $e^{H}$.")]
    local = book.to_html(nb, url)
    script = f'<script src="{url}">'
    assert local.count(script) == 1 and local.index(book.MATHJAX_FONTS) < local.index(script)
    assert "mathjax/2.7" not in local, "no MathJax from the internet"
    assert "mathjax/2.7" in book.to_html(nb), "without a local copy, nbconvert's CDN address stays"
