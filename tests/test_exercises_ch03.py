"""Chapter 03's exercise checks accept the reference and other correct forms, and reject the likely wrong answers."""

import functools
import importlib
import re
import sys
import types
from collections import Counter

import numpy as np
import pytest
import tiktoken
import tiktoken._educational
import torch

from course_utils.exercises import ch03 as ex
from course_utils.solutions import ch03 as sol
from course_utils.text.bpe.interop import GPT2_PATTERN, to_hf_tokenizer, train_tokenizer
from course_utils.text.bpe.train import _Greater, merge_pair, pretokenize, tie_key
from course_utils.text.bpe.tokenizer import BPETokenizer
from course_utils.text.bpe.toy import TOY_CORPUS

TRAIN = ("To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer the slings and "
         "arrows of outrageous fortune, or to take arms against a sea of troubles. The lord and the king. " * 20)
VAL = "To sleep, perchance to dream: ay, there's the rub! The king and the lord, the queen. Goblinmode naïve 🤖"


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TRAIN, 400)


@pytest.fixture(scope="module")
def toy_tok():
    return train_tokenizer(" ".join(w for w, n in TOY_CORPUS.items() for _ in range(n)), 266, method="naive")


def fails(check, *args):
    with pytest.raises(AssertionError):
        check(*args)


# ---- exercise 1 ------------------------------------------------------------------------------------------------
def test_encode_word(tok):
    words = re.findall(r" ?\w+", VAL)
    ex.check_encode_word(sol.encode_word, tok.merges, words)
    ex.check_encode_word(lambda ids, merges: torch.tensor(sol.encode_word(ids, merges), dtype=torch.int32),
                         tok.merges, words)
    ex.check_encode_word(lambda ids, merges: tuple(sol.encode_word(ids, merges)), tok.merges, words)
    ex.check_encode_word(lambda ids, merges: np.array(sol.encode_word(ids, merges)), tok.merges, words)
    ex.check_encode_word(lambda ids, merges: [np.int64(i) for i in sol.encode_word(ids, merges)], tok.merges, words)


@pytest.mark.parametrize("wrong", [
    lambda ids, merges: torch.tensor([sol.encode_word(ids, merges)]),  # a (1, k) row: an assertion, not a TypeError
    lambda ids, merges: np.array([sol.encode_word(ids, merges)]),
    lambda ids, merges: [i + 0.7 for i in sol.encode_word(ids, merges)],  # int() would truncate these to right ids
])
def test_encode_word_rejects_rows_and_fractional_ids(tok, wrong):
    fails(ex.check_encode_word, wrong, tok.merges, re.findall(r" ?\w+", VAL))


def _stops_at_two_ids(ids, merges):  # a loop guard off by one: a word that should end as one token keeps two
    ranks = {tuple(p): i for i, p in enumerate(merges)}
    ids = list(ids)
    while len(ids) > 2:
        rank, hit = min(((ranks[p], i) for i, p in enumerate(zip(ids, ids[1:])) if p in ranks), default=(None, None))
        if hit is None:
            break
        ids = ids[:hit] + [256 + rank] + ids[hit + 2:]
    return ids


def test_encode_word_names_the_one_token_case_and_the_first_wrong_held_out_word(tok):
    words = re.findall(r" ?\w+", VAL)
    with pytest.raises(AssertionError, match="a word that ends as one token: got"):
        ex.check_encode_word(_stops_at_two_ids, tok.merges, words)

    # past the named cases, a wrong held-out word is named with the learner's ids, not a list of every answer
    def skips_one_merge(ids, merges):  # right on the named cases' short merge lists, wrong on the trained one
        return sol.encode_word(ids, merges[:-1] if len(merges) > 10 else merges)

    message = str(pytest.raises(AssertionError, ex.check_encode_word, skips_one_merge, tok.merges, words).value)
    assert message.startswith("held-out word ") and " held-out words come out differently)" in message, message
    assert len(message) < 1000, len(message)


def _leftmost_first(ids, merges):  # applies the leftmost known pair instead of the lowest rank
    ranks = {tuple(p): i for i, p in enumerate(merges)}
    while True:
        hit = next((i for i, p in enumerate(zip(ids, ids[1:])) if p in ranks), None)
        if hit is None:
            return ids
        ids = ids[:hit] + [256 + ranks[(ids[hit], ids[hit + 1])]] + ids[hit + 2:]


def _one_pass(ids, merges):  # applies each merge once in order but only its first occurrence
    for r, pair in enumerate(merges):
        for i in range(len(ids) - 1):
            if (ids[i], ids[i + 1]) == tuple(pair):
                ids = ids[:i] + [256 + r] + ids[i + 2:]
                break
    return ids


