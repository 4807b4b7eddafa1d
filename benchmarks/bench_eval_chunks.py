"""One evaluation batch of every window, or the same windows in equal chunks: which is faster on this machine?

Chapter 06, section 8, scores each arm on fixed windows (the whole Sonnets validation split and as many characters of
the held-out plays) at every evaluation: 17 arms x 7 points x 2 texts. This script times ``estimate_loss`` over those
windows at chapter 06's cpu-profile shape (a 4-layer, 128-wide character GPT, block 64, 299 windows), as one batch
and in equal chunks, for the model alone (full fine-tuning) and with LoRA r = 4 on every linear layer (eval mode).
Equal chunks average to the same mean loss (checked to 1e-5). The weights are random: the time does not depend on
them. Arms are interleaved and repeated; printed: the median seconds per evaluation and each chunking's ratio to
one batch, within this run.

    .venv/bin/python benchmarks/bench_eval_chunks.py               # about a minute on 2 cores
    .venv/bin/python benchmarks/bench_eval_chunks.py --repeats 1   # quick look, not a result
"""

from __future__ import annotations

import argparse
import copy
import itertools
import statistics

import torch

from course_utils.device import describe_runtime, make_generator, timed
from course_utils.lora.wrap import apply_lora
from course_utils.model.gpt import GPT, GPTConfig
from course_utils.train.loop import estimate_loss


def chunk_sizes(n: int) -> list[int]:
    """One batch of all ``n`` windows, then every divisor of ``n`` from 8 to 64 (equal chunks only)."""
    return [n] + sorted((d for d in range(8, 65) if n % d == 0), reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=299, help="windows evaluated (chapter 06's cpu profile: 299)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=80, block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0)
    full = GPT(config).eval()
    lora = copy.deepcopy(full)
    apply_lora(lora, "all-linear", r=4, alpha=8.0, generator=make_generator(0, "cpu"))
    lora.eval()
    draw = torch.Generator("cpu").manual_seed(1)
    idx = torch.randint(0, config.vocab_size, (args.windows, config.block_size), generator=draw)  # (N, T)
    targets = torch.randint(0, config.vocab_size, (args.windows, config.block_size), generator=draw)  # (N, T)
    sizes = chunk_sizes(args.windows)
    print(f"{describe_runtime(torch.device('cpu'))}; {args.windows} windows of {config.block_size} characters, "
          f"chunk sizes {sizes}, {args.repeats} repeats, arms interleaved")

    def evaluate(model: GPT, size: int) -> float:
        chunks = list(zip(idx.split(size), targets.split(size)))
        turn = itertools.cycle(chunks)
        return estimate_loss(model, lambda split, generator: next(turn), len(chunks), draw)

    arms = list(itertools.product((("full fine-tuning", full), ("LoRA r=4, all-linear", lora)), sizes))
    for (_, model), size in arms:  # warm-up, and every chunking gives the same mean
        assert abs(evaluate(model, size) - evaluate(model, args.windows)) < 1e-5
    seconds = {(name, size): [] for (name, _), size in arms}
    for _ in range(args.repeats):  # estimate_loss runs without gradients
        for (name, model), size in arms:
            seconds[(name, size)].append(timed(lambda: evaluate(model, size))[1])
    for (name, _), size in arms:
        median = statistics.median(seconds[(name, size)])
        one_batch = statistics.median(seconds[(name, args.windows)])
        label = "one batch" if size == args.windows else f"{args.windows // size} chunks of {size}"
        print(f"{name:<22} {label:<17} {median:7.3f} s per evaluation  ({median / one_batch:.2f}x one batch's time)")


if __name__ == "__main__":
    main()
