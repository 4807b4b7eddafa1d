"""The generated knowledge base: deterministic, with one gold document per question that states the answer verbatim,
questions that name their subject and never their answer, names that collide with nothing, hand-written real facts,
stratified sampling, counterfactual passages, and argument errors."""

import hashlib
import os
import re
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from course_utils.rag import knowledge as K
from course_utils.rag.matching import contains_answer, normalize_answer


@pytest.fixture(scope="module")
def kb():
    return K.make_knowledge_base()


def fingerprint(kb) -> str:
    text = "\n".join(f"{d.doc_id}|{d.title}|{d.text}" for d in kb.documents)
    text += "\n".join(f"{q.qid}|{q.text}|{q.answers}|{q.doc_id}|{q.relation}" for q in kb.questions)
    return hashlib.sha256(text.encode()).hexdigest()


def subject(question, kb) -> str:
    return kb.document(question.doc_id).title.removeprefix("The ")


def test_sizes_and_relations(kb):
    fictional = [d for d in kb.documents if d.kind == "fictional"]
    assert len(fictional) == 120 + 60 + 60
    assert len(kb.questions_of("fictional")) == 3 * 240
    assert len({q.relation for q in kb.questions_of("fictional")}) == 9
    assert len(K.REAL_FACTS) >= 40 and len(kb.questions_of("real")) == len(K.REAL_FACTS)
    assert len({d.doc_id for d in kb.documents}) == len(kb.documents)
    assert len({q.qid for q in kb.questions}) == len(kb.questions)
    small = K.make_knowledge_base(5, 3, 2, seed=1)
    assert Counter(d.doc_id.split("-")[0] for d in small.documents) == {"person": 5, "place": 3, "invention": 2,
                                                                        "real": len(K.REAL_FACTS)}


def test_deterministic_for_a_seed_and_across_hash_seeds(kb):
    assert fingerprint(K.make_knowledge_base()) == fingerprint(kb)
    assert fingerprint(K.make_knowledge_base(seed=1)) != fingerprint(kb)
    code = ("from course_utils.rag.knowledge import make_knowledge_base as m; "
            "print('|'.join(d.text for d in m(30, 10, 10, seed=3).documents))")
    outputs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": h}).stdout for h in ("1", "2")}
    assert len(outputs) == 1  # no set or hash() order leaks into the base
    assert outputs.pop().strip() == "|".join(d.text for d in K.make_knowledge_base(30, 10, 10, seed=3).documents)


def tokens(text: str) -> str:
    return f" {normalize_answer(text)} "  # padded, so " x y " in tokens(t) is a whole-token containment test


def test_every_answer_is_stated_once_in_its_gold_document(kb):
    doc_tokens = {d.doc_id: tokens(d.text) for d in kb.documents}
    for q in kb.questions:
        gold = kb.document(q.doc_id)
        assert q.answer in gold.text, q
        assert contains_answer(gold.text, q.answers), q
        assert not contains_answer(q.text, q.answers), f"the question names its answer: {q}"
        assert q.kind == gold.kind
    for q in kb.questions_of("fictional"):
        name = subject(q, kb)
        assert name in q.text, q
        others = [i for i, t in doc_tokens.items() if i != q.doc_id and tokens(name) in t]
        assert not [i for i in others if any(tokens(a) in doc_tokens[i] for a in q.answers)], q
    assert " 1873 " in tokens("born in 1873.") and " 1873 " not in tokens("born in 18730")  # the helper's meaning


def test_documents_are_short_plain_sentences(kb):
    for d in kb.documents:
        sentences = [s for s in d.text.split(". ") if s]
        if d.kind == "fictional":
            assert 3 <= len(sentences) <= 5, d
        assert all(len(s.split()) <= 16 for s in sentences), d


def test_person_sentences_agree_and_surnames_are_the_aliases(kb):
    for d in kb.documents:
        if d.doc_id.startswith("person"):
            job = next(q.answer for q in kb.questions if q.doc_id == d.doc_id and q.relation == "profession")
            article = "an" if job[0] in "aeiou" else "a"
            assert f" was {article} {job}." in d.text, d
            pronouns = ("She was born" in d.text, " for her " in d.text, "He was born" in d.text, " for his " in d.text)
            assert pronouns in ((True, True, False, False), (False, False, True, True)), d
    for q in kb.questions_of("fictional"):
        if q.relation in ("founder", "inventor"):
            assert q.aliases == (q.answer.split()[1],), q  # the surname, never the first name


