"""Matching free-text answers against a known answer: SQuAD-style normalisation, containment, token F1.

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
chapter 08 counts the replies that name an answer taken from a distractor passage, graded correct or not, for the
hybrid retriever at each k and for every retriever at k = 3 (:func:`mentions` finds them). Negation is not
understood either: "Dynamite was not invented by Alfred Nobel." contains the answer.

Letters that NFKD does not decompose are mapped by hand (ł to l, ø to o, ß to ss, ...), so "Skłodowska" reads
"sklodowska". Surname aliases ("Mendeleev" for "Dmitri Mendeleev", a fictional founder's surname) would accept any first
name, so an alias match that lacks the answer's first word counts only when the capitalised words right before it are
none, a title (Dr, Sir, Professor, ...), or include one of the answer's other words, its initial, a spelling of it one
letter apart, or (four letters or more) the start of it: "Mendeleev", "Dmitri Ivanovich Mendeleev", "Dmitry Mendeleev",
"Johann Gutenberg" (for Johannes) and "Professor Einstein" pass, "Igor Mendeleev" and "Pierre Curie" (for Marie Curie)
do not. A capitalised word that is not a name, right before the surname ("the Russian Mendeleev"), is also read as a
wrong first name, on the strict side; titles and a few role nouns ("Chemist Mendeleev") are skipped. An alias that keeps
the first word but not the last (a given name, "Leonardo" for "Leonardo da Vinci") is read the other way round: it
counts unless capitalised words right after it, in the same clause, name someone else, so "Leonardo painted it",
"Leonardo DaVinci" and "Leonardo Vinci" pass and "Leonardo DiCaprio" and "Leonardo Fibonacci" do not.

:func:`answer_part` keeps the words of a reply that are not in the question ("Cela Tamrin was born in 1866" ->
"1866"), and :func:`answer_agreement` is token F1 between two answer parts, 0 when the reference part is empty: a
greedy reply that only repeats the question agrees with nothing, not perfectly with samples that repeat it too.

Grades (correct, abstained, no answer, wrong) are :mod:`course_utils.rag.grading`'s, built on this module.

Left out: semantic equivalence (synonyms, "the 1870s" for 1873, numbers written in words), LLM-as-judge grading,
partial credit for partly right names beyond what token F1 gives.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from typing import Sequence

from course_utils.arguments import check_str


_ARTICLES = re.compile(r"\b(?:a|an|the)\b")


# letters NFKD leaves whole (no combining mark to drop): "Skłodowska" must read "sklodowska"
_UNDECOMPOSED = str.maketrans({"ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "đ": "d", "Đ": "D", "ß": "ss", "æ": "ae",
                               "Æ": "AE", "œ": "oe", "Œ": "OE", "ı": "i", "þ": "th", "Þ": "Th"})


def _strip_accents(text: str) -> str:
    text = unicodedata.normalize("NFKD", text).translate(_UNDECOMPOSED)
    return "".join(ch for ch in text if not unicodedata.combining(ch))


def _is_punctuation(ch: str) -> bool:
    return ch in string.punctuation or unicodedata.category(ch).startswith("P")


def normalize_answer(text: str) -> str:
    """Lowercase, strip accents, drop a possessive 's, remove punctuation, remove the articles a/an/the, collapse
    whitespace."""
    text = _strip_accents(check_str(text, "text").lower())
    text = _POSSESSIVE.sub("", text)  # "van gogh's" -> "van gogh", not "van goghs"
    text = "".join(ch for ch in text if not _is_punctuation(ch))
    return " ".join(_ARTICLES.sub(" ", text).split())


_POSSESSIVE = re.compile(r"(?<=[a-z])['\u2019]s\b")  # after a letter: "1850's" (a decade) is not a possessive


def _answer_tokens(answers: Sequence[str]) -> list[list[str]]:
    if isinstance(answers, str) or not isinstance(answers, Sequence) or not answers:
        raise TypeError("answers must be a non-empty sequence of strings (a list or tuple, not a single str)")
    tokens = []
    for answer in answers:
        words = normalize_answer(check_str(answer, "each answer")).split()
        if not words:
            raise ValueError(f"the answer {answer!r} normalises to nothing (only articles, punctuation or spaces)")
        tokens.append(words)
    return tokens


def _occurs(needle: list[str], haystack: list[str]) -> bool:
    n = len(needle)
    return any(haystack[i:i + n] == needle for i in range(len(haystack) - n + 1))


TITLES = frozenset({"dr", "mr", "mrs", "ms", "sir", "dame", "lady", "lord", "professor", "prof", "madame", "mme",
                    "monsieur", "saint", "st", "king", "queen", "chemist", "physicist", "scientist", "inventor",
                    "author", "writer", "composer", "painter", "novelist", "poet", "playwright", "mathematician"})
_FUNCTION_WORDS = frozenset({"in", "by", "of", "and", "or", "to", "from", "with", "for", "at", "on", "as", "was",
                             "is", "it", "its", "that", "this", "then", "so", "but", "yes", "no", "he", "she", "his",
                             "her", "they", "their", "we", "i", "when", "after", "before", "while", "if", "because"})
_EDGE = string.punctuation + "\u2018\u2019\u201c\u201d\u2013\u2014\u2026"
_CLAUSE_END = re.compile(r"[.,;:!?)\]\u201d\u2026]$")


def _words_with_positions(text: str) -> tuple[list[str], list[int], list[str]]:
    """The normalised tokens of ``text`` (those of :func:`normalize_answer`, word by word), the index of the raw
    whitespace-separated word each came from, and the raw words."""
    raw = text.split()
    tokens, where = [], []
    for i, word in enumerate(raw):
        for token in normalize_answer(word).split():
            tokens.append(token)
            where.append(i)
    return tokens, where, raw


def _one_edit(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` differ by at most one inserted, deleted or replaced letter ("dmitry", "dmitri")."""
    if abs(len(a) - len(b)) > 1:
        return False
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    return a[i + 1:] == b[i + 1:] or a[i + 1:] == b[i:] or a[i:] == b[i + 1:]


