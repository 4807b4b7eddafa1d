"""Test-session set-up: block the network for this process and for every kernel that nbval starts."""

import importlib.util
import os
import pathlib
import sys

GUARD_DIR = pathlib.Path(__file__).parent / "netguard"


def pytest_configure(config):
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(GUARD_DIR), os.environ.get("PYTHONPATH")]))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
    # Install the same guard in this process (the name sitecustomize is taken by Python's own start-up hook).
    spec = importlib.util.spec_from_file_location("course_netguard", GUARD_DIR / "sitecustomize.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["course_netguard"] = module
