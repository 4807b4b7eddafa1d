"""Checks for chapter 01's exercises (language modelling): perplexity, bits per byte, bigram counts and the top
followers they reveal, and where a bigram's loss comes from.

Each check takes the learner's function (or answer) plus the notebook data it needs, computes the expected value
itself with plain Python (never by calling the package function the exercise asks for), and fails through
:mod:`course_utils.checks`, whose messages never show the expected value. The package functions that answer an
exercise are switched off while the learner's function runs
(:func:`course_utils.checks.package_functions_switched_off`): :func:`course_utils.evaluate.metrics.perplexity`
(exercise 1: exp of a mean loss, the answer once the mean of -ln p is taken), ``bits_per_unit``, ``nats_to_bits`` and
``TextScore.bits_per`` (exercise 2), and this module's own count helper (exercise 3).
``tests/test_exercises_ch01.py`` feeds every check the reference solution, a correct answer in another form, and the
likely wrong answers.
"""

from __future__ import annotations

import math
import numbers
import re
from collections import Counter
from typing import Any, Callable, Sequence

import torch

from course_utils import checks


def _as_int_list(ids: Any) -> list[int]:
    return ids.tolist() if isinstance(ids, torch.Tensor) else [int(i) for i in ids]


def check_perplexity(fn: Callable[[Sequence[float]], Any], probs: Sequence[float]) -> None:
    """``fn(probs)`` must be exp(mean(-ln p)). ``probs``: the probabilities a model gave each actual next token."""
    hint = "perplexity is the exponential of the *mean* negative log-probability"
    from course_utils.evaluate.metrics import perplexity  # exp(mean nats): the package's answer, switched off

    with checks.package_functions_switched_off(perplexity):
        uniform, unequal = fn([0.25] * 10), fn([0.5, 0.125])
    checks.check_close("uniform probabilities over 4 choices", uniform, 4.0, hint=hint)
    checks.check_close("two unequal probabilities", unequal, 4.0, hint=hint)
    # at most the first 30,000 (the cpu profile's evaluation text): float32 answers drift with the length (a product
    # of 200,000 float32 powers, the gpu profile's, is 3.7e-4 off), and the tolerance below is reasoned for 30,000
    cut = len(probs) > 30_000
    probs = [float(p) for p in probs][:30_000]
    name = "the bigram on the evaluation text" + (" (its first 30,000 probabilities)" if cut else "")
    underflow = ("a product of thousands of probabilities underflows to 0 in floating point (and its inverse to "
                 "infinity): sum their logarithms instead")
    try:
        with checks.package_functions_switched_off(perplexity):
            answer = fn(list(probs))  # a copy: the expected value is computed from probs afterwards
    except (ZeroDivisionError, OverflowError, ValueError) as err:  # math.prod(p) ** (-1 / n); math.log(0.0)
        raise AssertionError(f"{name}: your function raised {type(err).__name__}. {underflow}") from None
    expected = math.exp(-math.fsum(math.log(p) for p in probs) / len(probs))  # after the call: not in a local then
    try:
        value = float(answer)
    except (TypeError, ValueError, RuntimeError):  # not one number: check_close says what it expected
        value = None
    if value is not None and (value == 0 or math.isinf(value)):
        raise AssertionError(f"{name}: your function returned {value}. {underflow}")
    # rtol 2e-4 accepts float32 computations (a product of 30,000 float32 powers drifts by ~1e-4 relative); the
    # likely mistakes (sum for mean, the sign, log2, the arithmetic mean) are off by far more
    checks.check_close(name, answer, expected, rtol=2e-4, hint=hint)


def check_bits_per_byte(fn: Callable[[float, int, int], Any], nats_per_token: float, n_tokens: int,
                        n_bytes: int, reported_bits_per_byte: float) -> None:
    """``fn(nats, n_tokens, n_bytes)``: a mean loss in nats per token over n_tokens tokens -> bits per byte.

    ``reported_bits_per_byte`` is what the notebook printed for the same text; the answer must reproduce it.
    """
    hint = "from nats per token to total nats, then to bits, then share them over the bytes"
    from course_utils.evaluate.metrics import bits_per_unit, nats_to_bits
    from course_utils.evaluate.scoring import TextScore

    with checks.package_functions_switched_off(bits_per_unit, nats_to_bits, TextScore.bits_per):  # ready-made
        answers = [fn(math.log(2), 10, 40), fn(2.0, 300, 1000), fn(nats_per_token, n_tokens, n_bytes)]
    checks.check_close("one bit (ln 2 nats) per token, four bytes per token", answers[0], 0.25, hint=hint)
    checks.check_close("a made-up model", answers[1], 2.0 * 300 / math.log(2) / 1000, hint=hint)
    checks.check_close("SmolLM2 on the evaluation text", answers[2], reported_bits_per_byte, rtol=1e-5, hint=hint)


def _plain_pair_counts(ids: list[int], vocab_size: int, gap: int) -> torch.Tensor:
    counts = torch.zeros(vocab_size, vocab_size, dtype=torch.long)
    for (a, b), n in Counter(zip(ids, ids[gap:])).items():
        counts[a, b] = n
    return counts