def _in_list_order(ids, merges):  # correct too: applying every merge of the list in order gives the same ids
    ids = list(ids)
    for rank, pair in enumerate(merges):
        ids = merge_pair(ids, tuple(pair), 256 + rank)
    return ids


def test_encode_word_accepts_the_list_order_form(tok):
    ex.check_encode_word(_in_list_order, tok.merges, re.findall(r" ?\w+", VAL))


@pytest.mark.parametrize("wrong", [_leftmost_first, _one_pass, lambda ids, merges: ids])
def test_encode_word_rejects(tok, wrong):
    fails(ex.check_encode_word, wrong, tok.merges, re.findall(r" ?\w+", VAL))


def _ranks(merges):
    return {t: i for i, t in enumerate(BPETokenizer(merges).vocab)}


def _slow_bpe(model, cls_name, ids, merges, end, sep):  # a transformers slow tokenizer's bpe, on a stand-in self
    module = importlib.import_module(f"transformers.models.{model}.tokenization_{model}")
    sym, ranks = {i: chr(0x100 + i) for i in range(256)}, {}  # one character per byte; a merge joins two strings
    for rank, (a, b) in enumerate(merges):
        ranks[sym[a], sym[b]] = rank
        sym[256 + rank] = sym[a] + sym[b]
    word = getattr(module, cls_name).bpe(types.SimpleNamespace(cache={}, bpe_ranks=ranks),
                                         "".join(sym[i] for i in ids) + end)
    back = {text: i for i, text in sym.items()}
    return [back[text] for text in word.split(sep) if text != end]  # `end` takes the end-of-word mark, and goes


# Every ready-made encoder the notebook can reach gives the right ids; the check must refuse each one.
READY_MADE_ENCODERS = {
    "BPETokenizer.bpe": lambda ids, merges: BPETokenizer(merges).bpe(ids),
    "BPETokenizer.encode": lambda ids, merges: BPETokenizer(merges).encode(bytes(ids).decode()),
    "the check's own helper": lambda ids, merges: ex._merge_word(list(ids), merges),
    "BPETokenizer.from_ranks(...)._bpe_ranked":
        lambda ids, merges: BPETokenizer.from_ranks(_ranks(merges), GPT2_PATTERN)._bpe_ranked(bytes(ids)),
    "to_hf_tokenizer": lambda ids, merges: to_hf_tokenizer(BPETokenizer(merges)).encode(bytes(ids).decode()).ids,
    "tiktoken.Encoding": lambda ids, merges: tiktoken.Encoding(
        "x", pat_str=r"[\s\S]+", mergeable_ranks=_ranks(merges), special_tokens={})._encode_bytes(bytes(ids)),
    "tiktoken._educational.bpe_encode":
        lambda ids, merges: tiktoken._educational.bpe_encode(_ranks(merges), bytes(ids), visualise=None),
    "transformers' ClvpTokenizer.bpe": lambda ids, merges: _slow_bpe("clvp", "ClvpTokenizer", ids, merges, "", " "),
    "transformers' CTRLTokenizer.bpe": lambda ids, merges: _slow_bpe("ctrl", "CTRLTokenizer", ids, merges, "|", "@@ "),
}


@pytest.mark.parametrize("route", list(READY_MADE_ENCODERS))
def test_encode_word_refuses_ready_made_encoders(tok, route):
    words = re.findall(r" ?\w+", VAL)
    encoder = READY_MADE_ENCODERS[route]
    assert [encoder(list(w.encode()), tok.merges) for w in words] == [sol.encode_word(list(w.encode()), tok.merges)
                                                                      for w in words]  # the route is right...
    with pytest.raises(AssertionError, match="switched off"):  # ...and refused
        ex.check_encode_word(encoder, tok.merges, words)


def test_encode_word_refuses_a_slow_tokenizer_imported_inside_the_answer(tok, monkeypatch):
    # nothing is imported to look for slow tokenizers: one first imported inside the answer escapes the first call,
    # then is switched off for the next (each call looks afresh), so the check still fails
    import transformers.models.ctrl as package

    monkeypatch.delitem(sys.modules, "transformers.models.ctrl.tokenization_ctrl", raising=False)
    monkeypatch.delattr(package, "tokenization_ctrl", raising=False)  # both restored after the test
    with pytest.raises(AssertionError, match="CTRLTokenizer.bpe is switched off"):
        ex.check_encode_word(READY_MADE_ENCODERS["transformers' CTRLTokenizer.bpe"], tok.merges,
                             re.findall(r" ?\w+", VAL))


