"""Questions to a chat model, closed-book or with retrieved passages, and its answers with their token probabilities.

:func:`closed_book_message` and :func:`rag_message` write the user turn; :func:`answer_with_probs` answers many
prompts greedily (batched with left padding, as :func:`course_utils.lora.answers.generate_answers`) and keeps, for
every generated token, its log-probability under the model's OWN next-token distribution (``log_softmax`` of the raw
logits, before any processing), up to and excluding the end-of-turn token. :class:`Answer` turns those into the
confidence scores compared in the chapter: the sequence probability, the mean and the minimum token probability, and
the probability of the first token. :func:`sample_answers_many` draws several answers to many prompts at once
(left-padded, :func:`sample_padded`: chapter 07's decoding loop with an attention mask) with an explicit generator,
the raw material of self-consistency checks (SelfCheckGPT: P. Manakul, A. Liusie, M. Gales, "SelfCheckGPT:
Zero-Resource Black-Box Hallucination Detection for Generative Large Language Models", 2023).

Retrieval-augmented generation: P. Lewis et al., "Retrieval-Augmented Generation for Knowledge-Intensive NLP
Tasks", 2020; here simply the retrieved passages pasted into the prompt. Token probabilities as confidence:
S. Kadavath et al., "Language Models (Mostly) Know What They Know", 2022.

With ``one_sentence=True`` an answer is its first sentence and generation stops there
(:mod:`course_utils.rag.first_sentence`: why, and the rule), so that grades do not depend on the token limit.

Left out: beam search, general stop strings, length-normalised or semantic (meaning-level) uncertainty (Kuhn et al.,
2023, cluster paraphrases before summing their probability), verbalised confidence ("how sure are you?").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from course_utils.arguments import check_int, check_real, check_str
from course_utils.device import check_generator
from course_utils.generate.sampling import SamplingConfig, choose_next
from course_utils.lora.answers import left_pad, pad_token_id
from course_utils.lora.sft import chat_example, end_of_turn_id
from course_utils.model.logits_fns import cache_keyword
from course_utils.rag.first_sentence import first_sentence, first_sentence_tokens, sentence_stop

ANSWER_INSTRUCTION = "Answer in a few words."
RAG_INSTRUCTION = "Answer in a few words, using only the passages."
CITE_INSTRUCTION = "Then give the id of the passage you used, in brackets."


def closed_book_message(question: str) -> str:
    """The user turn for a question asked without passages: the model answers from what its weights remember."""
    check_str(question, "question", non_empty=True)
    return f"{question} {ANSWER_INSTRUCTION}"


def rag_message(question: str, passages: Sequence[tuple[str, str]], cite: bool = False) -> str:
    """The user turn for a question asked with passages: ``Passage [id]: text`` lines, a blank line, the question and
    :data:`RAG_INSTRUCTION`; with ``cite`` the model is also asked for the id of the passage it used, in brackets.

    The wording was chosen on 40 fictional questions with SmolLM2-135M-Instruct among five candidates (instruction
    or "Question:" before the passages, "Context:" without ids, the question both before and after): the question
    after the passages, next to the instruction, and "using only the passages" did best or tied with the gold
    passage alone and with two distractors. That probe ran once, when chapter 08 was first drafted (commit a12249c;
    no script or RESULTS.md entry was kept, nor which 40 questions), on the chapter's own knowledge base, not a
    held-out split: the notebook's questions may include them, so its RAG accuracies may be slightly optimistic.
    SmolLM2-135M does not follow the citation request (with any of four wordings, at most 2 of 40 answers named the
    gold passage's id; an example id in the instruction was copied instead), and in that probe the request cost
    accuracy (the notebook tests that, paired, on its own questions): a negative result worth showing, not a feature
    to rely on."""
    check_str(question, "question", non_empty=True)
    if isinstance(passages, str) or not isinstance(passages, Sequence) or not passages:
        raise TypeError("passages must be a non-empty sequence of (passage_id, text) pairs")
    for passage in passages:
        if not (isinstance(passage, tuple) and len(passage) == 2):
            raise TypeError(f"each passage must be a (passage_id, text) tuple, got {passage!r}")
        check_str(passage[0], "a passage id", non_empty=True)
        check_str(passage[1], "a passage text", non_empty=True)
    if not isinstance(cite, bool):
        raise TypeError(f"cite must be True or False, got {cite!r}")
    lines = [f"Passage [{pid}]: {' '.join(text.split())}" for pid, text in passages]
    instruction = f"{RAG_INSTRUCTION} {CITE_INSTRUCTION}" if cite else RAG_INSTRUCTION
    return "\n".join(lines) + f"\n\n{question} {instruction}"


@dataclass(frozen=True)
class Answer:
    """A greedy answer and the log-probability of each of its tokens under the model's own distribution.

    ``exp(seq_logprob)`` is the probability that the model writes THIS exact token sequence, not the probability that
    the answer is true: paraphrases ("Paris", "The capital is Paris.", "paris") split the probability mass of the
    same fact, so a correct answer can have a low sequence probability. The end-of-turn token is not counted.
    An empty answer (the model closed its turn at once) has no tokens: its scores are nan.

    ``hit_token_limit`` is True when generation stopped at ``max_new_tokens`` before the end-of-turn token: the text
    may end mid-word. ``text`` stays the model's words alone (answer matching reads it); :attr:`shown_text` adds a
    note of the cut for a reader. ``continued`` is True when the answer was asked for as one sentence and the reply
    went on after it (a space or line break and more; generation stopped there): the answer keeps that sentence."""

    text: str
    token_ids: tuple[int, ...]
    token_logprobs: tuple[float, ...]
    hit_token_limit: bool = False
    continued: bool = False

    @property
    def shown_text(self) -> str:
        """The text for display: with ``" [cut at N tokens]"`` after it when generation hit the token limit."""
        return f"{self.text} [cut at {self.n_tokens} tokens]" if self.hit_token_limit else self.text

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def seq_logprob(self) -> float:
        return math.fsum(self.token_logprobs) if self.token_logprobs else math.nan

    @property
    def mean_logprob(self) -> float:
        return self.seq_logprob / self.n_tokens if self.token_logprobs else math.nan

    @property
    def min_token_prob(self) -> float:
        return math.exp(min(self.token_logprobs)) if self.token_logprobs else math.nan

    @property
    def first_token_prob(self) -> float:
        return math.exp(self.token_logprobs[0]) if self.token_logprobs else math.nan


def _check_model(model: object) -> torch.device:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module (a transformers causal LM), got {type(model).__name__}")
    return next(model.parameters()).device


def _check_messages(messages: object, system: object) -> None:
    if isinstance(messages, str) or not isinstance(messages, Sequence) or not messages:
        raise TypeError("messages must be a non-empty sequence of strings (wrap a single message in a list)")
    for message in messages:
        check_str(message, "every message", non_empty=True)
    check_str(system, "system")


def _cut(ids: list[int], stop_id: int) -> list[int]:
    return ids[:ids.index(stop_id)] if stop_id in ids else ids


@torch.no_grad()
def answer_with_probs(model: nn.Module, tokenizer, messages: Sequence[str], max_new_tokens: int = 24,
                      batch_size: int = 16, system: str = "", progress: bool = False,
                      one_sentence: bool = False) -> list[Answer]:
    """The greedy answer to each user message (in the tokenizer's chat template, with ``system`` as the system
    message: "" by default, which saves SmolLM2's 16-token default one) with its token log-probabilities.

    ``batch_size`` prompts at a time, left-padded, through ``model.generate(do_sample=False, output_logits=True)``
    with a fresh generation config (no checkpoint defaults apply); ``output_logits`` are the raw logits, so the
    log-probabilities are the model's own. Answers stop at ``<|im_end|>`` or after ``max_new_tokens`` tokens (then
    their ``hit_token_limit`` is True). With ``one_sentence`` an answer is its first sentence
    (:mod:`course_utils.rag.first_sentence`): generation of a row stops one token after the sentence's end, the
    answer keeps the sentence's tokens only, and ``hit_token_limit`` means no sentence ended within the limit."""
    from transformers import GenerationConfig, StoppingCriteriaList

    device = _check_model(model)
    _check_messages(messages, system)
    max_new_tokens = check_int(max_new_tokens, "max_new_tokens", minimum=1, allowed="a positive int")
    batch_size = check_int(batch_size, "batch_size", minimum=1, allowed="a positive int")
    if not isinstance(one_sentence, bool):
        raise TypeError(f"one_sentence must be True or False, got {one_sentence!r}")
    stop_id = end_of_turn_id(tokenizer)
    pad_id = pad_token_id(tokenizer)
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad_id,
                              eos_token_id=stop_id, output_logits=True, return_dict_in_generate=True)
    prompts = [chat_example(tokenizer, m, system=system).prompt_ids for m in messages]
    was_training = model.training
    model.eval()
    answers = []
    try:
        for start in tqdm(range(0, len(prompts), batch_size), desc="answers", disable=not progress, leave=False):
            input_ids, attention_mask = left_pad(prompts[start:start + batch_size], pad_id, device)  # (B, T)
            stops = StoppingCriteriaList([sentence_stop(tokenizer, input_ids.shape[1])] if one_sentence else [])
            out = model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config,
                                 stopping_criteria=stops)
            new = out.sequences[:, input_ids.shape[1]:]  # (B, N)
            logits = torch.stack(out.logits, dim=1).float()  # (B, N, V) raw, one step per new token
            logprobs = F.log_softmax(logits, dim=-1).gather(2, new[..., None])[..., 0].cpu()  # (B, N)
            for row, ids in enumerate(new.tolist()):
                hit_limit = stop_id not in ids  # no end of turn: the row ran all max_new_tokens steps
                ids = _cut(ids, stop_id)
                n_sentence = first_sentence_tokens(tokenizer, ids) if one_sentence else None
                continued = n_sentence is not None  # the first sentence ended and the reply went on
                if continued:  # the answer is that sentence
                    ids, hit_limit = ids[:n_sentence], False
                text = tokenizer.decode(ids, skip_special_tokens=True).strip()
                answers.append(Answer(text, tuple(ids), tuple(logprobs[row, :len(ids)].tolist()), hit_limit,
                                      continued))
    finally:
        model.train(was_training)
    return answers


