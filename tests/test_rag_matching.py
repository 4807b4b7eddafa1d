"""Answer grading: SQuAD's normalisation and F1 (checked against the official script's functions, copied below),
whole-token containment, abstention phrases and non-abstentions, the four grades (non-answers among them), surname
aliases, and answer parts for self-consistency."""

import random
import re
import string
from collections import Counter

import pytest

from course_utils.rag import knowledge as K
from course_utils.rag.calibration import self_consistency
from course_utils.rag.grading import asks_only, commits_to_value, grade, is_abstention, is_non_answer
from course_utils.rag.matching import (answer_agreement, answer_part, best_token_f1, contains_answer, mentions,
                                       normalize_answer, token_f1)


# ---------- the reference: SQuAD v1.1's official evaluate script (normalize_answer and f1_score), verbatim ----------

def squad_normalize_answer(s):
    def remove_articles(text):
        return re.sub(r'\b(a|an|the)\b', ' ', text)

    def white_space_fix(text):
        return ' '.join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return ''.join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def squad_f1_score(prediction, ground_truth):
    prediction_tokens = squad_normalize_answer(prediction).split()
    ground_truth_tokens = squad_normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


def random_ascii_texts(n, seed):
    rng = random.Random(seed)
    pieces = ["the", "a", "an", "The", "A", "cat", "Cat", "sat", "on", "mat", "1873", "18730", "Berners-Lee", "U.S.",
              "don't", ",", ".", "!", "  ", "\t", "there", "another", "theatre", "(x)", "$5", "an-", "A.I."]
    return [" ".join(rng.choice(pieces) for _ in range(rng.randint(1, 9))) for _ in range(n)]


def test_normalisation_agrees_with_squad_on_ascii():
    for text in random_ascii_texts(400, seed=0):
        assert normalize_answer(text) == squad_normalize_answer(text), text


@pytest.mark.parametrize("text, expected", [
    ("The Quick, brown fox!", "quick brown fox"),
    ("A an THE", ""),
    ("  lots\tof \n space ", "lots of space"),
    ("the theatre", "theatre"),  # articles are whole words only
    ("Anne and the Andes", "anne and andes"),
    ("Berners-Lee", "bernerslee"),  # punctuation is deleted, not replaced by a space
    ("Wilhelm Röntgen", "wilhelm rontgen"),  # accents stripped (NFKD)
    ("Ångström, Éire", "angstrom eire"),
    ("\u201cQuillmere\u201d \u2014 she said\u2026", "quillmere she said"),  # non-ASCII punctuation removed too
])
def test_normalisation_examples(text, expected):
    assert normalize_answer(text) == expected


def test_containment_edge_cases():
    assert contains_answer("She was born in Quillmere.", ["Quillmere"])
    assert contains_answer("QUILLMERE!", ["quillmere"])
    assert contains_answer("He was born in 1873.", ["1873"])
    assert not contains_answer("He was born in 18730.", ["1873"])
    assert not contains_answer("in 1873", ["18730"])
    assert not contains_answer("a Parisian café", ["Paris"])
    assert contains_answer("in Paris, France", ["Paris"])
    assert contains_answer("Rontgen found them.", ["Wilhelm Röntgen", "Röntgen"])
    assert contains_answer("It was invented by orla   vendrake, a clockmaker.", ["Orla Vendrake"])
    assert not contains_answer("Vendrake Orla", ["Orla Vendrake"])  # contiguous and in order
    assert not contains_answer("Orla and Vendrake", ["Orla Vendrake"])
    assert contains_answer("Starry Night", ["The Starry Night"])  # articles dropped on both sides
    assert not contains_answer("Tim Berners Lee", ["Tim Berners-Lee"])  # hence the alias "Berners Lee"
    assert contains_answer("Tim Berners Lee", next(f for f in K.REAL_FACTS if f.title == "World Wide Web").aliases)
    assert not contains_answer("", ["Quillmere"])


def test_containment_errors():
    with pytest.raises(TypeError, match="not a single str"):
        contains_answer("Quillmere", "Quillmere")
    with pytest.raises(TypeError, match="non-empty sequence"):
        contains_answer("Quillmere", [])
    with pytest.raises(ValueError, match="normalises to nothing"):
        contains_answer("Quillmere", ["The"])
    with pytest.raises(TypeError, match="prediction must be a str"):
        contains_answer(None, ["Quillmere"])
    with pytest.raises(TypeError, match="each answer must be a str"):
        contains_answer("1873", [1873])


