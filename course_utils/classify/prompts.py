"""k-shot prompts for genre classification: named templates, and a seeded draw of the k examples and their order.

In-context learning (Brown et al., 2020, "Language Models are Few-Shot Learners"): k labelled examples are written
into the prompt before the passage to classify, and no weight changes. Its results depend on the examples drawn,
their order (Lu et al., 2022, "Fantastically Ordered Prompts and Where to Find Them"), the label balance and the most
recent label (Zhao et al., 2021, "Calibrate Before Use"), and the wording (Sclar et al., 2024, "Quantifying Language
Models' Sensitivity to Spurious Features in Prompt Design"); so every draw here is a function of a seed, and the
templates vary one thing at a time where they can: the wording, the label names, the format, raw text or the chat
template (``instructed`` is ``chat_cue``'s prompt with the chat wrapper removed, so the two differ by the chat
wrapper and its default system prompt only).

A :class:`Template` renders a passage with its ``example`` format (ending in the answer cue, "Genre:"); a shot is
that plus its label word. Raw-text templates give labels a leading space (" comedy", the boundary convention of
:mod:`course_utils.classify.scoring`); chat templates put the question in a user turn and score the label as the
start of the assistant's answer, without a space, unless the template opens the answer with a cue of its own
(``answer_prefix``, e.g. "Genre:"), after which the labels take a space and are one token each, as in raw text.
SmolLM2's chat template adds its default system prompt. :func:`split_prompt` cuts a few-shot prompt after its last
shot, so that the shots can be run once for many passages (``scoring.label_logprobs_after_prefix``).

Left out: automatic prompt search, instructions in a system message, calibration (see
:mod:`course_utils.classify.calibration`), truncation to the context length (SmolLM2-135M reads 8,192 tokens; k = 8
passages of 400 characters use about a thousand).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from course_utils.arguments import check_int
from course_utils.classify.genres import GENRES
from course_utils.classify.passages import Passage

_QUESTION = ("Each passage comes from a play by Shakespeare. Say whether the play is a comedy, a history or a "
             "tragedy.")
_LETTERS = "Each passage comes from a play by Shakespeare. Is the play a comedy (A), a history (B) or a tragedy (C)?"


@dataclass(frozen=True)
class Template:
    name: str
    example: str  # one passage, with "{text}"; ends in the answer cue, no trailing space
    words: tuple[str, str, str]  # the label word of each genre, in GENRES order, without a leading space
    instruction: str = ""  # written once before the shots (in every user turn for chat_turns)
    chat: bool = False  # render with the tokenizer's chat template
    chat_turns: bool = False  # chat only: each shot is its own user/assistant exchange
    separator: str = field(default="\n\n")
    answer_prefix: str = ""  # chat only: text that opens the assistant's answer before the label ("Genre:")

    def __post_init__(self):
        if self.answer_prefix and (not self.chat or self.chat_turns):
            raise ValueError("answer_prefix opens the assistant's answer: only for chat templates without chat_turns")

    def labels(self) -> list[str]:
        """The strings to score after the prompt, in GENRES order: " word" for raw text and after an answer prefix,
        "word" right after a chat template's assistant turn."""
        return list(self.words) if self.chat and not self.answer_prefix else [" " + w for w in self.words]

    def label_of(self, genre: str) -> str:
        return self.labels()[GENRES.index(genre)]


_GENRE_WORDS = ("comedy", "history", "tragedy")

