"""Every code cell can be run again: straight after its first run, as a learner does who presses Shift-Enter again
(after reading an output, or after changing a knob in the cell); after the later sections have run, as a learner does
who goes back to an earlier cell; and in a second Run All.

Each notebook is executed at the smoke profile, in one kernel, in three passes: (1) top to bottom with every code cell
run twice in a row; (2) every code cell once more from the last to the first, so that each runs with the state the
whole notebook, and every cell after it run again, left behind; (3) every code cell once more from the first to the
last. The test fails for any run that raises, naming the cell and the run, and (on Linux, where /proc gives the
kernel's high-water mark) when the kernel's peak resident memory over all three passes reaches the course's 4 GB bar
for a smoke notebook: a cell run again must not keep alive what a run from the top frees. A cell that changes shared
state in place must therefore undo or guard its own change and must not rely on state that a later section changes
(chapter 06's LoRA cell, run twice, raised "model already has LoRA layers"; it now loads a fresh pretrained model when
it finds adapters, and section 1's optimizer-state cell measures the pretrained weights in place when `model` has
adapters).
Only the smoke profile: the check is about running a cell again, not about scale, and larger profiles would multiply
long runs by four. The first run of each cell is an ordinary run from a cold course cache where the cache is fresh,
so under ``make test`` (a notebook's test here runs before its nbval pass, on the same pytest-xdist worker, and
nbval then finds the caches warm: ``notebook_cells.notebook_scope``) the cold paths are still executed once. Cells
are named by their index in the notebook, counting from 0 and counting Markdown cells, as
``json.load(nb)["cells"][N]``.
"""

import contextlib
import copy
import io
import os

import pytest
from notebook_cells import notebook_paths

from course_utils.delivery.book import kernel_environment

RUNS = {1: "first run", 2: "second run, straight after the first",
        3: "third run, going back: after the whole notebook and every later cell again",
        4: "fourth run, a second Run All"}


def rerun_plan(nb):
    """A copy of notebook ``nb`` for the three passes above: each code cell followed by a copy of itself, then every
    code cell again in reverse order, then every code cell again in order (copies get fresh ids). Each code cell's
    metadata records ``rerun = {"cell": its index in nb, "run": 1 to 4}``. Markdown cells appear once, in the first
    pass."""
    def again(cell, index, run):
        copied = copy.deepcopy(cell)
        copied.id, copied.metadata["rerun"] = f"rerun-{index}-{run}", {"cell": index, "run": run}
        return copied

    out = copy.deepcopy(nb)
    first_pass, backwards, forwards = [], [], []
    for index, cell in enumerate(out.cells):
        first_pass.append(cell)
        if cell.cell_type == "code":
            cell.metadata["rerun"] = {"cell": index, "run": 1}
            first_pass.append(again(cell, index, 2))
            backwards.insert(0, again(cell, index, 3))
            forwards.append(again(cell, index, 4))
    out.cells = first_pass + backwards + forwards
    return out


def errors(nb) -> list[str]:
    """'cell N (which run): Name: message' and the cell's first lines, for every run of an executed ``rerun_plan``
    notebook that raised."""
    found = []
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if output.output_type == "error":
                where = cell.metadata["rerun"]
                found.append(f"cell {where['cell']} ({RUNS[where['run']]}): {output.ename}: {output.evalue[:300]}\n"
                             f"{cell.source[:200]}")
    return found


def test_rerun_plan_runs_each_code_cell_twice_then_backwards_then_forwards():
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# t"), nbformat.v4.new_code_cell("x = 1"),
                                         nbformat.v4.new_code_cell("x += 1")])
    plan = rerun_plan(nb)
    assert [c.source for c in plan.cells] == ["# t", "x = 1", "x = 1", "x += 1", "x += 1", "x += 1", "x = 1",
                                              "x = 1", "x += 1"]
    assert [c.metadata.get("rerun") for c in plan.cells] == [None] + [
        {"cell": cell, "run": run} for cell, run in ((1, 1), (1, 2), (2, 1), (2, 2), (2, 3), (1, 3), (1, 4), (2, 4))]
    assert "rerun" not in nb.cells[1].metadata
    assert len({c.id for c in plan.cells}) == 9 and len(nb.cells) == 3  # ids unique; the original untouched
    nbformat.validate(plan)


