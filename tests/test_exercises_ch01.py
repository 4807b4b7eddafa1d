"""Chapter 01's exercise checks accept the reference and other correct forms, and reject the likely wrong answers."""

import math

import pytest
import torch

from course_utils.exercises import ch01 as ex
from course_utils.solutions import ch01 as sol

PROBS = [0.5, 0.1, 0.9, 0.33, 0.02, 0.7]
TEXT = "the quick queen quietly quoted quaint quips; qat and qi are words too, quite so. " * 3


def _fails(check, *args):
    with pytest.raises(AssertionError) as err:
        check(*args)
    return str(err.value)


# exercise 1: perplexity
def test_perplexity_accepts_correct_forms():
    ex.check_perplexity(sol.perplexity_from_probs, PROBS)
    ex.check_perplexity(lambda p: 2 ** (-sum(math.log2(x) for x in p) / len(p)), PROBS)  # in bits, same number
    ex.check_perplexity(lambda p: torch.tensor(p, dtype=torch.float64).log().neg().mean().exp(), PROBS)  # tensor
    ex.check_perplexity(lambda p: torch.tensor(p).log().neg().mean().exp(), PROBS)  # float32, the natural way


@pytest.mark.parametrize("wrong", [
    lambda p: math.exp(-sum(math.log(x) for x in p)),                 # sum, not mean
    lambda p: math.exp(sum(math.log(x) for x in p) / len(p)),         # sign flipped: 1 / perplexity
    lambda p: len(p) / sum(p),                                        # inverse of the arithmetic mean
    lambda p: sum(1 / x for x in p) / len(p),                         # arithmetic mean of 1/p
    lambda p: -sum(math.log(x) for x in p) / len(p),                  # cross-entropy, not its exponential
])
def test_perplexity_rejects_wrong(wrong):
    _fails(ex.check_perplexity, wrong, PROBS)


# exercise 2: bits per byte
SMOL = dict(nats_per_token=2.1, n_tokens=700, n_bytes=2900)
SMOL_BITS = 2.1 * 700 / math.log(2) / 2900


def test_bits_per_byte_accepts_correct_forms():
    ex.check_bits_per_byte(sol.bits_per_byte, *SMOL.values(), SMOL_BITS)
    ex.check_bits_per_byte(lambda nats, t, b: torch.tensor(nats * t / b) / torch.log(torch.tensor(2.0)),
                           *SMOL.values(), SMOL_BITS)  # float32 tensor


@pytest.mark.parametrize("wrong", [
    lambda nats, t, b: nats * t / b,                      # natural log: nats per byte, not bits
    lambda nats, t, b: nats / math.log(2),                # bits per token, not per byte
    lambda nats, t, b: nats * b / math.log(2) / t,        # ratio upside down
    lambda nats, t, b: nats * t / math.log(10) / b,       # log10
])
def test_bits_per_byte_rejects_wrong(wrong):
    _fails(ex.check_bits_per_byte, wrong, *SMOL.values(), SMOL_BITS)


# exercise 3: bigram counts and the most frequent follower
IDS = torch.randint(0, 7, (500,), generator=torch.Generator().manual_seed(0))


def test_bigram_counts_accepts_correct_forms():
    ex.check_bigram_counts(sol.bigram_counts, IDS, 7)
    ex.check_bigram_counts(lambda ids, v: sol.bigram_counts(ids, v).tolist(), IDS, 7)  # nested list
    ex.check_bigram_counts(lambda ids, v: sol.bigram_counts(ids, v).to(torch.int32), IDS, 7)
    ex.check_bigram_counts(lambda ids, v: sol.bigram_counts(ids, v).float(), IDS, 7)

    def loop(ids, v):
        counts = [[0] * v for _ in range(v)]
        ids = ids.tolist()
        for a, b in zip(ids, ids[1:]):
            counts[a][b] += 1
        return counts
    ex.check_bigram_counts(loop, IDS, 7)


def _wraparound(ids, v):  # counts the pair (last, first) too: N pairs instead of N - 1
    counts = sol.bigram_counts(ids, v)
    counts[int(ids[-1]), int(ids[0])] += 1
    return counts


@pytest.mark.parametrize("wrong", [
    lambda ids, v: sol.bigram_counts(ids, v).T,             # transposed: [b, a]
    _wraparound,                                            # off by one: one pair too many
    lambda ids, v: sol.bigram_counts(ids[:-1], v),          # off by one: last pair dropped
    lambda ids, v: sol.bigram_counts(ids, v) + 1,           # smoothing added to counts
    lambda ids, v: sol.bigram_counts(ids, v)[:, :-1],       # wrong shape
])
def test_bigram_counts_rejects_wrong(wrong):
    message = _fails(ex.check_bigram_counts, wrong, IDS, 7)
    assert "tensor([" not in message  # the expected matrix is never printed


def test_most_frequent_follower():
    right = sol.most_frequent_follower(TEXT, "q")
    ex.check_most_frequent_follower(right, TEXT, "q")
    for wrong in ["q", " ", "a", "uu", 117]:
        message = _fails(ex.check_most_frequent_follower, wrong, TEXT, "q")
        assert repr(right) not in message
    with pytest.raises(NotImplementedError):
        ex.check_most_frequent_follower(None, TEXT, "q")


# exercise 4: bits excluding some targets
TABLE = torch.softmax(torch.randn(7, 7, generator=torch.Generator().manual_seed(1), dtype=torch.float64), dim=1)


def test_bits_excluding_targets_accepts_correct_forms():
    ex.check_bits_excluding_targets(sol.bits_excluding_targets, TABLE, IDS, [0, 3])

    def loop(table, ids, excluded):
        ids = ids.tolist()
        bits = [-math.log2(table[a, b]) for a, b in zip(ids, ids[1:]) if b not in excluded]
        return sum(bits) / len(bits)
    ex.check_bits_excluding_targets(loop, TABLE, IDS, [0, 3])
    ex.check_bits_excluding_targets(lambda *a: torch.tensor(sol.bits_excluding_targets(*a), dtype=torch.float32),
                                    TABLE, IDS, [0, 3])


def _exclude_contexts(table, ids, excluded):
    ids = ids.tolist()
    bits = [-math.log2(table[a, b]) for a, b in zip(ids, ids[1:]) if a not in excluded]
    return sum(bits) / len(bits)


@pytest.mark.parametrize("wrong", [
    lambda t, ids, ex_: sol.bits_excluding_targets(t, ids, ex_) * math.log(2),   # nats, not bits
    lambda t, ids, ex_: sol.bits_excluding_targets(t, ids, []),                  # nothing excluded
    lambda t, ids, ex_: sol.bits_excluding_targets(t, ids, list(ex_)[:1]),       # only the first excluded id
    _exclude_contexts,                                                           # excluded by context
])
def test_bits_excluding_targets_rejects_wrong(wrong):
    _fails(ex.check_bits_excluding_targets, wrong, TABLE, IDS, [0, 3])