#: The templates the chapter compares, by name.
TEMPLATES: dict[str, Template] = {t.name: t for t in [
    Template("genre", "Passage:\n{text}\nGenre:", _GENRE_WORDS),
    Template("question", "Passage:\n{text}\nAnswer:", _GENRE_WORDS, instruction=_QUESTION),
    # chat_cue's prompt without the chat wrapper: instructed against chat_cue changes the wrapper (and its system
    # prompt)
    # only, genre against instructed the instruction only
    Template("instructed", "Passage:\n{text}\nGenre:", _GENRE_WORDS, instruction=_QUESTION),
    Template("capitalised", "Passage:\n{text}\nGenre:", ("Comedy", "History", "Tragedy")),
    Template("adjectives", "Passage:\n{text}\nThe play this passage comes from is", ("comic", "historical",
                                                                                    "tragic")),
    Template("letters", "Passage:\n{text}\nAnswer:", ("A", "B", "C"), instruction=_LETTERS),
    Template("cloze", '"{text}"\nThese lines come from a Shakespeare', ("comedy", "history play", "tragedy")),
    Template("arrow", "{text}\n=>", _GENRE_WORDS),
    Template("chat_inline", "Passage:\n{text}\nGenre:", _GENRE_WORDS, instruction=_QUESTION, chat=True),
    Template("chat_turns", "Passage:\n{text}", _GENRE_WORDS, instruction=_QUESTION, chat=True, chat_turns=True),
    Template("chat_cue", "Passage:\n{text}", _GENRE_WORDS, instruction=_QUESTION, chat=True,
             answer_prefix="Genre:"),
    Template("chat_letters", "Passage:\n{text}\nAnswer:", ("A", "B", "C"), instruction=_LETTERS, chat=True),
]}


def get_template(name: str) -> Template:
    if name not in TEMPLATES:
        raise ValueError(f"unknown template {name!r}; choose one of {sorted(TEMPLATES)}")
    return TEMPLATES[name]


def _check_shots(shots: object) -> None:
    if isinstance(shots, (str, Passage)) or not isinstance(shots, (list, tuple)):
        raise TypeError("shots must be a list of Passage (draw_shots()); [] for zero-shot")
    if not all(isinstance(s, Passage) and s.genre in GENRES for s in shots):
        raise TypeError(f"every shot must be a Passage labelled with one of {GENRES}")


def _chat(tokenizer, messages: list[dict[str, str]]) -> str:
    if tokenizer is None or getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("a chat template needs a tokenizer that has one (SmolLM2-Instruct's), got none")
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def build_prompt(template: Template | str, text: str, shots: list[Passage] = (), tokenizer=None) -> str:
    """The prompt for classifying ``text`` after the ``shots`` (in the order given); score ``template.labels()`` after
    it. ``tokenizer`` is needed for chat templates only."""
    template = get_template(template) if isinstance(template, str) else template
    if not isinstance(template, Template):
        raise TypeError(f"template must be a Template or a name in TEMPLATES, got {type(template).__name__}")
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    _check_shots(shots)
    # a shot is the example and its answer; a template whose cue opens the assistant's answer (answer_prefix) has no
    # cue in its example, so each shot carries the cue on its own line: "Passage:\n...\nGenre: comedy"
    cue = "\n" + template.answer_prefix if template.answer_prefix else ""
    answered = [template.example.format(text=s.text) + cue + " " + template.words[GENRES.index(s.genre)] for s in shots]
    query = template.example.format(text=text)
    if not template.chat:
        return template.separator.join([template.instruction] * bool(template.instruction) + answered + [query])
    if not template.chat_turns:
        user = template.separator.join([template.instruction] * bool(template.instruction) + answered + [query])
        return _chat(tokenizer, [{"role": "user", "content": user}]) + template.answer_prefix
    head = template.instruction + template.separator if template.instruction else ""
    messages = []
    for shot in shots:
        messages += [{"role": "user", "content": head + template.example.format(text=shot.text)},
                     {"role": "assistant", "content": template.words[GENRES.index(shot.genre)]}]
    return _chat(tokenizer, messages + [{"role": "user", "content": head + query}])


def split_prompt(template: Template | str, text: str, shots: list[Passage]) -> tuple[str, str]:
    """(prefix, suffix) with ``prefix + suffix == build_prompt(template, text, shots)``: the prefix ends with the last
    shot's label word and is the same for every passage classified after these shots; the suffix is the separator
    and the passage. Raw-text templates with at least one shot only."""
    template = get_template(template) if isinstance(template, str) else template
    if not isinstance(template, Template) or template.chat:
        raise ValueError("split_prompt takes a raw-text template (a chat template wraps the shots and the passage in "
                         "one turn)")
    _check_shots(shots)
    if not shots:
        raise ValueError("split_prompt needs at least one shot: with none there is no shared prefix")
    prompt = build_prompt(template, text, shots)
    suffix = template.separator + template.example.format(text=text)
    return prompt[:len(prompt) - len(suffix)], suffix


