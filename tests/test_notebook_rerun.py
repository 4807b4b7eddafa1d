"""Every code cell can be run a second time straight after the first, as a learner does who presses Shift-Enter again
(after reading an output, or after changing a knob in the cell).

Each notebook is executed top to bottom at the smoke profile with every code cell run twice in a row; the test fails
for any run that raises, naming the cell. A cell that changes the model in place must therefore undo or guard its own
change (chapter 06's LoRA cell takes its adapters off first: run twice it raised "model already has LoRA layers").
Only the smoke profile: the check is about the code, not the scale, and larger profiles would double long runs.
"""

import copy
import os
import pathlib

import pytest

from course_utils.delivery.book import kernel_environment

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))

pytestmark = [pytest.mark.slow, pytest.mark.rerun]


def doubled(nb):
    """A copy of notebook ``nb`` in which each code cell is followed by a copy of itself (a fresh cell id)."""
    out = copy.deepcopy(nb)
    cells = []
    for index, cell in enumerate(nb.cells):
        cells.append(copy.deepcopy(cell))
        if cell.cell_type == "code":
            again = copy.deepcopy(cell)
            again.id = f"rerun-{index}"
            again.metadata["rerun_of"] = index
            cells.append(again)
    out.cells = cells
    return out


def errors(nb) -> list[str]:
    """'cell N, second run: Name: message' (or first run) for every cell of an executed doubled notebook that raised."""
    found = []
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if output.output_type == "error":
                index = cell.metadata.get("rerun_of")
                which = "second run" if index is not None else "first run"
                found.append(f"cell {index if index is not None else '?'} ({which}): {output.ename}: "
                             f"{output.evalue[:300]}\n{cell.source[:200]}")
    return found


def test_doubled_copies_each_code_cell_once_and_keeps_the_markdown():
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# t"), nbformat.v4.new_code_cell("x = 1"),
                                         nbformat.v4.new_code_cell("x += 1")])
    twice = doubled(nb)
    assert [c.source for c in twice.cells] == ["# t", "x = 1", "x = 1", "x += 1", "x += 1"]
    assert [c.metadata.get("rerun_of") for c in twice.cells] == [None, None, 1, None, 2]
    assert len({c.id for c in twice.cells}) == 5 and len(nb.cells) == 3  # ids unique; the original untouched
    nbformat.validate(twice)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_code_cell_can_run_twice(path):
    if os.environ.get("COURSE_PROFILE") != "smoke":
        pytest.skip("runs at COURSE_PROFILE=smoke only (make test sets it): the code is the same at every scale")
    import nbformat
    from nbclient import NotebookClient

    nb = doubled(nbformat.read(path, as_version=4))
    client = NotebookClient(nb, timeout=900, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute(env=kernel_environment("smoke"))
    found = errors(nb)
    assert not found, f"{path.name}: " + "\n\n".join(found)
