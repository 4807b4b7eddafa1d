"""Checks for chapter 07's exercises (sampling and decoding): an epsilon filter, a repetition penalty that fades
with distance, the KV cache of a sliding-window model, and how much a continuation copies its prompt.

Each exercise asks for something :mod:`course_utils.generate` does not provide (epsilon sampling, a penalty window,
a rolling-buffer cache, n-gram novelty), so no package call is the answer. ``transformers`` does ship epsilon (and
eta) sampling as logits warpers, and the notebook imports their siblings; min-p filtering at min_p = epsilon / p_max
is epsilon sampling too (the package's ``min_p_filter`` and its ``_min_p``, which ``process_logits`` calls, and
``transformers``' ``MinPLogitsWarper``); this module's private references (``_epsilon_reference``,
``_decaying_reference``, ``_novelty_reference``) are full answers too. Each check computes the expected value first,
with those references, and then runs the learner's function inside
:func:`course_utils.checks.package_functions_switched_off` with the warpers' ``__call__``, the min-p filters and the
references switched off. Failures go through :mod:`course_utils.checks`, whose messages never show the expected value.
``tests/test_exercises_ch07.py`` feeds every check the reference solution, a correct answer in another form, and the
likely wrong answers.

References: J. Hewitt, C. D. Manning, P. Liang, "Truncation Sampling as Language Model Desmoothing", 2022 (epsilon
sampling); llama.cpp's ``repeat_last_n`` (a window for the CTRL penalty); A. Q. Jiang et al., "Mistral 7B", 2023
(sliding-window attention with a rolling-buffer cache).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from course_utils import checks


def _logits(seed: int, shape: tuple[int, int], scale: float) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator("cpu").manual_seed(seed)) * scale  # CPU data, CPU generator


def _epsilon_reference(logits: torch.Tensor, epsilon: float) -> torch.Tensor:
    out = logits.clone()
    probs = logits.softmax(-1)
    for b in range(logits.shape[0]):
        best = int(probs[b].argmax())
        for i in range(logits.shape[1]):
            if probs[b, i] < epsilon and i != best:
                out[b, i] = -math.inf
    return out


def check_epsilon_filter(fn: Callable[[torch.Tensor, float], Any]) -> None:
    """``fn(logits (B, V), epsilon)``: tokens with probability below ``epsilon`` become -inf, the most likely token
    of each row always stays; kept logits are unchanged."""
    hint = ("compare probabilities (softmax of the logits), not logits, with epsilon; keep kept logits as they are; "
            "never remove a row's most likely token")
    flat = torch.zeros(1, 8)
    flat[0, 3] = 0.1  # every probability is about 1/8 < 0.2: only the most likely token may stay
    # row 1 is nearly flat (every probability below 0.3, its best token at index 2), row 0 holds the batch's best
    # token: keeping only the batch's most likely token, not each row's, leaves row 1 empty
    two_rows = torch.stack([torch.log(torch.tensor([0.7, 0.2, 0.09, 0.01])), torch.tensor([0.0, 0.0, 0.1, 0.0])])
    cases = [("hand example, epsilon 0.1", torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.04, 0.06, 0.3, 0.6]])),
              0.1),
             ("a flat row, epsilon 0.2", flat, 0.2),
             ("two rows, the second below epsilon 0.3 everywhere", two_rows, 0.3),
             ("random logits, epsilon 0.01", _logits(0, (4, 300), 3.0), 0.01),
             # four equal logits give probabilities of exactly 1/4 (a power of two: no rounding by any route), so a
             # probability equal to epsilon is not below it and stays. All four tie at the maximum, so an answer that
             # removes "<= epsilon" but protects every tied maximum also passes: a token below the maximum cannot sit
             # at exactly epsilon by every route of computing the softmax, so strictness is testable only here
             ("probabilities exactly at epsilon 0.25", torch.zeros(2, 4), 0.25)]
    for label, logits, epsilon in cases:
        answer = _learner_alone(fn, logits.clone(), epsilon)
        checks.check_equal(label, answer, _epsilon_reference(logits, epsilon), hint=hint)  # made after the call


def _decaying_reference(logits: torch.Tensor, prev_ids: torch.Tensor, penalty: float, window: int) -> torch.Tensor:
    out = logits.clone()
    for b in range(logits.shape[0]):
        recent = prev_ids[b].tolist()[-window:]
        last = {}
        for pos, token in enumerate(recent):
            last[token] = len(recent) - 1 - pos
        for token, d in last.items():
            theta = penalty ** (1 - d / window)
            z = float(logits[b, token])
            out[b, token] = z / theta if z > 0 else z * theta
    return out


def check_decaying_penalty(fn: Callable[[torch.Tensor, torch.Tensor, float, int], Any]) -> None:
    """``fn(logits (B, V), prev_ids (B, T), penalty, window)``: the CTRL sign rule for the tokens among the last
    ``window`` ids, with strength ``penalty ** (1 - d / window)`` where ``d`` counts ids back from the last one
    (0) to the token's most recent occurrence."""
    hint = ("only the last `window` ids count; use each token's most recent occurrence (d = 0 for the last id); the "
            "strength is penalty ** (1 - d / window); divide a positive logit by it, multiply a negative one")
    z = torch.tensor([[2.0, -2.0, 1.0, 0.5]])
    r = _logits(1, (3, 50), 3.0)
    prev_r = torch.randint(0, 50, (3, 20), generator=torch.Generator("cpu").manual_seed(2))
    cases = [  # (label, logits, previous ids, penalty, window)
        ("hand example: a negative logit in the window, a token before it", z, torch.tensor([[2, 0, 1]]), 2.0, 2),
        ("hand example: a token twice in the window", z, torch.tensor([[1, 3, 1, 2]]), 2.0, 4),
        ("hand example: window longer than the context", z, torch.tensor([[1, 3]]), 2.0, 10),
        ("random logits, window 8, penalty 1.7", r, prev_r, 1.7, 8)]
    for label, logits, prev, penalty, window in cases:
        given = logits.clone()
        answer = _learner_alone(fn, given, prev.clone(), penalty, window)
        expected = _decaying_reference(logits, prev, penalty, window)  # after the call: no frame of theirs reads it
        if not torch.equal(given, logits):
            raise AssertionError(f"{label}: your function changed the logits it was given; return a new tensor "
                                 f"(clone first). {hint}")
        checks.check_close(label, answer, expected, hint=hint)


