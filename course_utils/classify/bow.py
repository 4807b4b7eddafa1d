"""Bag-of-words features: the baseline that ignores word order and knows no language beyond its training plays.

Lower-cased words (runs of letters and apostrophes) are counted per passage; the vocabulary is the ``max_features``
most frequent words of the TRAINING passages that occur at least ``min_count`` times (ties broken alphabetically, so
the vocabulary is deterministic); a passage becomes log(1 + count) per vocabulary word (damped counts, as in
sublinear tf scaling; Manning, Raghavan & Schuetze, 2008, "Introduction to Information Retrieval", section 6.4.1).
Fed to :func:`course_utils.classify.probe.train_logistic_regression`, it is a multinomial logistic regression on
word counts, the classic text-classification baseline.

Left out: idf weighting, n-grams, stemming, stop-word lists (a genre may well live in its function words).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import torch

from course_utils.arguments import check_int

_WORD = re.compile(r"[a-z']+")


def words(text: str) -> list[str]:
    """Lower-cased words of ``text``, apostrophes kept inside ("ne'er"), stripped at the edges ("'tis" -> "tis")."""
    return [w.strip("'") for w in _WORD.findall(text.lower()) if w.strip("'")]


def _check_texts(texts: object) -> None:
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)) or not texts:
        raise ValueError("texts must be a non-empty list of strings")
    if not all(isinstance(t, str) for t in texts):
        raise TypeError("every text must be a string")


@dataclass(frozen=True)
class BagOfWords:
    vocabulary: dict[str, int]  # word -> column

    def transform(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, V) float32 on the CPU: log(1 + count) of each vocabulary word in each text."""
        _check_texts(texts)
        counts = torch.zeros(len(texts), len(self.vocabulary))
        for row, text in enumerate(texts):
            for word, n in Counter(words(text)).items():
                column = self.vocabulary.get(word)
                if column is not None:
                    counts[row, column] = n
        return counts.log1p()


def fit_bag_of_words(texts: Sequence[str], max_features: int = 5000, min_count: int = 2) -> BagOfWords:
    """The vocabulary of ``texts`` (fit on the training passages only: the test plays' words stay unseen)."""
    _check_texts(texts)
    max_features = check_int(max_features, "max_features", minimum=1, allowed="a positive int")  # numpy ints too
    min_count = check_int(min_count, "min_count", minimum=1, allowed="a positive int")
    totals = Counter(w for text in texts for w in words(text))
    kept = sorted((w for w, n in totals.items() if n >= min_count), key=lambda w: (-totals[w], w))[:max_features]
    if not kept:
        raise ValueError(f"no word occurs {min_count} or more times in the texts: lower min_count")
    return BagOfWords({w: i for i, w in enumerate(kept)})
