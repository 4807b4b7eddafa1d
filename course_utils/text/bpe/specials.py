"""Special tokens at encoding time, with tiktoken's rules (``allowed_special`` and ``disallowed_special``).

A special token such as ``<|endoftext|>`` has one fixed id, but the *string* ``"<|endoftext|>"`` can also appear in
ordinary text (a web page about tokenizers, or a user trying to inject a document boundary). tiktoken (OpenAI)
therefore makes the caller say what the string means:

* ``allowed_special``: the special tokens that become their single id where their text appears (``"all"`` or a
  set of strings; default: none);
* ``disallowed_special``: the special tokens whose text raises ``ValueError`` if it appears (``"all"`` = every
  special token not allowed, the default; ``()`` = none, so their text is encoded as ordinary bytes).

A special token in neither set is encoded as ordinary text. These helpers resolve the two arguments once per call,
find special tokens with one compiled regular expression (longest token first where several match at a place) and
tell a streaming encoder how much of a chunk's end might still be the start of a special token.

Left out: tiktoken's exact error text (ours names the token and both ways out, as tiktoken's does).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Collection, Mapping

import regex


def resolve_specials(special_tokens: Mapping[str, int], allowed_special: str | Collection[str],
                     disallowed_special: str | Collection[str]) -> tuple[frozenset[str], frozenset[str]]:
    """The ``(allowed, disallowed)`` sets of special-token strings for one encode call, checked."""
    known = frozenset(special_tokens)

    def as_set(value, name: str) -> frozenset[str]:
        if value == "all":
            return known
        if isinstance(value, str) or not isinstance(value, Collection):
            raise TypeError(f"{name} must be 'all' or a collection of special-token strings (e.g. set(), "
                            f"{{'<|endoftext|>'}}), got {value!r}")
        unknown = sorted(str(t) for t in value if t not in known)
        if unknown:
            raise ValueError(f"{name} names {unknown}, which are not special tokens of this tokenizer; "
                             f"its special tokens are {sorted(known)}")
        return frozenset(value)

    allowed = as_set(allowed_special, "allowed_special")
    disallowed = known - allowed if disallowed_special == "all" else as_set(disallowed_special, "disallowed_special")
    return allowed, disallowed  # like tiktoken, a token in both sets raises


@lru_cache(maxsize=64)
def special_regex(tokens: frozenset[str]) -> regex.Pattern:
    """One pattern matching any of ``tokens``, the longest first where several start at the same place."""
    return regex.compile("|".join(regex.escape(t) for t in sorted(tokens, key=lambda t: (-len(t), t))))


def check_disallowed(text: str, disallowed: frozenset[str]) -> None:
    """Raise ``ValueError`` if the text of a disallowed special token appears in ``text``."""
    if disallowed:
        match = special_regex(disallowed).search(text)
        if match:
            token = match.group()
            raise ValueError(
                f"the text contains {token!r}, the text of a special token that is disallowed. To encode it as the "
                f"special token, pass allowed_special={{{token!r}}} (or 'all'); to encode it as ordinary text, pass "
                f"disallowed_special=() (or a set without it). Never allow special tokens in untrusted text.")


def split_allowed(text: str, allowed: frozenset[str]) -> list[tuple[str, bool]]:
    """``text`` cut into ``(piece, is_special)`` parts at the allowed special tokens (empty pieces dropped)."""
    if not allowed:
        return [(text, False)] if text else []
    parts, start = [], 0
    for match in special_regex(allowed).finditer(text):
        if match.start() > start:
            parts.append((text[start:match.start()], False))
        parts.append((match.group(), True))
        start = match.end()
    if start < len(text):
        parts.append((text[start:], False))
    return parts


def safe_cut(text: str, special_tokens: Collection[str]) -> int:
    """The largest ``cut`` such that no special token can straddle ``text[:cut] | text[cut:]`` once more text
    arrives: ``text[cut:]`` is the longest suffix that is a proper prefix of a special token, moved left to the
    start of any special token that would otherwise be cut."""
    if not special_tokens:
        return len(text)
    longest = max(len(t) for t in special_tokens)
    cut = len(text)
    for start in range(max(0, len(text) - longest + 1), len(text)):
        tail = text[start:]
        if any(t.startswith(tail) and t != tail for t in special_tokens):
            cut = start
            break
    for match in special_regex(frozenset(special_tokens)).finditer(text, max(0, cut - longest)):
        if match.start() < cut < match.end():
            cut = match.start()
    return cut
