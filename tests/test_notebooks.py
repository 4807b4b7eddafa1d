"""Repository hygiene for the notebooks. (Executing them is the `--nbval-lax` part of the test command.)"""

import json
import os
import pathlib
import re
import socket
import subprocess
import sys

import pytest

from course_utils.delivery.chapters import notebook_filenames
from notebook_cells import notebook_paths

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = notebook_paths()
CHAPTER_NOTEBOOKS = notebook_paths(chapters_only=True)  # 00 is the start-here page
CHAPTERS = {name[:2]: name[3:].removesuffix(".ipynb") for name in notebook_filenames()}  # the chapter map
HUB = re.compile(r"hf_hub_download|snapshot_download|load_dataset\(|from_pretrained\(\s*[\"'][\w.-]+/[\w.-]+[\"']")


def cells(path):
    return json.loads(path.read_text())["cells"]


def source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_there_are_notebooks_and_they_are_numbered_in_course_order():
    assert NOTEBOOKS, "no notebooks found"
    names = [p.name for p in NOTEBOOKS]
    assert names == notebook_filenames(), "notebooks/ and the chapter map (course_utils.delivery.chapters) differ"
    for name in names:
        match = re.fullmatch(r"(\d\d)_([a-z0-9_]+)\.ipynb", name)
        assert match, f"{name}: notebooks are named NN_slug.ipynb"
        assert CHAPTERS.get(match[1]) == match[2], f"{name}: chapter {match[1]} is {CHAPTERS.get(match[1])!r}"
    numbers = [n[:2] for n in names]
    assert numbers == sorted(set(numbers)), "chapter numbers must be unique"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_clean(path):
    nb = json.loads(path.read_text())
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert not cell.get("outputs"), f"{path.name} cell {i} has outputs: clear them before committing"
            assert cell.get("execution_count") is None, f"{path.name} cell {i} has an execution count"
    assert "widgets" not in nb.get("metadata", {}), f"{path.name} stores widget state"


@pytest.mark.parametrize("path", CHAPTER_NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_follows_the_chapter_anatomy(path):
    all_cells = cells(path)
    code = [source(c) for c in all_cells if c["cell_type"] == "code"]
    text = "\n".join(source(c) for c in all_cells)
    assert "ensure_assets()" in code[0], "the first code cell is the Colab/fresh-runtime set-up cell"
    assert sum("by_profile(" in c for c in code) == 1, "sizes come from exactly one by_profile cell"
    assert "get_profile()" in text and "seed_everything(" in text
    assert "ipywidgets" in text, "at least one interactive widget"
    assert text.count("checks.exercise(") >= 3, "at least three exercises with automatic checks"
    assert "## What we measured" in text and "## References" in text and "## Pitfalls" in text
    assert not HUB.search(text), "notebooks must not download from a model hub"
    assert '"cuda"' not in text and "'cuda'" not in text, "use pick_device(), never hard-code cuda"


CLOSING_SECTIONS = ["Exercises", "What we measured", "Summary", "Pitfalls", "References"]


@pytest.mark.parametrize("path", CHAPTER_NOTEBOOKS, ids=lambda p: p.name)
def test_every_chapter_closes_with_the_same_sections_in_the_same_form(path):
    # A learner who has read one chapter finds the exercises, the measured table, the summary, the pitfalls and the
    # references in the same place and form in every other: unnumbered, in this order, after the numbered sections,
    # the pitfalls as a bulleted list.
    text = "\n".join(source(c) for c in cells(path) if c["cell_type"] == "markdown")
    headings = re.findall(r"^## (.+?)\s*$", text, re.M)
    assert headings[-len(CLOSING_SECTIONS):] == CLOSING_SECTIONS, f"{path.name} ends with {headings[-5:]}"
    numbered = headings[:-len(CLOSING_SECTIONS)]
    assert numbered and all(re.match(rf"{n}\. ", h) for n, h in enumerate(numbered, start=1)), (
        f"{path.name}: the sections before the exercises are numbered 1, 2, ... in order: {numbered}")
    pitfalls = text.split("## Pitfalls", 1)[1].split("\n## ", 1)[0].strip()
    lines = [line for line in pitfalls.splitlines() if line.strip()]
    assert sum(bool(re.match(r"[-*] ", line)) for line in lines) >= 3, f"{path.name}: at least three pitfalls"
    loose = [line for line in lines if not re.match(r"[-*] |  \S", line)]  # a bullet or its indented continuation
    assert not loose, f"{path.name}: the pitfalls are a bulleted list, but these lines are not in a bullet: {loose}"


@pytest.mark.parametrize("path", CHAPTER_NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_figures_and_widgets_follow_the_course_helpers(path):
    # Projector-sized, colour-blind-safe figures: use_course_style() runs once, visibly, before the first figure, and no
    # font is set below 10 pt. Widgets: one copy of the pattern (course_utils.widgets.explore: static view = widget
    # defaults, views return nothing, model calls wait for a button or the slider's release), no hand-rolled ipywidgets.
    code = [source(c) for c in cells(path) if c["cell_type"] == "code"]
    styled = [i for i, c in enumerate(code) if re.search(r"^use_course_style\(\)", c, re.M)]
    assert len(styled) == 1, "call use_course_style() once, on its own line, right after the imports"
    first_figure = next((i for i, c in enumerate(code) if "plt." in c or "explore(" in c), len(code))
    assert styled[0] <= first_figure, "use_course_style() must run before the first figure"
    assert any(re.search(r"^explore\(", c, re.M) for c in code), "the widget cell calls course_utils.widgets.explore"
    for i, c in enumerate(code):
        assert not re.search(r"^\s*(import ipywidgets|from ipywidgets)|\binteract(_manual)?\(", c, re.M), (
            f"{path.name} code cell {i}: build widgets with course_utils.widgets.explore, not by hand")
        small = re.findall(r"(?:fontsize|labelsize)=[0-9](?![0-9])", c)
        assert not small, f"{path.name} code cell {i}: {small}: text below 10 pt is unreadable on a projector"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_generators_state_their_device(path):
    # A generator must live on the device of the tensor it draws for (a CPU generator crashes CUDA sampling, and a
    # CPU-only CI never sees it): notebooks make every generator with make_generator(seed, device).
    for i, cell in enumerate(cells(path)):
        if cell["cell_type"] == "code":
            assert "torch.Generator(" not in source(cell), (
                f"{path.name} cell {i}: use make_generator(seed, DEVICE or 'cpu'), not torch.Generator()")


def test_network_guard_blocks_remote_and_allows_loopback(monkeypatch):
    import course_netguard as guard  # installed by conftest.py

    attempts = []
    monkeypatch.setattr(guard, "_real_connect", lambda sock, address: attempts.append(address))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(guard.NetworkBlockedError, match="offline"):
            sock.connect(("192.0.2.1", 443))  # TEST-NET-1; never reached: the guard refuses before connecting
        with pytest.raises(guard.NetworkBlockedError):
            sock.connect(("huggingface.co", 443))
        sock.connect(("127.0.0.1", 9))
    finally:
        sock.close()
    assert attempts == [("127.0.0.1", 9)]


def test_processes_started_by_the_tests_inherit_the_guard():
    code = "import socket; print(socket.socket.connect.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy())
    assert out.stdout.strip() == "_guarded_connect", out.stderr
