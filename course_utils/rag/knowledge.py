"""A knowledge base with an answer key: fictional people, places and inventions made by a seeded generator, and
well-known real facts written by hand (:data:`REAL_FACTS`), with a question whose true answer is known for each fact.

Every answer is stated, verbatim, in exactly one short document, so closed-book answers, retrieval and
retrieval-augmented answers can be graded automatically (:mod:`course_utils.rag.matching`). Fictional facts cannot be
in any model's training data: a closed-book answer to one is a guess, and a fluent guess is what the chapter calls a
hallucination. Cross-links make retrieval non-trivial and guessing tempting: several people are born in the same
fictional town (which has its own document), each invention names an inventor (who has a person document), each town
has a founder and a founding year. Name words are built from syllables, unique in the base, never a real fact's
answer and not in :data:`BLOCKLIST`. A question names its subject, never its answer, and the answer appears in no
other document that mentions the subject (tested), so each question has one gold document.
:func:`counterfactual_passage` swaps the answer in the gold passage for another entity of the same type, as in
Longpre et al., 2021, "Entity-Based Knowledge Conflicts in Question Answering".

Left out: multi-hop questions (where was the inventor of X born?), paraphrased questions, facts that change over
time, and any guarantee that a name is not some obscure real word (the blocklist catches the ones we noticed).
"""

from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass

from course_utils.arguments import check_int

KINDS = ("fictional", "real")


@dataclass(frozen=True)
class Document:
    doc_id: str
    title: str
    text: str
    kind: str  # "fictional" or "real"


@dataclass(frozen=True)
class Question:
    qid: str
    text: str
    answer: str
    aliases: tuple[str, ...]
    doc_id: str  # the one document that states the answer
    kind: str
    relation: str  # "birthplace", "profession", "birth_year", "founder", "capital", ...

    @property
    def answers(self) -> tuple[str, ...]:
        return (self.answer,) + self.aliases


@dataclass(frozen=True)
class KnowledgeBase:
    documents: tuple[Document, ...]
    questions: tuple[Question, ...]

    def document(self, doc_id: str) -> Document:
        for doc in self.documents:
            if doc.doc_id == doc_id:
                return doc
        raise KeyError(f"no document with doc_id {doc_id!r}")

    def questions_of(self, kind: str) -> list[Question]:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        return [q for q in self.questions if q.kind == kind]

    def sample_questions(self, n_fictional: int, n_real: int, seed: int = 0) -> list[Question]:
        """Fictional questions then real ones, each drawn round-robin over the relations (in sorted order) from
        per-relation lists shuffled by random.Random(seed): as even a spread over relations as the counts allow."""
        rng = random.Random(check_int(seed, "seed", allowed="an int"))  # Random also took None, 2.5, "x" silently
        chosen = []
        for kind, n in (("fictional", n_fictional), ("real", n_real)):
            pool = self.questions_of(kind)
            n = check_int(n, f"n_{kind}", minimum=0, maximum=len(pool))
            groups = [[q for q in pool if q.relation == r] for r in sorted({q.relation for q in pool})]
            for group in groups:
                rng.shuffle(group)
            order = [q for round_ in itertools.zip_longest(*groups) for q in round_ if q is not None]
            chosen += order[:n]
        return chosen


@dataclass(frozen=True)
class RealFact:
    relation: str
    title: str
    question: str
    answer: str
    aliases: tuple[str, ...]
    passage: str


