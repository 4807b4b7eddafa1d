"""Helpers for tests that run a few of a notebook's own code cells (one copy of the code: the notebook's), found by a
marker string rather than by position, so that adding a cell elsewhere does not silently run the wrong one."""

import json
import pathlib

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[1] / "notebooks"


def notebook_paths(chapters_only: bool = False) -> list[pathlib.Path]:
    """Every notebook in ``notebooks/``, in course order; ``chapters_only`` leaves out 00, the start-here page (it
    has no exercises and no chapter anatomy)."""
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    return [p for p in paths if not p.name.startswith("00_")] if chapters_only else paths


def notebook_scope(nodeid: str) -> str | None:
    """The pytest-xdist scope (``make test``'s ``--dist loadscope``) of the rerun test of a notebook: its nbval cells'
    scope, ``notebooks/NAME.ipynb``, so that one worker runs the two one after another (the rerun test first, then
    nbval, which finds the course cache warm) and two workers never execute the same notebook at once. None for any
    other test (it keeps pytest-xdist's scope: its module, or its class)."""
    module, found, param = nodeid.partition("::test_every_code_cell_can_run_again[")
    if not (found and module.endswith("tests/test_notebook_rerun.py") and param.endswith(".ipynb]")):
        return None
    root = module.removesuffix("tests/test_notebook_rerun.py")  # "", or a folder where pytest's root is higher up
    return f"{root}notebooks/{param[:-1]}"


def indexed_cell_sources(notebook: str | pathlib.Path, kind: str) -> list[tuple[int, str]]:
    """(index in the notebook, source) of every cell of ``kind`` (``"code"``, ``"markdown"``) of a notebook (a path,
    or a file name in ``notebooks/``), in order; the index counts every cell from 0."""
    cells = json.loads((NOTEBOOKS / notebook).read_text())["cells"]  # an absolute path replaces NOTEBOOKS
    return [(i, "".join(c["source"])) for i, c in enumerate(cells) if c["cell_type"] == kind]


def cell_sources(notebook: str | pathlib.Path, kind: str) -> list[str]:
    """The source of every cell of ``kind`` (``"code"``, ``"markdown"``) of a notebook, in order."""
    return [source for _, source in indexed_cell_sources(notebook, kind)]


def code_cells(notebook: str | pathlib.Path) -> list[str]:
    """The source of every code cell of a notebook, in order."""
    return cell_sources(notebook, "code")


def cell_with(cells: list[str], marker: str, *, start: bool = False) -> str:
    """The one code cell that contains ``marker`` (or starts with it, when ``start``); an error naming the marker if
    no cell or more than one does."""
    hits = [c for c in cells if (c.startswith(marker) if start else marker in c)]
    if len(hits) != 1:
        raise LookupError(f"{len(hits)} code cells {'start with' if start else 'contain'} {marker!r} (need exactly 1)")
    return hits[0]
