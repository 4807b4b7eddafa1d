"""Profiles: one notebook, three scales.

``COURSE_PROFILE`` selects how big every experiment is:

* ``smoke``: continuous integration; seconds per cell, a whole notebook aimed at under two minutes on 2 CPU cores.
* ``cpu``: a laptop; each notebook aimed at about ten minutes, results worth reading.
* ``gpu``: Colab or a datacentre GPU; larger models and more data, same code.

The measured time of each chapter in each profile is in the chapter map (``course_utils.delivery.chapters``).

Unset (or ``auto``) means ``gpu`` when CUDA is available, else ``cpu``. Notebooks keep their sizes in one visible
cell and pick them with :func:`by_profile`.
"""

from __future__ import annotations

import os
from typing import Mapping, TypeVar

PROFILES = ("smoke", "cpu", "gpu")
ENV_VAR = "COURSE_PROFILE"

T = TypeVar("T")


def get_profile(name: str | None = None) -> str:
    """Return the active profile name.

    ``name`` overrides the environment; ``None`` reads ``COURSE_PROFILE``; ``"auto"`` or an empty value picks
    ``gpu`` when CUDA is available and ``cpu`` otherwise.
    """
    if name is None:
        name = os.environ.get(ENV_VAR, "")
    if not isinstance(name, str):
        raise TypeError(f"profile must be a string, got {type(name).__name__}")
    choice = name.strip().lower()
    if choice in ("", "auto"):
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    if choice not in PROFILES:
        raise ValueError(
            f"unknown profile {name!r} (from {ENV_VAR} or the argument); allowed: {', '.join(PROFILES)} or 'auto'"
        )
    return choice


def by_profile(options: Mapping[str, T], profile: str | None = None) -> T:
    """Pick the entry of ``options`` (keyed by profile name) for the active profile.

    Every profile must be present, so a notebook cannot silently run the wrong scale.
    """
    missing = [p for p in PROFILES if p not in options]
    extra = [k for k in options if k not in PROFILES]
    if missing or extra:
        raise ValueError(
            f"by_profile needs exactly the keys {PROFILES}; missing {missing or 'none'}, unknown {extra or 'none'}"
        )
    return options[get_profile(profile)]