def test_the_listing_weakness_is_real_and_measured():
    kb = K.make_knowledge_base()
    towns = sorted({q.answer for q in kb.questions if q.relation == "birthplace"} |
                   {d.title for d in kb.documents if d.doc_id.startswith("place")})
    listing = "It might be " + ", ".join(towns) + "."
    birthplace = [q for q in kb.questions if q.relation == "birthplace"]
    assert len(towns) == 60 and len(birthplace) == 120
    assert all(grade(listing, q) == "correct" for q in birthplace)  # the weakness the module docstring states
    assert mentions(listing, towns) == towns
    assert mentions("Born in Quillmere, not Tarnmere.", ["Tarnmere", "Quillmere", "Ebbness"]) == ["Tarnmere",
                                                                                                  "Quillmere"]


def test_token_f1_by_hand_and_against_squad():
    assert token_f1("born in Quillmere town", "Quillmere") == pytest.approx(2 * 0.25 * 1 / 1.25)  # 0.4
    assert token_f1("the cat sat", "cat sat down") == pytest.approx(0.8)  # p = 1, r = 2/3
    assert token_f1("x x y", "x y y") == pytest.approx(2 / 3)  # counts clipped: x once, y once
    assert token_f1("Quillmere", "quillmere.") == 1.0
    assert token_f1("Tarnmere", "Quillmere") == 0.0
    assert token_f1("", "") == 1.0 and token_f1("the", "cat") == 0.0  # SQuAD v2.0's rule for empty answers
    texts = random_ascii_texts(300, seed=1)
    for pred, ref in zip(texts[::2], texts[1::2]):
        if squad_normalize_answer(pred) and squad_normalize_answer(ref):
            assert token_f1(pred, ref) == pytest.approx(squad_f1_score(pred, ref)), (pred, ref)
    assert best_token_f1("born in Quillmere", ["Tarnmere", "Quillmere"]) == pytest.approx(0.5)
    with pytest.raises(TypeError, match="reference must be a str"):
        token_f1("x", ["x"])


ABSTAINING = [
    "I don't know.", "I do not know who invented it.", "I\u2019m not sure.", "I am not sure about that.",
    "I cannot answer that question.", "I can't determine the year.", "There is no information about this person.",
    "The passage does not mention her birthplace.", "Her birthplace is not mentioned in the passage.",
    "I am not aware of a town called Quillmere.", "The inventor is unknown.", "I couldn't find any record of him.",
    "I could not find anything.", "There is no record of such a person.", "I don't have any information on that.",
    "Orla Vendrake is a fictional character.", "These people are purely fictional.", "Such a town does not exist.",
    "That is not a real invention.",
    "I do not have enough information to answer.", "Nobody knows.", "Not known.",
]
ANSWERING = [
    "She was born in Quillmere.", "There is no doubt he was born in Tarnmere.", "The inventor was Orla Vendrake.",
    "It is known for its salt market.", "1873", "He knows the answer: copper.", "Unknowingly, she built it in oak.",
    "She was a clockmaker from a small village.", "It was mentioned in the town records as 1420.",
    "Quardale is founded by the town of Quadrille, a fictional town in the 19th century.",  # SmolLM2, closed-book
]


@pytest.mark.parametrize("text", ABSTAINING)
def test_abstentions(text):
    assert is_abstention(text)


@pytest.mark.parametrize("text", ANSWERING)
def test_non_abstentions(text):
    assert not is_abstention(text)


def test_grade():
    kb = K.make_knowledge_base(5, 3, 2, seed=0)
    q = next(q for q in kb.questions if q.relation == "birthplace")
    other = next(t.title for t in kb.documents if t.doc_id.startswith("place") and t.title != q.answer)
    assert grade(f"She was born in {q.answer}.", q) == "correct"
    assert grade(f"I'm not sure, but I think {q.answer}.", q) == "correct"  # correctness is checked first
    assert grade("I don't know.", q) == "abstained"
    assert grade(f"{q.text.split(' was ')[1].removesuffix(' born?')} is a fictional person from {other}.",
                 q) == "abstained"
    assert grade(f"She was born in {other}.", q) == "wrong"  # a hallucination
    assert grade("She was born in the town of Orla, a small village.", q) == "wrong"
    real = next(q for q in kb.questions if q.qid.startswith("real") and q.answer == "Canberra")
    assert grade("Sydney", real) == "wrong" and grade("canberra", real) == "correct"
    with pytest.raises(TypeError, match="question must have .answers"):
        grade("Quillmere", "Quillmere")
    with pytest.raises(TypeError, match="prediction must be a str"):
        grade(None, q)


