"""Saving and loading trained course models without ever losing a good checkpoint.

A checkpoint is written to a temporary file and renamed into place (:func:`course_utils.cache.atomic_torch_save`),
so an interrupted save leaves the previous checkpoint intact. Loading a truncated or foreign file raises
:class:`CorruptCheckpointError`; :func:`load_or_train` reports it, trains afresh and replaces the file.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch

from course_utils.cache import atomic_torch_save
from course_utils.model.gpt import GPT, GPTConfig

FORMAT = "course-gpt-v1"


class CorruptCheckpointError(ValueError):
    pass


def save_checkpoint(model: GPT, path: Path, extra: dict | None = None) -> None:
    payload = {"format": FORMAT, "config": asdict(model.config), "state_dict": model.state_dict(),
               "extra": extra or {}}
    atomic_torch_save(payload, Path(path))


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> tuple[GPT, dict]:
    """The model (in eval mode) and the ``extra`` dict saved with it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:
        raise CorruptCheckpointError(f"checkpoint {path} cannot be read ({type(err).__name__}: {err})") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CorruptCheckpointError(f"{path} is not a course GPT checkpoint (expected format {FORMAT!r})")
    model = GPT(GPTConfig(**payload["config"]))
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval(), payload["extra"]


def load_or_train(path: Path, train_fn: Callable[[], tuple[GPT, dict]], expected_config: GPTConfig | None = None,
                  device: torch.device | str = "cpu", verbose: bool = True) -> tuple[GPT, dict, bool]:
    """Load ``path`` if it holds a valid checkpoint (with ``expected_config``, if given), else run ``train_fn``,
    save its result atomically and return it. The third value says whether training ran."""
    path = Path(path)
    if path.exists():
        try:
            model, extra = load_checkpoint(path, device)
            if expected_config is None or model.config == expected_config:
                return model, extra, False
            if verbose:
                print(f"checkpoint {path} has a different config; training a new one")
        except CorruptCheckpointError as err:
            if verbose:
                print(f"{err}; training afresh and replacing it")
    model, extra = train_fn()
    save_checkpoint(model, path, extra)
    return model, extra, True
