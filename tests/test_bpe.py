"""Byte-level BPE: hand-computed merges, naive == fast, round trips, errors, files, and Hugging Face tokenizers."""

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from course_utils.text.bpe.interop import (BPETokenizer, gpt2_byte_to_unicode, hf_merges_as_bytes, merges_as_bytes,
                              to_hf_tokenizer, train_hf_bpe, train_tokenizer)
from course_utils.text.bpe.train import (GPT2_PATTERN, Merge, initial_words, merge_pair, pretokenize,
                                    split_on_specials, train_fast, train_naive)

WIKI = "aaabdaaabac"  # the Wikipedia BPE example: one pre-token, so merges are easy to work out by hand


@pytest.fixture(scope="module")
def shakespeare_slice():
    from course_utils.text.corpus import load_shakespeare

    split = load_shakespeare(max_train_chars=40_000, max_val_chars=10_000)
    return split.train_text, split.val_text


@pytest.fixture(scope="module")
def small_tokenizer(shakespeare_slice):
    return train_tokenizer(shakespeare_slice[0], 400, special_tokens=["<|endoftext|>"])


# ---- exact hand-computed values ----------------------------------------------------------------------------
def test_merge_pair_left_to_right_without_overlap():
    assert merge_pair([1, 1, 1, 2, 1, 1], (1, 1), 9) == [9, 1, 2, 9]
    assert merge_pair([], (1, 2), 9) == []


@pytest.mark.parametrize("trainer", [train_naive, train_fast])
def test_hand_computed_merges_id_rule(trainer):
    # pairs of a a a b d a a a b a c: aa x4, then ab and (aa)a tie at 2 -> smaller ids (97, 98) wins; then
    # (256, 257) at 2; then four pairs at 1 -> the smallest, (97, 99).
    merges = trainer(WIKI, 260, tie_break="ids")
    assert merges == [Merge((97, 97), 4), Merge((97, 98), 2), Merge((256, 257), 2), Merge((97, 99), 1)]
    tok = BPETokenizer([m.pair for m in merges])
    assert tok.encode(WIKI) == [258, 100, 258, 259]
    assert tok.vocab[258] == b"aaab"


@pytest.mark.parametrize("trainer", [train_naive, train_fast])
def test_hand_computed_merges_bytes_rule(trainer):
    # same counts; the tie at 2 between (b"aa", b"a") and (b"a", b"b") goes to the greater byte strings, b"aa" > b"a";
    # then (b"aaa", b"b") at 2; then the four pairs at 1: (b"d", b"aaab") is the greatest (b"d" > b"b" > b"a").
    merges = trainer(WIKI, 260)  # tie_break="bytes" is the default
    assert merges == [Merge((97, 97), 4), Merge((256, 97), 2), Merge((257, 98), 2), Merge((100, 258), 1)]
    assert BPETokenizer([m.pair for m in merges]).vocab[256:] == [b"aa", b"aaa", b"aaab", b"daaab"]


def test_pretokenize_gpt2_pattern():
    assert pretokenize("Hello, world! It's 2024.  ") == ["Hello", ",", " world", "!", " It", "'s", " 2024", ".", "  "]
    assert split_on_specials("a<|x|>b<|x|>", ["<|x|>"]) == [("a", False), ("<|x|>", True), ("b", False),
                                                           ("<|x|>", True)]


def test_the_longest_special_token_wins_where_several_match():
    specials = ["<|a|>", "<|a|><|b|>"]  # the shorter is a prefix of the longer, and listed first
    assert split_on_specials("x<|a|><|b|>y", specials) == [("x", False), ("<|a|><|b|>", True), ("y", False)]
    tok = BPETokenizer([], special_tokens=specials)  # ids 256 and 257
    assert tok.encode("x<|a|><|b|>y", allowed_special="all") == [ord("x"), 257, ord("y")]
    assert tok.encode("x<|a|>y", allowed_special="all") == [ord("x"), 256, ord("y")]


def test_training_stops_when_nothing_is_left_to_merge():
    for rule in ("bytes", "ids"):
        assert (train_fast("ab ab", 300, tie_break=rule) == train_naive("ab ab", 300, tie_break=rule)
                == [Merge((97, 98), 2), Merge((32, 256), 1)])