def test_a_possessive_still_contains_its_answer():
    assert contains_answer("The Starry Night is Vincent van Gogh's painting.", ["Vincent van Gogh"])
    assert contains_answer("It is Shakespeare\u2019s play.", ["Shakespeare"])  # a curly apostrophe too
    assert normalize_answer("Austen's") == "austen" and normalize_answer("it's") == "it"
    assert not contains_answer("The Goghs painted it.", ["Gogh"])  # a plural is not a possessive


def test_a_decade_is_not_read_as_a_possessive():
    assert not contains_answer("She was born in the 1850's.", ["1850"])
    assert not contains_answer("She was born in the 1850s.", ["1850"])


# ---------- non-answers: a reply that states nothing is neither right nor a hallucination ----------

def _birthplace_question():
    kb = K.make_knowledge_base(5, 3, 2, seed=0)
    q = next(q for q in kb.questions if q.relation == "birthplace")
    other = next(d for d in kb.documents if d.doc_id.startswith("person") and d.doc_id != q.doc_id)
    return q, other.title, next(t.title for t in kb.documents if t.doc_id.startswith("place") and t.title != q.answer)


def test_a_repeated_question_is_no_answer():
    q, _, _ = _birthplace_question()
    assert grade(q.text, q) == "no answer"  # word for word, as SmolLM2 replied given passages
    assert grade(q.text.rstrip("?"), q) == "no answer"  # the question's words alone, without its mark
    assert grade(f"{q.text} {q.text.lower()}", q) == "no answer"  # repeated twice
    assert grade("", q) == "no answer" and grade(" ... ", q) == "no answer"  # nothing at all


def test_a_question_that_names_someone_or_a_value_is_not_a_non_answer():
    q, other_person, other_town = _birthplace_question()
    assert grade(f"In which town was {other_person} born?", q) == "wrong"  # names someone else: strict side
    assert grade(f"In the town of {other_town}, where did she grow up?", q) == "wrong"  # a guess, as a question
    assert grade(f"Did she grow up in {other_town}?", q) == "wrong" and grade("Was it 1866?", q) == "wrong"
    assert grade("Where was she born? Who knows?", q) == "no answer"  # sentence-initial capitals name nothing
    assert grade(f"The passage is: {q.text}", q) == "no answer"  # SmolLM2, given the gold passage alone
    assert grade(f"Was it {other_town}?", q) == "wrong"
    assert grade("Who knows?\nWhere is it?", q) == "no answer"
    # containment comes first: a question that names the gold answer is correct, like a hedge (SmolLM2's reply)
    assert grade(f"Was it {q.answer}?", q) == "correct"
    assert grade(f"In the town of {q.answer}, where did she grow up?", q) == "correct"
    assert asks_only("Where was she born?\u201d") and not asks_only("She was born there.")


def test_a_reply_that_states_something_is_graded_as_before():
    q, _, other_town = _birthplace_question()
    assert grade(f"She was born in {q.answer}. Why do you ask?", q) == "correct"  # answers, then asks
    assert grade(f"She was born in {other_town}. Why do you ask?", q) == "wrong"  # a wrong answer, then a question
    assert grade(f"{q.text} She was born in {q.answer}.", q) == "correct"  # asks, then answers
    assert grade(f"{q.text} She was born in {other_town}.", q) == "wrong"
    assert grade(f"She was born in {q.answer}.", q) == "correct"  # a plain answer
    assert grade(f"She was born in {other_town}.", q) == "wrong"  # a plain hallucination
    assert grade("I don't know.", q) == "abstained"  # an abstention
    assert grade("The passage does not mention it.", q) == "abstained"
    assert grade("I don't know. Do you?", q) == "abstained" and grade("Is it unknown?", q) == "abstained"
    assert not is_non_answer(f"She was born in {q.answer}.", q.text) and is_non_answer(q.text, q.text)
    assert not is_non_answer("Ormford, in the north", None) and not is_non_answer("Was it Ormford?", None)
    assert is_non_answer("", None) and not is_non_answer("Ormford.", "In which town was Kamae Zellsen born?")


# ---------- surname aliases: another first name before the surname is another person ----------

def _real(answer):
    return next(q for q in K.make_knowledge_base(seed=0).questions if q.answer == answer)


