"""Committing a notebook clean: every code cell's outputs and execution count cleared, the widget state an executed
notebook keeps in its metadata dropped (``nbconvert --execute`` stores it, and so does JupyterLab when set to save
widget state), and the run's timings in each cell's metadata dropped: the form ``tests/test_notebooks.py`` requires of
a committed notebook.

``jupyter nbconvert --clear-output`` clears outputs and counts but keeps ``metadata.widgets``, which that test
refuses. :func:`clean_notebook` clears them and the ``execution`` timings ``nbconvert --execute`` writes into each
cell's metadata, and nothing else: the kernelspec and language_info, the rest of every cell's metadata, its id and
source (a list of lines or one string, as it was) stay as they are. The file keeps the layout of the
repository's notebooks (``json.dumps(nb, indent=1, ensure_ascii=False)`` and a final newline, keys in their order), so
cleaning a committed notebook changes no byte. It is written atomically (a temporary file in the same folder, then
renamed onto it), so an interrupted run never leaves half a notebook. Run it before committing::

    .venv/bin/python -m course_utils.delivery.clean notebooks/NN_slug.ipynb

Deliberately left out: other cell metadata that Jupyter adds (``scrolled``) is kept, as is any notebook metadata
other than ``widgets``; notebooks older than nbformat 4 are refused, not converted.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence


def _load(path: Path) -> dict:
    """The notebook at ``path`` as a dict, or a clear error for a missing file or a file that is not a notebook."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if not path.is_file():
        raise ValueError(f"{path} is not a notebook file (a folder?)")
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a notebook: not a JSON file ({err})") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ValueError(f"{path} is not a notebook: the JSON has no list of 'cells'")
    if nb.get("nbformat") != 4:
        raise ValueError(f"{path} is not an nbformat 4 notebook (nbformat {nb.get('nbformat')!r}); open and save it "
                         "in JupyterLab first")
    for i, cell in enumerate(nb["cells"]):
        if not isinstance(cell, dict) or "cell_type" not in cell:
            raise ValueError(f"{path} is not a notebook: cell {i} has no cell_type")
    return nb


def cleaned_text(nb: dict) -> str:
    """``nb`` (changed in place) with outputs, execution counts, run timings and widget state cleared, as text."""
    for cell in nb["cells"]:
        if isinstance(cell.get("metadata"), dict):
            cell["metadata"].pop("execution", None)  # nbclient's per-cell timings of the run
        if cell["cell_type"] == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    if isinstance(nb.get("metadata"), dict):
        nb["metadata"].pop("widgets", None)
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def clean_notebook(path: str | Path) -> bool:
    """Clear ``path``'s outputs, execution counts and stored widget state; return whether the file changed.

    Raises FileNotFoundError for a missing file and ValueError for a file that is not an nbformat 4 notebook; in
    both cases nothing is written. An already clean notebook is left untouched (not even rewritten).
    """
    if not isinstance(path, (str, Path)):
        raise TypeError(f"path must be a str or a Path, got {type(path).__name__}")
    path = Path(path)
    nb = _load(path)
    text = cleaned_text(nb)
    if text == path.read_text(encoding="utf-8"):
        return False
    from course_utils.cache import atomic_write_text  # imports torch: only when there is something to write

    atomic_write_text(text, path)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Clear notebooks' outputs, execution counts and stored widget "
                                                 "state in place, as tests/test_notebooks.py requires of a commit.")
    parser.add_argument("notebooks", nargs="+", help="the .ipynb files to clean")
    args = parser.parse_args(argv)
    failed = 0
    for name in args.notebooks:
        try:
            changed = clean_notebook(name)
        except (OSError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            failed += 1
            continue
        print(f"{name}: {'cleaned' if changed else 'already clean'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