_R = RealFact
REAL_FACTS: tuple[RealFact, ...] = (  # checked by hand; nothing contested (no telephone, no longest river)
    _R("capital", "France", "What is the capital of France?", "Paris", (), "Paris is the capital of France."),
    _R("capital", "Japan", "What is the capital of Japan?", "Tokyo", (), "Tokyo is the capital of Japan."),
    _R("capital", "Italy", "What is the capital of Italy?", "Rome", (), "Rome is the capital of Italy."),
    _R("capital", "Australia", "What is the capital of Australia?", "Canberra", (),
       "Canberra is the capital of Australia. Sydney is a larger city, but it is not the capital."),
    _R("capital", "Canada", "What is the capital of Canada?", "Ottawa", (), "Ottawa is the capital of Canada."),
    _R("capital", "Egypt", "What is the capital of Egypt?", "Cairo", (), "Cairo is the capital of Egypt."),
    _R("capital", "Germany", "What is the capital of Germany?", "Berlin", (), "Berlin is the capital of Germany."),
    _R("capital", "Spain", "What is the capital of Spain?", "Madrid", (), "Madrid is the capital of Spain."),
    _R("capital", "Kenya", "What is the capital of Kenya?", "Nairobi", (), "Nairobi is the capital of Kenya."),
    _R("capital", "Peru", "What is the capital of Peru?", "Lima", (), "Lima is the capital of Peru."),
    _R("author", "Romeo and Juliet", "Who wrote the play Romeo and Juliet?", "William Shakespeare", ("Shakespeare",),
       "The play Romeo and Juliet was written by William Shakespeare."),
    _R("author", "Pride and Prejudice", "Who wrote Pride and Prejudice?", "Jane Austen", ("Austen",),
       "The novel Pride and Prejudice was written by Jane Austen and published in 1813."),
    _R("author", "Nineteen Eighty-Four", "Who wrote Nineteen Eighty-Four?", "George Orwell", ("Orwell",),
       "The novel Nineteen Eighty-Four was written by George Orwell."),
    _R("author", "War and Peace", "Who wrote War and Peace?", "Leo Tolstoy", ("Tolstoy", "Lev Tolstoy"),
       "The novel War and Peace was written by Leo Tolstoy."),
    _R("author", "Don Quixote", "Who wrote Don Quixote?", "Miguel de Cervantes", ("Cervantes",),
       "The novel Don Quixote was written by Miguel de Cervantes."),
    _R("author", "Moby-Dick", "Who wrote Moby-Dick?", "Herman Melville", ("Melville",),
       "The novel Moby-Dick was written by Herman Melville."),
    _R("scientist", "General relativity", "Who developed the theory of general relativity?", "Albert Einstein",
       ("Einstein",), "Albert Einstein developed the theory of general relativity in 1915."),
    _R("scientist", "Penicillin", "Who discovered penicillin in 1928?", "Alexander Fleming", ("Fleming",),
       "Alexander Fleming discovered penicillin in 1928."),
    _R("scientist", "On the Origin of Species", "Who wrote On the Origin of Species?", "Charles Darwin",
       ("Darwin",), "On the Origin of Species was written by Charles Darwin and published in 1859."),
    _R("scientist", "Laws of motion", "Who stated the three laws of motion in the Principia?", "Isaac Newton",
       ("Newton",), "Isaac Newton stated the three laws of motion in his book the Principia, in 1687."),
    _R("scientist", "Nobel Prize", "Who was the first person to win two Nobel Prizes?", "Marie Curie",
       ("Curie", "Marie Sklodowska-Curie", "Sklodowska-Curie", "Sklodowska"),
       "Marie Curie was the first person to win two Nobel Prizes."),
    _R("scientist", "Periodic table", "Which Russian chemist published the periodic table in 1869?",
       "Dmitri Mendeleev", ("Mendeleev", "Mendeleyev"), "Dmitri Mendeleev published the periodic table in 1869."),
    _R("scientist", "X-rays", "Who discovered X-rays in 1895?", "Wilhelm Röntgen",
       ("Röntgen", "Roentgen", "Conrad Röntgen"), "Wilhelm Röntgen discovered X-rays in 1895."),
    _R("planet", "Jupiter", "Which planet is the largest in the Solar System?", "Jupiter", (),
       "Jupiter is the largest planet in the Solar System."),
    _R("planet", "Mercury", "Which planet is closest to the Sun?", "Mercury", (), "Mercury is closest to the Sun."),
    _R("planet", "Mars", "Which planet is known as the Red Planet?", "Mars", (), "Mars is known as the Red Planet."),
    _R("planet", "Neptune", "Which planet is farthest from the Sun?", "Neptune", (),
       "Neptune is farthest from the Sun."),
    _R("planet", "Titan", "Titan is the largest moon of which planet?", "Saturn", (),
       "Titan is the largest moon of Saturn."),
    _R("year", "Berlin Wall", "In which year did the Berlin Wall fall?", "1989", (), "The Berlin Wall fell in 1989."),
    _R("year", "World War II", "In which year did World War II end?", "1945", (), "World War II ended in 1945."),
    _R("year", "Apollo 11", "In which year did Apollo 11 land on the Moon?", "1969", (),
       "Apollo 11 landed on the Moon in 1969."),
    _R("year", "Christopher Columbus", "In which year did Christopher Columbus first reach the Americas?", "1492",
       (), "Christopher Columbus first reached the Americas in 1492."),
    _R("year", "French Revolution", "In which year did the French Revolution begin?", "1789", (),
       "The French Revolution began in 1789."),
    _R("year", "Titanic", "In which year did the Titanic sink?", "1912", (), "The Titanic sank in 1912."),
    _R("symbol", "Gold", "What is the chemical symbol for gold?", "Au", (), "The chemical symbol for gold is Au."),
    _R("symbol", "Sodium", "What is the chemical symbol for sodium?", "Na", (),
       "The chemical symbol for sodium is Na."),
    _R("symbol", "Iron", "What is the chemical symbol for iron?", "Fe", (), "The chemical symbol for iron is Fe."),
    _R("symbol", "Silver", "What is the chemical symbol for silver?", "Ag", (),
       "The chemical symbol for silver is Ag."),
    _R("symbol", "Lead", "What is the chemical symbol for lead?", "Pb", (), "The chemical symbol for lead is Pb."),
    _R("inventor", "World Wide Web", "Who invented the World Wide Web?", "Tim Berners-Lee",
       ("Berners-Lee", "Berners Lee", "Timothy Berners-Lee"), "Tim Berners-Lee invented the World Wide Web."),
    _R("inventor", "Phonograph", "Who invented the phonograph in 1877?", "Thomas Edison", ("Edison",),
       "Thomas Edison invented the phonograph in 1877."),
    _R("inventor", "Dynamite", "Who invented dynamite?", "Alfred Nobel", ("Nobel",), "Alfred Nobel invented dynamite."),
    _R("inventor", "Printing press", "Who invented the movable-type printing press in Europe?", "Johannes Gutenberg",
       ("Gutenberg",), "Johannes Gutenberg invented the movable-type printing press in Europe around 1440."),
    _R("artist", "Mona Lisa", "Who painted the Mona Lisa?", "Leonardo da Vinci", ("da Vinci", "Leonardo"),
       "The Mona Lisa was painted by Leonardo da Vinci."),
    _R("artist", "The Starry Night", "Who painted The Starry Night?", "Vincent van Gogh", ("van Gogh",),
       "The Starry Night was painted by Vincent van Gogh in 1889."),
    _R("artist", "The Magic Flute", "Who composed the opera The Magic Flute?", "Wolfgang Amadeus Mozart",
       ("Mozart",), "The opera The Magic Flute was composed by Wolfgang Amadeus Mozart."),
    _R("artist", "Moonlight Sonata", "Who composed the Moonlight Sonata?", "Ludwig van Beethoven", ("Beethoven",),
       "The Moonlight Sonata was composed by Ludwig van Beethoven."),
)

