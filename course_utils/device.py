"""Device selection and explicit seeding.

One helper picks the accelerator (CUDA, then Apple MPS, then CPU); nothing in the course hard-codes ``"cuda"``.
Seeding returns a ``torch.Generator`` that callers pass on explicitly, instead of relying on hidden global state;
:func:`seed_everything` additionally seeds the global generators for code we do not control (weight init).
"""

from __future__ import annotations

import random

import numpy as np
import torch

DEVICE_KINDS = ("cuda", "mps", "cpu")


def pick_device(preferred: str | None = None) -> torch.device:
    """Return ``preferred`` if given and available, else the best available of cuda, mps, cpu."""
    if preferred is not None:
        kind = str(preferred).split(":")[0]
        if kind not in DEVICE_KINDS:
            raise ValueError(f"unknown device {preferred!r}; allowed: {', '.join(DEVICE_KINDS)} (optionally 'cuda:N')")
        if kind == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {preferred!r} requested but CUDA is not available; use pick_device() for auto")
        if kind == "mps" and not _mps_available():
            raise ValueError(f"device {preferred!r} requested but MPS is not available; use pick_device() for auto")
        return torch.device(preferred)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA) and return a CPU ``torch.Generator`` seeded with ``seed``.

    Weight initialisation in ``torch.nn`` uses the global generator, so seeding it is the only way to make model
    construction reproducible; everything the course writes itself takes the returned generator explicitly.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return make_generator(seed)


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device`` seeded with ``seed``."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def describe_runtime(device: torch.device | None = None) -> str:
    """One line naming the torch version, device and thread count, for the first cell of every notebook."""
    device = device or pick_device()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return f"torch {torch.__version__} | device {name} | {torch.get_num_threads()} CPU threads"