# ---- naive == fast -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rule", ["bytes", "ids"])
def test_naive_equals_fast_on_shakespeare(shakespeare_slice, rule):
    text = shakespeare_slice[0][:15_000]
    assert train_naive(text, 420, tie_break=rule) == train_fast(text, 420, tie_break=rule)


@settings(max_examples=40, deadline=None)
@given(st.text(alphabet="ab c\n'é1", max_size=80), st.integers(256, 300), st.sampled_from(["bytes", "ids"]))
def test_naive_equals_fast_property(text, vocab_size, rule):
    # a tiny alphabet makes many ties, the case where a wrong heap order would show
    assert train_naive(text, vocab_size, tie_break=rule) == train_fast(text, vocab_size, tie_break=rule)


# ---- round trips --------------------------------------------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=()), max_size=60))  # surrogates included
def test_round_trip_any_unicode(small_tokenizer, text):
    assert small_tokenizer.decode(small_tokenizer.encode(text), errors="surrogatepass") == text


@pytest.mark.parametrize("text", ["", "naïve café 🤖🎉 façade", "\x00\x01\ufffd\udfff", "<|endoftext|>x<|endo",
                                  "日本語のテキスト", "  \n\n\t  trailing   "])
def test_round_trip_examples(small_tokenizer, text):
    ids = small_tokenizer.encode(text, disallowed_special=())
    assert all(0 <= i < small_tokenizer.vocab_size for i in ids)
    assert small_tokenizer.decode(ids, errors="surrogatepass") == text
    if not any("\ud800" <= c <= "\udfff" for c in text):
        assert small_tokenizer.decode(ids) == text  # the default needs no opt-in for valid Unicode


def test_special_tokens_are_single_ids_and_never_merged(small_tokenizer):
    eot = small_tokenizer.special_tokens["<|endoftext|>"]
    assert eot == small_tokenizer.vocab_size - 1
    hi = small_tokenizer.encode("hi")
    assert small_tokenizer.encode("hi<|endoftext|>hi", allowed_special="all") == hi + [eot] + hi
    assert eot not in small_tokenizer.encode("<|endoftext|>", disallowed_special=())
    with pytest.raises(ValueError, match="disallowed"):
        small_tokenizer.encode("hi<|endoftext|>hi")
    tok = train_tokenizer("ab<|sep|>" * 50, 300, special_tokens=["<|sep|>"])
    learned = tok.vocab[256:256 + len(tok.merges)]
    assert learned and not any(b"<" in t or b"|" in t for t in learned)  # the special's bytes were never seen


def test_invalid_utf8_decodes_to_replacement_character(small_tokenizer):
    ids = small_tokenizer.encode("é")  # two bytes
    assert small_tokenizer.decode_bytes(ids[:1]) in (b"\xc3",)
    assert small_tokenizer.decode([0xC3]) == "\ufffd"


def test_surrogate_bytes_decode_to_replacement_by_default_and_round_trip_on_request(small_tokenizer):
    surrogate = [0xED, 0xA0, 0x80, 0x41]  # the bytes of U+D800, then "A": not valid UTF-8
    assert small_tokenizer.decode(surrogate) == "\ufffd\ufffd\ufffdA" == bytes(surrogate).decode("utf-8", "replace")
    assert small_tokenizer.decode(surrogate, errors="surrogatepass") == "\ud800A"
    with pytest.raises(UnicodeDecodeError):
        small_tokenizer.decode(surrogate, errors="strict")
    with pytest.raises(UnicodeDecodeError):  # surrogatepass lets surrogates through, nothing else
        small_tokenizer.decode([0xC3, 0x41], errors="surrogatepass")
    with pytest.raises(ValueError, match="errors must be one of"):
        small_tokenizer.decode(surrogate, errors="xmlcharrefreplace")


