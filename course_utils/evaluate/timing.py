"""Ranking two timed arms from interleaved rounds, without reading more into the numbers than they hold.

On a shared machine one timing says little. The course times each arm several times, interleaving the arms round by
round so that a slow spell of the machine hits all of them, and then ranks two arms only when every round agrees:

* the ranges (min to max over the rounds) do not overlap: one arm was faster in every round ("separate");
* they overlap and the medians are within ``tie`` (10 % by default) of each other: "about even";
* they overlap although the medians differ by more: "not ranked" (the rounds disagree too much to say).

With few rounds "separate" is a weak test: :func:`separation_chance` is how often two equally fast arms come out
separate by chance alone.

Used by chapter 08 (FAISS indexes against exact search), chapter 11 (DDP against threads, gradient accumulation
against one batch, bf16 against float32, checkpointing against none) and ``benchmarks/bench_distributed.py``, so the
notebooks and the benchmark read their timings by one rule. Left out:
significance tests (a handful of rounds on a noisy box does not meet their assumptions) and warm-up detection (the
callers discard their first step or round themselves).
"""

from __future__ import annotations

import math
import statistics
from typing import Sequence

from course_utils.arguments import check_int, check_real

VERDICTS = ("separate", "about even", "not ranked")


def _check_rounds(values: Sequence[float], name: str) -> list[float]:
    values = [float(v) for v in values]
    if not values:
        raise ValueError(f"{name} holds no rounds; time each arm at least once")
    if not all(v > 0 and v == v and v != float("inf") for v in values):
        raise ValueError(f"{name} must hold positive finite timings (seconds or rates), got {values}")
    return values


def ranges_overlap(a: Sequence[float], b: Sequence[float]) -> bool:
    """True when the range (min to max) of ``a``'s rounds meets the range of ``b``'s."""
    a, b = _check_rounds(a, "a"), _check_rounds(b, "b")
    return min(a) <= max(b) and min(b) <= max(a)


def compare_rounds(a: Sequence[float], b: Sequence[float], tie: float = 0.10) -> tuple[float, str]:
    """``(median(a) / median(b), verdict)`` with the verdict one of :data:`VERDICTS` (the rule in the module
    docstring). The values are per-round timings or rates of the two arms; whether a higher ratio means faster
    (rates) or slower (seconds) is the caller's to say."""
    check_real(tie, "tie", minimum=0, maximum=1, high_open=True, allowed="a fraction in [0, 1)")
    ratio = statistics.median(_check_rounds(a, "a")) / statistics.median(_check_rounds(b, "b"))
    if not ranges_overlap(a, b):
        return ratio, "separate"
    return ratio, "about even" if abs(ratio - 1) <= tie else "not ranked"


def separation_chance(n_rounds: int) -> float:
    """How often two equally fast arms timed ``n_rounds`` times each come out "separate" (ranges apart, either way)
    by chance alone: their 2n times fall in every order with equal chance, and one arm's n times all lie below the
    other's in 2 of the C(2n, n) ways to pick which n are whose. 1/3 at 2 rounds, 1/10 at 3, 1/35 at 4."""
    n_rounds = check_int(n_rounds, "n_rounds", minimum=1)
    return 2 / math.comb(2 * n_rounds, n_rounds)