def check_pair_counts(fn: Callable[[torch.Tensor, int, int], Any], ids: torch.Tensor, vocab_size: int) -> None:
    """``fn(ids, vocab_size, gap)`` -> (V, V) counts, entry [a, b] = how often b comes ``gap`` positions after a
    (gap 1: the bigram counts). Any int/float dtype or a nested list is accepted."""
    hint = ("row = the earlier id, column = the id gap positions later; a sequence of N ids holds N - gap pairs "
            "at that gap")
    toy = torch.tensor([0, 1, 0, 1, 0, 2])
    ids_list = _as_int_list(ids)
    cases = [(f"counts on a six-id toy sequence, gap {gap}", toy, 3, gap) for gap in (1, 2, 3)]
    cases += [(f"counts on {len(ids_list):,} ids of the training text, gap {gap}", ids, vocab_size, gap)
              for gap in (1, 4)]
    with checks.package_functions_switched_off(_plain_pair_counts):  # this module's own answer is not one
        answers = [fn(x.clone() if isinstance(x, torch.Tensor) else x, v, gap)  # a copy: the notebook's ids stay
                   for _, x, v, gap in cases]
    expected = [_plain_pair_counts(_as_int_list(x), v, gap) for _, x, v, gap in cases]  # after the learner's calls
    for (name, *_), got, want in zip(cases, answers, expected):
        checks.check_equal(name, got, want, hint=hint)


def followers_as_chars(name: str, answer: Any, k: int, alphabet: str | None) -> list[str]:
    """The learner's ``k`` followers as a list of characters: a ``k``-character string, a sequence of one-character
    strings, or (when ``alphabet`` is given) a sequence or tensor of ids, which ``alphabet[i]`` decodes. A tensor or
    array with one row or one column, (1, k) or (k, 1), counts as that line (``counts[[i]].topk(k).indices`` gives
    (1, k)), and a list of 0-d tensors as the ids they hold. A tensor on the meta device (a shape, no ids) fails."""
    checks.no_meta(name, answer)
    if isinstance(answer, (list, tuple)):
        for item in answer:
            checks.no_meta(name, item)
    if isinstance(answer, torch.Tensor) and answer.layout != torch.strided:  # sparse ids
        answer = answer.to_dense()
    if hasattr(answer, "tolist") and not isinstance(answer, str):  # a tensor or a NumPy array of ids
        shape = tuple(getattr(answer, "shape", ()))
        one_line = len(shape) == 2 and 1 in shape  # (1, k) or (k, 1)
        answer = answer.reshape(-1).tolist() if one_line else answer.tolist()
    if isinstance(answer, (list, tuple)):  # e.g. list(topk.indices): one 0-d tensor per id
        answer = [a.item() if hasattr(a, "item") and getattr(a, "ndim", 1) == 0 else a for a in answer]
    if not isinstance(answer, (str, list, tuple)):
        raise AssertionError(f"{name}: expected a string or a list of {k} characters, got {type(answer).__name__}")
    items = list(answer)
    if len(items) != k:
        raise AssertionError(f"{name}: expected {k} characters, got {len(items)}")
    if alphabet is not None and all(isinstance(i, numbers.Integral) and not isinstance(i, bool) for i in items):
        items = [int(i) for i in items]
        if not all(0 <= i < len(alphabet) for i in items):
            raise AssertionError(f"{name}: an id is outside the alphabet's 0..{len(alphabet) - 1}")
        return [alphabet[i] for i in items]
    if not all(isinstance(c, str) and len(c) == 1 for c in items):
        raise AssertionError(f"{name}: every entry must be a one-character string (or return ids; alphabet[i], the "
                             "function's argument, is id i's character), "
                             f"got {answer!r}")
    return items


def check_top_followers(answer: Any, text: str, char: str, k: int = 3, alphabet: str | None = None) -> None:
    """``answer``: the ``k`` characters that most often follow ``char`` in ``text``, most frequent first.

    Ties are accepted in either order (and a tie for the last place accepts any of the tied characters): the answer
    is right when its i-th character is distinct from the others and follows ``char`` exactly as often as the i-th
    most frequent follower does. The counts come from ``text`` with plain Python, not from the learner's matrix.
    """
    if answer is None:
        raise NotImplementedError
    followers = Counter(text[m.start() + 1] for m in re.finditer(re.escape(char), text[:-1]))
    _check_followers(f"the {k} characters that most often follow {char!r}", answer, followers, char, k, alphabet)


def _check_followers(name: str, answer: Any, followers: Counter, char: str, k: int, alphabet: str | None) -> None:
    # followers: how often each character follows ``char``, counted by the check itself
    if len(followers) < k:
        raise ValueError(f"{char!r} has fewer than {k} distinct followers in the text; pick another character")
    chosen = followers_as_chars(name, answer, k, alphabet)
    hint = (f"take the row of your count matrix for {char!r} (not its column), sort it, and decode the {k} largest "
            "entries' ids, largest first")
    if len(set(chosen)) != k:
        raise AssertionError(f"{name}: a character appears twice. {hint}")
    expected_counts = sorted(followers.values(), reverse=True)[:k]
    n_wrong = sum(followers[c] != expected_counts[i] for i, c in enumerate(chosen))
    checks.check_true(name, n_wrong == 0, hint=f"{n_wrong} of your {k} places are wrong. {hint}")