def test_encoding_cache_gives_the_same_ids(shakespeare_slice, small_tokenizer):
    uncached = BPETokenizer(small_tokenizer.merges, ["<|endoftext|>"], cache_size=0)
    text = shakespeare_slice[1][:3000]
    assert small_tokenizer.encode(text) == uncached.encode(text) == small_tokenizer.encode(text)
    bounded = BPETokenizer(small_tokenizer.merges, ["<|endoftext|>"], cache_size=5)
    assert bounded.encode(text) == uncached.encode(text)
    assert len(bounded._cache) <= 5  # cache_size bounds the memory of the pre-token cache


def test_sizes_take_numpy_ints_as_python_ints(small_tokenizer):
    import numpy as np

    from course_utils.text.bpe.train import number_of_merges

    tok = BPETokenizer(small_tokenizer.merges, ["<|endoftext|>"], cache_size=np.int64(5))
    assert tok.cache_size == 5 and type(tok.cache_size) is int
    merges = number_of_merges(np.int64(300), ["<|endoftext|>"])
    assert merges == number_of_merges(300, ["<|endoftext|>"]) == 43 and type(merges) is int
    for bad in (True, 2.5):
        with pytest.raises((TypeError, ValueError)):
            BPETokenizer(small_tokenizer.merges, [], cache_size=bad)
    with pytest.raises(TypeError, match="vocab_size must be an int"):
        number_of_merges(300.0)


def test_merge_steps_end_at_encode(small_tokenizer):
    steps = small_tokenizer.merge_steps("The lowest goblinmode")
    assert steps[0][0] is None and [r for r, _ in steps[1:]] == sorted(r for r, _ in steps[1:])
    assert [i for piece in steps[-1][1] for i in piece] == small_tokenizer.encode_ordinary("The lowest goblinmode")


# ---- errors -------------------------------------------------------------------------------------------------
def test_bad_arguments_raise_clear_errors(small_tokenizer):
    with pytest.raises(ValueError, match="vocab_size >= 257"):
        train_fast("abc", 256, special_tokens=["<s>"])
    with pytest.raises(ValueError, match="vocab_size >= 256"):
        train_naive("abc", 100)
    with pytest.raises(ValueError, match="empty"):
        train_tokenizer("abc", 300, special_tokens=[""])
    with pytest.raises(ValueError, match="duplicated"):
        BPETokenizer([], special_tokens=["<s>", "<s>"])
    with pytest.raises(TypeError, match="not one string"):
        BPETokenizer([], special_tokens="<s>")
    with pytest.raises(ValueError, match=r"\[0, 400\)"):
        small_tokenizer.decode([5, 400])
    with pytest.raises(ValueError, match=r"\[0, 400\)"):
        small_tokenizer.decode([-1])
    with pytest.raises(ValueError, match=r"\[0, 400\).*got \[True\]"):
        small_tokenizer.decode([5, True])          # a bool is not a token id (True would decode as id 1)
    with pytest.raises(ValueError, match="earlier merges"):
        BPETokenizer([(97, 98), (256, 257)])
    with pytest.raises(TypeError):
        small_tokenizer.encode(b"bytes")
    with pytest.raises(ValueError, match="method"):
        train_tokenizer("abc", 300, method="quick")
    with pytest.raises(ValueError, match="tie_break"):
        train_fast("abc", 300, tie_break="smallest")
    with pytest.raises(ValueError, match="tie_break"):
        train_naive("abc", 300, tie_break="greatest")


# ---- files --------------------------------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path, small_tokenizer, shakespeare_slice):
    path = small_tokenizer.save(tmp_path / "tok.json")
    loaded = BPETokenizer.load(path)
    assert loaded.merges == small_tokenizer.merges and loaded.special_tokens == small_tokenizer.special_tokens
    text = shakespeare_slice[1][:2000] + "<|endoftext|>"
    assert loaded.encode(text, allowed_special="all") == small_tokenizer.encode(text, allowed_special="all")


