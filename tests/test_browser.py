"""Real-browser test: open chapters in JupyterLab in headless Chromium, Run -> Run All Cells from the menu, then drag
one widget slider with the mouse and check that what the cell displays changes.

nbval (the notebook part of `make test`) executes every cell but renders nothing; only a browser sees a widget that
does not redraw or a figure that never shows. Chromium comes from the OS (`apt-get install -y chromium`), Playwright
only drives it; without them the test is skipped with the command that installs them, unless
COURSE_INSTALL_BROWSER=1 asked for them (then their absence is a failure). Screenshots land in the test's tmp_path
and, if COURSE_SCREENSHOT_DIR is set, are copied there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import re
import shutil
import time

import pytest

from browser_support import CHROMIUM_ARGS, CHROMIUM_HINT, PLAYWRIGHT_HINT, JupyterLabServer, find_chromium

ROOT = pathlib.Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class SliderCheck:
    """Which slider of a chapter to drag: the widget's description label, and the push button to press after the
    move when the widget only redraws on request (interact_manual); None presses the cell's only push button, if any.
    ``printed``: text the redrawn view prints, which must appear in the Output area under the controls (a print
    flushed after the Output stopped capturing is silently lost)."""

    label: str
    press: str | None = None
    printed: str | None = None


# One slider per chapter, found by its description label; the labels are the most stable part of the widget cells.
CHAPTER_SLIDERS = {
    "00": SliderCheck("frequency"),  # start here: the widget check a learner runs first
    "01": SliderCheck("temperature"),  # next-token distribution of SmolLM2 / the tiny GPT at a temperature
    "02": SliderCheck("T"),  # mask explorer: sequence length
    "03": SliderCheck("merge step"),  # BPE merges applied so far
    "07": SliderCheck("temperature", printed="|"),  # sampling explorer: its button redraws; prints prompt|sample
    "08": SliderCheck("log10 θ"),  # abstention threshold
}
BROWSER_CHAPTERS = ["00", "01", "02", "07"]  # the bar; 03 and 08 work too but cost a notebook run each

RUN_ALL_TIMEOUT_S = 360.0  # smoke notebooks take 1-2 min under nbconvert on 2 cores
REDRAW_TIMEOUT_S = 60.0  # a slider redraw may call a model (chapter 01: SmolLM2's next-token distribution)
VIEWPORT = {"width": 1400, "height": 1600}

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _browser_missing(reason: str, hint: str):
    """Skip with the install command, or fail when the run explicitly asked for the browser to be installed."""
    if os.environ.get("COURSE_INSTALL_BROWSER") == "1":
        pytest.fail(f"COURSE_INSTALL_BROWSER=1 but {reason}; install it with: {hint}")
    pytest.skip(f"{reason}; install it with: {hint}")


@pytest.fixture(scope="module")
def chromium_path() -> str:
    path = find_chromium()
    if path is None:
        _browser_missing("no Chromium found (nor $COURSE_CHROMIUM)", CHROMIUM_HINT)
    return path


@pytest.fixture(scope="module")
def playwright_api():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _browser_missing("the Python package playwright is not installed", PLAYWRIGHT_HINT)
    with sync_playwright() as api:
        yield api


@pytest.fixture
def browser_page(playwright_api, chromium_path):
    browser = playwright_api.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
    try:
        page = browser.new_page(viewport=VIEWPORT)
        page.set_default_timeout(60_000)
        yield page
    finally:
        browser.close()


@pytest.fixture
def lab(tmp_path):
    """JupyterLab serving a copy of notebooks/ (it autosaves: the repository's notebooks never receive outputs)."""
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    with JupyterLabServer(tmp_path, tmp_path / "jupyterlab.log") as server:
        yield server


def notebook_name(chapter: str) -> str:
    matches = sorted((ROOT / "notebooks").glob(f"{chapter}_*.ipynb"))
    assert len(matches) == 1, f"expected one notebooks/{chapter}_*.ipynb, found {[p.name for p in matches]}"
    return matches[0].name


class Screenshots:
    """Saves page or element screenshots under tmp_path and copies them to $COURSE_SCREENSHOT_DIR if set."""

    def __init__(self, tmp_path: pathlib.Path, prefix: str):
        self.folder, self.prefix = tmp_path / "screenshots", prefix
        self.folder.mkdir(exist_ok=True)
        self.extra = os.environ.get("COURSE_SCREENSHOT_DIR")

    def save(self, target, name: str) -> pathlib.Path:
        path = self.folder / f"{self.prefix}_{name}.png"
        target.screenshot(path=str(path))
        if self.extra:
            pathlib.Path(self.extra).mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, pathlib.Path(self.extra) / path.name)
        return path


