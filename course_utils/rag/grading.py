"""Grading a reply to a question: correct, abstained, no answer, or wrong (a hallucination).

Built on :mod:`course_utils.rag.matching` (normalisation and containment). :func:`grade` checks correctness first
(:func:`~course_utils.rag.matching.contains_answer`), then abstention, then non-answers.

:func:`is_abstention` recognises the phrases in :data:`ABSTENTION_PATTERNS` (regular expressions on the lowercased,
accent-free text with curly apostrophes made straight). Decisions: an answer that says the subject is fictional or
does not exist ("Orla Vendrake is a fictional character") counts as an abstention: it declines to state the fact,
and it is never a correct answer. Only "is/are/was/were (a) fictional" counts, not the bare word: SmolLM2 also
writes "founded by the town of Quadrille, a fictional town", a made-up answer with an aside, which is a
hallucination. A bare "there is no" is too broad ("there is no doubt she was born in ...") so only "there is/are/was
no" followed by record, information, evidence, mention, data, such, known or reliable counts. :func:`grade` checks
correctness first, then abstention, then non-answers (below), so "I'm not sure, but I think Quillmere" is correct,
and "X is a fictional clockmaker born in Y" (a wrong detail wrapped in a disclaimer) is an abstention, not a
hallucination: a reply that calls the subject fictional, non-existent or not real (:data:`FICTION_PATTERNS`) declines
the question's premise. The other phrases (:data:`DECLINE_PATTERNS`: "unknown", "not recorded", "I'm not sure", ...)
decline only where the reply commits to no value (:func:`commits_to_value`): "She was born in 1992, but the exact date
is not specified" states a year for a birth-year question and is graded wrong, as is "I'm not sure, but I think
Jordale" for a town that is not the answer. The rule knows values only from ``values`` and, for numbers, the digit
count, so it errs both ways: a hedge beside a value it does not know ("Brille, France, but I'm not sure") stays an
abstention, and a refusal that mentions an unrelated value of the kind ("I don't know; the records from 1850 are
lost", for a year) is graded wrong. The fiction phrases match anywhere in the reply, not only about the subject.

:func:`is_non_answer` finds a reply that states nothing, graded "no answer" when it is neither correct nor an
abstention: an empty reply, one whose every sentence is a question naming nothing the question does not (SmolLM2
given passages sometimes repeats the question word for word and ends its turn), or one that is nothing but the
question's words. A question that names a value or someone else ("Was it Jordale?") stays "wrong", on the strict
side. Sentences end as in :mod:`course_utils.rag.first_sentence`; a reply that answers and then asks
("Nimbstead. Why do you ask?") or asks and then answers states something and is graded on it. A non-answer is
neither a hallucination (no claim is made) nor an abstention (it does not decline). Containment still comes first,
so a question that names the gold answer ("Was it Ormford?"; SmolLM2 wrote "In the town of Ebbness, where did Ulren
Wexdrake grow up?" for Ebbness) is correct: the same leniency as for a hedge.

Left out: hedges without a declining phrase ("probably Jordale" is a plain answer), negation, LLM-as-judge grading.
"""

from __future__ import annotations

import re
from typing import Sequence

from course_utils.arguments import check_str
from course_utils.rag.first_sentence import sentences
from course_utils.rag.matching import (_EDGE, _occurs, _strip_accents, contains_answer, mentions,
                                       normalize_answer)

GRADES = ("correct", "abstained", "no answer", "wrong")

DECLINE_PATTERNS: tuple[str, ...] = (
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
)
FICTION_PATTERNS: tuple[str, ...] = (
    r"\b(?:is|are|was|were) (?:a |an )?(?:purely |entirely )?fictional\b",
    r"\b(?:does not|doesn't|did not|didn't) exist\b",
    r"\bnot a real\b",
)
ABSTENTION_PATTERNS: tuple[str, ...] = DECLINE_PATTERNS + FICTION_PATTERNS
_ABSTENTION = re.compile("|".join(ABSTENTION_PATTERNS))
_FICTION = re.compile("|".join(FICTION_PATTERNS))


_CLOSERS = "\"')]\u2019\u201d"


def asks_only(prediction: str) -> bool:
    """True when the prediction has a sentence and every sentence is a question (ends in "?", closing quotes or
    brackets aside), sentences cut by chapter 08's first-sentence rule (:func:`first_sentence.sentences`)."""
    pieces = [p for p in sentences(check_str(prediction, "prediction")) if normalize_answer(p)]
    return bool(pieces) and all(p.rstrip(_CLOSERS).endswith("?") for p in pieces)


