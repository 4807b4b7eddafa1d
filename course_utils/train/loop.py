"""Training loop for language models: AdamW, linear warm-up then cosine decay, gradient clipping, periodic
evaluation, a tqdm progress bar, and a returned :class:`History` that :func:`course_utils.plotting.plot_history`
draws.

References: Loshchilov & Hutter, 2019, "Decoupled Weight Decay Regularization" (AdamW); Loshchilov & Hutter, 2017,
"SGDR" (cosine schedule); the warm-up/cosine recipe used by GPT-2/3 and nanoGPT.

The loop is generic: ``get_batch(split, generator)`` returns ``(idx, targets)`` so the same trainer serves
next-token, masked-LM and SFT objectives. Left out: gradient accumulation, mixed precision, distributed training.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn
from tqdm.auto import tqdm

BatchFn = Callable[[str, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class TrainConfig:
    max_steps: int = 2000
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0
    eval_interval: int = 250
    eval_batches: int = 20
    eval_train_split: bool = True  # also evaluate on training batches (for the train/val gap); val is always done
    fused_optimizer: bool = False  # one fused AdamW kernel for all parameters instead of a loop of small ops
    progress: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.max_steps, int) or self.max_steps < 1:
            raise ValueError(f"max_steps must be a positive int, got {self.max_steps!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"min_lr must be in [0, lr={self.lr}], got {self.min_lr}")
        if not 0 <= self.warmup_steps <= self.max_steps:
            raise ValueError(f"warmup_steps must be in [0, max_steps={self.max_steps}], got {self.warmup_steps}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError(f"betas must be in [0, 1), got ({self.beta1}, {self.beta2})")
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip must be >= 0 (0 disables clipping), got {self.grad_clip}")
        if self.eval_interval < 1 or self.eval_batches < 1:
            raise ValueError(
                f"eval_interval and eval_batches must be >= 1, got {self.eval_interval} and {self.eval_batches}"
            )


@dataclass
class History:
    """What a training run measured. ``train_loss`` is logged every step; evaluations every ``eval_interval``."""

    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    eval_train_loss: list[float] = field(default_factory=list)
    eval_val_loss: list[float] = field(default_factory=list)
    eval_seconds: list[float] = field(default_factory=list)
    seconds: float = 0.0
    tokens_seen: int = 0

    @property
    def final_val_loss(self) -> float:
        if not self.eval_val_loss:
            raise ValueError("this history has no evaluation yet")
        return self.eval_val_loss[-1]


def lr_at(step: int, config: TrainConfig) -> float:
    """Learning rate at ``step`` (0-based): linear warm-up to ``lr`` then cosine decay to ``min_lr``."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    decay_steps = max(1, config.max_steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / decay_steps)
    return config.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (config.lr - config.min_lr)


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on biases, LayerNorm gains or anything 1-D)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2),
                             fused=config.fused_optimizer or None)


@torch.no_grad()
def estimate_loss(model: nn.Module, get_batch: BatchFn, n_batches: int, generator: torch.Generator,
                  split: str = "val") -> float:
    """Mean loss over ``n_batches`` batches of ``split`` drawn with ``generator``, in eval mode."""
    was_training = model.training
    model.eval()
    total = 0.0
    for _ in range(n_batches):
        idx, targets = get_batch(split, generator)
        _, loss = model(idx, targets)
        total += loss.item()
    model.train(was_training)
    return total / n_batches


def train(
    model: nn.Module,
    get_batch: BatchFn,
    config: TrainConfig,
    generator: torch.Generator,
    eval_generator_seed: int = 1234,
    callback: Callable[[int, History], bool] | None = None,
    eval_get_batch: BatchFn | None = None,
) -> History:
    """Train ``model`` for ``config.max_steps`` steps and return its :class:`History`.

    Evaluation batches are drawn from a generator re-seeded with ``eval_generator_seed`` at each evaluation, so
    every evaluation sees the same batches and the curve is not noisy from resampling. ``callback(step, history)``
    runs after each evaluation; returning True stops training early. ``eval_get_batch`` (default ``get_batch``)
    draws the evaluation batches, so runs with different training batch sizes can share one evaluation set.
    """
    eval_get_batch = eval_get_batch or get_batch
    optimizer = make_optimizer(model, config)
    history = History()
    model.train()
    start = time.perf_counter()
    bar = tqdm(range(config.max_steps), desc="training", disable=not config.progress, leave=False)
    for step in bar:
        lr = lr_at(step, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        idx, targets = get_batch("train", generator)
        _, loss = model(idx, targets)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower lr (now {lr:.2e})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        history.steps.append(step)
        history.train_loss.append(loss.item())
        history.lr.append(lr)
        history.tokens_seen += targets.numel()
        last = step == config.max_steps - 1
        if (step + 1) % config.eval_interval == 0 or last:
            # one generator per split, so the validation batches are the same whether or not train is evaluated
            if config.eval_train_split:
                train_gen = torch.Generator().manual_seed(eval_generator_seed)
                history.eval_train_loss.append(
                    estimate_loss(model, eval_get_batch, config.eval_batches, train_gen, "train"))
            val_gen = torch.Generator().manual_seed(eval_generator_seed + 1)
            history.eval_val_loss.append(estimate_loss(model, eval_get_batch, config.eval_batches, val_gen, "val"))
            history.eval_steps.append(step + 1)
            history.eval_seconds.append(time.perf_counter() - start)
            bar.set_postfix(val=f"{history.eval_val_loss[-1]:.3f}")
            if callback is not None and callback(step + 1, history):
                break
    history.seconds = time.perf_counter() - start
    return history