def test_errors_names_the_cell_and_the_run():
    import nbformat

    plan = rerun_plan(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# t"),
                                                      nbformat.v4.new_code_cell("x = 1")]))
    plan.cells[2].outputs = [nbformat.v4.new_output("error", ename="ValueError", evalue="again", traceback=[])]
    plan.cells[3].outputs = [nbformat.v4.new_output("error", ename="KeyError", evalue="'later'", traceback=[])]
    plan.cells[4].outputs = [nbformat.v4.new_output("error", ename="NameError", evalue="gone", traceback=[])]
    assert errors(plan) == [
        "cell 1 (second run, straight after the first): ValueError: again\nx = 1",
        "cell 1 (third run, going back: after the whole notebook and every later cell again): KeyError: 'later'\nx = 1",
        "cell 1 (fourth run, a second Run All): NameError: gone\nx = 1"]


@pytest.mark.slow
@pytest.mark.rerun
@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.name)
def test_every_code_cell_can_run_again(path):
    if os.environ.get("COURSE_PROFILE") != "smoke":
        pytest.skip("runs at COURSE_PROFILE=smoke only (make test sets it): it checks re-running, not scale")
    import nbformat
    from nbclient import NotebookClient

    nb = rerun_plan(nbformat.read(path, as_version=4))
    nb.cells.append(nbformat.v4.new_code_cell(PEAK_CELL))
    client = NotebookClient(nb, timeout=900, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute(env=kernel_environment("smoke"))
    peak_cell = nb.cells.pop()
    found = errors(nb)
    assert not found, f"{path.name}: " + "\n\n".join(found)
    peak = kernel_peak_bytes(peak_cell)
    assert peak is None or peak < SMOKE_MEMORY_BAR, (
        f"{path.name}: the kernel's peak resident memory over the three passes was {peak / 1e9:.2f} GB, over the "
        f"course's bar of {SMOKE_MEMORY_BAR / 1e9:.0f} GB for a smoke notebook: a cell run again (or going back) "
        "keeps more alive than a run from the top does; look for globals that still hold a model, logits or an "
        "optimizer after their cell")


# The course's memory bar for a smoke notebook (COURSE_GUIDE, tests and CI), here over all three passes: a learner who
# runs cells again or goes back stays under the same bar as one who runs the notebook once from the top.
SMOKE_MEMORY_BAR = 4e9   # bytes
# The kernel's own high-water mark of resident memory, read from Linux's /proc (elsewhere: nothing, and no check).
PEAK_CELL = """import pathlib
_status = pathlib.Path("/proc/self/status")
print(next((line.split()[1] for line in _status.read_text().splitlines() if line.startswith("VmHWM:")), "")
      if _status.exists() else "")"""


def kernel_peak_bytes(cell) -> int | None:
    """The peak resident memory in bytes that ``PEAK_CELL`` printed (VmHWM, in kB), or None where it printed nothing
    (no /proc); raises if the cell failed, so the check cannot pass silently on Linux."""
    text = "".join(output.get("text", "") for output in cell.get("outputs", []) if output.output_type == "stream")
    if any(output.output_type == "error" for output in cell.get("outputs", [])):
        raise AssertionError(f"the memory cell failed: {cell.outputs}")
    return int(text) * 1024 if text.strip() else None


def test_kernel_peak_bytes_reads_the_memory_cell():
    import nbformat

    cell = nbformat.v4.new_code_cell(PEAK_CELL)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="3145728\n")]
    assert kernel_peak_bytes(cell) == 3 * 2**30
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="\n")]
    assert kernel_peak_bytes(cell) is None
    cell.outputs = [nbformat.v4.new_output("error", ename="OSError", evalue="no", traceback=[])]
    with pytest.raises(AssertionError, match="memory cell failed"):
        kernel_peak_bytes(cell)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(PEAK_CELL, {})                                 # the cell itself, in this process
    assert printed.getvalue().strip() == "" or int(printed.getvalue()) > 0
