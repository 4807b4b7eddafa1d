"""Streaming encoding: the ids of ``"".join(chunks)`` from an iterable of strings, lazily and in bounded memory.

A chunk boundary (a line end, a fixed-size read) can fall inside a pre-token ("hel" | "lo"), inside a whitespace
run whose split depends on what follows (GPT-2's ``\\s+(?!\\S)``), or inside a special token ("<|endof" |
"text|>"). So each chunk is encoded except its end, which is carried over and re-read with the next chunk:

* the last pre-token of the chunk (the only one the next characters can change, for the GPT-2 and cl100k patterns:
  every earlier pre-token is followed by a character that ends it whatever comes next); and
* any suffix that could still be the beginning of a special token (:func:`course_utils.text.bpe.specials.safe_cut`).

Memory is the carry-over plus one chunk's ids: bounded by the longest pre-token, not by the text (a text that is
one enormous pre-token, such as a megabyte without spaces, is held whole). ``tests/test_bpe_stream.py`` checks the
ids against :meth:`BPETokenizer.encode` of the whole text for chunks cut everywhere, and the memory bound.

Left out: parallel encoding of chunks (tiktoken's ``encode_batch``).
"""

from __future__ import annotations

from typing import Iterable, Iterator

from course_utils.text.bpe.specials import check_disallowed, safe_cut, split_allowed


def encode_chunks(tokenizer, chunks: Iterable[str], allowed: frozenset[str],
                  disallowed: frozenset[str]) -> Iterator[int]:
    """Yield the ids of the concatenated ``chunks`` (see the module docstring); arguments already checked."""
    specials = tuple(tokenizer.special_tokens)
    encode_pretoken, pretokens = tokenizer._encode_pretoken, tokenizer._regex
    carry = ""
    for n, chunk in enumerate(chunks):
        if not isinstance(chunk, str):
            raise TypeError(f"chunk {n} is a {type(chunk).__name__}; encode_iterable takes strings "
                            "(open files in text mode)")
        buffer = carry + chunk
        cut = safe_cut(buffer, specials)
        ready, held = buffer[:cut], buffer[cut:]
        check_disallowed(ready, disallowed)
        tail = ""
        for piece, is_special in split_allowed(ready, allowed):
            if tail:  # a special token follows: the previous text's last pre-token is complete
                yield from encode_pretoken(tail)
                tail = ""
            if is_special:
                yield tokenizer.special_tokens[piece]
                continue
            last = None
            for match in pretokens.finditer(piece):
                if last is not None:
                    yield from encode_pretoken(last.group())
                last = match
            tail = piece[last.start():] if last is not None else ""
        carry = tail + held
    if carry:
        yield from tokenizer.encode(carry, allowed_special=allowed, disallowed_special=disallowed)