@pytest.mark.parametrize("model, cls_name", [
    ("clvp", "ClvpTokenizer"), ("ctrl", "CTRLTokenizer"), ("bertweet", "BertweetTokenizer"),
    ("biogpt", "BioGptTokenizer"), ("xlm", "XLMTokenizer"), ("fsmt", "FSMTTokenizer"),
    ("flaubert", "FlaubertTokenizer"), ("phobert", "PhobertTokenizer"),
    ("blenderbot_small", "BlenderbotSmallTokenizer")])
def test_every_slow_tokenizers_bpe_is_switched_off_once_imported(tok, model, cls_name):
    module = pytest.importorskip(f"transformers.models.{model}.tokenization_{model}")
    bpe = getattr(module, cls_name).bpe  # a plain-Python BPE of one word, callable on any stand-in self
    with pytest.raises(AssertionError, match=f"{cls_name}.bpe is switched off"):
        ex.check_encode_word(lambda ids, merges: bpe(types.SimpleNamespace(cache={}, bpe_ranks={}), "ab"), tok.merges,
                             ["x"])
    assert bpe in ex._ready_made_codecs() and bpe.__code__.co_name == "bpe"  # found by the look-up, and restored


def test_ready_made_encoders_are_restored_after_a_check(tok):
    fails(ex.check_encode_word, READY_MADE_ENCODERS["tiktoken.Encoding"], tok.merges, ["x"])
    assert tok.encode("the king") == BPETokenizer(tok.merges).encode("the king")  # not left switched off
    assert READY_MADE_ENCODERS["tiktoken.Encoding"](list(b" king"), tok.merges) == tok.encode(" king")
    assert ex._merge_word(list(b" king"), tok.merges) == tok.encode(" king")


# ---- exercise 2 ------------------------------------------------------------------------------------------------
def test_decode_ids(tok):
    ids = tok.encode(VAL)
    ex.check_decode_ids(sol.decode_ids, tok.vocab, ids, VAL)
    ex.check_decode_ids(lambda i, v: sol.decode_ids(torch.tensor(i).tolist(), v), tok.vocab, ids, VAL)


def _one_mark_per_bad_byte(ids, vocab):  # correct too: a hand-written decoder, one U+FFFD for each invalid byte
    data, out, i = b"".join(vocab[i] for i in ids), [], 0
    while i < len(data):
        for n in (4, 3, 2, 1):
            try:
                out.append(data[i:i + n].decode("utf-8"))
                i += n
                break
            except UnicodeDecodeError:
                pass
        else:
            out.append("\ufffd")
            i += 1
    return "".join(out)


def _one_mark_per_bad_run(ids, vocab):  # correct too: one U+FFFD for each run of invalid bytes
    return re.sub("\ufffd+", "\ufffd", sol.decode_ids(ids, vocab))


def _by_hand(ids, vocab, three_byte=True, reject_overlong=True, check_continuation=True, overlong_lengths=(2, 3, 4),
             check_max=True, keep_stray=True):
    """A hand-written decoder: the lead byte gives the length, continuation bytes must be 10xxxxxx, surrogates and
    code points above U+10FFFF are rejected, one U+FFFD for each invalid byte. Correct with the defaults; the flags
    give the likely bugs: no 3-byte sequences (U+0800 to U+FFFF: €, —, CJK), overlong forms accepted (or accepted in
    3 and 4 bytes), any byte taken as a continuation (C3 41 read as one character), no check above U+10FFFF, and a
    stray continuation byte dropped."""
    data, out, i = b"".join(vocab[k] for k in ids), [], 0
    while i < len(data):
        b = data[i]
        n = (1 if b < 0x80 else 2 if 0xC0 <= b < 0xE0 else 3 if 0xE0 <= b < 0xF0 and three_byte
             else 4 if 0xF0 <= b < 0xF8 else 0)
        tail = data[i + 1:i + n]
        code = b & (0, 0x7F, 0x1F, 0x0F, 0x07)[n]
        for c in tail:
            code = code << 6 | c & 0x3F
        if not keep_stray and 0x80 <= b < 0xC0:  # a continuation byte with no lead: skipped, not marked
            i += 1
            continue
        if (n == 0 or len(tail) < n - 1 or check_continuation and any(c & 0xC0 != 0x80 for c in tail)
                or 0xD800 <= code <= 0xDFFF or check_max and code > 0x10FFFF
                or reject_overlong and n in overlong_lengths and code < (0, 0, 0x80, 0x800, 0x10000)[n]):
            out.append("\ufffd")
            i += 1
        else:
            out.append(chr(code))
            i += n
    return "".join(out)


def _surrogatepass_then_replace(ids, vocab):  # the chapter's old decoder: surrogate bytes come back as a surrogate
    data = b"".join(vocab[i] for i in ids)
    try:
        return data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return data.decode("utf-8", "replace")


