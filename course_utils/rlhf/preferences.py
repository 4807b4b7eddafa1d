"""The hidden "human" preference of chapter 05: a scoring function the learner can read and the reward model never
sees, and noisy pairwise labels drawn from it.

Real RLHF collects comparisons from people (Christiano et al., 2017, "Deep Reinforcement Learning from Human
Preferences"; Ouyang et al., 2022, "Training language models to follow instructions with human feedback"), so the
true quality of a sample is never known. Here it is: :func:`true_score` rates one generated line, and labellers are
simulated with the Bradley-Terry model itself (Bradley & Terry, 1952): a labeller prefers line a over line b with
probability sigmoid((score(a) - score(b)) / temperature). The temperature sets the label noise; a perfect reward
model cannot beat :func:`bayes_accuracy` on such labels.

The preference, in words: lines that use pleasant words (at most two distinct ones count), avoid grim words, are
made of real words (the vocabulary of Shakespeare's works; the tiny model's ``<unk>`` is not one), do not repeat
themselves, have at least six words, and finish (end with a newline) within the length allowed. Every term is
visible in :data:`PREFERENCE` and :func:`score_terms`.

Left out: prompts (the score depends on the response line only), disagreement between labellers, ties.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import torch

from course_utils.arguments import check_real, check_str
from course_utils.device import check_generator
from course_utils.text.corpus import list_works, load_work

WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


@dataclass(frozen=True)
class Preference:
    """The weights of the hidden score; see :func:`score_terms` for how each term is measured."""
    pleasant: frozenset = frozenset(
        "love sweet fair gentle joy heaven grace honour dear happy kind noble true good peace beauty hope".split())
    grim: frozenset = frozenset(
        "death blood hate die kill grief woe sorrow dead fear curse poison grave murder foul villain hell".split())
    max_pleasant: int = 2  # distinct pleasant words beyond this earn nothing
    pleasant_weight: float = 1.0
    grim_weight: float = 1.0
    nonword_weight: float = 2.0  # times the fraction of words not in the corpus vocabulary
    repeat_weight: float = 2.0  # times the fraction of words that repeat an earlier word of the line
    min_words: int = 6  # a line should be a full line of verse ...
    short_weight: float = 0.5  # ... each word it falls short costs this much
    unfinished_penalty: float = 1.0  # the line did not end within the allowed length
    empty_score: float = -3.0  # a line with no words at all

    def __post_init__(self) -> None:  # weights may be negative (to flip a term), never NaN or inf
        for name in ("pleasant", "grim"):
            if not isinstance(getattr(self, name), frozenset):
                raise TypeError(f"Preference.{name} must be a frozenset of lower-case words, got "
                                f"{type(getattr(self, name)).__name__}")
        for name in ("max_pleasant", "min_words"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"Preference.{name} must be an int >= 0, got {value!r}")
        for name in ("pleasant_weight", "grim_weight", "nonword_weight", "repeat_weight", "short_weight",
                     "unfinished_penalty", "empty_score"):
            value = getattr(self, name)
            check_real(value, f"Preference.{name}")  # stored as given


PREFERENCE = Preference()


@lru_cache(maxsize=1)
def corpus_vocabulary() -> frozenset:
    """Every lower-cased word (letters with an optional apostrophe part) in Shakespeare's works."""
    words: set[str] = set()
    for key in list_works():
        words.update(WORD.findall(load_work(key).lower()))
    return frozenset(words)


def score_terms(response: str, finished: bool = True, preference: Preference = PREFERENCE,
                vocabulary: frozenset | None = None) -> dict[str, float]:
    """The pieces of the hidden score of one response line: counts and fractions before weighting."""
    check_str(response, "response")
    vocabulary = corpus_vocabulary() if vocabulary is None else vocabulary
    words = WORD.findall(response.lower())
    n = len(words)
    return {
        "words": n,
        "pleasant": min(len({w for w in words if w in preference.pleasant}), preference.max_pleasant),
        "grim": sum(w in preference.grim for w in words),
        "nonword_fraction": sum(w not in vocabulary for w in words) / n if n else 0.0,
        "repeat_fraction": 1.0 - len(set(words)) / n if n else 0.0,
        "missing_words": max(0, preference.min_words - n),
        "unfinished": float(not finished),
    }


def true_score(response: str, finished: bool = True, preference: Preference = PREFERENCE,
               vocabulary: frozenset | None = None) -> float:
    """The hidden preference score of one generated line (higher is better)."""
    t = score_terms(response, finished, preference, vocabulary)
    if t["words"] == 0:
        return preference.empty_score - preference.unfinished_penalty * t["unfinished"]
    return (preference.pleasant_weight * t["pleasant"] - preference.grim_weight * t["grim"]
            - preference.nonword_weight * t["nonword_fraction"] - preference.repeat_weight * t["repeat_fraction"]
            - preference.short_weight * t["missing_words"] - preference.unfinished_penalty * t["unfinished"])


def preference_probability(score_a: torch.Tensor, score_b: torch.Tensor, temperature: float) -> torch.Tensor:
    """P(a preferred over b) = sigmoid((score_a - score_b) / temperature), the Bradley-Terry model."""
    check_real(temperature, "temperature", minimum=0, low_open=True,
               allowed="a finite number > 0 (it sets the label noise)")
    if not isinstance(score_a, torch.Tensor) or not isinstance(score_b, torch.Tensor):
        raise TypeError(f"score_a and score_b must be tensors, got {type(score_a).__name__}, {type(score_b).__name__}")
    if score_a.shape != score_b.shape:
        raise ValueError(f"score_a {tuple(score_a.shape)} and score_b {tuple(score_b.shape)} must have one shape")
    return torch.sigmoid((score_a - score_b) / temperature)


def noisy_labels(score_a: torch.Tensor, score_b: torch.Tensor, temperature: float,
                 generator: torch.Generator) -> torch.Tensor:
    """Simulated labellers: True where a is preferred, drawn from :func:`preference_probability` with ``generator``
    (required: None drew from torch's global generator)."""
    p = preference_probability(score_a, score_b, temperature)  # (P,)
    if generator is None:
        raise ValueError("noisy_labels needs an explicit torch.Generator (make_generator(seed, score_a.device))")
    check_generator(generator, p, "score_a")
    if not bool(torch.isfinite(score_a).all() and torch.isfinite(score_b).all()):  # torch.bernoulli: 'p_in >= 0'
        raise ValueError("score_a and score_b must be finite (a NaN or inf score has no preference probability)")
    return torch.bernoulli(p, generator=generator).bool()  # (P,)


def bayes_accuracy(score_a: torch.Tensor, score_b: torch.Tensor, temperature: float) -> float:
    """The expected accuracy of the best possible predictor (the hidden score itself) on such noisy labels."""
    p = preference_probability(score_a, score_b, temperature)
    return torch.maximum(p, 1 - p).mean().item()
