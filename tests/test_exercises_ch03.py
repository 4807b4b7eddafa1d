"""Chapter 03's exercise checks accept the reference and other correct forms, and reject the likely wrong answers."""

import re

import pytest
import torch

from course_utils.exercises import ch03 as ex
from course_utils.solutions import ch03 as sol
from course_utils.text.bpe.interop import train_tokenizer
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


@pytest.mark.parametrize("wrong", [_leftmost_first, _one_pass, lambda ids, merges: ids,
                                   lambda ids, merges: BPETokenizer(merges).bpe(ids)])
def test_encode_word_rejects(tok, wrong):
    fails(ex.check_encode_word, wrong, tok.merges, re.findall(r" ?\w+", VAL))


def test_package_encoder_is_restored_after_a_check(tok):
    fails(ex.check_encode_word, lambda ids, merges: BPETokenizer(merges).bpe(ids), tok.merges, ["x"])
    assert tok.encode("the king") == tok.encode("the king")  # not left patched


# ---- exercise 2 ------------------------------------------------------------------------------------------------
def test_decode_ids(tok):
    ids = tok.encode(VAL)
    ex.check_decode_ids(sol.decode_ids, tok.vocab, ids, VAL)
    ex.check_decode_ids(lambda i, v: sol.decode_ids(torch.tensor(i).tolist(), v), tok.vocab, ids, VAL)


@pytest.mark.parametrize("wrong", [
    lambda ids, vocab: "".join(vocab[i].decode("utf-8", "replace") for i in ids),  # token by token
    lambda ids, vocab: b"".join(vocab[i] for i in ids).decode("utf-8", "ignore"),  # drops bad bytes
    lambda ids, vocab: b"".join(vocab[i] for i in ids).decode("latin-1"),
])
def test_decode_ids_rejects(tok, wrong):
    fails(ex.check_decode_ids, wrong, tok.vocab, tok.encode(VAL), VAL)


# ---- exercise 3 ------------------------------------------------------------------------------------------------
def test_unknown_word_rate():
    ex.check_unknown_word_rate(sol.unknown_word_rate, TRAIN, VAL)
    ex.check_unknown_word_rate(lambda t, v: torch.tensor(sol.unknown_word_rate(t, v), dtype=torch.float64),
                               TRAIN, VAL)


@pytest.mark.parametrize("wrong", [
    lambda t, v: sum(w not in set(t.split()) for w in v.split()) / len(v.split()),  # punctuation attached
    lambda t, v: len(set(re.findall(r"\w+|[^\w\s]", v)) - set(re.findall(r"\w+|[^\w\s]", t)))
    / len(set(re.findall(r"\w+|[^\w\s]", v))),  # distinct words instead of occurrences
    lambda t, v: 1 - sol.unknown_word_rate(t, v),  # the known rate
])
def test_unknown_word_rate_rejects(wrong):
    fails(ex.check_unknown_word_rate, wrong, TRAIN, VAL)


# ---- exercise 4 ------------------------------------------------------------------------------------------------
def test_merges_until_one_token(tok, toy_tok):
    ex.check_merges_until_one_token(sol.merges_until_one_token, tok, toy_tok)
    ex.check_merges_until_one_token(
        lambda t, w: None if sol.merges_until_one_token(t, w) is None else float(sol.merges_until_one_token(t, w)),
        tok, toy_tok)


def _merges_used(t, w):  # the number of merges the word uses, the ambiguous reading
    steps = t.merge_steps(w)
    return len(steps) - 1 if sum(len(p) for p in steps[-1][1]) == 1 else None


def _last_rank(t, w):  # off by one: the rank of the last merge, not how many merges of the list
    k = sol.merges_until_one_token(t, w)
    return None if k is None else max(k - 1, 0)


@pytest.mark.parametrize("wrong", [_merges_used, _last_rank, lambda t, w: len(t.merges),
                                   lambda t, w: sol.merges_until_one_token(t, w) or 0])
def test_merges_until_one_token_rejects(tok, toy_tok, wrong):
    fails(ex.check_merges_until_one_token, wrong, tok, toy_tok)


# ---- exercise 5 ------------------------------------------------------------------------------------------------
def test_tie_break():
    ex.check_tie_break(sol.tie_break_pair)
    ex.check_tie_break(lambda counts, vocab: list(sol.tie_break_pair(counts, vocab)))
    ex.check_tie_break(lambda counts, vocab: torch.tensor(sol.tie_break_pair(counts, vocab)))


@pytest.mark.parametrize("wrong", [
    lambda c, v: min(c, key=lambda p: (-c[p], p)),  # the smallest ids
    lambda c, v: max(c, key=lambda p: (c[p], p)),  # the greatest ids
    lambda c, v: max(c, key=lambda p: (c[p], v[p[0]] + v[p[1]])),  # the greatest concatenation
    lambda c, v: min(c, key=lambda p: (-c[p], (v[p[0]], v[p[1]]))),  # the smaller byte strings
    lambda c, v: max(c, key=lambda p: (v[p[0]], v[p[1]])),  # ignores the counts
])
def test_tie_break_rejects(wrong):
    fails(ex.check_tie_break, wrong)