def test_decode_ids_accepts_either_count_of_replacement_characters(tok):
    assert _one_mark_per_bad_byte([0xF0, 0x9F, 104], tok.vocab) == "\ufffd\ufffdh"  # Python's rule gives one
    assert sol.decode_ids([0x80, 0x80, 104], tok.vocab) == "\ufffd\ufffdh"  # Python's rule gives two here
    assert _one_mark_per_bad_run([0x80, 0x80, 104], tok.vocab) == "\ufffdh"
    bad = [0xC0, 0xAF, 0xED, 0xA0, 0x80, 0xF0, 0x9F, 104]  # overlong '/', surrogate U+D800, half of 🤖, then 'h'
    assert _by_hand(list("aé€🤖".encode()) + bad, tok.vocab) == "aé€🤖" + "\ufffd" * 7 + "h"  # one per bad byte
    assert _by_hand([0xE2, 0x82, 0xAC], tok.vocab, three_byte=False) == "\ufffd" * 3  # the two bugs tested below
    assert _by_hand([0xC0, 0xAF, 65], tok.vocab, reject_overlong=False) == "/A"
    assert _by_hand([0xC3, 0x41], tok.vocab, check_continuation=False) == "\u00c1"  # "Á": 'A' taken as a tail
    for decoder in (_one_mark_per_bad_byte, _one_mark_per_bad_run, _by_hand):
        ex.check_decode_ids(decoder, tok.vocab, tok.encode(VAL), VAL)


@pytest.mark.parametrize("wrong", [
    lambda ids, vocab: "".join(vocab[i].decode("utf-8", "replace") for i in ids),  # token by token
    lambda ids, vocab: b"".join(vocab[i] for i in ids).decode("utf-8", "ignore"),  # drops bad bytes
    lambda ids, vocab: b"".join(vocab[i] for i in ids).decode("latin-1"),
    lambda ids, vocab: b"".join(vocab[i] for i in ids).decode("utf-8", "backslashreplace"),
    _surrogatepass_then_replace,
    lambda ids, vocab: sol.decode_ids(ids, vocab).replace("\ufffd", "?"),  # another mark
    lambda ids, vocab: _by_hand(ids, vocab, three_byte=False),  # € comes back as three U+FFFD
    lambda ids, vocab: _by_hand(ids, vocab, reject_overlong=False),  # C0 AF comes back as "/"
    lambda ids, vocab: _by_hand(ids, vocab, check_continuation=False),  # C3 41 comes back as "Á"
    lambda ids, vocab: _by_hand(ids, vocab, keep_stray=False),  # 80 41 comes back as "A"
    lambda ids, vocab: _by_hand(ids, vocab, overlong_lengths=(2,)),  # E0 80 80 comes back as "\x00"
    lambda ids, vocab: _by_hand(ids, vocab, check_max=False),  # F4 90 80 80: chr() raises ValueError
])
def test_decode_ids_rejects(tok, wrong):
    fails(ex.check_decode_ids, wrong, tok.vocab, tok.encode(VAL), VAL)


def test_decode_ids_message_shows_the_answer_as_returned(tok):
    # The check compares after shortening runs of U+FFFD, but the learner must see what their function returned:
    # decoding token by token gives four U+FFFD for the four bytes of 🤖, not one.
    token_by_token = lambda ids, vocab: "".join(vocab[i].decode("utf-8", "replace") for i in ids)  # noqa: E731
    message = "a character split over four tokens: got '\ufffd\ufffd\ufffd\ufffd', which is not right"
    with pytest.raises(AssertionError, match=re.escape(message)):
        ex.check_decode_ids(token_by_token, tok.vocab, tok.encode(VAL), VAL)


def test_decode_ids_rejects_a_decoder_that_raises(tok):
    def raises(ids, vocab):
        raise ValueError("invalid UTF-8")
    with pytest.raises(AssertionError, match="raised ValueError"):  # named with the case, as a UnicodeDecodeError is
        ex.check_decode_ids(raises, tok.vocab, tok.encode(VAL), VAL)


@pytest.mark.parametrize("decoder", [
    lambda ids, vocab: BPETokenizer.from_ranks({t: i for i, t in enumerate(vocab)}, GPT2_PATTERN).decode(ids),
    lambda ids, vocab: tiktoken.Encoding("x", pat_str=r"[\s\S]+", mergeable_ranks={t: i for i, t in enumerate(vocab)},
                                         special_tokens={}).decode(ids),
])
def test_decode_ids_refuses_ready_made_decoders(tok, decoder):
    vocab = tok.vocab[:256 + len(tok.merges)]
    assert decoder(tok.encode(VAL), vocab) == VAL  # the route is right, and refused
    with pytest.raises(AssertionError, match="switched off"):
        ex.check_decode_ids(decoder, vocab, tok.encode(VAL), VAL)