# Name parts: first names, surnames, towns and rivers are built from disjoint pieces, so no name of one type can
# equal a name of another; every word is also checked against BLOCKLIST and the real facts' answers.
_FIRST = (("Or", "Ta", "Ve", "Il", "Bra", "Ce", "Da", "Ely", "Fen", "Ga", "Ho", "Isa", "Jo", "Ka", "Le", "Mi", "Ny",
           "Os", "Pe", "Ro", "Sa", "Ti", "Ul", "Wy", "Ze", "Quo"),
          ("la", "vin", "ren", "mira", "dric", "wen", "sel", "tha", "lio", "ryn", "bek", "nia", "dor", "mae", "zel"))
_SURNAME = (("Ven", "Orr", "Thal", "Brin", "Cal", "Dun", "Fal", "Gal", "Hask", "Ib", "Kel", "Lorn", "Mor", "Nes",
             "Pell", "Quen", "Rav", "Sorr", "Tam", "Ulv", "Wex", "Yar", "Zell", "Ast", "Esk"),
            ("drake", "ow", "mond", "quist", "ter", "ving", "ett", "sen", "ard", "ley", "rin", "amb"))
_TOWN = (("Quill", "Brell", "Dorn", "Fenn", "Gask", "Hesk", "Ivel", "Jor", "Kell", "Lorr", "Mael", "Nimb", "Orm",
          "Pel", "Quar", "Rusk", "Sel", "Tarn", "Ulm", "Varr", "Wend", "Yell", "Zan", "Ebb", "Ost", "Crel", "Thrim"),
         ("mere", "wick", "holt", "stead", "thorpe", "combe", "ness", "haven", "ford", "dale", "bury", "moor"))
