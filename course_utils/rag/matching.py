"""Grading free-text answers against a known answer: SQuAD-style normalisation, containment, token F1, abstention.

Follows the official evaluation script of SQuAD (Rajpurkar et al., 2016, "SQuAD: 100,000+ Questions for Machine
Comprehension of Text"; v2.0's script for empty answers): lowercase, remove punctuation, remove the articles a, an,
the, collapse whitespace; F1 is the harmonic mean of precision and recall over the bag of normalised tokens. Two
additions: accents are stripped (Unicode NFKD, then combining marks dropped, so "Röntgen" reads "rontgen"), a
possessive 's is dropped before punctuation ("Van Gogh's" reads "van gogh", not "van goghs"), and non-ASCII
punctuation (curly quotes, dashes) is removed as well as ``string.punctuation``. Punctuation is deleted, not
replaced by a space, as in SQuAD: "Berners-Lee" reads "bernerslee" on both sides.

Exact match is too strict for a chat model, which answers "She was born in Quillmere." rather than "Quillmere", so
:func:`contains_answer` asks whether the normalised tokens of an answer occur CONTIGUOUSLY in the normalised tokens
of the prediction: whole tokens, so "Paris" does not match "Parisian" and "1873" does not match "18730". Its
weakness, stated plainly: a prediction that lists several candidates is graded correct if the answer is among them.
On the default knowledge base, the one prediction that lists all 60 town names is "correct" on all 120 birthplace
questions (tested in tests/test_rag_matching.py). Greedy SmolLM2-135M-Instruct rarely hedges closed-book, but with
several retrieved passages it sometimes names two answers of the relation ("... born in 1866 in Ulmthorpe in 1944"):
chapter 08 counts, at each k, the replies that name an answer taken from a distractor passage, graded correct or
not (:func:`mentions` finds them). Negation is not understood either: "Dynamite was not invented by Alfred
Nobel." contains the answer.

:func:`is_abstention` recognises the phrases in :data:`ABSTENTION_PATTERNS` (regular expressions on the lowercased,
accent-free text with curly apostrophes made straight). Decisions: an answer that says the subject is fictional or
does not exist ("Orla Vendrake is a fictional character") counts as an abstention: it declines to state the fact,
and it is never a correct answer. Only "is/are/was/were (a) fictional" counts, not the bare word: SmolLM2 also
writes "founded by the town of Quadrille, a fictional town", a made-up answer with an aside, which is a
hallucination. A bare "there is no" is too broad ("there is no doubt she was born in ...") so only "there is/are/was
no" followed by record, information, evidence, mention, data, such, known or reliable counts. :func:`grade` checks
correctness first, so "I'm not sure, but I think Quillmere" is correct, and "X is a fictional clockmaker born in Y"
(a wrong detail wrapped in a disclaimer) is an abstention, not a hallucination.

Left out: semantic equivalence (synonyms, "the 1870s" for 1873, numbers written in words), LLM-as-judge grading,
partial credit for partly right names beyond what token F1 gives.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from typing import Sequence

GRADES = ("correct", "abstained", "wrong")

ABSTENTION_PATTERNS: tuple[str, ...] = (
    r"\bi (?:do not|don't|dont) know\b",
    r"\b(?:i'm|i am|im) not (?:sure|certain|aware)\b",
    r"\bnot aware of\b",
    r"\b(?:cannot|can't|can not|unable to|could not|couldn't) (?:answer|determine|say|tell|confirm|verify)\b",
    r"\bi (?:could not|couldn't|cannot|can't|can not|was unable to|am unable to) find\b",
    r"\b(?:no|not enough|insufficient|limited) (?:\w+ )?information\b",
    r"\b(?:do not|don't|does not|doesn't) have (?:any |enough )?(?:information|data|details|access|knowledge)\b",
    r"\b(?:is |are |was )?not (?:mentioned|stated|provided|given|specified)\b",
    r"\b(?:does not|doesn't|do not|don't) (?:say|mention|state|specify)\b",
    r"\bthere (?:is|are|was) no (?:record|information|evidence|mention|data|such|known|reliable)\b",
    r"\bunknown\b",
    r"\b(?:no one|nobody) knows\b",
    r"\bnot (?:known|documented|recorded)\b",
    r"\b(?:is|are|was|were) (?:a |an )?(?:purely |entirely )?fictional\b",
    r"\b(?:does not|doesn't|did not|didn't) exist\b",
    r"\bnot a real\b",
)
_ABSTENTION = re.compile("|".join(ABSTENTION_PATTERNS))
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")


def _check_text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    return value


def _strip_accents(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))


def _is_punctuation(ch: str) -> bool:
    return ch in string.punctuation or unicodedata.category(ch).startswith("P")


def normalize_answer(text: str) -> str:
    """Lowercase, strip accents, drop a possessive 's, remove punctuation, remove the articles a/an/the, collapse
    whitespace."""
    text = _strip_accents(_check_text("text", text).lower())
    text = _POSSESSIVE.sub("", text)  # "van gogh's" -> "van gogh", not "van goghs"
    text = "".join(ch for ch in text if not _is_punctuation(ch))
    return " ".join(_ARTICLES.sub(" ", text).split())


_POSSESSIVE = re.compile(r"(?<=[a-z])['\u2019]s\b")  # after a letter: "1850's" (a decade) is not a possessive


def _answer_tokens(answers: Sequence[str]) -> list[list[str]]:
    if isinstance(answers, str) or not isinstance(answers, Sequence) or not answers:
        raise TypeError("answers must be a non-empty sequence of strings (a list or tuple, not a single str)")
    tokens = []
    for answer in answers:
        words = normalize_answer(_check_text("each answer", answer)).split()
        if not words:
            raise ValueError(f"the answer {answer!r} normalises to nothing (only articles, punctuation or spaces)")
        tokens.append(words)
    return tokens


def _occurs(needle: list[str], haystack: list[str]) -> bool:
    n = len(needle)
    return any(haystack[i:i + n] == needle for i in range(len(haystack) - n + 1))


def contains_answer(prediction: str, answers: Sequence[str]) -> bool:
    """True when the normalised tokens of some answer occur contiguously in the normalised prediction's tokens."""
    words = normalize_answer(_check_text("prediction", prediction)).split()
    return any(_occurs(answer, words) for answer in _answer_tokens(answers))