def test_decode_ids_refuses_decoders_built_before_the_check(tok):
    # Compiled decoders built from the chapter's tokenizer before the check (as the notebook's hf_ours and tk_ours
    # are) cannot be switched off, and ignore `vocab`: the case with a vocabulary of its own must catch them.
    hf_ours = to_hf_tokenizer(tok)
    tk_ours = tiktoken.Encoding("x", pat_str=GPT2_PATTERN,
                                mergeable_ranks={t: i for i, t in enumerate(tok.vocab[:256 + len(tok.merges)])},
                                special_tokens={})
    prebuilt = [lambda ids, vocab: hf_ours.decode(ids),
                lambda ids, vocab: bytes(tk_ours._core_bpe.decode_bytes(ids)).decode("utf-8", "replace")]
    ids = tok.encode(VAL)
    for decoder in prebuilt:
        assert decoder(ids, tok.vocab) == VAL  # right on the chapter's vocabulary...
        assert decoder([0xF0, 0x9F, 104], tok.vocab) == "\ufffdh"
        with pytest.raises(AssertionError, match="vocabulary of its own"):  # ...and refused by the own-vocabulary case
            ex.check_decode_ids(decoder, tok.vocab, ids, VAL)
    with pytest.raises(AssertionError, match="switched off"):  # built inside the answer: switched off
        ex.check_decode_ids(lambda ids, vocab: to_hf_tokenizer(tok).decode(ids), tok.vocab, ids, VAL)


def test_decode_ids_without_replace_fails_with_the_hint(tok):
    strict = lambda ids, vocab: b"".join(vocab[i] for i in ids).decode("utf-8")  # noqa: E731
    with pytest.raises(AssertionError, match="UnicodeDecodeError.*an argument that says what to do") as failure:
        ex.check_decode_ids(strict, tok.vocab, tok.encode(VAL), VAL)
    assert "replace" not in str(failure.value)  # the hint names the problem, not the answer's flag


# ---- exercise 3 ------------------------------------------------------------------------------------------------
WORD = r"\w+|[^\w\s]"


def test_untied_cuts_have_no_tie_at_the_cut():
    counts = sorted(Counter(re.findall(WORD, TRAIN)).values(), reverse=True)
    cuts = ex.untied_cuts(TRAIN, (1, 3, 10))
    assert cuts and all(counts[v - 1] > counts[v] for v in cuts)


def _top_v_sorted(t, v, V):  # correct too: an explicit sort instead of Counter.most_common
    counts = {}
    for w in re.findall(WORD, t):
        counts[w] = counts.get(w, 0) + 1
    kept = set(sorted(counts, key=counts.get, reverse=True)[:V])
    words = re.findall(WORD, v)
    return sum(w not in kept for w in words) / len(words)


def test_capped_unknown_rate():
    ex.check_capped_unknown_rate(sol.unknown_rate_top_v, TRAIN, VAL, targets=(1, 3, 10))
    ex.check_capped_unknown_rate(_top_v_sorted, TRAIN, VAL, targets=(1, 3, 10))
    ex.check_capped_unknown_rate(lambda t, v, V: torch.tensor(sol.unknown_rate_top_v(t, v, V), dtype=torch.float64),
                                 TRAIN, VAL, targets=(1, 3, 10))
    float32 = lambda t, v, V: torch.tensor(sol.unknown_rate_top_v(t, v, V), dtype=torch.float32)  # noqa: E731
    ex.check_capped_unknown_rate(float32, TRAIN, VAL, targets=(1, 3, 10))                        # a float32 tensor
    ex.check_capped_unknown_rate(lambda t, v, V: float32(t, v, V).item(), TRAIN, VAL, targets=(1, 3, 10))


def test_capped_unknown_rate_refuses_the_checks_own_reference():
    fails(ex.check_capped_unknown_rate, lambda t, v, V: ex._capped_rate(t, v, V), TRAIN, VAL, (1, 3, 10))
    fails(ex.check_capped_unknown_rate,
          lambda t, v, V: sol.unknown_rate_top_v(t, v, V) + 0 * len(ex._words_by_count(t)),
          TRAIN, VAL, (1, 3, 10))
    ex.check_capped_unknown_rate(sol.unknown_rate_top_v, TRAIN, VAL, targets=(1, 3, 10))  # restored afterwards


def _top(t, V, pattern=WORD):
    return {w for w, _ in Counter(re.findall(pattern, t)).most_common(V)}