def _is_given(word: str, given: set[str]) -> bool:
    """``word`` is one of the answer's other words, its initial, a spelling of it one letter apart, or its start
    ("johann" for "johannes"); the last two for words of 4+ letters."""
    if len(word) == 1:
        return any(g.startswith(word) for g in given)
    return word in given or (len(word) >= 4 and any(len(g) >= 4 and (_one_edit(word, g) or g.startswith(word))
                                                    for g in given))


def _other_name_before(raw: list[str], i: int, given: set[str]) -> bool:
    """True when the capitalised words right before raw word ``i`` (titles skipped) name someone: they are there and
    none of them is one of ``given`` (the answer's other words), the initial of one or a spelling of one."""
    run = []
    for word in reversed(raw[:i]):
        core = word.strip(_EDGE)
        if not core:
            break
        if normalize_answer(core) in TITLES:
            continue
        if len(core) == 1 and core.isupper():  # an initial, "T." or "T"
            run.append(core.lower())
            continue
        if _CLAUSE_END.search(word) or not core[0].isupper() or normalize_answer(core) in _FUNCTION_WORDS:
            break  # the word closes a clause, is not capitalised, or is a capitalised function word ("In")
        run.append(normalize_answer(core))
    return bool(run) and not any(_is_given(w, given) for w in run)


def _other_name_after(raw: list[str], i: int, given: set[str]) -> bool:
    """True when capitalised words right after raw word ``i`` (where a given-name alias ends) name someone else: they
    are there, in the same clause, and none of them is one of ``given``, the initial of one or a spelling of one."""
    if _CLAUSE_END.search(raw[i]):
        return False  # "Leonardo." or "Leonardo, who ...": nothing follows the name in its clause
    run = []
    for word in raw[i + 1:]:
        core = word.strip(_EDGE)
        if not core or not core[0].isupper() or normalize_answer(core) in _FUNCTION_WORDS:
            break
        run.append(normalize_answer(core))
        if _CLAUSE_END.search(word):
            break
    return bool(run) and not any(_is_given(w, given) for w in run)


def contains_answer(prediction: str, answers: Sequence[str]) -> bool:
    """True when the normalised tokens of some answer occur contiguously in the normalised prediction's tokens.

    ``answers[0]`` is the full answer and the rest its aliases: an alias without the full answer's first word (a
    surname) counts only where no other capitalised name stands right before it (see the module docstring)."""
    tokens, where, raw = _words_with_positions(check_str(prediction, "prediction"))
    accepted = _answer_tokens(answers)
    full = accepted[0]
    for answer in accepted:
        n = len(answer)
        starts = [i for i in range(len(tokens) - n + 1) if tokens[i:i + n] == answer]
        if not starts:
            continue
        if len(full) == 1 or (full[0] in answer and full[-1] in answer):  # the full answer, or it all in an alias
            return True
        given = {w for other in accepted for w in other} - set(answer)
        if full[0] not in answer:  # a surname alias ("Mendeleev"): no other first name before it
            if any(not _other_name_before(raw, where[i], given) for i in starts):
                return True
        else:  # a given-name alias ("Leonardo"): no other surname after it ("DaVinci" is the rest run together)
            given_after = given | {"".join(full[1:])}
            if any(not _other_name_after(raw, where[i + n - 1], given_after) for i in starts):
                return True
    return False


def mentions(prediction: str, candidates: Sequence[str]) -> list[str]:
    """The candidates (e.g. every answer of a relation) that the prediction contains, in the given order: more than
    one flags a hedged answer that :func:`contains_answer` would grade correct if the truth is among them."""
    words = normalize_answer(check_str(prediction, "prediction")).split()
    return [c for c, tokens in zip(candidates, _answer_tokens(candidates)) if _occurs(tokens, words)]


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD's F1 over the bags of normalised tokens; 1.0 when both are empty, 0.0 when only one is."""
    pred = normalize_answer(check_str(prediction, "prediction")).split()
    ref = normalize_answer(check_str(reference, "reference")).split()
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


def answer_part(reply: str, question: str) -> str:
    """The reply's normalised words that are not words of the question ("Cela Tamrin was born in 1866" -> "1866")."""
    asked = set(normalize_answer(check_str(question, "question")).split())
    return " ".join(w for w in normalize_answer(check_str(reply, "reply")).split() if w not in asked)


def answer_agreement(prediction: str, reference: str) -> float:
    """:func:`token_f1` between two answer parts, but 0.0 when the reference is empty: a reply that adds nothing to
    the question agrees with nothing (token F1 would give 1.0 to two empty parts)."""
    if not normalize_answer(check_str(reference, "reference")):
        check_str(prediction, "prediction")
        return 0.0
    return token_f1(prediction, reference)
