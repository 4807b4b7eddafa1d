"""Test-session set-up: block the network for this process and for every kernel that nbval starts."""

import importlib.util
import os
import pathlib
import sys

import pytest

GUARD_DIR = pathlib.Path(__file__).parent / "netguard"
BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark_script(name: str):
    """The script ``benchmarks/<name>.py`` as a module; importing runs nothing (main() is behind __main__)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def benchmark_script():
    """``benchmark_script(name)`` loads ``benchmarks/<name>.py`` (see :func:`load_benchmark_script`)."""
    return load_benchmark_script


def pytest_configure(config):
    worker = getattr(config, "workerinput", None)  # set in a pytest-xdist worker (make test runs TEST_WORKERS of them)
    if worker is not None:
        # Share the cores between the workers (and the notebook kernels they start, which inherit this): two torch
        # processes with a thread per core each would fight over the cores. A value the user set is kept.
        os.environ.setdefault("OMP_NUM_THREADS", str(threads_per_worker(int(worker["workercount"]))))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(GUARD_DIR), os.environ.get("PYTHONPATH")]))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    # This process draws off-screen. Notebook kernels keep ipykernel's inline backend (no MPLBACKEND in their
    # environment), so nbval draws every figure and a figure that fails only when drawn fails the run.
    import matplotlib
    matplotlib.use("Agg")
    # Install the same guard in this process (the name sitecustomize is taken by Python's own start-up hook).
    spec = importlib.util.spec_from_file_location("course_netguard", GUARD_DIR / "sitecustomize.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["course_netguard"] = module


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """The cores this process may use (``os.sched_getaffinity`` where the system has it), shared among ``workers``;
    at least 1."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, workers))


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, which a run without it does not load
def pytest_xdist_make_scheduler(config, log):
    """Under ``--dist loadscope``, pytest-xdist's scopes (a test module, a class, a notebook's nbval cells), except
    that a notebook's rerun test joins its notebook's scope (``notebook_cells.notebook_scope``)."""
    if config.getvalue("dist") != "loadscope":
        return None
    return notebook_scheduler(config, log)


def notebook_scheduler(config, log=None):
    from notebook_cells import notebook_scope
    from xdist.scheduler import LoadScopeScheduling

    class NotebookScopeScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return notebook_scope(nodeid) or super()._split_scope(nodeid)

    return NotebookScopeScheduling(config, log)