@pytest.mark.parametrize("wrong", [
    lambda t, v, V: sum(w not in set(re.findall(WORD, t)) for w in re.findall(WORD, v)) / len(re.findall(WORD, v)),
    # ^ ignores V: section 1's uncapped rate
    lambda t, v, V: sum(w not in _top(t, V + 1) for w in re.findall(WORD, v)) / len(re.findall(WORD, v)),  # V + 1
    lambda t, v, V: sum(w not in _top(t, V - 1) for w in re.findall(WORD, v)) / len(re.findall(WORD, v)),  # V - 1
    lambda t, v, V: sum(w not in {w for w, _ in Counter(re.findall(WORD, t)).most_common()[-V:]}
                        for w in re.findall(WORD, v)) / len(re.findall(WORD, v)),  # the V rarest words
    lambda t, v, V: sum(w not in _top(v, V) for w in re.findall(WORD, v)) / len(re.findall(WORD, v)),  # held-out counts
    lambda t, v, V: len(set(re.findall(WORD, v)) - _top(t, V)) / len(set(re.findall(WORD, v))),  # distinct words
    lambda t, v, V: sum(w not in _top(t, V, r"\S+") for w in v.split()) / len(v.split()),  # punctuation attached
    lambda t, v, V: 1 - sol.unknown_rate_top_v(t, v, V),  # the known rate
])
def test_capped_unknown_rate_rejects(wrong):
    fails(ex.check_capped_unknown_rate, wrong, TRAIN, VAL, (1, 3, 10))


# ---- exercise 4 ------------------------------------------------------------------------------------------------
def test_merges_until_one_token(tok, toy_tok):
    ex.check_merges_until_one_token(sol.merges_until_one_token, tok, toy_tok)
    ex.check_merges_until_one_token(
        lambda t, w: None if sol.merges_until_one_token(t, w) is None else float(sol.merges_until_one_token(t, w)),
        tok, toy_tok)


def _merges_used(t, w):  # the number of merges the word uses, the ambiguous reading
    ids, used = list(w.encode()), 0
    for rank, pair in enumerate(t.merges):  # merge_steps is switched off during the check: the same by hand
        merged = merge_pair(ids, pair, 256 + rank)
        used += len(merged) < len(ids)
        ids = merged
    return used if len(ids) == 1 else None


def _via_merge_steps(t, w):  # the former reference: the rank read off the tokenizer's step-by-step view
    if len(pretokenize(w, t.pattern)) != 1:
        return None
    if len(w.encode()) == 1:
        return 0
    return next((rank + 1 for rank, pieces in t.merge_steps(w)[1:] if sum(len(p) for p in pieces) == 1), None)


def test_merges_until_one_token_switches_off_the_step_by_step_view(tok, toy_tok):
    words = (" the", " lord", "a", " lowest", "a b")
    assert [_via_merge_steps(tok, w) for w in words] == [sol.merges_until_one_token(tok, w) for w in words]
    with pytest.raises(AssertionError, match="merge_steps is switched off"):  # correct, but the package did the work
        ex.check_merges_until_one_token(_via_merge_steps, tok, toy_tok)
    assert _via_merge_steps(tok, " the") is not None  # restored afterwards


def _k_from_one_id(ids):  # the id of a one-token word is 256 + the rank of its last merge
    return None if len(ids) != 1 else max(ids[0] - 255, 0)


def _ranks_as_tiktoken(t):
    return tiktoken.Encoding("ours", pat_str=t.pattern, special_tokens={},
                             mergeable_ranks={b: i for i, b in enumerate(t.vocab[:256 + len(t.merges)])})


@pytest.mark.parametrize("route", [
    lambda t, w: _k_from_one_id(t.encode(w)),
    lambda t, w: None if len(pretokenize(w, t.pattern)) != 1 else _k_from_one_id(t.bpe(list(w.encode()))),
    lambda t, w: _k_from_one_id(to_hf_tokenizer(t).encode(w, add_special_tokens=False).ids),
    lambda t, w: _k_from_one_id(_ranks_as_tiktoken(t).encode_ordinary(w)),
])
def test_merges_until_one_token_refuses_ready_made_encoders(tok, toy_tok, route):
    words = (" the", " lord", "a", " lowest", "a b")
    assert [route(tok, w) for w in words] == [sol.merges_until_one_token(tok, w) for w in words]  # right answers
    fails(ex.check_merges_until_one_token, route, tok, toy_tok)
    assert route(tok, " the") is not None  # restored afterwards


def _by_vocabulary_lookup(t, w):  # the word's id read off the vocabulary: right only if the merges build it
    if len(pretokenize(w, t.pattern)) != 1:
        return None
    data = w.encode()
    return 0 if len(data) == 1 else (t.vocab.index(data) - 255 if data in t.vocab else None)