def _per_genre_counts(k: int, pool: list[Passage], generator: torch.Generator,
                      must: str | None = None) -> dict[str, int]:
    """k split as evenly as possible over the genres; the remainder goes to genres chosen at random (always including
    ``must`` when k < 3, so that it gets at least one)."""
    base, extra = divmod(k, len(GENRES))
    order = torch.randperm(len(GENRES), generator=generator).tolist()
    if must is not None and base == 0:
        order = [GENRES.index(must)] + [i for i in order if i != GENRES.index(must)]
    lucky = set(order[:extra])
    counts = {g: base + (i in lucky) for i, g in enumerate(GENRES)}
    short = {g: n for g, n in counts.items() if sum(p.genre == g for p in pool) < n}
    if short:
        raise ValueError(f"a balanced draw of k={k} needs {short} passages of those genres; the pool has fewer")
    return counts


def draw_shots(pool: list[Passage], k: int, seed: int, balanced: bool = True,
               last_genre: str | None = None) -> list[Passage]:
    """k passages from ``pool`` in a random order, both fixed by ``seed``.

    ``balanced=True`` takes k // 3 of each genre (the remainder from genres picked at random); ``balanced=False``
    draws uniformly from the pool, so the shots follow the pool's genre mix. Draw from the TRAINING plays: a shot from
    the test passage's own play is the leak the chapter measures.

    ``last_genre`` (one of GENRES; needs k >= 1) fixes the label of the LAST shot, the one recency bias copies: it is
    drawn at random from the pool's passages of that genre, and the other k - 1 shots come from the rest of the pool
    in a random order, uniformly (``balanced=False``) or so that all k shots are balanced as above, the last one
    counted (``balanced=True``). Stratifying D draws on it (draw d ends with genre d mod 3) spreads the last labels
    evenly, which lets a permutation test of recency reach as small a p as D draws allow. ``None`` (the default)
    gives exactly the draws of before. A ``last_genre`` that is not a str raises TypeError, an unknown one
    ValueError."""
    if not isinstance(pool, (list, tuple)) or not all(isinstance(p, Passage) for p in pool):
        raise TypeError("pool must be a list of Passage")
    k = check_int(k, "k", minimum=0)  # numpy ints too (and for seed, below)
    if k > len(pool):
        raise ValueError(f"k={k} is larger than the pool of {len(pool)} passages")
    seed = check_int(seed, "seed", allowed="an int")
    if last_genre is not None:
        if not isinstance(last_genre, str):
            raise TypeError(f"last_genre must be a str (one of {GENRES}) or None, got {last_genre!r}")
        if last_genre not in GENRES:
            raise ValueError(f"last_genre must be one of {GENRES} or None, got {last_genre!r}")
        if k == 0:
            raise ValueError("last_genre needs k >= 1: with no shots there is no last one")
        if not any(p.genre == last_genre for p in pool):
            raise ValueError(f"last_genre={last_genre!r}, but the pool has no {last_genre} passage")
    generator = torch.Generator().manual_seed(seed)
    last = []  # the pool index of the last shot, when its genre is fixed
    if last_genre is not None:
        ids = [i for i, p in enumerate(pool) if p.genre == last_genre]
        last = [ids[torch.randint(len(ids), (1,), generator=generator).item()]]
    rest = [i for i in range(len(pool)) if i not in last]
    if balanced:
        counts = _per_genre_counts(k, pool, generator, must=last_genre)
        if last_genre is not None:
            counts[last_genre] -= 1
        chosen = []
        for genre in GENRES:
            ids = [i for i in rest if pool[i].genre == genre]
            chosen += [ids[j] for j in torch.randperm(len(ids), generator=generator)[:counts[genre]].tolist()]
    else:
        chosen = [rest[j] for j in torch.randperm(len(rest), generator=generator)[:k - len(last)].tolist()]
    order = torch.randperm(len(chosen), generator=generator).tolist()
    return [pool[chosen[j]] for j in order] + [pool[i] for i in last]
