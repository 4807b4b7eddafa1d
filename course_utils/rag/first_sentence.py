"""Where a short answer ends: the end of its first sentence, so that grading never depends on an arbitrary token cut.

Chapter 08 asks for answers "in a few words" and grades them by containment (:mod:`course_utils.rag.matching`). A
small model can keep talking after its answer ("... born in 1846 in Iveldale. Iveldale was founded in 1165 ...");
cutting that at a fixed number of tokens makes grades depend on the number: the cut can fall inside the answer
("... a lord named Quotha" for *Quotha Venamb*: wrong) or, raised, let a ramble name another fact that happens to be
the gold answer (lenient containment: "correct"). Measured on SmolLM2-135M-Instruct, both happened. The rule here:
**an answer is its first sentence**. A sentence ends at a line break, or at ".", "!" or "?" followed by white space,
except a "." after an initial (a lone capital letter: "John A. Smith") or after a common abbreviation (Dr, Mr, Mrs,
Ms, St, Mt, Jr, Sr, vs). A mark at the very end of the text is not an end yet: the next token decides ("1." may
become "1.5"). Text before the first visible character (a reply that opens with a line break) never ends a sentence.

:func:`first_sentence_end` finds the end in a text, :func:`first_sentence` cuts a text there,
:func:`sentences` cuts a text into all its sentences,
:func:`first_sentence_tokens` finds how many generated tokens make up the first sentence, and
:func:`sentence_stop` is the ``transformers`` stopping criterion that ends generation there (one token after the
mark, which confirms it), so the rule also saves the time of the ramble. Left out: a real sentence splitter
(abbreviation lists per language, quotes, ellipses); these answers are short, and the rule is tested on the cases
that occur.
"""

from __future__ import annotations

import re
from typing import Sequence

import torch

from course_utils.arguments import check_str

ABBREVIATIONS = frozenset({"dr", "mr", "mrs", "ms", "st", "mt", "jr", "sr", "vs"})
_MARK = re.compile(r"[.!?](?=\s)|\n")
_WORD_BEFORE = re.compile(r"(\w+)$")


def _is_abbreviation_or_initial(text_before_mark: str) -> bool:
    word = _WORD_BEFORE.search(text_before_mark)
    if word is None:
        return False
    word = word.group(1)
    return (len(word) == 1 and word.isupper()) or word.lower() in ABBREVIATIONS


def first_sentence_end(text: str) -> int | None:
    """The index in ``text`` just past its first sentence (the mark included, a line break excluded), or None when
    no sentence has ended yet (see the module docstring for the rule)."""
    check_str(text, "text")
    start = len(text) - len(text.lstrip())
    for mark in _MARK.finditer(text, start):
        if mark.group() == "\n":
            return mark.start()
        if mark.group() == "." and _is_abbreviation_or_initial(text[:mark.start()]):
            continue
        return mark.end()
    return None


def first_sentence(text: str) -> str:
    """``text`` up to the end of its first sentence, stripped; all of it, stripped, when no sentence has ended."""
    end = first_sentence_end(text)
    return (text if end is None else text[:end]).strip()


def sentences(text: str) -> list[str]:
    """``text`` cut into its sentences by the same rule, each stripped; the rest after the last end is one more."""
    pieces, rest = [], text
    while (end := first_sentence_end(rest)) is not None:
        pieces.append(rest[:end].strip())
        rest = rest[end:]
    return [p for p in pieces + [rest.strip()] if p]


def first_sentence_tokens(tokenizer, token_ids: Sequence[int]) -> int | None:
    """How many of ``token_ids`` (decoded with ``skip_special_tokens``) it takes to hold the first sentence: the
    fewest whose text reaches its end; None when the tokens hold no finished sentence."""
    ids = list(token_ids)
    text = tokenizer.decode(ids, skip_special_tokens=True)
    end = first_sentence_end(text)
    if end is None:
        return None
    for n in range(1, len(ids) + 1):
        if len(tokenizer.decode(ids[:n], skip_special_tokens=True)) >= end:
            return n
    return len(ids)


def sentence_stop(tokenizer, prompt_length: int):
    """A ``transformers`` stopping criterion for ``model.generate``: a row is done once the tokens after its first
    ``prompt_length`` (the left-padded prompt) hold a finished first sentence."""
    from transformers import StoppingCriteria

    class FirstSentenceStop(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:  # (B, T) -> (B,)
            texts = tokenizer.batch_decode(input_ids[:, prompt_length:].tolist(), skip_special_tokens=True)
            return torch.tensor([first_sentence_end(t) is not None for t in texts], dtype=torch.bool,
                                device=input_ids.device)

    return FirstSentenceStop()
