"""The book build: executed notebooks and static HTML with embedded figures, widgets as notes, failures reported
without losing the previous build."""

import dataclasses
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
    write_notebook(source, "# " + "long cell " * 400 + "\nraise RuntimeError('broken cell')")  # error's head: source
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


@pytest.mark.slow
def test_a_kernel_that_dies_fails_its_notebook_and_the_book_goes_on(tmp_path, monkeypatch):
    """A kernel killed mid-notebook (out of memory on a laptop) is that notebook's failure, not the build's end."""
    monkeypatch.setattr(book, "local_mathjax", lambda: None)
    dies = write_notebook(tmp_path / "01_dies.ipynb", "print('before')", "import os\nos._exit(1)", "print('after')")
    fine = write_notebook(tmp_path / "02_fine.ipynb", "print('fine')")
    entries = book.build_book([dies, fine], tmp_path / "build", "smoke", timeout=60, progress=False)
    assert [e.ok for e in entries] == [False, True]
    assert "kernel died" in entries[0].error
    out = tmp_path / "build" / "smoke"
    failed = nbformat.read(out / "01_dies.failed.ipynb", as_version=4)
    assert "before" in "".join(o.get("text", "") for o in failed.cells[1].outputs), "outputs up to the crash kept"
    assert (out / "02_fine.html").is_file() and "FAILED" in (out / "index.html").read_text()
    assert not (out / "01_dies.html").exists()


def test_static_outputs_keep_progress_text_and_replace_controls():
    nb = nbformat.v4.new_notebook()
    nb.metadata["widgets"] = {"state": {}}
    cell = nbformat.v4.new_code_cell("")
    cell.outputs = [nbformat.v4.new_output("display_data", {book.WIDGET_MIME: {"model_id": "a"},
                                                            "text/plain": "interactive(children=(IntSlider(...)))"}),
                    nbformat.v4.new_output("display_data", {book.WIDGET_MIME: {"model_id": "b"},
                                                            "text/plain": "steps: 100%|##########| 3/3"}),
                    nbformat.v4.new_output("display_data", {book.WIDGET_MIME: {"model_id": "c"}})]  # no text at all
    nb.cells = [cell]
    static = book.static_outputs(nb)
    assert "widgets" not in static.metadata and "widgets" in nb.metadata  # a copy; the original is untouched
    assert static.cells[0].outputs[0]["data"] == {"text/html": book.WIDGET_NOTE}
    assert static.cells[0].outputs[1]["data"] == {"text/plain": "steps: 100%|##########| 3/3"}
    assert static.cells[0].outputs[2]["data"] == {"text/html": book.WIDGET_NOTE}


def test_progress_text_is_the_bars_final_text_from_the_saved_widget_state():
    def bar(left, value, maximum, right, hidden=False):
        return {"h": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_l", "IPY_MODEL_b", "IPY_MODEL_r"],
                                                           "layout": "IPY_MODEL_lay"}},
                "lay": {"model_name": "LayoutModel", "state": {"visibility": "hidden"} if hidden else {}},
                "l": {"model_name": "HTMLModel", "state": {"value": left}},
                "b": {"model_name": "FloatProgressModel", "state": {"value": value, "max": maximum}},
                "r": {"model_name": "HTMLModel", "state": {"value": right}}}

    # as tqdm saves it: spaces as U+2007 figure spaces, HTML escaped
    state = bar("steps:\u2007\u200775%", 3, 4, "\u20073/4\u2007[00:01&lt;00:00,\u2007\u20072.00it/s]")
    assert (book.progress_text(state, "IPY_MODEL_h")
            == "steps:  75%|" + "#" * 15 + " " * 5 + "| 3/4 [00:01<00:00,  2.00it/s]")
    assert book.progress_text(bar("a", 0, 0, "b"), "IPY_MODEL_h") == "a|" + " " * 20 + "|b"  # max 0: empty bar
    assert book.progress_text(bar("a", 4, 4, "b", hidden=True), "IPY_MODEL_h") == ""
    state["b"]["model_name"] = "IntSliderModel"
    assert book.progress_text(state, "IPY_MODEL_h") is None, "an HBox holding a slider is not a progress bar"


