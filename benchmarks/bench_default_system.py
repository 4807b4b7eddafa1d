"""The untuned SmolLM2 on chapter 06's held-out sentences: an empty system message against the template's default one.

Chapter 06 fine-tunes SmolLM2-135M-Instruct with an empty system message (16 tokens shorter per example than the chat
template's default one, "You are a helpful AI assistant named SmolLM, trained by Hugging Face") and evaluates the base
model with the same prompt. Section 3 says what the other choice would change for the base model; this script
measures it. Both arms use the notebook's own pieces: the cpu profile's test sentences (``emotion_dataset(480, 64,
seed=0)``), its prompt (``instruction``), greedy answers of 4 new tokens (``generate_answers``), the strict and
lenient matches, and the constrained choice among the four labels (``label_logprobs``). No adapter is attached (the
notebook's base model has one with B = 0, whose logits it asserts equal the pretrained model's). Printed per arm:
strict and lenient accuracy, how many answers begin with a label and which labels, the constrained choice's accuracy
and picks, and how many answers begin by repeating the sentence (its first 12 characters exactly, or its first 10
letters and digits).

    .venv/bin/python benchmarks/bench_default_system.py        # about a minute on 2 cores, SmolLM2 converted
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import torch

from course_utils.device import cpu_description, describe_runtime
from course_utils.lora.answers import generate_answers, label_logprobs
from course_utils.lora.emotions import EMOTIONS, contains_label, emotion_dataset, instruction, match_label
from course_utils.lora.sft import chat_example
from course_utils.model.pretrained import load_smollm2

def letters(text: str) -> str:
    """The letters and digits of ``text``, lowercased: answers that repeat the sentence but for a comma still match."""
    return "".join(c for c in text.lower() if c.isalnum())


ARMS = (("empty system message (the notebook's)", ""), ("the template's default system message", None))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-train", type=int, default=480, help="the cpu profile's n_train (it fixes the draw)")
    parser.add_argument("--n-test", type=int, default=64, help="the cpu profile's n_test")
    parser.add_argument("--answer-tokens", type=int, default=4, help="the notebook's ANSWER_TOKENS")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    loaded = load_smollm2(device)
    model, tokenizer = loaded.model.eval(), loaded.tokenizer
    _, test_set = emotion_dataset(args.n_train, args.n_test, seed=0)
    n_events = len({e.event for e in test_set})
    print(f"{describe_runtime(device)}; {cpu_description()}")
    print(f"SmolLM2-135M-Instruct (de-quantised from the GGUF file) loaded from the {loaded.source}; {len(test_set)} "
          f"held-out sentences from {n_events} events (emotion_dataset({args.n_train}, {args.n_test}, seed=0)), "
          f"greedy answers of {args.answer_tokens} tokens, no adapter\n")
    for name, system in ARMS:
        start = time.perf_counter()
        prompts = [chat_example(tokenizer, instruction(e.text), system=system) for e in test_set]
        answers = generate_answers(model, tokenizer, prompts, max_new_tokens=args.answer_tokens)
        picked = [EMOTIONS[i] for i in label_logprobs(model, tokenizer, prompts, EMOTIONS).argmax(dim=1).tolist()]
        seconds = time.perf_counter() - start
        gold = [e.label for e in test_set]
        first = [match_label(a) for a in answers]
        n = len(test_set)
        strict = sum(f == g for f, g in zip(first, gold))
        lenient = sum(contains_label(a) == g for a, g in zip(answers, gold))
        choice = sum(p == g for p, g in zip(picked, gold))
        repeats = sum(a.lstrip().startswith(e.text[:12]) for a, e in zip(answers, test_set))
        loosely = sum(letters(a)[:10] == letters(e.text)[:10] for a, e in zip(answers, test_set))
        print(f"{name} (prompt {len(prompts[0].prompt_ids)} tokens for the first sentence; {seconds:.0f} s):")
        print(f"  strict {strict}/{n} ({100 * strict / n:.1f}%), lenient {lenient}/{n} ({100 * lenient / n:.1f}%)")
        print(f"  answers that begin with a label: {sum(f is not None for f in first)}/{n}, labels "
              f"{dict(Counter(f for f in first if f is not None))}")
        print(f"  answers that begin with the sentence's first 12 characters: {repeats}/{n}; with its first 10 letters "
              f"and digits (case, spaces and punctuation ignored): {loosely}/{n}")
        print(f"  constrained choice {choice}/{n} ({100 * choice / n:.1f}%), picks {dict(Counter(picked))}")
        print(f"  first answers: {answers[:4]}\n")


if __name__ == "__main__":
    main()
