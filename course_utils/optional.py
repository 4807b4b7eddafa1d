"""Optional packages: whether one can be imported, and if not, a sentence that says why and what to install.

A package can be installed and still fail to import: Colab ships its own peft, and peft below 0.19 raises
``ImportError: cannot import name 'HybridCache'`` under transformers 5. ``importlib.util.find_spec`` only says that
the files are there, so a cell guarded by it would crash; :func:`import_problem` imports the package. The course's
optional packages are pyproject.toml's ``dev`` extra; :data:`PEFT` is its peft line (a test keeps the two equal).

Left out: version checks beyond the import itself (a package that imports is taken as usable).
"""

from __future__ import annotations

import importlib
import importlib.util
from importlib.metadata import PackageNotFoundError, version

from course_utils.arguments import check_str

PEFT = "peft>=0.19.0"  # chapter 06's reference LoRA; the same line as pyproject.toml's dev extra


def import_problem(module: str, requirement: str) -> str | None:
    """None when ``module`` imports; otherwise one sentence: not installed, or installed (with its version) but
    failing to import (with the error), and the pip command that installs ``requirement`` (and, for the second, a
    kernel restart: a failed import leaves the old version's submodules loaded)."""
    check_str(module, "module", non_empty=True)
    check_str(requirement, "requirement", non_empty=True)
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed (pip install '{requirement}')"
    try:
        importlib.import_module(module)
    except ImportError as error:
        try:
            installed = f"{module} {version(module)}"
        except PackageNotFoundError:
            installed = module
        return (f"{installed} is installed but does not import ({type(error).__name__}: {error}); "
                f"pip install -U '{requirement}', then restart the kernel (Colab: Runtime > Restart session), as "
                "the old version's modules stay loaded in this one")
    return None
