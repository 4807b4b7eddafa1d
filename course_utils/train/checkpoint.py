"""Saving and loading trained course models without ever losing a good checkpoint.

A checkpoint is written to a temporary file and renamed into place (:func:`course_utils.cache.atomic_torch_save`),
so an interrupted save leaves the previous checkpoint intact. Files are read with ``torch.load(weights_only=True)``,
which builds only tensors and plain Python values, so :func:`save_checkpoint` refuses (``TypeError``, nothing
written) an ``extra`` value that such a load would refuse (a numpy scalar, a dataclass): store ``float(x)``,
``int(x)`` or a list. Loading a truncated or foreign file raises :class:`CorruptCheckpointError`; :func:`load_or_train`
reports it, trains afresh and replaces the file. A file that is intact but holds an object the safe load refuses
(:class:`UnsafeCheckpointError`) is never replaced: :func:`load_or_train` raises and says what to do.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import asdict
from pathlib import Path
from pickle import UnpicklingError
from typing import Callable

import torch

from course_utils.cache import atomic_torch_save
from course_utils.model.gpt import GPT, GPTConfig

FORMAT = "course-gpt-v1"


class CorruptCheckpointError(ValueError):
    pass


class UnsafeCheckpointError(CorruptCheckpointError):
    """The file is readable but holds an object ``torch.load(weights_only=True)`` refuses (an unsafe global)."""


def _check_extra(extra: dict | None) -> dict:
    """``extra`` if every value survives ``torch.load(weights_only=True)``; else a TypeError naming the key."""
    if extra is None:
        return {}
    if not isinstance(extra, dict):
        raise TypeError(f"extra must be a dict of plain values, got {type(extra).__name__}")
    for key, value in extra.items():
        buffer = io.BytesIO()
        try:
            torch.save({key: value}, buffer)
            buffer.seek(0)
            torch.load(buffer, weights_only=True)
        except Exception as err:
            raise TypeError(
                f"extra[{key!r}] is a {type(value).__name__}, which torch.load(weights_only=True) cannot read back "
                f"from a checkpoint ({_unsafe_global(err) or type(err).__name__}); store plain values: float(x) or "
                f"int(x) for a numpy scalar, a list (x.tolist()) or a tensor for an array, a dict for a dataclass"
            ) from err
    return extra


def _unsafe_global(err: BaseException) -> str | None:
    """The global a weights-only load refused (e.g. 'numpy._core.multiarray.scalar'), or None for other errors."""
    found = re.search(r"GLOBAL (\S+)", str(err)) if isinstance(err, UnpicklingError) else None
    return found.group(1) if found else None


def recipe_key(*parts: object) -> str:
    """12 hex digits of the sha256 of ``repr(parts)``: put everything that shapes a trained model (config, training
    recipe, seed, data sizes) in a checkpoint's file name, so a changed recipe is another file, never a stale
    checkpoint loaded silently (``load_or_train`` compares only the model config)."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:12]


def save_checkpoint(model: GPT, path: Path, extra: dict | None = None) -> None:
    """Write ``model`` and ``extra`` atomically; a TypeError (nothing written) if ``extra`` could not be loaded back."""
    payload = {"format": FORMAT, "config": asdict(model.config), "state_dict": model.state_dict(),
               "extra": _check_extra(extra)}
    atomic_torch_save(payload, Path(path))


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> tuple[GPT, dict]:
    """The model (in eval mode) and the ``extra`` dict saved with it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:
        unsafe = _unsafe_global(err)
        if unsafe:
            raise UnsafeCheckpointError(
                f"checkpoint {path} holds a {unsafe} object, which torch.load(weights_only=True) refuses to build "
                f"(written before save_checkpoint checked extra, or by other code); the file is intact") from err
        raise CorruptCheckpointError(f"checkpoint {path} cannot be read ({type(err).__name__}: {err})") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CorruptCheckpointError(f"{path} is not a course GPT checkpoint (expected format {FORMAT!r})")
    try:
        model = GPT(GPTConfig(**payload["config"]))
        model.load_state_dict(payload["state_dict"])
        extra = payload["extra"]
        if not isinstance(extra, dict):
            raise TypeError(f"extra is a {type(extra).__name__}, not a dict")
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CorruptCheckpointError(f"{path} does not hold a loadable course GPT "
                                     f"({type(err).__name__}: {err})") from err
    return model.to(device).eval(), extra


def load_or_train(path: Path, train_fn: Callable[[], tuple[GPT, dict]], expected_config: GPTConfig | None = None,
                  device: torch.device | str = "cpu", verbose: bool = True) -> tuple[GPT, dict, bool]:
    """Load ``path`` if it holds a valid checkpoint (with ``expected_config``, if given), else run ``train_fn``,
    save its result atomically and return it. The third value says whether training ran.

    A truncated or foreign file is replaced; an intact one the safe load refuses (:class:`UnsafeCheckpointError`)
    is not: the error says to move or delete it first.
    """
    if expected_config is not None and not isinstance(expected_config, GPTConfig):  # e.g. asdict(config): never equal
        raise TypeError(f"expected_config must be a GPTConfig or None, got {type(expected_config).__name__} (any "
                        f"other type never equals a checkpoint's config, so a valid checkpoint would be overwritten)")
    path = Path(path)
    if path.exists():
        try:
            model, extra = load_checkpoint(path, device)
            if expected_config is None or model.config == expected_config:
                return model, extra, False
            if verbose:
                print(f"checkpoint {path} has a different config; training a new one")
        except UnsafeCheckpointError as err:
            raise UnsafeCheckpointError(
                f"{err}. It is kept, not overwritten: move or delete it to train afresh, or, only if you trust the "
                f"file, read it yourself with torch.load(path, weights_only=False)") from err
        except CorruptCheckpointError as err:
            if verbose:
                print(f"{err}; training afresh and replacing it")
    model, extra = train_fn()
    save_checkpoint(model, path, extra)
    return model, extra, True
