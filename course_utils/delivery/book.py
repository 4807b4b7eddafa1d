"""The executed book: every notebook run top to bottom at one profile and saved, as an executed notebook and as a
static HTML page, in ``build/<profile>/``, with an index page and each notebook's measured wall time.

Lecturers project the executed notebooks; readers without a kernel open the HTML. Figures are PNGs embedded in the
page. Widgets cannot run without a kernel: every chapter draws each widget's default settings as a plain figure
above the controls (``course_utils.widgets``), and in the HTML the controls become a one-line note; tqdm progress
bars keep their final text. A notebook that fails is reported in the index with its error and saved as
``NAME.failed.ipynb`` for debugging; the previous build's good files stay (every file is written to a temporary
file and renamed), and the command exits non-zero. Run it with ``make book`` (see the README).

Math: nbconvert's pages load MathJax from a CDN, so without internet the LaTeX stays raw ``$...$`` text. No installed
package of the course ships a standalone MathJax (JupyterLab bundles MathJax 3 inside its own web app, which a page
cannot load), so when ``jupyter-server-mathjax`` is installed (MathJax 2.7 with the STIX web fonts, the copy the
classic notebook served; a 3 MB wheel) the book copies it into ``build/<profile>/mathjax/`` and the pages load it from
there; otherwise they keep the CDN and the index says so. nbconvert's pages also load require.js from a CDN, for
live widgets and old output renderers; the book's pages have neither (widgets are static, their state dropped), so
the tag is removed and, with the local MathJax, a page fetches nothing from the network. (Mermaid is fetched only
by a page that holds a mermaid diagram; no chapter does.)
"""

from __future__ import annotations

import copy
import html
import importlib.util
import json
import os
import platform
import re
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from course_utils.cache import atomic_write_text
from course_utils.device import cpu_description
from course_utils.profile import PROFILES

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
WIDGET_REPR = re.compile(r"(interactive|[A-Z][A-Za-z]*)\(")  # a widget's text/plain fallback: "VBox(children=..."
SIBLING_NOTEBOOK = re.compile(r'href="(\d\d_[a-z0-9_]+)\.ipynb(#[^"]*)?"')
WIDGET_NOTE = ('<p style="font-style:italic;color:#444">[interactive controls: open this notebook in Jupyter to '
               "use them; the figure or table above shows their default settings]</p>")


SMOKE_CAVEAT = ("<p><b>Smoke profile:</b> tiny sizes that show the code runs end to end; the numbers are not worth "
                "reading. For reading or lecturing, build with <code>make book</code> (cpu) or "
                "<code>make book PROFILE=gpu</code>.</p>")

MATHJAX_PACKAGE = "jupyter_server_mathjax"  # pip install jupyter-server-mathjax; its static/ folder is MathJax 2.7
MATHJAX_CONFIG = "TeX-AMS-MML_HTMLorMML-full,Safe"  # the one combined configuration that package ships
# it ships the STIX web fonts only (MathJax 2's default is TeX's): say so before MathJax starts, as the notebook did
MATHJAX_FONTS = ('<script type="text/x-mathjax-config">MathJax.Hub.Config({"HTML-CSS": {availableFonts: [], '
                 'preferredFont: null, webFont: "STIX-Web", imageFont: null}});</script>')
CDN_MATH_NOTE = ("<p><b>Math</b> loads MathJax from the internet; for pages whose math renders offline, "
                 "<code>pip install jupyter-server-mathjax</code> and build again.</p>")


@dataclass
class BookEntry:
    notebook: str  # file name
    ok: bool
    seconds: float
    error: str | None = None


def progress_text(state: dict, model_id: str) -> str | None:
    """The final text of a tqdm notebook bar (an HBox of HTML, progress, HTML) from saved widget state; "" for a bar
    that tqdm hid when it finished (``leave=False``: JupyterLab shows nothing there, and neither should the page);
    None when the widget is not a progress bar."""
    def model(ref: str) -> dict:
        return state.get(ref.removeprefix("IPY_MODEL_"), {})

    box = model(model_id)
    parts = [model(ref) for ref in box.get("state", {}).get("children", [])]
    names = [p.get("model_name") for p in parts]
    if box.get("model_name") != "HBoxModel" or len(parts) != 3 or names[1] not in ("FloatProgressModel",
                                                                                   "IntProgressModel"):
        return None
    if model(box["state"].get("layout", "")).get("state", {}).get("visibility") == "hidden":
        return ""
    left, bar, right = (p.get("state", {}) for p in parts)
    filled = round(20 * bar.get("value", 0) / bar.get("max", 1)) if bar.get("max") else 0
    text = f"{left.get('value', '')}|{'#' * filled}{' ' * (20 - filled)}|{right.get('value', '')}"
    return html.unescape(text).replace("\u2007", " ")