def test_cross_links(kb):
    people = {d.title for d in kb.documents if d.doc_id.startswith("person")}
    towns = {d.title for d in kb.documents if d.doc_id.startswith("place")}
    born = Counter(q.answer for q in kb.questions if q.relation == "birthplace")
    assert set(born) <= towns and sum(n >= 2 for n in born.values()) >= 20  # many shared birthplaces
    inventors = [q.answer for q in kb.questions_of("fictional") if q.relation == "inventor"]
    assert set(inventors) <= people and len(set(inventors)) == len(inventors)
    founders = {q.answer for q in kb.questions if q.relation == "founder"}
    assert not founders & people  # founders have no document: their name is stated once
    assert all(q.text.startswith(("In which", "What", "Who", "On which")) for q in kb.questions_of("fictional"))


def test_names_collide_with_nothing(kb):
    fictional = kb.questions_of("fictional")
    groups = {  # every name word of each type of entity
        "person": [q.answer for q in fictional if q.relation == "founder"]
        + [d.title for d in kb.documents if d.doc_id.startswith("person")],
        "town": [d.title for d in kb.documents if d.doc_id.startswith("place")],
        "river": [q.answer for q in fictional if q.relation == "river"],
    }
    words = {kind: [w for name in names for w in normalize_answer(name).split()] for kind, names in groups.items()}
    seen = Counter(w for ws in words.values() for w in set(ws))
    assert all(n == 1 for n in seen.values())  # no word is both a person's name and a town or river
    assert len(set(words["town"])) == 60 and len(set(words["river"])) == 60
    surnames = [normalize_answer(name).split()[1] for name in groups["person"]]
    assert len(set(surnames)) == len(surnames)  # a surname alone identifies a person (it is an accepted alias)
    real = {w for f in K.REAL_FACTS for a in (f.answer,) + f.aliases for w in normalize_answer(a).split()}
    assert not set(seen) & (real | K.BLOCKLIST)
    vocabulary = set(K.PROFESSIONS) | set(K.MATERIALS) | set(K.DEVICES) | {w for t in K.TRAITS for w in t.split()}
    assert not set(seen) & vocabulary
    assert not [w for w in seen if re.search(r"(.)\1\1", w)]  # no letter three times in a row ("Zellley")
    answers = {}
    for q in kb.questions:
        answers.setdefault(q.relation, set()).add(normalize_answer(q.answer))
    for named in ("birthplace", "founder", "river", "inventor", "profession", "material"):
        for relation, values in answers.items():
            if relation != named:
                assert not answers[named] & values, (named, relation)


def test_real_facts_are_well_formed():
    relations = Counter(f.relation for f in K.REAL_FACTS)
    assert min(relations.values()) >= 2  # every real answer has another of its type for a counterfactual
    for f in K.REAL_FACTS:
        assert f.question.endswith("?") and contains_answer(f.passage, [f.answer]), f
        assert not contains_answer(f.question, (f.answer,) + f.aliases), f
    assert len({f.question for f in K.REAL_FACTS}) == len(K.REAL_FACTS)
    canberra = next(f for f in K.REAL_FACTS if f.title == "Australia")
    assert canberra.answer == "Canberra"


def test_sample_questions_is_stratified_and_seeded(kb):
    sample = kb.sample_questions(40, 10, seed=3)
    assert sample == kb.sample_questions(40, 10, seed=3) and sample != kb.sample_questions(40, 10, seed=4)
    fictional, real = sample[:40], sample[40:]
    assert all(q.kind == "fictional" for q in fictional) and all(q.kind == "real" for q in real)
    assert len({q.qid for q in sample}) == 50
    per_relation = Counter(q.relation for q in fictional)
    assert len(per_relation) == 9 and max(per_relation.values()) - min(per_relation.values()) <= 1
    real_counts = Counter(q.relation for q in real)
    assert len(real_counts) == 8 and max(real_counts.values()) - min(real_counts.values()) <= 1
    everything = kb.sample_questions(720, 0, seed=0)
    assert sorted(q.qid for q in everything) == sorted(q.qid for q in kb.questions_of("fictional"))


def test_counterfactual_passage_swaps_the_answer_for_one_of_its_type(kb):
    for q in kb.sample_questions(90, 24, seed=5):
        passage, wrong = K.counterfactual_passage(q, kb, seed=7)
        assert (passage, wrong) == K.counterfactual_passage(q, kb, seed=7)
        same_type = {p.answer for p in kb.questions if p.relation == q.relation and p.kind == q.kind}
        assert wrong in same_type and wrong != q.answer
        assert contains_answer(passage, [wrong]) and not contains_answer(passage, q.answers), (q, passage)
        original = kb.document(q.doc_id).text
        restored = passage.replace(wrong, q.answer)
        if q.relation == "profession":  # the article follows the new word
            restored = restored.replace(" an ", " a ")
            assert (" an " + wrong in passage) == (wrong[0] in "aeiou")
            original = original.replace(" an ", " a ")
        assert restored == original
    wrongs = {K.counterfactual_passage(kb.questions[0], kb, seed=s)[1] for s in range(20)}
    assert len(wrongs) > 3


