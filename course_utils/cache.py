"""A cache folder for things the course builds (converted model weights, trained checkpoints), written atomically.

Everything is first written to a temporary sibling and then renamed into place, so an interrupted run never leaves
a half-written file or folder where a good one was. Folders carry a ``COMPLETE.json`` manifest of file sizes written
last; :func:`is_complete_dir` checks it so a truncated cache is detected and rebuilt instead of loaded.

The cache lives in ``$COURSE_CACHE_DIR`` if set, else ``~/.cache/llm-course``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

_UMASK_LOCK = threading.Lock()  # atomic_file may run in a sweep's callback threads

MANIFEST = "COMPLETE.json"


def cache_dir(*parts: str) -> Path:
    """The course cache folder (created if missing), or a sub-folder of it."""
    root = Path(os.environ.get("COURSE_CACHE_DIR") or Path.home() / ".cache" / "llm-course").expanduser()
    for part in parts:  # a sub-folder stays inside the cache: '..' or an absolute path would write elsewhere
        if not isinstance(part, str) or not part or Path(part).is_absolute() or ".." in Path(part).parts:
            raise ValueError(f"cache_dir takes relative folder names inside the cache (no '..', not absolute), "
                             f"got {part!r}")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary folder; on success write its manifest and rename it to ``target`` (replacing it)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        sizes = {p.name: p.stat().st_size for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / MANIFEST).write_text(json.dumps(sizes, indent=1))
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def is_complete_dir(path: Path) -> bool:
    """True if ``path`` has a manifest and every listed file exists with the recorded size."""
    manifest = Path(path) / MANIFEST
    try:
        sizes = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(sizes, dict) or not sizes:
        return False
    return all((Path(path) / name).is_file() and (Path(path) / name).stat().st_size == size
               for name, size in sizes.items())


@contextmanager
def atomic_file(path: Path, mode: str = "wb") -> Iterator:
    """Yield a temporary file opened with ``mode`` in ``path``'s folder; on success flush it to disk and rename it
    onto ``path``, on failure delete it (``path`` keeps its old content either way)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        with _UMASK_LOCK:  # reading the umask sets it: two threads at once could leave it 0
            umask = os.umask(0)
            os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file an ordinary file's permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(text: str, path: Path) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path, "w") as f:
        f.write(text)


def atomic_torch_save(obj: object, path: Path) -> None:
    """``torch.save`` to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path, "wb") as f:
        torch.save(obj, f)