def static_outputs(nb):
    """A copy of ``nb`` for a page without a kernel: widget controls become a note, tqdm bars their final text, and
    the saved widget state is dropped."""
    nb = copy.deepcopy(nb)
    saved = nb.metadata.pop("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    for cell in nb.cells:
        kept = []
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_MIME in data:
                text = data.get("text/plain", "")
                text = "".join(text) if isinstance(text, list) else text
                final = progress_text(saved, data[WIDGET_MIME].get("model_id", ""))
                if final == "":
                    continue  # a finished bar tqdm hid
                if final is not None:
                    output["data"] = {"text/plain": final}
                elif not text or WIDGET_REPR.match(text):
                    output["data"] = {"text/html": WIDGET_NOTE}
                else:
                    output["data"] = {"text/plain": text}
            kept.append(output)
        if cell.cell_type == "code":
            cell.outputs = kept
    return nb


def local_mathjax() -> Path | None:
    """The ``static`` folder of an installed ``jupyter_server_mathjax`` (a standalone MathJax 2.7), or None.

    Found without importing the package (its import pulls in jupyter_server)."""
    spec = importlib.util.find_spec(MATHJAX_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "static"
    return folder if (folder / "MathJax.js").is_file() else None


def copy_mathjax(source: Path | None, target: Path) -> str | None:
    """Copy the MathJax folder ``source`` to ``target/mathjax`` and return the script URL relative to the pages in
    ``target``; None (pages keep the CDN) when ``source`` is None."""
    if source is None:
        return None
    if not (Path(source) / "MathJax.js").is_file():
        raise FileNotFoundError(f"{source} holds no MathJax.js: not a MathJax 2 folder")
    shutil.copytree(source, Path(target) / "mathjax", dirs_exist_ok=True)
    return f"mathjax/MathJax.js?config={MATHJAX_CONFIG}"


def to_html(nb, mathjax_url: str | None = None) -> str:
    """Static HTML of an executed notebook (JupyterLab's look, images embedded, widgets as notes).

    ``mathjax_url``: a local MathJax from :func:`copy_mathjax`; None keeps nbconvert's CDN address."""
    from nbconvert import HTMLExporter

    options = {"mathjax_url": mathjax_url} if mathjax_url else {}
    exporter = HTMLExporter(template_name="lab", embed_images=True, **options)
    body, _ = exporter.from_notebook_node(static_outputs(nb))
    if mathjax_url:
        script = f'<script src="{mathjax_url}">'
        if body.count(script) != 1:
            raise RuntimeError(f"nbconvert's template changed: expected one {script!r} in the page")
        body = body.replace(script, MATHJAX_FONTS + "\n" + script)
    require_js = f'<script src="{exporter.require_js_url}"></script>'
    if body.count(require_js) != 1:
        raise RuntimeError(f"nbconvert's template changed: expected one {require_js!r} in the page")
    body = body.replace(require_js, "")  # nothing on a static page uses it, and it is the network's
    return SIBLING_NOTEBOOK.sub(r'href="\1.html\2"', body)  # links between chapters stay inside the book


def kernel_environment(profile: str) -> dict[str, str]:
    """The kernel's environment: the chosen profile, offline, and matplotlib's inline backend (an inherited
    ``MPLBACKEND=Agg`` would leave every figure out of the book)."""
    env = dict(os.environ)
    env["COURSE_PROFILE"] = profile
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.pop("MPLBACKEND", None)
    return env


def execute_notebook(path: Path, profile: str, timeout: int):
    """Run ``path`` top to bottom in a fresh kernel, in the notebook's folder; return (executed nb, seconds, error).

    A cell that raises or times out, and a kernel that dies (killed for memory, a crash), are this notebook's error:
    the book goes on with the next notebook."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    error = None
    try:
        client.execute(env=kernel_environment(profile))
    except (CellExecutionError, CellTimeoutError) as exc:
        error = str(exc).strip()[-3000:]
    except DeadKernelError as exc:
        error = (f"the kernel died ({str(exc).strip() or 'no message'}): out of memory, or a crash in native code; "
                 "the executed copy holds the outputs up to the cell that was running")
    return nb, time.perf_counter() - start, error


def build_book(notebooks: Sequence[Path], out_dir: Path, profile: str, timeout: int = 3600,
               progress: bool = True) -> list[BookEntry]:
    """Execute ``notebooks`` at ``profile`` into ``out_dir/profile``; write the index; return one entry each."""
    import nbformat

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; allowed: {', '.join(PROFILES)}")
    paths = [Path(p) for p in notebooks]
    absent = [str(p) for p in paths if not p.is_file()]
    if not paths or absent:
        raise FileNotFoundError(f"no notebooks to build, or missing: {absent}" if absent else "no notebooks given")
    target = Path(out_dir) / profile
    target.mkdir(parents=True, exist_ok=True)
    mathjax_url = copy_mathjax(local_mathjax(), target)
    entries = []
    from tqdm.auto import tqdm

    for path in tqdm(paths, desc=f"book ({profile})", unit="notebook", disable=not progress):
        nb, seconds, error = execute_notebook(path, profile, timeout)
        if error is None:
            atomic_write_text(nbformat.writes(nb), target / path.name)
            atomic_write_text(to_html(nb, mathjax_url), target / path.with_suffix(".html").name)
            (target / f"{path.stem}.failed.ipynb").unlink(missing_ok=True)
        else:
            atomic_write_text(nbformat.writes(nb), target / f"{path.stem}.failed.ipynb")
        entries.append(BookEntry(path.name, error is None, round(seconds, 1), error))
    write_index(entries, target, profile, offline_math=mathjax_url is not None)
    return entries


def write_index(entries: Sequence[BookEntry], target: Path, profile: str, offline_math: bool = False) -> None:
    """``index.html`` (links, status, minutes) and ``timings.json`` beside the pages; without ``offline_math`` the
    index says that the pages' math needs the internet."""
    from course_utils.delivery.chapters import chapter

    def title(name: str) -> str:
        try:
            return chapter(name[:2]).title
        except ValueError:
            return name

    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{cpu_description()}, Python {platform.python_version()}"  # model and flags: timings name their CPU
    rows = []
    for e in entries:
        stem = e.notebook.removesuffix(".ipynb")
        links = (f'<a href="{stem}.html">read</a> · <a href="{e.notebook}" download>executed .ipynb</a>' if e.ok
                 else f'<a href="{stem}.failed.ipynb" download>failed notebook</a>'
                      f'<pre>{html.escape((e.error or "")[-800:])}</pre>')
        rows.append(f"<tr><td>{html.escape(e.notebook[:2])}</td><td>{html.escape(title(e.notebook))}</td>"
                    f"<td>{'ok' if e.ok else 'FAILED'}</td><td>{e.seconds / 60:.1f}</td><td>{links}</td></tr>")
    page = (f"<!doctype html><meta charset='utf-8'><title>LLMs by experiment ({profile})</title>"
            f"<style>body{{font:16px sans-serif;max-width:60em;margin:2em auto}}td{{padding:.3em 1em}}</style>"
            f"<h1>LLMs by experiment: executed book</h1><p>Profile <b>{profile}</b>, built {stamp} on {machine}.</p>"
            f"{SMOKE_CAVEAT if profile == 'smoke' else ''}{'' if offline_math else CDN_MATH_NOTE}"
            f"<table><tr><th>#</th><th>notebook</th><th>status</th><th>minutes</th><th></th></tr>"
            f"{''.join(rows)}</table>")
    atomic_write_text(page, target / "index.html")
    atomic_write_text(json.dumps({"profile": profile, "built": stamp, "machine": machine,
                                  "math": "local MathJax" if offline_math else "MathJax from a CDN",
                                  "notebooks": [asdict(e) for e in entries]}, indent=1), target / "timings.json")


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    root = Path(__file__).resolve().parents[2]
    parser = argparse.ArgumentParser(description="Execute every notebook into build/<profile>/ (notebooks + HTML).")
    parser.add_argument("--profile", default="cpu", choices=PROFILES)
    parser.add_argument("--out", default=str(root / "build"), help="output folder (default: build/)")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds allowed per cell")
    parser.add_argument("notebooks", nargs="*", help="default: every notebooks/NN_*.ipynb")
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    entries = build_book(notebooks, Path(args.out), args.profile, args.timeout)
    for e in entries:
        print(f"{e.notebook:40s} {'ok' if e.ok else 'FAILED':6s} {e.seconds:7.1f} s")
    print(f"index: {Path(args.out) / args.profile / 'index.html'}")
    if local_mathjax() is None:
        print("math: the pages load MathJax from a CDN (raw $...$ offline); `pip install jupyter-server-mathjax` "
              "and build again for math that renders offline")
    return 0 if all(e.ok for e in entries) else 1


if __name__ == "__main__":
    raise SystemExit(main())