@pytest.mark.parametrize("reply, expected", [
    ("Mendeleev", "correct"), ("Dmitri Mendeleev", "correct"), ("Mendeleyev.", "correct"),
    ("The Russian chemist Dmitri Mendeleev published it in 1869.", "correct"),
    ("Dmitri Ivanovich Mendeleev", "correct"), ("D. Mendeleev", "correct"), ("Professor Mendeleev", "correct"),
    ("Chemist Mendeleev.", "correct"),
    ("The periodic table was published by Dmitry Mendeleev in 1869.", "correct"),  # a spelling one letter apart
    ("Dimitri Mendeleev", "correct"),
    ("It was Mendeleev.", "correct"), ("In Mendeleev's table, yes.", "correct"),
    ("Igor Mendeleev", "wrong"), ("The Russian chemist Igor Mendeleev published the periodic table in 1869.", "wrong"),
    ("I. Mendeleev", "wrong"), ("Igor Mendeleyev", "wrong"),
])
def test_a_surname_alias_needs_the_right_first_name(reply, expected):
    assert grade(reply, _real("Dmitri Mendeleev")) == expected


def test_another_curie_is_not_marie():
    q = _real("Marie Curie")
    assert grade("Pierre Curie was the first.", q) == "wrong"
    assert grade("Marie and Pierre Curie", q) == "wrong"  # the capitalised word before the surname is Pierre
    for reply in ("Curie", "Marie Curie", "Madame Curie", "Pierre and Marie Curie", "Marie Sklodowska-Curie"):
        assert grade(reply, q) == "correct", reply
    assert contains_answer("Vincent van Gogh painted it.", _real("Vincent van Gogh").answers)
    assert not contains_answer("Theo van Gogh painted it.", _real("Vincent van Gogh").answers)


@pytest.mark.parametrize("reply, expected", [
    ("Leonardo painted it.", True), ("Leonardo.", True), ("It was Leonardo, in Florence.", True),
    ("Leonardo da Vinci", True), ("Leonardo DaVinci painted it.", True), ("Leonardo Vinci", True),
    ("Leonardo of Vinci", True), ("Leonardo In 1503 began it.", True),
    ("Leonardo DiCaprio painted it.", False), ("Leonardo Fibonacci", False), ("It was Leonardo DiCaprio.", False),
])
def test_a_given_name_alias_needs_no_other_surname_after_it(reply, expected):
    assert contains_answer(reply, _real("Leonardo da Vinci").answers) is expected
    assert contains_answer("Marie Sklodowska-Curie discovered it.", _real("Marie Curie").answers)


def test_a_fictional_surname_alias_needs_the_right_first_name():
    kb = K.make_knowledge_base(seed=0)
    q = next(q for q in kb.questions if q.relation == "founder")
    first, surname = q.answer.split()
    assert grade(f"It was founded by {surname}.", q) == "correct"
    assert grade(f"It was founded by {q.answer}.", q) == "correct"
    assert grade(f"It was founded by Zorro {surname}.", q) == "wrong"
    assert grade(f"It was founded by {first[:-1]} {surname}.", q) == "correct"  # a first name one letter short


# ---------- answer parts for self-consistency ----------

def test_answer_parts_and_their_agreement():
    q = "In which year was Cela Tamrin born?"
    assert answer_part("Cela Tamrin was born in 1866.", q) == "1866"
    assert answer_part(q, q) == "" and answer_part("In which year was Cela Tamrin born", q) == ""
    assert answer_agreement("", "") == 0.0  # two replies that only repeat the question do not agree
    assert answer_agreement("1866", "") == 0.0 and answer_agreement("", "1866") == 0.0
    assert (answer_agreement("1866", "1866") == 1.0
            and answer_agreement("1866 ulmthorpe", "1866") == pytest.approx(2 / 3))
    echoes = [answer_part(q, q)] * 3
    assert self_consistency(echoes, answer_part(q, q), answer_agreement) == 0.0  # token_f1 would give 1.0
    assert self_consistency(echoes, answer_part(q, q), token_f1) == 1.0


# ---------- a declining phrase beside a committed value is a hedged hallucination, not an abstention ----------

def _year_and_town_questions():
    kb = K.make_knowledge_base(5, 3, 2, seed=0)
    values = {}
    for o in kb.questions:
        values.setdefault(o.relation, set()).add(o.answer)
    year = next(q for q in kb.questions if q.relation == "birth_year")
    town = next(q for q in kb.questions if q.relation == "birthplace" and q.text.split(" was ")[1] in year.text)
    return year, town, values