@torch.no_grad()
def sample_padded(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, config: SamplingConfig,
                  generator: torch.Generator | None, max_new_tokens: int, stop_id: int,
                  row_done: Callable | None = None) -> torch.Tensor:
    """Decode a LEFT-padded batch (B, T) with our processors (:func:`choose_next`) and the model's KV cache: (B, N).

    What :func:`course_utils.generate.loop.generate` does, for prompts of different lengths: the attention mask hides
    the padding and grows by one column per step, and each row's position ids count from its first real token (so a
    padded row computes what the prompt alone would). A finished row (it produced ``stop_id``) keeps receiving
    ``stop_id``; so does a row for which ``row_done(new_ids (B, n), None)`` (a stopping criterion such as
    :func:`~course_utils.rag.first_sentence.sentence_stop` with ``prompt_length=0``) returns True. Decoding one token
    reads every weight once whatever the batch size, so on a CPU or a GPU alike many rows per step cost little more
    than one: that is why answers are sampled many questions at a time."""
    from transformers import DynamicCache

    cache = {cache_keyword(model): DynamicCache(config=model.config)}  # the model's name for it: see logits_fns
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)  # (B, T)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, **cache,
                use_cache=True, logits_to_keep=1)  # prefill
    next_position = position_ids[:, -1:] + 1  # (B, 1)
    finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)  # (B,)
    new = []
    for step in range(max_new_tokens):
        token = choose_next(out.logits[:, -1, :].float(), None, config, generator)  # (B,)
        token = torch.where(finished, torch.full_like(token, stop_id), token)
        new.append(token)
        finished = finished | (token == stop_id)
        if row_done is not None:
            finished = finished | row_done(torch.stack(new, dim=1), None)
        if bool(finished.all()) or step == max_new_tokens - 1:
            break
        attention_mask = torch.cat([attention_mask, torch.ones_like(attention_mask[:, :1])], dim=1)  # (B, T + 1)
        out = model(input_ids=token[:, None], attention_mask=attention_mask, position_ids=next_position, **cache,
                    use_cache=True)
        next_position = next_position + 1
    return torch.stack(new, dim=1)  # (B, N)


