"""How ``make test`` splits the suite between pytest-xdist processes (tests/conftest.py, tests/notebook_cells.py): a
notebook's rerun test and its nbval cells share one scope, so one process executes the notebook's runs one after
another; every other test keeps pytest-xdist's own scope; the cores are shared between the processes."""

import pytest
from conftest import notebook_scheduler, threads_per_worker
from notebook_cells import notebook_scope

RERUN = "tests/test_notebook_rerun.py::test_every_code_cell_can_run_again[{}]"


def test_a_rerun_test_joins_its_notebooks_scope_and_nothing_else_moves():
    assert notebook_scope(RERUN.format("02_attention_masks.ipynb")) == "notebooks/02_attention_masks.ipynb"
    assert notebook_scope("course/" + RERUN.format("10_x.ipynb")) == "course/notebooks/10_x.ipynb"  # a higher root
    for other in ("tests/test_notebook_rerun.py::test_errors_names_the_cell_and_the_run",
                  "tests/test_notebook_rerun.py::test_rerun_plan_runs_each_code_cell_twice",
                  "tests/test_other.py::test_every_code_cell_can_run_again[02_attention_masks.ipynb]",
                  "notebooks/02_attention_masks.ipynb::Cell 3", "tests/test_sampling.py::test_top_p[0.5]"):
        assert notebook_scope(other) is None, other


class TwoWorkers:
    """The part of a pytest config that pytest-xdist's scheduler reads: ``-n 2`` (pytest-xdist's ``--tx 2*popen``)."""
    def getvalue(self, name):
        return {"tx": ["2*popen"], "dist": "loadscope"}[name]


def test_the_scheduler_puts_a_notebooks_runs_in_one_scope():
    pytest.importorskip("xdist")
    split = notebook_scheduler(TwoWorkers())._split_scope
    cells = [split(f"notebooks/02_attention_masks.ipynb::Cell {i}") for i in (0, 3, 30)]
    assert cells == [split(RERUN.format("02_attention_masks.ipynb"))] * 3 == ["notebooks/02_attention_masks.ipynb"] * 3
    assert split(RERUN.format("03_bpe.ipynb")) != split(RERUN.format("02_attention_masks.ipynb"))
    assert split("tests/test_sampling.py::test_top_p[0.5]") == split("tests/test_sampling.py::test_min_p") == (
        "tests/test_sampling.py")  # a module's tests share its module-scoped fixtures in one process


@pytest.mark.parametrize("workers, cores, expected", [(2, 2, 1), (2, 16, 8), (3, 2, 1), (1, 2, 2), (0, 4, 4)])
def test_threads_per_worker_shares_the_cores(workers, cores, expected):
    assert threads_per_worker(workers, cores) == expected
