"""Interpolated Kneser-Ney: proper distributions, the vectorised formula equal to a plain-Python one, and a stronger
baseline than add-k on real text."""

import math
import random
from collections import Counter, defaultdict

import numpy as np
import pytest

from course_utils.model.kneser_ney import KneserNeyModel
from course_utils.model.ngram import NGramModel


def reference_kn(ids, n, V, D):
    """p(w | context) by the textbook recursion over dicts of tuples (slow, obvious)."""
    counts = {n: Counter(tuple(ids[i:i + n]) for i in range(len(ids) - n + 1))}
    for m in range(n - 1, 0, -1):  # continuation counts: distinct ids seen before each m-gram
        counts[m] = Counter(gram[1:] for gram in counts[m + 1])
    tables = {}
    for m in range(1, n + 1):
        total, types = defaultdict(float), defaultdict(int)
        for gram, c in counts[m].items():
            total[gram[:-1]] += c
            types[gram[:-1]] += 1
        tables[m] = (total, types)

    def prob(context, w):
        p = 1.0 / V
        for m in range(1, n + 1):
            ctx = tuple(context[len(context) - (m - 1):]) if m > 1 else ()
            total, types = tables[m]
            if total.get(ctx, 0) > 0:
                p = (max(counts[m].get(ctx + (w,), 0) - D, 0) + D * types[ctx] * p) / total[ctx]
        return p
    return prob


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_equals_the_plain_formula_and_every_distribution_sums_to_one(n):
    rng = random.Random(n)
    V = 6
    ids = [rng.choice([0, 1, 1, 2, 3, 3, 3, 4]) for _ in range(400)]  # id 5 never occurs
    model = KneserNeyModel(n=n, vocab_size=V, discount=0.75).fit(ids)
    prob = reference_kn(ids, n, V, 0.75)
    for _ in range(30):
        context = [rng.randrange(V) for _ in range(n - 1)]  # seen and unseen contexts
        dist = model.distribution(context)
        assert dist.shape == (V,) and math.isclose(dist.sum(), 1.0, rel_tol=1e-12)
        assert np.allclose(dist, [prob(context, w) for w in range(V)], rtol=1e-12, atol=0)
        assert dist.min() > 0  # an id never seen in training keeps probability


def test_one_probability_by_hand():
    # text "abab" (a=0, b=1), V = 3, n = 2, D = 0.5. Bigrams: ab twice, ba once. Continuation counts of the unigrams
    # (distinct ids before each): a <- {b}: 1, b <- {a}: 1; total 2, 2 types. p_1(b) = (1 - 0.5 + 0.5 * 2 / 3) / 2
    # = 0.41666...; context a: count 2, one type (b): p(b | a) = (2 - 0.5 + 0.5 * 1 * p_1(b)) / 2 = 0.8541666...
    model = KneserNeyModel(n=2, vocab_size=3, discount=0.5).fit([0, 1, 0, 1])
    p1_b = (1 - 0.5 + 0.5 * 2 / 3) / 2
    assert math.isclose(model.distribution([0])[1], (2 - 0.5 + 0.5 * 1 * p1_b) / 2, rel_tol=1e-12)


def test_scores_the_same_positions_as_add_k_and_beats_it_on_held_out_text():
    rng = np.random.default_rng(0)
    # a Markov-ish source: long contexts are rare, so add-k's long orders starve while Kneser-Ney backs off
    V, ids = 12, [0, 1]
    for _ in range(6000):
        ids.append(int((ids[-1] * 3 + ids[-2] + rng.integers(0, 3)) % V))
    train, held_out = ids[:4000], ids[4000:]
    for n in (2, 4):
        kn = KneserNeyModel(n, V).fit(train)
        add_k = NGramModel(n, V, k=0.01).fit(train)
        assert kn.total_nats(held_out)[1] == add_k.total_nats(held_out)[1] == len(held_out) - n + 1
    assert KneserNeyModel(4, V).fit(train).mean_nats(held_out) < NGramModel(4, V, k=0.01).fit(train).mean_nats(held_out)


@pytest.mark.parametrize("kwargs, match", [(dict(n=0, vocab_size=5), "n must be"),
                                           (dict(n=2, vocab_size=0), "vocab_size"),
                                           (dict(n=2, vocab_size=5, discount=1.0), "discount"),
                                           (dict(n=2, vocab_size=5, discount=0.0), "discount")])
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        KneserNeyModel(**kwargs)


def test_unfitted_model_and_out_of_range_ids_are_refused():
    with pytest.raises(ValueError, match="fit the model"):
        KneserNeyModel(2, 5).distribution([1])
    with pytest.raises(ValueError, match=r"ids must be in \[0, 5\)"):
        KneserNeyModel(2, 5).fit([0, 1, 7])


def test_context_ids_outside_the_vocabulary_are_refused():
    model = KneserNeyModel(2, 3).fit([0, 1, 2, 0, 1])
    for context in ([9], [-1], [1.0]):
        with pytest.raises(ValueError, match=r"ints in \[0, 3\)"):
            model.distribution(context)  # [9] returned a distribution
    with pytest.raises(ValueError, match="at least n-1=1"):
        model.distribution([])
    assert np.array_equal(model.distribution(np.array([2, 0])), model.distribution([0]))


def test_default_discount_by_hand():
    # D = 0.75 (the default). Continuation counts: 0 and 1 each follow one distinct id, so
    # p1 = ((1 - D) + D * 2 / 3) / 2 = 0.375 for 0 and 1, and D * 2 / 3 / 2 = 0.25 for 2. After 0 (seen twice, one
    # type): p(1|0) = (2 - D + D * 0.375) / 2, p(0|0) = D * 0.375 / 2, p(2|0) = D * 0.25 / 2
    model = KneserNeyModel(n=2, vocab_size=3).fit([0, 1, 0, 1])
    assert np.allclose(model.distribution([0]), [0.140625, 0.765625, 0.09375], rtol=0, atol=1e-12)


def test_fractional_ids_bool_orders_and_infinite_k_are_refused():
    for model in (NGramModel(2, 5), KneserNeyModel(2, 5)):
        with pytest.raises(TypeError, match="ids must be integer token ids, got float64"):
            model.fit([1.5, 2.0, 3.0])  # was truncated to [1, 2, 3] without a word
    with pytest.raises(ValueError, match="n must be an int >= 1, got True"):  # a bool is not an order
        NGramModel(True, 5)
    for bad in (math.inf, True):  # inf made every probability 1/V
        with pytest.raises(ValueError, match="k \\(add-k smoothing\\) must be a finite number > 0"):
            NGramModel(2, 5, k=bad)
    ids = [1, 2, 3, 1, 2, 4, 0]
    for cls in (NGramModel, KneserNeyModel):  # numpy sizes, stored as Python ints
        model = cls(np.int64(2), np.int64(5)).fit(np.array(ids))
        assert type(model.n) is int and type(model.vocab_size) is int
        assert model.mean_nats(ids) == cls(2, 5).fit(ids).mean_nats(ids)