def mentions(prediction: str, candidates: Sequence[str]) -> list[str]:
    """The candidates (e.g. every answer of a relation) that the prediction contains, in the given order: more than
    one flags a hedged answer that :func:`contains_answer` would grade correct if the truth is among them."""
    words = normalize_answer(_check_text("prediction", prediction)).split()
    return [c for c, tokens in zip(candidates, _answer_tokens(candidates)) if _occurs(tokens, words)]


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD's F1 over the bags of normalised tokens; 1.0 when both are empty, 0.0 when only one is."""
    pred = normalize_answer(_check_text("prediction", prediction)).split()
    ref = normalize_answer(_check_text("reference", reference)).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def best_token_f1(prediction: str, answers: Sequence[str]) -> float:
    """The largest :func:`token_f1` over the accepted answers (SQuAD's max over ground truths)."""
    _answer_tokens(answers)
    return max(token_f1(prediction, answer) for answer in answers)


def is_abstention(prediction: str) -> bool:
    """True when the prediction declines to answer (see :data:`ABSTENTION_PATTERNS` and the module docstring)."""
    text = _strip_accents(_check_text("prediction", prediction).lower()).replace("\u2019", "'").replace("\u2018", "'")
    return _ABSTENTION.search(" ".join(text.split())) is not None


def grade(prediction: str, question) -> str:
    """"correct" if the prediction contains one of ``question.answers``, else "abstained" if it abstains, else
    "wrong": a wrong answer that does not abstain is what the chapter calls a hallucination."""
    answers = getattr(question, "answers", None)
    if answers is None:
        raise TypeError(f"question must have .answers (a knowledge.Question), got {type(question).__name__}")
    if contains_answer(prediction, answers):
        return "correct"
    return "abstained" if is_abstention(prediction) else "wrong"
