"""Every code cell can be run a second time straight after the first, as a learner does who presses Shift-Enter again
(after reading an output, or after changing a knob in the cell).

Each notebook is executed top to bottom at the smoke profile with every code cell run twice in a row; the test fails
for any run that raises, naming the cell. A cell that changes the model in place must therefore undo or guard its own
change (chapter 06's LoRA cell, run twice, raised "model already has LoRA layers"; it now loads a fresh pretrained
model when it finds adapters).
Only the smoke profile: the check is about running a cell again, not about scale, and larger profiles would double
long runs. The first run of each cell is an ordinary run from a cold course cache where the cache is fresh, so under
``make test`` (this file runs before the notebooks' nbval pass, which then finds the caches warm) the cold paths are
still executed once. Cells are named by their index in the notebook, counting from 0 and counting Markdown cells, as
``json.load(nb)["cells"][N]``.
"""

import copy
import os

import pytest
from notebook_cells import notebook_paths

from course_utils.delivery.book import kernel_environment


def doubled(nb):
    """A copy of notebook ``nb`` in which each code cell is followed by a copy of itself (a fresh cell id); each
    code cell's metadata records ``rerun = {"cell": its index in nb, "run": 1 or 2}``."""
    out = copy.deepcopy(nb)
    cells = []
    for index, cell in enumerate(out.cells):
        cells.append(cell)
        if cell.cell_type == "code":
            again = copy.deepcopy(cell)
            again.id = f"rerun-{index}"
            cell.metadata["rerun"], again.metadata["rerun"] = {"cell": index, "run": 1}, {"cell": index, "run": 2}
            cells.append(again)
    out.cells = cells
    return out


def errors(nb) -> list[str]:
    """'cell N (second run): Name: message' and the cell's first lines, for every run of an executed doubled notebook
    that raised."""
    found = []
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if output.output_type == "error":
                where = cell.metadata["rerun"]
                which = "second run" if where["run"] == 2 else "first run"
                found.append(f"cell {where['cell']} ({which}): {output.ename}: {output.evalue[:300]}\n"
                             f"{cell.source[:200]}")
    return found


def test_doubled_copies_each_code_cell_once_and_keeps_the_markdown():
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# t"), nbformat.v4.new_code_cell("x = 1"),
                                         nbformat.v4.new_code_cell("x += 1")])
    twice = doubled(nb)
    assert [c.source for c in twice.cells] == ["# t", "x = 1", "x = 1", "x += 1", "x += 1"]
    assert [c.metadata.get("rerun") for c in twice.cells] == [None, {"cell": 1, "run": 1}, {"cell": 1, "run": 2},
                                                               {"cell": 2, "run": 1}, {"cell": 2, "run": 2}]
    assert "rerun" not in nb.cells[1].metadata
    assert len({c.id for c in twice.cells}) == 5 and len(nb.cells) == 3  # ids unique; the original untouched
    nbformat.validate(twice)


def test_errors_names_the_cell_and_the_run():
    import nbformat

    twice = doubled(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# t"),
                                                    nbformat.v4.new_code_cell("x = 1")]))
    twice.cells[2].outputs = [nbformat.v4.new_output("error", ename="ValueError", evalue="again", traceback=[])]
    assert errors(twice) == ["cell 1 (second run): ValueError: again\nx = 1"]


@pytest.mark.slow
@pytest.mark.rerun
@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.name)
def test_every_code_cell_can_run_twice(path):
    if os.environ.get("COURSE_PROFILE") != "smoke":
        pytest.skip("runs at COURSE_PROFILE=smoke only (make test sets it): it checks re-running, not scale")
    import nbformat
    from nbclient import NotebookClient

    nb = doubled(nbformat.read(path, as_version=4))
    client = NotebookClient(nb, timeout=900, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute(env=kernel_environment("smoke"))
    found = errors(nb)
    assert not found, f"{path.name}: " + "\n\n".join(found)