# a toy for the function check: 'a' is followed by '.' 4 times, 'b' 3 times, 'c' twice and 'd' once, and preceded
# by '.' and 'e' (the column, not the row); its alphabet is not the notebook's, so a hard-coded answer fails
_TOY_FOLLOW_TEXT = "ab.ab.ab.ac.ac.ad.ea.ea.ea.ea."


def check_top_followers_function(fn: Callable[[torch.Tensor, str, str, int], Any], ids: torch.Tensor, alphabet: str,
                                 char: str = "k", k: int = 3) -> None:
    """``fn(counts, alphabet, char, k)``: from a (V, V) matrix of gap-1 counts (row a counts what follows id a) and
    the ``alphabet`` (``alphabet[i]`` is id i's character), the ``k`` characters that most often follow ``char``,
    most frequent first: one-character strings, a string, or ids (a list, or a (k,) or (1, k) tensor or array).

    The check builds the count matrices it passes, first of a toy text (the top 2 followers of 'a'), then of ``ids``
    (in the notebook, the whole training text), and counts the followers itself with plain Python, so the answer is
    never computed in the notebook cell; ties are accepted in either order, as in :func:`check_top_followers`.
    """
    if char not in alphabet:
        raise ValueError(f"{char!r} is not in the alphabet")
    flat = torch.as_tensor(ids).detach().to("cpu", torch.long).reshape(-1)  # (N,)
    vocab_size = len(alphabet)
    if len(flat) < 2 or flat.min() < 0 or flat.max() >= vocab_size:
        raise ValueError(f"ids must be at least two ids in the alphabet's 0..{vocab_size - 1}")
    toy_alphabet = "".join(sorted(set(_TOY_FOLLOW_TEXT)))
    toy_followers = Counter(b for a, b in zip(_TOY_FOLLOW_TEXT, _TOY_FOLLOW_TEXT[1:]) if a == "a")
    toy_counts = _plain_pair_counts([toy_alphabet.index(c) for c in _TOY_FOLLOW_TEXT], len(toy_alphabet), 1)  # (6, 6)
    _check_followers(f"the 2 characters that most often follow 'a' in the toy text {_TOY_FOLLOW_TEXT!r}",
                     fn(toy_counts, toy_alphabet, "a", 2), toy_followers, "a", 2, toy_alphabet)
    id_list, char_id = flat.tolist(), alphabet.index(char)
    followers = Counter(alphabet[b] for a, b in zip(id_list, id_list[1:]) if a == char_id)
    counts = torch.bincount(flat[:-1] * vocab_size + flat[1:], minlength=vocab_size * vocab_size)  # (V * V,)
    _check_followers(f"the {k} characters that most often follow {char!r} in {len(id_list):,} ids",
                     fn(counts.view(vocab_size, vocab_size), alphabet, char, k), followers, char, k, alphabet)


def check_bits_excluding_targets(fn: Callable[[torch.Tensor, torch.Tensor, Sequence[int]], Any],
                                 table: torch.Tensor, ids: torch.Tensor, excluded_ids: Sequence[int]) -> None:
    """``fn(table, ids, excluded_ids)``: mean bits per prediction of a bigram ``table`` (V, V) over ``ids``,
    leaving out the predictions whose *target* (the next id) is in ``excluded_ids``."""
    hint = ("score each pair (ids[t-1] -> ids[t]) by -log2 table[ids[t-1], ids[t]]; drop the pairs whose second "
            "id is excluded; average the rest")
    toy_table = torch.tensor([[0.5, 0.25, 0.25], [0.5, 0.25, 0.25], [0.125, 0.125, 0.75]], dtype=torch.float64)
    # pairs 0->1 (2 bits), 1->2 (2 bits), 2->0 (3 bits), 0->2 (2 bits); excluding target 0 keeps 2, 2, 2 bits
    toy_ids = torch.tensor([0, 1, 2, 0, 2])
    checks.check_close("a three-symbol toy table", fn(toy_table, toy_ids, [0]), 2.0, hint=hint)
    t = table.detach().to("cpu", torch.float64)
    id_list = _as_int_list(ids)
    excluded = {int(i) for i in excluded_ids}
    given_table, given_ids = table.clone(), ids.clone()
    answer = fn(given_table, given_ids, list(excluded_ids))
    bits = [-math.log2(t[a, b].item()) for a, b in zip(id_list, id_list[1:]) if b not in excluded]  # after the call
    if not (torch.equal(given_table, table) and torch.equal(given_ids, ids)):
        raise AssertionError(f"the bigram on the evaluation text: your function changed the table or the ids it was "
                             f"given; compute on them without writing into them. {hint}")
    checks.check_close("the bigram on the evaluation text", answer, math.fsum(bits) / len(bits), rtol=1e-6,
                       hint=hint)
