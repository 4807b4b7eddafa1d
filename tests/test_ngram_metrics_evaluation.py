import math

import numpy as np
import pytest
import torch

from course_utils.evaluate.scoring import gpt_logits_fn, score_ids
from course_utils.evaluate.metrics import bits_per_unit, nats_to_bits, perplexity
from course_utils.model.gpt import GPT, GPTConfig
from course_utils.model.ngram import NGramModel


def test_bigram_probabilities_by_hand():
    # ids: a b a b a c  (a=0, b=1, c=2); after 'a': b twice, c once
    model = NGramModel(n=2, vocab_size=3, k=1.0).fit([0, 1, 0, 1, 0, 2])
    assert model.prob([0], 1) == pytest.approx((2 + 1) / (3 + 3))
    assert model.prob([0], 2) == pytest.approx((1 + 1) / (3 + 3))
    assert model.prob([2], 0) == pytest.approx(1 / 3)  # unseen context: uniform
    assert sum(model.distribution([1])) == pytest.approx(1.0)
    nll, count = model.total_nats([0, 1, 0])
    assert count == 2 and nll == pytest.approx(-math.log(3 / 6) - math.log(3 / 5))


def test_unigram_and_errors():
    model = NGramModel(n=1, vocab_size=2, k=0.5).fit([0, 0, 0, 1])
    assert model.prob([], 0) == pytest.approx(3.5 / 5)
    with pytest.raises(ValueError, match="k"):
        NGramModel(n=2, vocab_size=3, k=0)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        NGramModel(n=2, vocab_size=3).fit([0, 3])
    with pytest.raises(ValueError, match="at least n"):
        NGramModel(n=3, vocab_size=3).fit([0, 1])


def test_units():
    assert perplexity(math.log(65)) == pytest.approx(65)
    assert nats_to_bits(math.log(2)) == pytest.approx(1.0)
    assert bits_per_unit(100 * math.log(2), 50) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        perplexity(float("nan"))
    with pytest.raises(ValueError):
        bits_per_unit(1.0, 0)


def test_sliding_window_scores_every_token_once_and_matches_full_context():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=9, block_size=32, n_layer=1, n_head=1, n_embd=8)).eval()
    ids = torch.randint(0, 9, (30,), generator=torch.Generator().manual_seed(0))
    full = score_ids(gpt_logits_fn(model), ids, window=32, progress=False)
    _, loss = model(ids[None, :-1], ids[None, 1:])
    assert full.n_tokens == 29 and full.total_nats == pytest.approx(loss.item() * 29, rel=1e-5)
    per_token = torch.nn.functional.cross_entropy(model(ids[None, :-1])[0][0], ids[1:], reduction="none")
    assert full.token_nats.shape == (29,) and full.token_nats.dtype == torch.float64
    assert torch.allclose(full.token_nats, per_token.double(), atol=1e-5)  # each token's loss, in text order
    for window, stride in [(8, 8), (8, 3), (10, 1), (2, 1)]:
        part = score_ids(gpt_logits_fn(model), ids, window=window, stride=stride, progress=False)
        assert part.n_tokens == 29 == len(part.token_nats), (window, stride)
        assert part.total_nats == pytest.approx(part.token_nats.sum().item())
    with pytest.raises(ValueError, match="stride"):
        score_ids(gpt_logits_fn(model), ids, window=8, stride=9)
    with pytest.raises(ValueError, match="at least 2"):
        score_ids(gpt_logits_fn(model), ids[:1], window=8)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_vectorised_counts_match_a_plain_python_count(n):
    from collections import Counter

    gen = torch.Generator().manual_seed(n)
    ids = torch.randint(0, 6, (400,), generator=gen).tolist()
    model = NGramModel(n=n, vocab_size=6, k=0.5).fit(ids)
    joint = Counter(tuple(ids[t - n + 1:t + 1]) for t in range(n - 1, len(ids)))
    context = Counter(tuple(ids[t - n + 1:t]) for t in range(n - 1, len(ids)))
    for window in list(joint)[:30] + [(5,) * n]:
        expected = (joint[window] + 0.5) / (context[window[:-1]] + 0.5 * 6)
        assert model.prob(list(window[:-1]), window[-1]) == pytest.approx(expected)
    expected_nll = -sum(math.log(model.prob(ids[t - n + 1:t], ids[t])) for t in range(n - 1, len(ids)))
    assert model.total_nats(ids)[0] == pytest.approx(expected_nll)


def test_packing_worked_example_from_the_docstring():
    import numpy as np

    from course_utils.model.ngram import _pack

    assert _pack(np.array([20, 1, 7]), 3, 65).tolist() == [(20 * 65 + 1) * 65 + 7] == [84572]
    assert _pack(np.array([2, 1, 7, 3]), 3, 10).tolist() == [217, 173]  # base 10: windows read as numbers