def test_counterfactual_passage_on_a_hand_built_base():
    def question(qid, answer, doc_id, relation="birthplace"):
        return K.Question(qid, "Where, or of what?", answer, (), doc_id, "fictional", relation)

    docs = (K.Document("a", "A", "The tinsel loom was made of tin in Oslo, not in Rome.", "fictional"),
            K.Document("b", "B", "Rome. Copper.", "fictional"), K.Document("c", "C", "Lima.", "fictional"))
    kb = K.KnowledgeBase(docs, (question("a:1", "Oslo", "a"), question("b:1", "Rome", "b"),
                                question("c:1", "Lima", "c"), question("a:2", "tin", "a", "material"),
                                question("b:2", "copper", "b", "material")))
    for seed in range(8):  # Rome is already in the passage: Lima is the only answer that can be swapped in
        assert K.counterfactual_passage(kb.questions[0], kb, seed) == (
            "The tinsel loom was made of tin in Lima, not in Rome.", "Lima")
    assert K.counterfactual_passage(kb.questions[3], kb, 0) == (  # "tin" the word, not the "tin" of "tinsel"
        "The tinsel loom was made of copper in Oslo, not in Rome.", "copper")
    with pytest.raises(ValueError, match="is not stated verbatim"):
        K.counterfactual_passage(question("c:2", "Quito", "c"), kb, 0)


def test_name_pools_can_be_used_up_exactly_and_skip_real_inventions():
    with pytest.raises(ValueError, match="has only") as error:
        K.make_knowledge_base(n_people=1, n_places=200, n_inventions=1)
    n_rivers = int(re.search(r"has only (\d+)", str(error.value)).group(1))
    assert len(K.make_knowledge_base(n_people=1, n_places=n_rivers, n_inventions=1).questions_of("fictional")) == \
        3 * (1 + n_rivers + 1)
    with pytest.raises(ValueError, match="has only") as error:
        K.make_knowledge_base(n_inventions=1000)
    n_inventions = int(re.search(r"has only (\d+)", str(error.value)).group(1))
    every = K.make_knowledge_base(n_people=5, n_places=1, n_inventions=n_inventions)
    titles = {d.title for d in every.documents if d.doc_id.startswith("invention")}
    assert len(titles) == n_inventions and not titles & {"The ember lantern", "The frost compass"}  # real products


def test_errors(kb):
    for bad in (dict(n_people=0), dict(n_places=-1), dict(n_inventions=2.0), dict(n_people=True)):
        with pytest.raises(ValueError, match="must be a positive int"):
            K.make_knowledge_base(**bad)
    with pytest.raises(ValueError, match="n_places asks for 200 river names, but the name generator has only"):
        K.make_knowledge_base(n_people=1, n_places=200)
    with pytest.raises(ValueError, match="n_people \\+ n_places asks for"):
        K.make_knowledge_base(n_people=600)
    with pytest.raises(ValueError, match="n_inventions asks for"):
        K.make_knowledge_base(n_inventions=1000)
    with pytest.raises(TypeError, match="seed must be an int"):
        K.make_knowledge_base(seed="0")
    with pytest.raises(ValueError, match="kind must be one of"):
        kb.questions_of("imaginary")
    with pytest.raises(ValueError, match=r"n_real must be an int in \[0, "):
        kb.sample_questions(1, 1000)
    with pytest.raises(ValueError, match="n_fictional must be an int"):
        kb.sample_questions(-1, 0)
    with pytest.raises(KeyError, match="no document with doc_id"):
        kb.document("person-999")
    with pytest.raises(TypeError, match="question must be a Question"):
        K.counterfactual_passage("Who?", kb, 0)


def test_question_draws_need_an_int_seed(kb):
    question = kb.questions_of("fictional")[0]
    for bad in (None, 2.5, "0", True):  # random.Random took them: None gave a fresh, irreproducible draw every call
        with pytest.raises(TypeError, match="seed must be an int"):
            kb.sample_questions(3, 2, seed=bad)
        with pytest.raises(TypeError, match="seed must be an int"):
            K.counterfactual_passage(question, kb, bad)
    assert kb.sample_questions(np.int64(3), np.int64(2), seed=np.int64(4)) == kb.sample_questions(3, 2, seed=4)
    assert K.counterfactual_passage(question, kb, np.int64(1)) == K.counterfactual_passage(question, kb, 1)
