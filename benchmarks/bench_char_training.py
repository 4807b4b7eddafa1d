"""Char-level GPT training on Shakespeare: the nanoGPT small CPU recipe versus the course's recipe and variants of it.

All arms train the same model shape (4 layers, 4 heads, 128 dims, context 64) on the same train/validation split
(by whole plays) and are evaluated, in float32, on the same fixed validation batches. The baseline runs its full
2000 steps; every other arm stops as soon as its validation loss is at or below the baseline's final validation
loss, or gives up once it has used ``--cap`` times the baseline's time. Printed per arm: steps, final validation
loss, wall time, training tokens/s and the ratio of its time to the baseline's (the issue's goal: <= 0.35).

An arm is a recipe with ``+``-joined changes, so each change is measured on its own in one run. It starts from
``course`` (``course_char_recipe``, the default) or ``adamw`` (``adamw_char_recipe``, the AdamW-only recipe) when
its first word is one of those; the changes: ``fp32``/``bf16`` (precision), ``sdpa``/``manual`` (attention),
``compile`` (torch.compile), ``muon``/``adamwopt`` (optimiser: Muon for the hidden matrices, or AdamW for all),
``muonlr<X>`` (Muon's peak lr), ``muonmom<X>`` (Muon's momentum), ``b<N>`` (batch size), ``lr<X>`` (AdamW's peak
lr, min lr = lr/10), ``steps<N>`` (cosine length), ``warm<N>`` (warm-up steps), ``eval<N>`` (evaluation interval).

``--muon-step`` also times one optimiser step on the model's 16 hidden matrices: this course's float32 Muon against
``torch.optim.Muon`` (which orthogonalises in bfloat16) and fused AdamW.

    .venv/bin/python benchmarks/bench_char_training.py --threads 2                       # baseline vs course recipe
    .venv/bin/python benchmarks/bench_char_training.py --threads 2 \
        --arms adamw,adamw+muon,adamw+muon+b48,adamw+muon+b48+steps200+warm25,\
adamw+muon+b48+steps200+warm25+muonmom0.85+muonlr0.05,course          # one change at a time
    .venv/bin/python benchmarks/bench_char_training.py --steps-scale 0.1                 # quick look, not a result
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import statistics
import warnings

import torch

from course_utils.device import cpu_description, timed
from course_utils.train.batches import make_batch_fn
from course_utils.text.codecs import CharCodec
from course_utils.text.corpus import load_shakespeare
from course_utils.model.gpt import GPT
from course_utils.train.recipes import CharRecipe, adamw_char_recipe, baseline_char_recipe, course_char_recipe
from course_utils.train.muon import Muon, hidden_matrices
from course_utils.train.loop import train

EVAL_BATCH, EVAL_BATCHES = 64, 16  # fixed evaluation set: 1024 windows of 64 characters per split


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def apply_change(recipe: CharRecipe, change: str) -> tuple[CharRecipe, bool]:
    """One ``+``-separated change of an arm name applied to ``recipe``; returns (recipe, compile?)."""
    model, cfg, batch = recipe.model, recipe.train, recipe.batch_size
    if change in ("fp32", "bf16"):
        cfg = dataclasses.replace(cfg, precision=change)
    elif change in ("sdpa", "manual"):
        model = dataclasses.replace(model, attention=change)
    elif change == "compile":
        return recipe, True
    elif change in ("muon", "adamwopt"):
        cfg = dataclasses.replace(cfg, optimizer="muon" if change == "muon" else "adamw")
    elif change.startswith("muonlr"):
        cfg = dataclasses.replace(cfg, muon_lr=float(change[6:]))
    elif change.startswith("muonmom"):
        cfg = dataclasses.replace(cfg, muon_momentum=float(change[7:]))
    elif change.startswith("b") and change[1:].isdigit():
        batch = int(change[1:])
    elif change.startswith("lr"):
        lr = float(change[2:])
        cfg = dataclasses.replace(cfg, lr=lr, min_lr=lr / 10)
    elif change.startswith("steps"):
        cfg = dataclasses.replace(cfg, max_steps=int(change[5:]))
    elif change.startswith("warm"):
        cfg = dataclasses.replace(cfg, warmup_steps=int(change[4:]))
    elif change.startswith("eval"):
        cfg = dataclasses.replace(cfg, eval_interval=int(change[4:]))
    else:
        raise SystemExit(f"unknown change {change!r} in --arms; see the module docstring for the allowed ones")
    return CharRecipe(recipe.name, model, cfg, batch), False


BASES = {"baseline": baseline_char_recipe, "course": course_char_recipe, "adamw": adamw_char_recipe}


def make_arm(name: str, vocab_size: int, steps_scale: float) -> tuple[CharRecipe, bool]:
    words = name.split("+")
    if words[0] in BASES:
        recipe, changes = BASES[words[0]](vocab_size), words[1:]
    else:
        recipe, changes = course_char_recipe(vocab_size), words
    if words[0] == "baseline" and changes:
        raise SystemExit("the baseline takes no changes; start an arm from 'course' or 'adamw'")
    compile_model = False
    for change in changes:
        recipe, compiled = apply_change(recipe, change)
        compile_model |= compiled
    steps = max(1, int(recipe.train.max_steps * steps_scale))
    cfg = dataclasses.replace(recipe.train, max_steps=steps, warmup_steps=min(recipe.train.warmup_steps, steps),
                              eval_batches=EVAL_BATCHES, progress=False)
    return CharRecipe(name, recipe.model, cfg, recipe.batch_size), compile_model


def run_arm(recipe, compile_model, train_ids, val_ids, seed, target=None, time_cap=None):
    torch.manual_seed(seed)
    model = GPT(recipe.model)
    trained = torch.compile(model) if compile_model else model
    get_batch = make_batch_fn(train_ids, val_ids, recipe.batch_size, recipe.model.block_size)
    eval_batch = make_batch_fn(train_ids, val_ids, EVAL_BATCH, recipe.model.block_size)

    def stop(step, h):
        return (target is not None and h.eval_val_loss[-1] <= target) or (
            time_cap is not None and h.eval_seconds[-1] > time_cap)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the loop's "no native bf16" warning: the tokens/s column shows it
        return train(trained, get_batch, recipe.train, torch.Generator().manual_seed(seed), callback=stop,
                     eval_get_batch=eval_batch)


def time_optimizer_steps(model_config, repeats: int = 20) -> dict[str, float]:
    """Median milliseconds of one step over the model's hidden matrices (random gradients) per optimiser."""
    torch.manual_seed(0)
    hidden, _ = hidden_matrices(GPT(model_config))
    for p in hidden:
        p.grad = torch.randn_like(p)
    makers = {"course Muon (float32, batched by shape)": lambda: Muon(hidden, lr=0.02),
              "torch.optim.Muon (bfloat16 iteration)": lambda: torch.optim.Muon(hidden, lr=0.02, weight_decay=0.0,
                                                                               adjust_lr_fn="original"),
              "fused AdamW (for scale)": lambda: torch.optim.AdamW(hidden, lr=1e-3, fused=True)}
    result = {}
    for name, make in makers.items():
        optimizer = make()
        optimizer.step()  # warm-up: allocates the states
        result[name] = 1e3 * statistics.median(timed(optimizer.step)[1] for _ in range(repeats))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--steps-scale", type=float, default=1.0, help="scale every arm's steps (quick checks)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads, pinned (default: cores)")
    parser.add_argument("--arms", default="course", help="comma-separated arms after the baseline (see above)")
    parser.add_argument("--cap", type=float, default=1.0, help="give an arm up after this many baseline times")
    parser.add_argument("--muon-step", action="store_true", help="also time one Muon step: ours vs torch.optim.Muon")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    split = load_shakespeare()
    codec = CharCodec.from_texts([split.train_text, split.val_text])
    train_ids = torch.tensor(codec.encode(split.train_text), dtype=torch.uint8)
    val_ids = torch.tensor(codec.encode(split.val_text), dtype=torch.uint8)
    print(split.describe())
    print(f"CPU: {cpu_description()}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads (pinned), "
          f"load average before: {os.getloadavg()[0]:.2f}")

    arms = {name: make_arm(name, codec.vocab_size, args.steps_scale) for name in args.arms.split(",")}  # fail early
    base_recipe, _ = make_arm("baseline", codec.vocab_size, args.steps_scale)
    base = run_arm(base_recipe, False, train_ids, val_ids, args.seed)
    target = base.final_val_loss
    print(f"baseline: batch {base_recipe.batch_size}, {base.steps[-1] + 1} steps, final val {target:.4f} nats/char, "
          f"{base.seconds:.1f} s, {base.tokens_seen / base.seconds:.0f} train tokens/s")
    print(f"{'arm':28s} {'opt':>5s} {'batch':>5s} {'lr':>7s} {'prec':>4s} {'attn':>6s} | {'steps':>5s} {'val':>7s} "
          f"{'seconds':>8s} {'tok/s':>7s} | ratio")
    for name, (recipe, compiled) in arms.items():
        h = run_arm(recipe, compiled, train_ids, val_ids, args.seed, target=target, time_cap=args.cap * base.seconds)
        reached = h.final_val_loss <= target
        ratio = f"{h.seconds / base.seconds:.3f}" if reached else f"not reached (> {h.seconds / base.seconds:.2f})"
        muon = (f" | muon lr {recipe.train.muon_lr:g}, momentum {recipe.train.muon_momentum:g}"
                if recipe.train.optimizer == "muon" else "")
        print(f"{name:28s} {recipe.train.optimizer:>5s} {recipe.batch_size:5d} {recipe.train.lr:7.1e} "
              f"{recipe.train.precision:>4s} "
              f"{recipe.model.attention:>6s} | {h.steps[-1] + 1:5d} {h.final_val_loss:7.4f} {h.seconds:8.1f} "
              f"{h.tokens_seen / h.seconds:7.0f} | {ratio}{muon}", flush=True)
    if args.muon_step:
        steps = time_optimizer_steps(base_recipe.model)
        ours = steps["course Muon (float32, batched by shape)"]
        for name, ms in steps.items():
            print(f"optimiser step on the 16 hidden matrices, {name}: {ms:.1f} ms ({ms / ours:.2f}x ours)")
    print(f"peak RSS of the process: {peak_rss_mb():.0f} MB, load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
