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