def test_merges_until_one_token_rejects_a_vocabulary_lookup(tok, toy_tok):
    words = (" the", " lord", "a", " lowest", "a b")
    assert [_by_vocabulary_lookup(tok, w) for w in words] == [sol.merges_until_one_token(tok, w) for w in words]
    fails(ex.check_merges_until_one_token, _by_vocabulary_lookup, tok, toy_tok)


@pytest.mark.parametrize("false", [False, np.False_, torch.tensor(False)])
def test_merges_until_one_token_rejects_a_bool(tok, toy_tok, false):
    with pytest.raises(AssertionError, match="a bool"):  # False == 0, but it is not a number of merges
        ex.check_merges_until_one_token(lambda t, w: false if sol.merges_until_one_token(t, w) == 0
                                        else sol.merges_until_one_token(t, w), tok, toy_tok)


def test_merges_until_one_token_meta_answer_fails_with_the_checks_message(tok, toy_tok):
    def meta(t, w):
        k = sol.merges_until_one_token(t, w)
        return None if k is None else torch.tensor(k, device="meta")
    with pytest.raises(AssertionError, match="meta device"):
        ex.check_merges_until_one_token(meta, tok, toy_tok)


def test_ids_on_the_meta_device_fail_with_the_checks_message(tok):
    with pytest.raises(AssertionError, match="meta device"):
        ex.check_encode_word(lambda ids, merges: torch.zeros(len(ids), dtype=torch.long, device="meta"),
                             tok.merges, [" king"])


def _k_applying_merges_by(merge):  # the reference's loop, with another way to apply one merge to the ids
    def k(t, w):
        if len(pretokenize(w, t.pattern)) != 1:
            return None
        ids = list(w.encode())
        if len(ids) == 1:
            return 0
        for rank, pair in enumerate(t.merges):
            ids = merge(ids, tuple(pair), 256 + rank)
            if len(ids) == 1:
                return rank + 1
        return None
    return k


def _first_occurrence_only(ids, pair, new_id):  # joins only the leftmost occurrence of the pair
    at = next((i for i in range(len(ids) - 1) if (ids[i], ids[i + 1]) == pair), None)
    return ids if at is None else ids[:at] + [new_id] + ids[at + 2:]


_merge_first_occurrence_only = _k_applying_merges_by(_first_occurrence_only)
# scans from the right: aaa under a+a becomes a, aa
_merge_right_to_left = _k_applying_merges_by(lambda ids, pair, new_id: merge_pair(ids[::-1], pair[::-1], new_id)[::-1])


def test_merges_until_one_token_rejects_merge_loops_with_the_wrong_scan(tok, toy_tok):
    words = (" the", " lord", "a", " lowest", "a b")
    for wrong in (_merge_first_occurrence_only, _merge_right_to_left):
        assert [wrong(tok, w) for w in words] == [sol.merges_until_one_token(tok, w) for w in words]  # close enough
        fails(ex.check_merges_until_one_token, wrong, tok, toy_tok)


def _last_rank(t, w):  # off by one: the rank of the last merge, not how many merges of the list
    k = sol.merges_until_one_token(t, w)
    return None if k is None else max(k - 1, 0)


@pytest.mark.parametrize("wrong", [_merges_used, _last_rank, lambda t, w: len(t.merges),
                                   lambda t, w: sol.merges_until_one_token(t, w) or 0,
                                   # one character taken for one byte: 'é' is two bytes and may need a merge
                                   lambda t, w: 0 if len(w) == 1 else sol.merges_until_one_token(t, w)])
def test_merges_until_one_token_rejects(tok, toy_tok, wrong):
    fails(ex.check_merges_until_one_token, wrong, tok, toy_tok)


def test_merges_until_one_token_refuses_the_checks_own_reference(tok, toy_tok):
    fails(ex.check_merges_until_one_token, lambda t, w: ex._one_token_k(t, w), tok, toy_tok)
    fails(ex.check_merges_until_one_token,
          lambda t, w: sol.merges_until_one_token(t, w) + 0 * len(ex._merge_word([97], t.merges))
          if sol.merges_until_one_token(t, w) is not None else None, tok, toy_tok)
    ex.check_merges_until_one_token(sol.merges_until_one_token, tok, toy_tok)  # restored afterwards


# ---- exercise 5 ------------------------------------------------------------------------------------------------
@functools.total_ordering
class _Reversed:  # correct too: a wrapper whose < is reversed (what the package's trainer does)
    def __init__(self, value):
        self.value = value

    def __lt__(self, other):
        return self.value > other.value

    def __eq__(self, other):
        return self.value == other.value


def test_heap_key():
    ex.check_heap_key(sol.heap_key)
    ex.check_heap_key(lambda count, pair, vocab: (-count, _Reversed((vocab[pair[0]], vocab[pair[1]]))))
    ex.check_heap_key(lambda count, pair, vocab: [-count, *sol.heap_key(count, pair, vocab)[1:]])