@pytest.mark.parametrize("reply", [
    "{name} was born in 1992 in an unknown town.", "She was born in 1992; her birthplace is not recorded.",
    "The passage does not mention it, but she was born in 1992.",
    "{name} was born in 1992, but the exact date is not specified.", "I'm not sure, but I think 1992.",
])
def test_a_hedged_wrong_year_is_graded_wrong_not_abstained(reply):
    year, town, values = _year_and_town_questions()
    name = year.text.removeprefix("In which year was ").removesuffix(" born?")
    text = reply.format(name=name)
    assert year.answer != "1992" and is_abstention(text)
    assert commits_to_value(text, year) and grade(text, year) == "wrong"  # a number with the answer's digits
    # asked for the town, the same reply names no town: it declines what was asked (1992 is not a town)
    assert not commits_to_value(text, town, values["birthplace"]) or town.answer in text
    assert grade(text, town, values["birthplace"]) == "abstained"


def test_a_hedged_wrong_name_needs_the_relation_values():
    _, town, values = _year_and_town_questions()
    other = next(v for v in sorted(values["birthplace"]) if v != town.answer)
    hedged = f"I'm not sure, but I think {other}."
    assert grade(hedged, town, values["birthplace"]) == "wrong"  # commits to another town of the relation
    assert grade(hedged, town) == "abstained"  # without the values nothing says that the word is a town
    assert grade("I'm not sure who that is.", town, values["birthplace"]) == "abstained"
    fiction = f"She is a fictional person from {other}."
    assert grade(fiction, town, values["birthplace"]) == "abstained"  # rejects the premise, whatever else it says
    # a value the question itself names is no commitment: "I don't know when Iveldale was founded" names Iveldale
    founded = next(q for q in K.make_knowledge_base(5, 3, 2, seed=0).questions if q.relation == "founding_year")
    place = founded.text.removeprefix("In which year was ").removesuffix(" founded?")
    assert not commits_to_value(f"I don't know when {place} was founded.", founded, [place])
    with pytest.raises(TypeError, match="values must be a collection of strings"):
        commits_to_value("x", town, "Ormford")
    with pytest.raises(TypeError, match="question must have .answers"):
        commits_to_value("x", "In which town?", ["Ormford"])  # AttributeError on .answers, before


@pytest.mark.parametrize("reply", ["Johann Gutenberg.", "Johannes Gutenberg invented it.", "Gutenberg"])
def test_gutenberg_under_his_german_and_latin_first_names(reply):
    q = next(q for q in K.make_knowledge_base(5, 3, 2, seed=0).questions if q.answer == "Johannes Gutenberg")
    assert contains_answer(reply, q.answers)
    assert not contains_answer("Peter Gutenberg.", q.answers) and not contains_answer("Jo Gutenberg.", q.answers)


@pytest.mark.parametrize("reply", ["Lev Tolstoy", "Lev Nikolayevich Tolstoy wrote it.", "Leo Tolstoy"])
def test_tolstoy_by_his_russian_first_name(reply):
    q = next(q for q in K.make_knowledge_base(5, 3, 2, seed=0).questions if q.answer == "Leo Tolstoy")
    assert contains_answer(reply, q.answers)
    assert not contains_answer("Ivan Tolstoy", q.answers)


@pytest.mark.parametrize("reply", ["Maria Skłodowska-Curie", "Marie Skłodowska-Curie.", "Skłodowska-Curie"])
def test_letters_that_nfkd_keeps_are_mapped(reply):
    q = next(q for q in K.make_knowledge_base(5, 3, 2, seed=0).questions if q.answer == "Marie Curie")
    assert normalize_answer("Skłodowska Øresund Straße") == "sklodowska oresund strasse"
    assert contains_answer(reply, q.answers)
    assert not contains_answer("Pierre Curie", q.answers)


def test_the_committed_value_rule_errs_both_ways_as_documented():
    year, town, values = _year_and_town_questions()
    # a hedge beside a value the knowledge base does not know stays an abstention (a known leniency)
    assert grade("She was born in Brille, France, but I'm not sure.", town, values["birthplace"]) == "abstained"
    # a refusal that mentions an unrelated year is graded wrong for a year question (a known strictness)
    assert grade("I don't know; the records from 1850 are lost.", year) == "wrong"
    # the fiction phrases match anywhere in the reply, not only about the subject
    other = next(v for v in sorted(values["birthplace"]) if v != town.answer)
    assert grade(f"She was born in {other}, which is a fictional town.", town, values["birthplace"]) == "abstained"


@pytest.mark.parametrize("answer, reply", [("Tim Berners-Lee", "Sir Timothy Berners-Lee"),
                                           ("Wilhelm Röntgen", "Conrad Röntgen"),
                                           ("Marie Curie", "Maria Skłodowska")])
def test_other_names_of_real_answers(answer, reply):
    q = next(q for q in K.make_knowledge_base(5, 3, 2, seed=0).questions if q.answer == answer)
    assert contains_answer(reply, q.answers)
