"""Char-level GPT training on Shakespeare: the nanoGPT small CPU recipe versus the course's recipe, back to back.

Both arms train the same model (4 layers, 4 heads, 128 dims, context 64) on the same train/validation split (by
whole plays) and are evaluated on the same fixed validation batches. The baseline runs its full 2000 steps; the
course arm stops as soon as its validation loss is at or below the baseline's final validation loss. Printed: wall
times, tokens/s, peak memory (RSS) and the ratio of times.

    .venv/bin/python benchmarks/bench_char_training.py            # full benchmark (several minutes on 2 cores)
    .venv/bin/python benchmarks/bench_char_training.py --steps-scale 0.1   # quick look, not a result
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import time

import torch

from course_utils.train.batches import make_batch_fn
from course_utils.text.codecs import CharCodec
from course_utils.text.corpus import load_shakespeare
from course_utils.model.gpt import GPT
from course_utils.train.recipes import baseline_char_recipe, course_char_recipe
from course_utils.train.loop import train

EVAL_BATCH, EVAL_BATCHES = 64, 16  # fixed evaluation set: 1024 windows of 64 characters per split


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_arm(recipe, train_ids, val_ids, seed, target=None):
    torch.manual_seed(seed)
    model = GPT(recipe.model)
    get_batch = make_batch_fn(train_ids, val_ids, recipe.batch_size, recipe.model.block_size)
    eval_batch = make_batch_fn(train_ids, val_ids, EVAL_BATCH, recipe.model.block_size)
    config = dataclasses.replace(recipe.train, eval_batches=EVAL_BATCHES, progress=False)
    stop = None if target is None else (lambda step, h: h.eval_val_loss[-1] <= target)
    history = train(model, get_batch, config, torch.Generator().manual_seed(seed), callback=stop,
                    eval_get_batch=eval_batch)
    return history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--steps-scale", type=float, default=1.0, help="scale both arms' steps (quick checks)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    split = load_shakespeare()
    codec = CharCodec.from_texts([split.train_text, split.val_text])
    train_ids = torch.tensor(codec.encode(split.train_text), dtype=torch.uint8)
    val_ids = torch.tensor(codec.encode(split.val_text), dtype=torch.uint8)
    print(split.describe())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    arms = [baseline_char_recipe(codec.vocab_size), course_char_recipe(codec.vocab_size)]
    for recipe in arms:
        steps = max(1, int(recipe.train.max_steps * args.steps_scale))
        object.__setattr__(recipe, "train", dataclasses.replace(
            recipe.train, max_steps=steps, warmup_steps=min(recipe.train.warmup_steps, steps)))

    base = run_arm(arms[0], train_ids, val_ids, args.seed)
    target = base.final_val_loss
    ours = run_arm(arms[1], train_ids, val_ids, args.seed, target=target)
    reached = ours.final_val_loss <= target
    for recipe, h in zip(arms, (base, ours)):
        print(f"{recipe.name:38s} batch {recipe.batch_size:3d} lr {recipe.train.lr:.0e} | steps {h.steps[-1] + 1:5d} "
              f"| final val {h.final_val_loss:.4f} nats/char | {h.seconds:7.1f} s | "
              f"{h.tokens_seen / h.seconds:8.0f} train tokens/s")
    print(f"val-loss curve baseline: {[round(v, 3) for v in base.eval_val_loss]}")
    print(f"val-loss curve course:   {[round(v, 3) for v in ours.eval_val_loss]}")
    print(f"peak RSS of the process: {peak_rss_mb():.0f} MB")
    if reached:
        print(f"course recipe reached the baseline's final val loss {target:.4f} in {ours.seconds:.1f} s vs "
              f"{base.seconds:.1f} s: time ratio {ours.seconds / base.seconds:.2f} (goal <= 0.50), "
              f"speed-up {base.seconds / ours.seconds:.2f}x")
    else:
        print(f"course recipe did NOT reach {target:.4f} (best {min(ours.eval_val_loss):.4f}) within "
              f"{ours.seconds:.1f} s (baseline {base.seconds:.1f} s)")


if __name__ == "__main__":
    main()