def test_the_kernel_runs_the_asked_profile_offline_with_the_inline_backend(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "smoke")  # a shell's own profile must not override the book's
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    env = book.kernel_environment("cpu")
    assert env["COURSE_PROFILE"] == "cpu" and "MPLBACKEND" not in env
    assert env["HF_HUB_OFFLINE"] == "1" and env["TRANSFORMERS_OFFLINE"] == "1"


def test_build_book_index_timings_and_exit_status_without_a_kernel(tmp_path, monkeypatch):
    """The bookkeeping of a build, with the kernel run faked: one chapter fails, then is fixed."""
    long_error = "Traceback (most recent call last):\n" + "  frame\n" * 200 + "RuntimeError: a <b>bad</b> claim"
    errors = {"02_attention_masks.ipynb": long_error}

    def fake_execute(path, profile, timeout):
        return nbformat.read(path, as_version=4), 90.44, errors.get(path.name)

    monkeypatch.setattr(book, "execute_notebook", fake_execute)
    monkeypatch.setattr(book, "to_html", lambda nb, mathjax_url=None: "<p>page</p>")
    monkeypatch.setattr(book, "local_mathjax", lambda: None)
    good = write_notebook(tmp_path / "01_language_modelling.ipynb", "x = 1")
    bad = write_notebook(tmp_path / "02_attention_masks.ipynb", "x = 2")
    out = tmp_path / "build" / "cpu"
    entries = book.build_book([good, bad], tmp_path / "build", "cpu", progress=False)
    assert [(e.ok, e.seconds) for e in entries] == [(True, 90.4), (False, 90.4)]
    index = (out / "index.html").read_text()
    assert "<td>Language modelling</td>" in index and "<td>Attention masks</td>" in index
    assert index.count("<td>1.5</td>") == 2, "the minutes column is in minutes"
    assert "RuntimeError: a &lt;b&gt;bad&lt;/b&gt; claim</pre>" in index, "the error's last words, escaped"
    assert "Smoke profile" not in index
    errors["02_attention_masks.ipynb"] = "<" * 999 + "!"  # escaping before the cut left a broken 'lt;' in front
    book.build_book([good, bad], tmp_path / "build", "cpu", progress=False)
    shown = (out / "index.html").read_text().split("<pre>")[1].split("</pre>")[0]
    assert shown == "&lt;" * 799 + "!", "the error's last 800 characters, then escaped"
    errors["02_attention_masks.ipynb"] = long_error
    book.build_book([good, bad], tmp_path / "build", "cpu", progress=False)
    timings = json.loads((out / "timings.json").read_text())
    assert timings["notebooks"] == [dataclasses.asdict(e) for e in entries]
    assert (timings["profile"], timings["math"]) == ("cpu", "MathJax from a CDN")
    assert book.main(["--profile", "cpu", "--out", str(tmp_path / "build"), str(good), str(bad)]) == 1
    assert (out / "02_attention_masks.failed.ipynb").exists()
    errors.clear()  # the chapter is fixed
    assert book.main(["--profile", "cpu", "--out", str(tmp_path / "build"), str(good), str(bad)]) == 0
    assert not (out / "02_attention_masks.failed.ipynb").exists(), "no stale failure beside the good page"


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="allowed: smoke, cpu, gpu"):
        book.build_book([tmp_path / "x.ipynb"], tmp_path, "laptop")
    with pytest.raises(FileNotFoundError, match="missing"):
        book.build_book([tmp_path / "absent.ipynb"], tmp_path, "smoke")
    with pytest.raises(FileNotFoundError, match="no notebooks given"):
        book.build_book([], tmp_path, "smoke")


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