MISTRAL_HINT = ("layers x (K and V) x KV heads x head size x cached positions x bytes per value; which heads store "
                "keys and values, and which earlier positions can a sliding window still reach?")


def check_mistral_kv_cache(fn: Callable[[], Any]) -> None:
    """``fn()`` -> ``(positions, gib)``: how many positions the float16 KV cache of one 8,192-token sequence of
    Mistral-7B v0.1 keeps with its 4,096-token rolling buffer (32 layers, 8 KV heads of 128), and its size in GiB.
    The positions are checked on their own, so two mistakes that cancel in the GiB (keys only and no rolling buffer)
    do not pass; 4,097 (the paper's "i - W to i" read inclusively) is accepted beside 4,096."""
    name = "Mistral-7B v0.1 KV cache"
    answer = fn()
    if isinstance(answer, torch.Tensor):
        answer = answer.tolist()
    if isinstance(answer, (str, bytes)) or not hasattr(answer, "__len__") or len(answer) != 2:
        raise AssertionError(f"{name}: return a pair (positions kept, GiB), got {type(answer).__name__}. "
                             f"{MISTRAL_HINT}")
    positions, gib = answer
    positions = checks.one_element(f"{name}, positions kept", positions, MISTRAL_HINT)
    if isinstance(positions, (str, bytes, bool)) or positions not in (4096, 4097):
        raise AssertionError(f"{name}: the number of positions kept is not right. {MISTRAL_HINT}")
    checks.passed(f"{name}, positions kept")
    checks.check_close(f"{name}, GiB", gib, 32 * 2 * 8 * 128 * 4096 * 2 / 2**30, atol=0.0, rtol=1e-3,
                       direction=False, hint=MISTRAL_HINT)


def _novelty_reference(sample: list[int], reference: list[int], n: int) -> float:
    grams = [tuple(sample[i:i + n]) for i in range(len(sample) - n + 1)]
    known = {tuple(reference[i:i + n]) for i in range(len(reference) - n + 1)}
    return sum(g not in known for g in grams) / len(grams) if grams else 0.0


def check_novel_ngram_fraction(fn: Callable[[list[int], list[int], int], Any]) -> None:
    """``fn(sample, reference, n)``: the share of the sample's n-grams (counted with repeats) that occur nowhere in
    ``reference``; 0.0 when the sample has no n-gram."""
    hint = ("count every n-gram of the sample, repeats included (a sequence of L ids has L - n + 1); an n-gram is "
            "novel when it never occurs in the reference")
    cases = [("hand example, bigrams", [1, 2, 3, 1, 2, 3], [1, 2, 9], 2),
             ("hand example, unigrams", [4, 4, 5, 6], [4, 7], 1),
             ("a sample shorter than n", [1, 2], [1, 2, 3], 3),
             ("a reference shorter than n", [1, 2, 3, 4], [1, 2], 3),
             ("ids of two digits; the reference's last bigram recurs", [1, 2, 5, 6], [11, 2, 9, 5, 6], 2)]
    g = torch.Generator("cpu").manual_seed(3)
    cases.append(("random sequences, trigrams", torch.randint(0, 5, (60,), generator=g).tolist(),
                  torch.randint(0, 5, (40,), generator=g).tolist(), 3))
    for label, sample, reference, n in cases:
        try:
            answer = _learner_alone(fn, list(sample), list(reference), n)
        except (NotImplementedError, AssertionError):
            raise
        except Exception as error:  # e.g. unfold on a reference shorter than n: name the case, keep the traceback
            raise AssertionError(f"{label}: your function raised {type(error).__name__} ({error}). {hint}") from error
        checks.check_close(label, answer, _novelty_reference(sample, reference, n), hint=hint)  # made after the call


def _learner_alone(fn: Callable, *args: Any) -> Any:
    """``fn(*args)`` with every ready-made answer switched off: ``transformers``' epsilon, eta and min-p warpers, the
    package's min-p filter (min-p at epsilon / p_max is epsilon sampling) and this module's own references (the
    checks call those before, never inside, this block)."""
    from transformers.generation import EpsilonLogitsWarper, EtaLogitsWarper, MinPLogitsWarper

    from course_utils.generate import sampling

    with checks.package_functions_switched_off(EpsilonLogitsWarper.__call__, EtaLogitsWarper.__call__,
                                               MinPLogitsWarper.__call__, sampling.min_p_filter, sampling._min_p,
                                               _epsilon_reference, _decaying_reference, _novelty_reference):
        return fn(*args)