# --- the notebook as a learner sees it ------------------------------------------------------------------------------

def kernel_status(page) -> str | None:
    return page.get_attribute(".jp-NotebookPanel .jp-Notebook-ExecutionIndicator", "data-status")


def wait_for_idle_kernel(page, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while kernel_status(page) != "idle":
        assert time.monotonic() < deadline, f"the kernel is not idle after {timeout_s:.0f} s: {kernel_status(page)}"
        time.sleep(0.5)


PROMPTS_JS = """() => [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputPrompt')]
    .map(prompt => prompt.textContent.trim())"""


def unexecuted_cells(page, empty: set[int]) -> list[int]:
    """Indices (among code cells) of code cells without a numeric execution count, except the `empty` ones (an
    empty cell never gets a count; editors are rendered lazily, so emptiness comes from the notebook file)."""
    prompts = page.evaluate(PROMPTS_JS)
    return [i for i, prompt in enumerate(prompts) if i not in empty and not re.fullmatch(r"\[\d+\]:", prompt)]


def empty_code_cells(path: pathlib.Path) -> set[int]:
    code = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    return {i for i, cell in enumerate(code) if not "".join(cell["source"]).strip()}


def click_menu(page, menu: str, item: str, timeout_s: float = 30.0) -> None:
    """Open a main-menu entry and click one of its items, as a learner does; if the item is still disabled (the
    notebook is not the current widget yet), close the menu and try again."""
    deadline = time.monotonic() + timeout_s
    while True:
        page.locator("#jp-MainMenu .lm-MenuBar-item", has_text=re.compile(rf"^{re.escape(menu)}$")).click()
        entry = page.locator(".lm-Menu:visible .lm-Menu-item", has_text=re.compile(rf"^{re.escape(item)}")).first
        entry.wait_for()
        if "lm-mod-disabled" not in (entry.get_attribute("class") or ""):
            entry.click()
            return
        page.keyboard.press("Escape")
        assert time.monotonic() < deadline, f"menu {menu} -> {item} stayed disabled for {timeout_s:.0f} s"
        time.sleep(1.0)


def execution_started(page, empty: set[int], n_pending: int) -> bool:
    return kernel_status(page) == "busy" or len(unexecuted_cells(page, empty)) < n_pending or page.evaluate(
        "() => [...document.querySelectorAll('.jp-NotebookPanel .jp-InputPrompt')]"
        ".some(p => p.textContent.includes('*'))")


def run_all_cells(page, empty: set[int], log_tail) -> float:
    """Run -> Run All Cells; wait until every code cell has an execution count and the kernel is idle.

    Stops early when the kernel has been idle for a while with cells still unexecuted (an error aborted the queue;
    the saved notebook then says which cell failed). Returns the seconds it took.
    """
    start, n_pending = time.monotonic(), len(unexecuted_cells(page, empty))
    page.locator(".jp-NotebookPanel .jp-Cell").first.click()  # make the notebook the current widget
    click_menu(page, "Run", "Run All Cells")
    deadline = time.monotonic() + 30
    while not execution_started(page, empty, n_pending):
        assert time.monotonic() < deadline, f"Run -> Run All Cells started nothing within 30 s\n{log_tail()}"
        time.sleep(0.5)
    idle_since = None
    while True:
        pending, status = unexecuted_cells(page, empty), kernel_status(page)
        if not pending and status == "idle":
            return time.monotonic() - start
        idle_since = (idle_since or time.monotonic()) if status == "idle" else None
        if idle_since and time.monotonic() - idle_since > 15:
            return time.monotonic() - start
        assert time.monotonic() - start < RUN_ALL_TIMEOUT_S, (
            f"Run All Cells did not finish in {RUN_ALL_TIMEOUT_S:.0f} s; unexecuted code cells {pending[:10]}, "
            f"kernel {status}\n{log_tail()}")
        time.sleep(1.0)


def save_and_read(page, lab, name: str) -> dict:
    """File -> Save Notebook, then read what JupyterLab wrote (the saved copy is the truth about outputs)."""
    path = lab.root_dir / "notebooks" / name
    before = path.stat().st_mtime_ns
    click_menu(page, "File", "Save Notebook")
    deadline = time.monotonic() + 30
    while path.stat().st_mtime_ns == before:
        assert time.monotonic() < deadline, f"File -> Save Notebook did not write {path}\n{lab.log_tail()}"
        time.sleep(0.3)
    time.sleep(0.5)  # let the write finish
    return json.loads(path.read_text())


def saved_errors(notebook: dict) -> list[str]:
    errors = []
    for i, cell in enumerate(notebook["cells"]):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                tail = "\n".join(re.sub(r"\x1b\[[0-9;]*m", "", line) for line in output.get("traceback", [])[-6:])
                errors.append(f"cell {i}: {output.get('ename')}: {output.get('evalue')}\n{tail}")
    return errors


def saved_unexecuted(notebook: dict) -> list[int]:
    return [i for i, cell in enumerate(notebook["cells"])
            if cell["cell_type"] == "code" and "".join(cell["source"]).strip() and cell.get("execution_count") is None]


# --- the slider and what its cell displays --------------------------------------------------------------------------

def slider_and_cell(page, label: str):
    """The first ipywidgets slider whose description label is exactly `label`, and the notebook cell showing it."""
    with_label = page.locator(".widget-label", has_text=re.compile(rf"^\s*{re.escape(label)}\s*$"))
    cell = page.locator(".jp-NotebookPanel .jp-Cell").filter(has=page.locator(".widget-slider").filter(has=with_label))
    return cell.first.locator(".widget-slider").filter(has=with_label).first, cell.first


# The cell's displayed outputs without the widget controls: images and the text of every innermost output area
# (figures and text shown through ipywidgets Output widgets included), so a slider's own readout does not count.
SIGNATURE_JS = """(cell) => {
    const controls = '.widget-inline-hbox, .widget-slider, .widget-readout, .widget-label, .widget-button, '
        + '.widget-toggle-buttons, .widget-dropdown, .widget-text, .widget-checkbox, .widget-textarea';
    const parts = [];
    for (const area of cell.querySelectorAll('.jp-OutputArea-output')) {
        if (area.querySelector('.jp-OutputArea-output')) continue;
        const clone = area.cloneNode(true);
        clone.querySelectorAll(controls).forEach(e => e.remove());
        clone.querySelectorAll('img').forEach(img => parts.push('img:' + img.getAttribute('src')));
        clone.querySelectorAll('svg').forEach(svg => parts.push('svg:' + svg.outerHTML));
        const text = clone.textContent.trim();
        if (text) parts.push('text:' + text);
    }
    return parts;
}"""


def output_signature(cell) -> tuple[str, ...]:
    """Hashes of what the cell displays (images, SVG, text), excluding the widget controls themselves."""
    return tuple(hashlib.sha1(part.encode()).hexdigest()[:16] for part in cell.evaluate(SIGNATURE_JS))


def wait_for_new_output(page, cell, before: tuple, what: str, log_tail) -> tuple:
    """Wait until the cell shows something different from `before`, non-empty and unchanged for a second, with an
    idle kernel (an Output widget is cleared before it redraws: the empty moment is not the answer)."""
    deadline, last, stable_since = time.monotonic() + REDRAW_TIMEOUT_S, None, None
    while time.monotonic() < deadline:
        now = output_signature(cell)
        if now and now != before and kernel_status(page) == "idle":
            if now == last:
                if time.monotonic() - stable_since >= 1.0:
                    return now
            else:
                last, stable_since = now, time.monotonic()
        else:
            last = None
        time.sleep(0.25)
    pytest.fail(f"{what}: the cell's output did not change within {REDRAW_TIMEOUT_S:.0f} s"
                f" (before: {len(before)} parts, now: {len(output_signature(cell))})\n{log_tail()}")


def drag_slider(page, slider, fraction: float) -> None:
    """Drag the slider's handle with the mouse to `fraction` of its track (press, move in steps, release)."""
    slider.scroll_into_view_if_needed()
    handle, track = slider.locator(".noUi-handle").first, slider.locator(".noUi-base, .noUi-target").first
    hb, tb = handle.bounding_box(), track.bounding_box()
    assert hb and tb, "the slider has no visible handle or track"
    start_x, y = hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2
    page.mouse.move(start_x, y)
    page.mouse.down()
    page.mouse.move(tb["x"] + fraction * tb["width"], y, steps=12)
    page.mouse.up()


def handle_fraction(slider) -> float:
    hb = slider.locator(".noUi-handle").first.bounding_box()
    tb = slider.locator(".noUi-base, .noUi-target").first.bounding_box()
    return (hb["x"] + hb["width"] / 2 - tb["x"]) / tb["width"]


def press_after_move(page, cell, check: SliderCheck) -> None:
    """Press the cell's push button when the widget redraws only on request (interact_manual)."""
    buttons = cell.locator("button.widget-button:not(.widget-toggle-button)")
    if check.press is not None:
        buttons.filter(has_text=check.press).first.click()
    elif buttons.count() == 1:
        buttons.first.click()


def readout(slider) -> str:
    return slider.locator(".widget-readout").first.inner_text().strip()


@pytest.mark.parametrize("chapter", BROWSER_CHAPTERS)
def test_run_all_then_a_slider_redraws_its_output(chapter, lab, browser_page, tmp_path):
    shots = Screenshots(tmp_path, chapter)
    try:
        check_chapter_in_the_browser(chapter, lab, browser_page, shots)
    except BaseException:
        shots.save(browser_page, "failure")  # what the page showed when the check failed
        raise


def check_chapter_in_the_browser(chapter, lab, page, shots) -> None:
    name, check = notebook_name(chapter), CHAPTER_SLIDERS[chapter]
    copy = lab.root_dir / "notebooks" / name
    empty, n_code = empty_code_cells(copy), sum(c["cell_type"] == "code" for c in json.loads(copy.read_text())["cells"])
    page.goto(lab.notebook_url(f"notebooks/{name}"))
    # JupyterLab attaches the cells in batches after the first one: wait until all of them are in the page.
    page.wait_for_function("n => document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputPrompt').length"
                           " === n", arg=n_code)
    wait_for_idle_kernel(page)
    before_run = unexecuted_cells(page, empty)
    assert len(before_run) == n_code - len(empty), f"{name}: expected {n_code} unexecuted code cells, saw {before_run}"
    seconds = run_all_cells(page, empty, lab.log_tail)
    saved = save_and_read(page, lab, name)
    assert not saved_errors(saved), "cells raised errors:\n" + "\n\n".join(saved_errors(saved)) + "\n" + lab.log_tail()
    assert not saved_unexecuted(saved), f"code cells never ran: {saved_unexecuted(saved)}\n{lab.log_tail()}"
    print(f"{name}: Run All Cells took {seconds:.0f} s")

    slider, cell = slider_and_cell(page, check.label)
    assert slider.count() == 1, f"{name}: no slider labelled {check.label!r} after Run All Cells"
    slider.scroll_into_view_if_needed()
    shots.save(page, "after_run_all")
    before = output_signature(cell)
    assert before, f"{name}: the cell with the {check.label!r} slider displays nothing after Run All Cells"

    # Drag to the far side first, then back past the start: two redraws, each must change what is shown.
    first = 0.15 if handle_fraction(slider) > 0.5 else 0.85
    readouts = [readout(slider)]
    shown = [before]
    for step, fraction in enumerate((first, 1.0 - first), start=1):
        drag_slider(page, slider, fraction)
        readouts.append(readout(slider))
        assert readouts[-1] != readouts[-2], f"{name}: dragging {check.label!r} did not move it ({readouts})"
        press_after_move(page, cell, check)
        what = f"{name}: slider {check.label!r} moved {readouts[-2]} -> {readouts[-1]}"
        shown.append(wait_for_new_output(page, cell, shown[-1], what, lab.log_tail))
        if check.printed is not None:  # the view may print long after its figure (07 samples 20 tokens first)
            deadline = time.monotonic() + REDRAW_TIMEOUT_S
            while check.printed not in cell.locator(".widget-output").last.inner_text():
                assert time.monotonic() < deadline, f"{what}: the view's printed text never appeared under the controls"
                time.sleep(0.25)
            shown[-1] = output_signature(cell)
        slider.scroll_into_view_if_needed()
        shots.save(page, f"slider_move_{step}")
    assert len(set(shown)) == 3, f"{name}: the three slider positions {readouts} did not give three different outputs"