def _names_something(prediction: str, asked: set[str]) -> bool:
    """True when the prediction has a capitalised word (not the first of its sentence) or a number that is not a
    word of the question: "Was it Jordale?" guesses a value, "In which town was Homae Ravquist born?" names someone."""
    for piece in sentences(prediction):
        for k, word in enumerate(piece.split()):
            core = word.strip(_EDGE)
            named = any(ch.isdigit() for ch in core) or (k > 0 and core[:1].isupper())
            if named and any(t not in asked for t in normalize_answer(core).split()):
                return True
    return False


def is_non_answer(prediction: str, question: str | None = None) -> bool:
    """True when the prediction states nothing: it is empty, every sentence of it is a question (:func:`asks_only`)
    that names nothing the question does not (:func:`_names_something`), or its words are the question's, repeated
    (``question``, when given; case and punctuation ignored)."""
    words = normalize_answer(check_str(prediction, "prediction")).split()
    asked = normalize_answer(check_str(question, "question")).split() if question is not None else []
    if not words or (asks_only(prediction) and not _names_something(prediction, set(asked))):
        return True
    if not asked:
        return False
    i, rest = 0, 0
    while i < len(words):  # remove every occurrence of the question: does anything remain?
        if words[i:i + len(asked)] == asked:
            i += len(asked)
        else:
            i, rest = i + 1, rest + 1
    return rest == 0


def _abstention_text(prediction: str) -> str:
    text = _strip_accents(check_str(prediction, "prediction").lower()).replace("\u2019", "'").replace("\u2018", "'")
    return " ".join(text.split())


def is_abstention(prediction: str) -> bool:
    """True when the prediction uses a phrase that declines to answer (:data:`ABSTENTION_PATTERNS`; :func:`grade`
    also asks whether the reply commits to a value anyway, see the module docstring)."""
    return _ABSTENTION.search(_abstention_text(prediction)) is not None


def commits_to_value(prediction: str, question, values: Sequence[str] = ()) -> bool:
    """True when the prediction states a value the question could take as its answer and the question does not
    name: one of ``values`` (e.g. every answer of the question's relation), or, for an answer that is a number, any
    number with as many digits. "Cela Tamrin was born in 1992 in an unknown town." commits to 1992 when the
    question asks for a birth year, and to nothing when it asks for a town and 1992 is not among ``values``."""
    if isinstance(values, str) or not isinstance(values, (Sequence, set, frozenset)):
        raise TypeError(f"values must be a collection of strings, got {type(values).__name__}")
    if not getattr(question, "answers", None):
        raise TypeError(f"question must have .answers (a knowledge.Question), got {type(question).__name__}")
    text = getattr(question, "text", None)
    asked = normalize_answer(text).split() if isinstance(text, str) else []
    answer = normalize_answer(question.answers[0])
    words = normalize_answer(check_str(prediction, "prediction")).split()
    if answer.isdigit() and any(w.isdigit() and len(w) == len(answer) and w not in asked for w in words):
        return True
    candidates = sorted(v for v in values if normalize_answer(check_str(v, "each value")))
    named = mentions(prediction, candidates) if candidates else []
    return any(not _occurs(normalize_answer(v).split(), asked) for v in named)


def grade(prediction: str, question, values: Sequence[str] = ()) -> str:
    """"correct" if the prediction contains one of ``question.answers``; else "abstained" if it calls the subject
    fictional (:data:`FICTION_PATTERNS`), or declines (:data:`DECLINE_PATTERNS`) without committing to a value
    (:func:`commits_to_value`, with ``values``: the answers a reply to this question could give, e.g. every answer
    of its relation); else "no answer" if it states nothing (:func:`is_non_answer`, with ``question.text`` when it
    has one); else "wrong": a wrong answer that does not abstain is what the chapter calls a hallucination."""
    answers = getattr(question, "answers", None)
    if answers is None:
        raise TypeError(f"question must have .answers (a knowledge.Question), got {type(question).__name__}")
    if contains_answer(prediction, answers):
        return "correct"
    if is_abstention(prediction) and (_FICTION.search(_abstention_text(prediction))
                                      or not commits_to_value(prediction, question, values)):
        return "abstained"
    text = getattr(question, "text", None)
    return "no answer" if is_non_answer(prediction, text if isinstance(text, str) else None) else "wrong"