_RIVER = (("Al", "Ver", "Ous", "Tey", "Lod", "Sev", "Dwy", "Ys", "Bry", "Kev", "Mun", "Nar", "Plo", "Wyr"),
          ("sk", "ane", "wy", "rith", "lo", "dra", "ith", "el", "und", "ey"))
BLOCKLIST = frozenset({  # English words, famous names and real places the generator can spell
    "gala", "vela", "hodor", "karen", "gavin", "cedric", "levin", "tania", "gatha", "isador", "mila", "sala", "kala",
    "galley", "falter", "sorrow", "venter", "ibsen", "nester", "kelley", "morley", "astley", "calley", "brinley",
    "pellow", "ousel", "kevel", "verey", "allo", "aley", "dornford", "osla", "wexford", "ulla", "orla"})
PROFESSIONS = ("clockmaker", "botanist", "cartographer", "glassblower", "beekeeper", "astronomer", "weaver",
               "bookbinder", "shipwright", "potter", "chemist", "surveyor", "engineer", "apothecary", "printer",
               "blacksmith", "tailor", "mapmaker", "stonemason", "physician")
TRAITS = ("patience", "humour", "courage", "curiosity", "kindness", "stubbornness", "generosity", "neat handwriting")
KNOWN_FOR = ("salt market", "stone bridge", "apple orchards", "bell tower", "wool fair", "old harbour", "chalk cliffs")
MATERIALS = ("copper", "brass", "oak", "pewter", "walnut", "bronze", "tin", "cedar", "glass", "iron")
DEVICES = {"lantern": "It gives light.", "loom": "It weaves cloth.", "compass": "It shows direction.",
           "kettle": "It boils water.", "bellows": "It blows air into a fire.", "press": "It presses fruit.",
           "telescope": "It shows distant things.", "pump": "It lifts water.", "spindle": "It spins thread.",
           "harp": "It plays music.", "plough": "It turns soil.", "scale": "It weighs goods."}
_INVENTION_PREFIX = ("tide", "frost", "ember", "moss", "echo", "amber", "thistle", "cinder", "dusk", "heron",
                     "willow", "pebble", "marsh", "gale", "lark", "fern", "hollow", "quartz")
_REAL_INVENTIONS = frozenset({"ember lantern", "frost compass"})


def _pool(parts: tuple[tuple[str, ...], tuple[str, ...]], banned: set[str]) -> list[str]:
    words = [a + b for a, b in itertools.product(*parts)]  # no word spelt with a letter three times in a row
    return [w for w in dict.fromkeys(words) if w.lower() not in banned and not re.search(r"(.)\1\1", w.lower())]


def _draw(rng: random.Random, pool: list[str], n: int, what: str, limit: str) -> list[str]:
    if n > len(pool):
        raise ValueError(f"{limit} asks for {n} {what}, but the name generator has only {len(pool)}")
    return rng.sample(pool, n)