def _negated(data, end=()):
    return tuple(-x for x in data) + end


def _complemented(data, end=()):
    return tuple(255 - x for x in data) + end


@pytest.mark.parametrize("wrong", [
    lambda c, p, v: (c, _Reversed((v[p[0]], v[p[1]]))),  # the lowest count pops first (max-heap thinking)
    lambda c, p, v: (-c, (v[p[0]], v[p[1]])),  # the smaller byte strings pop first
    lambda c, p, v: (-c, p),  # the smaller ids
    lambda c, p, v: (-c, -p[0], -p[1]),  # the greater ids
    lambda c, p, v: -c,  # no tie rule: ties pop in arbitrary order
    lambda c, p, v: (-c, _negated(v[p[0]]), _negated(v[p[1]])),  # negated bytes: b"B" pops before b"BA"
    lambda c, p, v: (-c, _complemented(v[p[0]]), _complemented(v[p[1]])),  # same prefix problem
    lambda c, p, v: (-c, _complemented(v[p[0]], (255,)), _complemented(v[p[1]], (255,))),  # end marker a byte can be
    lambda c, p, v: (-c, _complemented(v[p[0]] + v[p[1]], (256,))),  # compares the concatenation
    lambda c, p, v: (-c, tie_key("bytes", v)(p)),  # the package's own key
    lambda c, p, v: (-c, _Greater((v[p[0]], v[p[1]]))),  # the package's own class
])
def test_heap_key_rejects(wrong):
    fails(ex.check_heap_key, wrong)


def _order_from_the_checks_frames(count, pair, vocab):
    """A key read off the check: the pair's place in any list of pairs held by a frame of the checks."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals.get("__name__", "").startswith("course_utils.exercises"):
            for value in frame.f_locals.values():
                if isinstance(value, list) and pair in value and all(isinstance(p, tuple) for p in value):
                    return value.index(pair)
        frame = frame.f_back
    return 0


def test_heap_key_cannot_read_the_wanted_pop_order_from_the_checks_frames():
    fails(ex.check_heap_key, _order_from_the_checks_frames)


def test_heap_key_refuses_the_package_key_and_restores_it():
    with pytest.raises(AssertionError, match="switched off"):
        ex.check_heap_key(lambda c, p, v: (-c, tie_key("bytes", v)(p)))
    vocab = [bytes([b]) for b in range(256)]
    assert tie_key("bytes", vocab)((66, 65)) < tie_key("bytes", vocab)((65, 66))  # restored


# ---- added by the mutation audit: a near miss on a long held-out text, where one token changes the rate by 6e-5


def test_capped_unknown_rate_rejects_a_near_miss_on_a_long_text():
    train, val = "no . no . yes .", "goblin " * 50_000 + "the end..."  # "." is the most frequent training word

    def punctuation_runs(t, v, V):  # [^\w\s]+ keeps "..." as one (unknown) word instead of three known "."
        kept = _top(t, V)
        words = re.findall(r"\w+|[^\w\s]+", v)
        return sum(w not in kept for w in words) / len(words)

    ex.check_capped_unknown_rate(_top_v_sorted, train, val, targets=(1, 2))
    fails(ex.check_capped_unknown_rate, punctuation_runs, train, val, (1, 2))


def _every_piece_one_token(tokenizer, word):  # a k for "a b" or " the,": each piece one token, not the word
    ks = [sol.merges_until_one_token(tokenizer, piece) for piece in pretokenize(word, tokenizer.pattern)]
    return None if None in ks else max(ks)


def _whole_word_bytes(t, w):  # ignores pre-tokenization: applies the merges to the whole word's bytes
    ids = list(w.encode())
    if len(ids) == 1:
        return 0
    for rank, pair in enumerate(t.merges):
        ids = merge_pair(ids, pair, 256 + rank)
        if len(ids) == 1:
            return rank + 1
    return None


def test_merges_until_one_token_rejects_an_answer_that_ignores_pre_tokenization(tok, toy_tok):
    assert BPETokenizer([(97, 32), (256, 98)]).encode("a b") != [257]  # encoding cuts "a b" before merging
    fails(ex.check_merges_until_one_token, _whole_word_bytes, tok, toy_tok)


def test_merges_until_one_token_rejects_a_k_for_a_word_of_two_pieces(tok, toy_tok):
    assert _every_piece_one_token(tok, " the,") is not None  # the wrong answer gives a number here
    fails(ex.check_merges_until_one_token, _every_piece_one_token, tok, toy_tok)
    ex.check_merges_until_one_token(sol.merges_until_one_token, tok, toy_tok)
