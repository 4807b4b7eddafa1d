"""Answers as text: free generation parsed into a label, against greedy decoding restricted to the label set.

Scoring every label (:mod:`course_utils.classify.scoring`) is one way to make a model choose; two others read what
it WRITES:

* free generation, then a parser (:func:`parse_label`): the answer counts if it names exactly one genre
  (:func:`genres_named`: the template's label words and each genre's noun, plural and adjective forms, "comedy",
  "comedies", "comic", "comical", "comedic", ...); anything else is a format failure (``None``), which the chapter
  counts. So "a comedy, a historical drama" (a model reading back the options) names two genres and fails, as do
  "Comedy, history or tragedy", "comedic tragedy" and "Tragedy, not a comedy" (the parser reads no negation);
* constrained decoding (:func:`constrained_labels`): greedy decoding where each step may only emit a token that
  continues some label (a prefix tree of the labels' token ids), applied with chapter 07's
  :func:`course_utils.generate.sampling.constrain`. It never fails to produce a label, but it chooses token by token:
  with multi-token labels it can pick a label whose FIRST token is likeliest even when another label is likelier as
  a whole, the difference from summed label scores. Decoding stops as soon as the tokens spell a whole label (so a
  label that is a token-prefix of another, " history" and " history play", wins over it).

Free answers come from :func:`course_utils.lora.answers.generate_answers` (greedy, batched, left-padded), fed raw
text or chat prompts alike. Left out: sampling, beam search over the label tree, stop strings.
"""

from __future__ import annotations

import re
from typing import Sequence

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from course_utils.classify.genres import GENRES
from course_utils.classify.prompts import Template
from course_utils.classify.scoring import check_labels, check_prompts, encode_prompt
from course_utils.generate.sampling import constrain
from course_utils.lora.answers import generate_answers
from course_utils.lora.sft import SFTExample
from course_utils.model.logits_fns import cache_keyword, returned_cache


def _words(template: Template) -> list[str]:
    if not isinstance(template, Template):
        raise TypeError(f"template must be a Template (course_utils.classify.prompts), got {type(template).__name__}")
    return [w.lower() for w in template.words]


#: The words that name each genre in a free answer: its noun, plural and adjectives ("a comical play", "historical").
GENRE_FORMS: dict[str, tuple[str, ...]] = {
    "comedy": ("comedy", "comedies", "comic", "comical", "comedic"),
    "history": ("history", "histories", "historical"),
    "tragedy": ("tragedy", "tragedies", "tragic", "tragical"),
}


def _patterns(template: Template) -> list[re.Pattern]:
    """Per genre (GENRES order): the template's label word or any of the genre's forms, whole words. A one-letter
    label word ("A", "B", "C") counts only as the answer's first word: anywhere else "a" is the article."""
    patterns = []
    for genre, word in zip(GENRES, _words(template)):
        forms = GENRE_FORMS[genre] + ((word,) if len(word) > 1 else ())
        letter = r"|^" + re.escape(word) + r"\b" if len(word) == 1 else ""
        patterns.append(re.compile(r"\b(?:" + "|".join(re.escape(w) for w in forms) + r")\b" + letter))
    return patterns


def _check_answer(answer: object) -> str:
    if not isinstance(answer, str):
        raise TypeError(f"answer must be a string, got {type(answer).__name__}")
    return answer.strip().lower()


def genres_named(answer: str, template: Template) -> list[str]:
    """The genres (GENRES order) a free answer names: by the template's label word or by one of the genre's forms
    (:data:`GENRE_FORMS`), case-insensitive, whole words only ("comedian" names none); a one-letter label word only as
    the first word ("B) a history" names history alone)."""
    text = _check_answer(answer)
    return [genre for genre, pattern in zip(GENRES, _patterns(template)) if pattern.search(text)]


def parse_label(answer: str, template: Template) -> str | None:
    """The genre a free answer gives, or ``None`` (a format failure): the only genre it names (:func:`genres_named`,
    by label word, noun, plural or adjective, wherever it stands); ``None`` if it names none or several ("a comedy, a
    historical drama", "Comedy, history or tragedy", "comedic tragedy", "Tragedy, not a comedy")."""
    found = genres_named(answer, template)
    return found[0] if len(found) == 1 else None


def free_answers(model: nn.Module, tokenizer, prompts: Sequence[str], max_new_tokens: int = 6,
                 batch_size: int = 8, progress: bool = True) -> list[str]:
    """Greedy free-text answers (at most ``max_new_tokens`` tokens, cut at ``<|im_end|>``) to each prompt."""
    check_prompts(prompts)
    examples = [SFTExample(tuple(tokenizer(p, add_special_tokens=False)["input_ids"]), ()) for p in prompts]
    return generate_answers(model, tokenizer, examples, max_new_tokens, batch_size, progress)


def _label_tree(label_ids: list[list[int]]) -> dict[tuple[int, ...], set[int]]:
    """Prefix (a tuple of token ids) -> the tokens that may follow it on the way to some label."""
    tree: dict[tuple[int, ...], set[int]] = {}
    for ids in label_ids:
        for i, token in enumerate(ids):
            tree.setdefault(tuple(ids[:i]), set()).add(token)
    return tree


@torch.no_grad()
def _decode_one(model: nn.Module, prompt_ids: tuple[int, ...], label_ids: list[list[int]],
                tree: dict[tuple[int, ...], set[int]], vocab_size: int) -> int:
    device = next(model.parameters()).device
    complete = {tuple(ids): k for k, ids in enumerate(label_ids)}
    out = model(input_ids=torch.tensor([prompt_ids], device=device), use_cache=True, logits_to_keep=1)
    cache_key = cache_keyword(model)
    prefix: tuple[int, ...] = ()
    while prefix not in complete:
        allowed = torch.zeros(vocab_size, dtype=torch.bool, device=device)
        allowed[list(tree[prefix])] = True
        token = constrain(out.logits[:, -1].float(), allowed).argmax(-1).item()  # logits (1, V)
        prefix += (token,)
        if prefix not in complete:
            out = model(input_ids=torch.tensor([[token]], device=device), **{cache_key: returned_cache(out)},
                        use_cache=True)
    return complete[prefix]


def constrained_labels(model: nn.Module, tokenizer, prompts: Sequence[str], labels: Sequence[str],
                       progress: bool = True) -> list[int]:
    """For each prompt, the index (into ``labels``) of the label greedy decoding spells when every step is restricted
    to tokens that continue a label. Same tokenization convention as the label scores."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a transformers causal LM (an nn.Module), got {type(model).__name__}")
    check_prompts(prompts)
    label_ids = check_labels(tokenizer, labels)
    encoded = [encode_prompt(tokenizer, p, labels, label_ids) for p in prompts]
    tree = _label_tree(label_ids)
    vocab_size = model.get_output_embeddings().weight.shape[0]
    was_training = model.training
    model.eval()
    try:
        return [_decode_one(model, ids, label_ids, tree, vocab_size)
                for ids in tqdm(encoded, desc="constrained", disable=not progress, leave=False)]
    finally:
        model.train(was_training)