def make_knowledge_base(n_people: int = 120, n_places: int = 60, n_inventions: int = 60,
                        seed: int = 0) -> KnowledgeBase:
    """n_people + n_places + n_inventions fictional documents (3 questions each) and the real facts (1 each),
    deterministic for a given seed (random.Random, never hash())."""
    n_people = check_int(n_people, "n_people", minimum=1, allowed="a positive int")
    n_places = check_int(n_places, "n_places", minimum=1, allowed="a positive int")
    n_inventions = check_int(n_inventions, "n_inventions", minimum=1, allowed="a positive int")
    rng = random.Random(check_int(seed, "seed", allowed="an int"))
    banned = set(BLOCKLIST) | {w.lower() for f in REAL_FACTS for a in (f.answer,) + f.aliases for w in a.split()}
    names = n_people + n_places  # founders are people without documents of their own
    firsts = _draw(rng, _pool(_FIRST, banned), names, "first names", "n_people + n_places")
    surnames = _draw(rng, _pool(_SURNAME, banned), names, "surnames", "n_people + n_places")
    towns = _draw(rng, _pool(_TOWN, banned), n_places, "town names", "n_places")
    rivers = _draw(rng, _pool(_RIVER, banned), n_places, "river names", "n_places")
    inventions = [f"{p} {d}" for p, d in itertools.product(_INVENTION_PREFIX, DEVICES)
                  if f"{p} {d}" not in _REAL_INVENTIONS]
    inventions = _draw(rng, inventions, n_inventions, "invention names", "n_inventions")
    full = [f"{f} {s}" for f, s in zip(firsts, surnames)]
    docs, questions = [], []

    def add(doc_id: str, title: str, sentences: list[str], facts: list[tuple[str, str, str, tuple[str, ...]]]):
        docs.append(Document(doc_id, title, " ".join(sentences), "fictional"))
        for relation, text, answer, aliases in facts:
            questions.append(Question(f"{doc_id}:{relation}", text, answer, aliases, doc_id, "fictional", relation))

    births = []
    for i, name in enumerate(full[:n_people]):
        she = rng.random() < 0.5
        pron, poss = ("She", "her") if she else ("He", "his")
        job, town, year = rng.choice(PROFESSIONS), rng.choice(towns), rng.randint(1790, 1950)
        births.append(year)
        add(f"person-{i:03d}", name,
            [f"{name} was {'an' if job[0] in 'aeiou' else 'a'} {job}.", f"{pron} was born in {town} in {year}.",
             f"{pron} was known for {poss} {rng.choice(TRAITS)}."],
            [("birthplace", f"In which town was {name} born?", town, ()),
             ("profession", f"What was the profession of {name}?", job, ()),
             ("birth_year", f"In which year was {name} born?", str(year), ())])
    for i, (town, river, founder) in enumerate(zip(towns, rivers, full[n_people:])):
        year = rng.randint(1150, 1750)
        add(f"place-{i:03d}", town,
            [f"{town} is a town on the river {river}.", f"It was founded in {year} by {founder}.",
             f"The town is known for its {rng.choice(KNOWN_FOR)}."],
            [("founder", f"Who founded the town of {town}?", founder, (founder.split()[1],)),
             ("founding_year", f"In which year was {town} founded?", str(year), ()),
             ("river", f"On which river does {town} lie?", river, ())])
    inventors = rng.sample(range(n_people), n_inventions) if n_inventions <= n_people else \
        [rng.randrange(n_people) for _ in range(n_inventions)]
    for i, (thing, who) in enumerate(zip(inventions, inventors)):
        year, material = births[who] + rng.randint(24, 60), rng.choice(MATERIALS)
        add(f"invention-{i:03d}", f"The {thing}",
            [f"The {thing} was invented by {full[who]}.", f"It was first built in {year}.",
             f"It was made of {material}.", DEVICES[thing.split()[1]]],
            [("inventor", f"Who invented the {thing}?", full[who], (surnames[who],)),
             ("invention_year", f"In which year was the {thing} first built?", str(year), ()),
             ("material", f"What was the {thing} made of?", material, ())])
    for i, fact in enumerate(REAL_FACTS):
        doc_id = f"real-{i:03d}"
        docs.append(Document(doc_id, fact.title, fact.passage, "real"))
        questions.append(Question(f"{doc_id}:{fact.relation}", fact.question, fact.answer, fact.aliases, doc_id,
                                  "real", fact.relation))
    return KnowledgeBase(tuple(docs), tuple(questions))


def _mention(text: str) -> str:
    return r"(?<![\w-])" + re.escape(text) + r"(?![\w-])"


def counterfactual_passage(question: Question, kb: KnowledgeBase, seed: int) -> tuple[str, str]:
    """(passage, wrong_answer): the gold document's text with every mention of the answer replaced by another
    answer of the same relation and kind (drawn by random.Random(seed)) that the document does not mention."""
    if not isinstance(question, Question):
        raise TypeError(f"question must be a Question, got {type(question).__name__}")
    text = kb.document(question.doc_id).text
    if not re.search(_mention(question.answer), text):
        raise ValueError(f"the answer {question.answer!r} is not stated verbatim in document {question.doc_id}")
    candidates = sorted({q.answer for q in kb.questions if q.relation == question.relation and q.kind == question.kind
                         and not re.search(_mention(q.answer), text, flags=re.IGNORECASE)})
    if not candidates:
        raise ValueError(f"no other answer of relation {question.relation!r} to swap in")
    wrong = random.Random(check_int(seed, "seed", allowed="an int")).choice(candidates)
    passage = re.sub(_mention(question.answer), wrong, text)
    passage = re.sub(r"\b([Aa])n? (?=" + re.escape(wrong) + r"\b)",
                     lambda m: m.group(1) + ("n " if wrong[0].lower() in "aeiou" else " "), passage)
    return passage, wrong