def test_load_rejects_truncated_and_corrupt_files(tmp_path, small_tokenizer):
    path = small_tokenizer.save(tmp_path / "tok.json")
    raw = path.read_text()
    (tmp_path / "cut.json").write_text(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        BPETokenizer.load(tmp_path / "cut.json")
    record = json.loads(raw)
    record["merges"][3] = [record["merges"][3][1], record["merges"][3][0]]  # a silently edited merge
    (tmp_path / "edit.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="checksum"):
        BPETokenizer.load(tmp_path / "edit.json")
    (tmp_path / "other.json").write_text(json.dumps({"model": {}}))
    with pytest.raises(ValueError, match="format"):
        BPETokenizer.load(tmp_path / "other.json")
    with pytest.raises(FileNotFoundError):
        BPETokenizer.load(tmp_path / "missing.json")


# ---- Hugging Face tokenizers as the reference -------------------------------------------------------------
def test_gpt2_byte_map_is_a_bijection_onto_printable_characters():
    table = gpt2_byte_to_unicode()
    assert len(set(table.values())) == 256 and table[32] == "Ġ" and table[ord("a")] == "a"
    assert all(c.isprintable() for c in table.values())


def test_encoder_matches_tokenizers_with_our_merges(small_tokenizer, shakespeare_slice):
    hf = to_hf_tokenizer(small_tokenizer)
    text = shakespeare_slice[1] + " goblinmode 🤖 naïve <|endoftext|> 2024!!"
    ids = small_tokenizer.encode(text, allowed_special="all")
    assert ids == hf.encode(text).ids
    assert hf.decode(ids, skip_special_tokens=False) == text


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=60))
def test_encoder_matches_tokenizers_property(small_tokenizer, text):
    hf = _hf_cache.setdefault("hf", to_hf_tokenizer(small_tokenizer))
    assert small_tokenizer.encode(text, allowed_special="all") == hf.encode(text).ids


_hf_cache: dict = {}


def test_trainer_matches_tokenizers_exactly_without_space_ties():
    # Bytes between '!' and '~' have the same order in tokenizers' alphabet as ours, so every tie is broken the
    # same way and the merge lists must be identical.
    rng = random.Random(0)
    words = ["".join(rng.choice("abcde") for _ in range(rng.randint(1, 7))) for _ in range(3000)]
    text = "".join(w + rng.choice(",.;!") for w in words)
    ours = train_tokenizer(text, 500, tie_break="ids")  # tokenizers' rule is the smaller id pair
    assert merges_as_bytes(ours) == hf_merges_as_bytes(train_hf_bpe(text, 500))


def test_tokenizers_trains_on_special_token_text_where_ours_cuts_it_out():
    text = "hello world<|endoftext|>" * 50  # the documented difference: compare trainers on text without it
    theirs = {a + b for a, b in hf_merges_as_bytes(train_hf_bpe(text, 300, special_tokens=["<|endoftext|>"]))}
    ours = {a + b for a, b in merges_as_bytes(train_tokenizer(text, 300, special_tokens=["<|endoftext|>"]))}
    assert b"endoftext" in theirs and not any(b"<|" in t or b"endoft" in t for t in ours)


def test_trainer_differs_from_tokenizers_only_by_ties(shakespeare_slice):
    text = shakespeare_slice[0][:20_000]
    ours_merges = train_fast(text, 420, tie_break="ids")
    ours = BPETokenizer([m.pair for m in ours_merges])
    theirs = hf_merges_as_bytes(train_hf_bpe(text, 420))
    mine = merges_as_bytes(ours)
    assert len(mine) == len(theirs) == 164
    first = next((i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b), None)
    if first is None:
        return
    # at the first difference, tokenizers' choice had exactly the count of ours: a tie broken differently
    ids_of = {t: i for i, t in enumerate(ours.vocab)}
    their_pair = (ids_of[theirs[first][0]], ids_of[theirs[first][1]])
    words, freqs = initial_words(text, GPT2_PATTERN)
    for k in range(first):
        words = [merge_pair(w, ours.merges[k], 256 + k) for w in words]
    count = sum(f * sum(1 for p in zip(w, w[1:]) if p == their_pair) for w, f in zip(words, freqs))
    assert count == ours_merges[first].count
    assert b" " in theirs[first][0] + theirs[first][1] + mine[first][0] + mine[first][1]
    assert len(set(mine) & set(theirs)) >= 0.9 * len(mine)