def test_score_ids_windows_on_a_hand_checked_case():
    # The docstring's picture: ids a..j = 0..9, window 4, stride 2. A fake model puts probability c / (c + 1) on
    # "next id = this id + 1", where c is how many ids the window shows up to and including this position, and
    # spreads the rest evenly. Contexts per scored id (from the picture): b 1; c, d, f, h 2; e, g, i, j 3.
    seen = []

    def logits_fn(chunk):  # (1, T) -> (1, T, 10)
        seen.append(chunk[0].tolist())
        T = chunk.shape[1]
        probs = torch.empty(1, T, 10, dtype=torch.float64)
        for p in range(T):
            right = (p + 1) / (p + 2)
            probs[0, p] = (1 - right) / 9
            probs[0, p, (chunk[0, p] + 1) % 10] = right
        return probs.log()

    score = score_ids(logits_fn, torch.arange(10), window=4, stride=2, progress=False)
    assert seen == [[0, 1, 2], [1, 2, 3, 4], [3, 4, 5, 6], [5, 6, 7, 8], [6, 7, 8, 9]]
    assert score.n_tokens == 9
    assert score.total_nats == pytest.approx(math.log(2) + 4 * math.log(3 / 2) + 4 * math.log(4 / 3), rel=1e-6)
    two, three, four = math.log(2), math.log(3 / 2), math.log(4 / 3)  # -log p with 1, 2 and 3 ids of context
    assert score.token_nats.tolist() == pytest.approx([two, three, three, four, three, four, three, four, four],
                                                      rel=1e-6)  # b c d e f g h i j, as in the picture


def test_out_of_range_ids_are_refused_where_they_would_alias_other_contexts():
    import numpy as np

    model = NGramModel(n=3, vocab_size=4).fit([0, 1, 2, 3, 0, 1, 2, 3, 1, 1])
    for context, token in (([0, 5], 2), ([1, 1], 6), ([0, -1], 1), ([True, 1], 2), ([0, 1.0], 2), ([0, 4], 2),
                           ([0, 1], 4)):  # V = 4 itself is outside too
        with pytest.raises(ValueError, match=r"ints in \[0, 4\)"):
            model.prob(context, token)  # [0, 5] was read as the context [1, 1] (0 * 4 + 5 = 1 * 4 + 1)
    with pytest.raises(ValueError, match=r"ints in \[0, 4\)"):
        model.distribution([7, 0])
    with pytest.raises(ValueError, match="at least n-1=2"):
        model.prob([1], 0)
    expected = model.prob([2, 0, 1], 2)  # only the last n-1 ids count
    assert model.prob(torch.tensor([0, 1]), torch.tensor(2)) == expected
    assert model.prob(np.array([0, 1]), np.int64(2)) == expected
    assert model.distribution([0, 1]) == [model.prob([0, 1], v) for v in range(4)]


def test_codes_that_would_overflow_int64_are_refused():
    with pytest.raises(ValueError, match="too large to pack into int64"):
        NGramModel(n=2, vocab_size=3_037_000_500)  # V^2 just above 2^63: bigram codes would wrap around
    NGramModel(n=2, vocab_size=2 ** 30)  # V^2 = 2^60 fits


def test_hf_bits_per_byte_leaves_out_the_bytes_of_the_first_token():
    from course_utils.evaluate.scoring import hf_bits_per_byte

    class CharTokenizer:  # one token per character, id = code point
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [ord(c) for c in text]}

        def decode(self, ids):
            return "".join(chr(int(i)) for i in ids)

    class Uniform(torch.nn.Module):  # every next token has p = 1/300: log2(300) bits per token
        def __init__(self):
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_ids):
            return type("Out", (), {"logits": torch.zeros(*input_ids.shape, 300)})()

    # "éa b": 4 tokens, 5 bytes; the first token, é, is 2 bytes and never scored: 3 tokens over 3 bytes
    bits, score, n_bytes = hf_bits_per_byte(Uniform(), CharTokenizer(), "éa b", window=8, progress=False)
    assert n_bytes == 3 and score.n_tokens == 3
    assert bits == pytest.approx(math.log2(300))
    assert score.bits_per(6) == pytest.approx(3 * math.log2(300) / 6)


def test_score_ids_refuses_float_ids_and_windows_that_score_nothing():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=9, block_size=32, n_layer=1, n_head=1, n_embd=8)).eval()
    ids = torch.randint(0, 9, (30,), generator=torch.Generator().manual_seed(0))
    fn = gpt_logits_fn(model)
    with pytest.raises(TypeError, match="ids must hold integer token ids, got torch.float32"):
        score_ids(fn, ids.float() + 0.5, window=8, progress=False)  # .long() truncated every id
    for bad in (math.inf, 2.5, True):  # inf returned TextScore(total_nats=0.0, n_tokens=0)
        with pytest.raises(ValueError, match="window must be an int >= 2"):
            score_ids(fn, ids, window=bad, progress=False)
    with pytest.raises(ValueError, match=r"stride must be an int in \[1, window=8\]"):
        score_ids(fn, ids, window=8, stride=2.5, progress=False)
    score = score_ids(fn, ids, window=np.int64(8), stride=np.int64(3), progress=False)
    assert score.n_tokens == 29
    for bad in (math.nan, 2.5, True, 0):  # NaN gave NaN bits, 2.5 a fraction of a character
        with pytest.raises(ValueError, match="n_units must be an int >= 1"):
            score.bits_per(bad)
    assert score.bits_per(np.int64(29)) == score.bits_per(29)


def test_bits_per_unit_takes_a_numpy_count_and_refuses_bools():
    assert bits_per_unit(100 * math.log(2), np.int64(50)) == bits_per_unit(100 * math.log(2), 50) == 2.0
    for bad in (True, np.float64(50.0)):  # True counted as one unit
        with pytest.raises(ValueError, match="n_units .* must be a positive int"):
            bits_per_unit(1.0, bad)
