"""Training recipes for the character-level GPT: a well-known small CPU baseline and the course's recommendations.

The baseline is the small CPU configuration popularised by nanoGPT's Shakespeare-character example (Karpathy,
2022): 4 layers, 4 heads, 128 dimensions, context 64, batch 12, 2000 steps of AdamW at 1e-3 (betas 0.9/0.99,
weight decay 0.1), 100 warm-up steps then cosine to 1e-4, gradient clipping at 1.0, no dropout.

The course's recipes keep the model identical and change only how it is optimised.
:func:`adamw_char_recipe` (the course recipe until 2026-11-30; chapter 06 trains with it and chapter 01 compares
its own AdamW run with it): a six times larger peak learning rate with half the warm-up (a 0.8M-parameter model
tolerates far more than 1e-3), twice the batch (more characters per second on a CPU, and a less noisy gradient at
that learning rate), a 700-step cosine, a fused AdamW kernel, and a validation-only evaluation every 100 steps.
:func:`course_char_recipe` adds Muon (Jordan et al., 2024; :mod:`course_utils.train.muon`) for the 16 hidden
weight matrices at a peak learning rate of 0.05 with momentum 0.85 (0.95, the usual default, was slower here), keeps
AdamW at 6e-3 for the embeddings, biases and gains, doubles the batch again (48: Muon's orthogonalisation costs the
same per step whatever the batch, so a larger batch amortises it; 64 needed more tokens), and shortens the schedule
to 25 warm-up steps and a 200-step cosine, evaluated every 40 steps (five evaluations in a run). The settings were
chosen by a search on this course's 2-core CPU with one seed and the benchmark's own validation windows (recorded in
``benchmarks/RESULTS.md``, with an AdamW arm given the same batch and schedule, and a second seed).
``benchmarks/bench_char_training.py`` measures how much sooner each reaches the baseline's final validation loss,
one change at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from course_utils.model.gpt import GPTConfig
from course_utils.train.loop import TrainConfig


@dataclass(frozen=True)
class CharRecipe:
    name: str
    model: GPTConfig
    train: TrainConfig
    batch_size: int


def baseline_char_recipe(vocab_size: int) -> CharRecipe:
    model = GPTConfig(vocab_size=vocab_size, block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0)
    train = TrainConfig(max_steps=2000, lr=1e-3, min_lr=1e-4, warmup_steps=100, weight_decay=0.1, beta1=0.9,
                        beta2=0.99, grad_clip=1.0, eval_interval=250)
    return CharRecipe("baseline (nanoGPT small CPU recipe)", model, train, batch_size=12)


def adamw_char_recipe(vocab_size: int) -> CharRecipe:
    base = baseline_char_recipe(vocab_size)
    train = replace(base.train, max_steps=700, lr=6e-3, min_lr=6e-4, warmup_steps=50, eval_interval=100,
                    eval_train_split=False, fused_optimizer=True)
    return CharRecipe("AdamW course recipe", base.model, train, batch_size=24)


def course_char_recipe(vocab_size: int) -> CharRecipe:
    adamw = adamw_char_recipe(vocab_size)
    train = replace(adamw.train, optimizer="muon", muon_lr=0.05, muon_momentum=0.85, max_steps=200, warmup_steps=25,
                    eval_interval=40)
    return CharRecipe("course recipe", adamw.model, train, batch_size=48)