@torch.no_grad()
def sample_answers_many(model: nn.Module, tokenizer, messages: Sequence[str], n: int, temperature: float = 1.0, *,
                        generator: torch.Generator, top_p: float | None = None, max_new_tokens: int = 24,
                        system: str = "", batch_size: int = 32, one_sentence: bool = False,
                        progress: bool = False) -> list[list[str]]:
    """``n`` sampled answers to each user message: one list of ``n`` strings per message, each answer cut at
    ``<|im_end|>``, decoded and stripped.

    Every prompt is repeated ``n`` times and ``batch_size`` rows at a time are decoded by :func:`sample_padded` at
    ``temperature`` (and nucleus ``top_p`` if given) with ``generator``, which must live on the model's device.
    The same seed and batch size give the same answers. With ``one_sentence`` each answer is its first sentence and
    a row stops being decoded one token after that sentence's end, as in :func:`answer_with_probs`. ``progress``
    shows a tqdm bar over the batches."""
    device = _check_model(model)
    _check_messages(messages, system)
    n, max_new_tokens, batch_size = (check_int(value, name, minimum=1, allowed="a positive int") for name, value in (
        ("n", n), ("max_new_tokens", max_new_tokens), ("batch_size", batch_size)))
    check_real(temperature, "temperature", minimum=0, low_open=True,
               allowed="a finite number > 0 (use answer_with_probs for greedy answers)")
    if top_p is not None:
        check_real(top_p, "top_p", minimum=0, maximum=1, low_open=True, allowed="in (0, 1] or None")
    if not isinstance(one_sentence, bool):
        raise TypeError(f"one_sentence must be True or False, got {one_sentence!r}")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator on the model's device, got {type(generator).__name__}")
    check_generator(generator, torch.empty(0, device=device), "the model's parameters")
    stop_id = end_of_turn_id(tokenizer)
    pad_id = pad_token_id(tokenizer)
    rows = [chat_example(tokenizer, m, system=system).prompt_ids for m in messages for _ in range(n)]
    config = SamplingConfig(temperature=float(temperature), top_p=None if top_p is None else float(top_p))
    was_training = model.training
    model.eval()
    texts = []
    try:
        for start in tqdm(range(0, len(rows), batch_size), desc="samples", disable=not progress, leave=False):
            input_ids, attention_mask = left_pad(rows[start:start + batch_size], pad_id, device)  # (B, T)
            new = sample_padded(model, input_ids, attention_mask, config, generator, max_new_tokens, stop_id,
                                row_done=sentence_stop(tokenizer, 0) if one_sentence else None)
            texts += [tokenizer.decode(_cut(row, stop_id), skip_special_tokens=True).strip() for row in new.tolist()]
    finally:
        model.train(was_training)
    if one_sentence:
        texts = [first_sentence(t) for t in texts]
    return [texts[i * n:(i + 1) * n] for i in range(len(messages))]


def sample_answers(model: nn.Module, tokenizer, message: str, n: int, temperature: float = 1.0, *,
                   generator: torch.Generator, top_p: float | None = None, max_new_tokens: int = 24,
                   system: str = "") -> list[str]:
    """``n`` sampled answers to one user message (:func:`sample_answers_many` for a single message)."""
    check_str(message, "message", non_empty=True)
    return sample_answers_many(model, tokenizer, [message], n, temperature, generator=generator, top_p=top_p,
                               max_new_tokens=max_new_tokens, system=system, batch_size=n)[0]
