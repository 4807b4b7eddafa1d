"""Training loop for language models: AdamW (or Muon + AdamW), linear warm-up then cosine decay, gradient clipping,
periodic evaluation, a tqdm progress bar, and a returned :class:`History` that
:func:`course_utils.plotting.plot_history` draws.

References: Loshchilov & Hutter, 2019, "Decoupled Weight Decay Regularization" (AdamW); Loshchilov & Hutter, 2017,
"SGDR" (cosine schedule); the warm-up/cosine recipe of GPT-3 (Brown et al., 2020) and nanoGPT.

The loop is generic: ``get_batch(split, generator)`` returns ``(idx, targets)`` so the same trainer serves
next-token, masked-LM and SFT objectives.

Precision (``TrainConfig.precision``): ``"fp32"`` (default) trains in float32 throughout and is bit-exact with the
loop before this option existed. ``"bf16"`` runs the training forward pass and the loss under
``torch.autocast(device_type=<the parameters' device type>, dtype=torch.bfloat16)`` (Micikevicius et al., 2018,
"Mixed Precision Training", with bfloat16 instead of float16, so no loss scaling is needed): matmul inputs are
rounded to bfloat16 (8-bit mantissa) and accumulate in float32, while the weights, their gradients and the AdamW
states stay float32. Evaluation always runs in float32, so the validation losses of fp32 and bf16 runs are measured
the same way and can be compared directly. bf16 only pays off where the hardware multiplies bf16 natively (recent
GPUs; CPUs with AVX512-BF16 or AMX); elsewhere it is emulated and slower than float32 (a warning says so on CPU).

Left out: gradient accumulation, float16 with loss scaling and distributed training (chapter 11, training at
scale, and :mod:`course_utils.parallel`).
"""

from __future__ import annotations

import math
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from course_utils.arguments import check_int, check_real
from course_utils.device import check_seed, native_bf16
from course_utils.train.muon import Muon, MuonWithAdamW, hidden_matrices

BatchFn = Callable[[str, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


class TrainingDiverged(FloatingPointError):
    """The training loss became inf or NaN. ``step`` is the step whose loss did; ``history`` holds every step and
    evaluation before it, so a caller can report or plot how far the run got (the model's weights are those of the
    last finite step's update, which produced the non-finite loss: do not evaluate them)."""

    def __init__(self, message: str, step: int, history: "History"):
        super().__init__(message)
        self.step = step
        self.history = history
PRECISIONS = ("bf16", "fp32")
OPTIMIZERS = ("adamw", "muon")


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
    precision: str = "fp32"  # "fp32", or "bf16": forward + loss under bf16 autocast, float32 weights and optimizer
    optimizer: str = "adamw"  # "adamw", or "muon": Muon for hidden matrices (at muon_lr), AdamW (at lr) for the rest
    muon_lr: float = 0.04  # Muon's peak learning rate (used only with optimizer="muon")
    muon_momentum: float = 0.95
    progress: bool = True

    def __post_init__(self) -> None:  # counts become Python ints; real numbers are checked and kept as given
        self.max_steps = check_int(self.max_steps, "max_steps", minimum=1, allowed="a positive int")
        self.warmup_steps = check_int(self.warmup_steps, "warmup_steps", minimum=0, maximum=self.max_steps,
                                      allowed=f"an int in [0, max_steps={self.max_steps}]")
        for name in ("eval_interval", "eval_batches"):
            setattr(self, name, check_int(getattr(self, name), name, minimum=1))
        check_real(self.lr, "lr", minimum=0, low_open=True)  # a bool was lr 1.0 or 0.0
        check_real(self.min_lr, "min_lr", minimum=0, maximum=self.lr, allowed=f"in [0, lr={self.lr}]")
        check_real(self.weight_decay, "weight_decay", minimum=0)  # NaN would fail later, blaming lr
        for name in ("beta1", "beta2"):
            check_real(getattr(self, name), name, minimum=0, maximum=1, high_open=True)
        check_real(self.grad_clip, "grad_clip", minimum=0, finite=False,  # NaN too: it silently turned clipping off
                   allowed="a number >= 0 (0 disables clipping)")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {self.precision!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {self.optimizer!r}")
        check_real(self.muon_lr, "muon_lr", minimum=0, low_open=True)
        check_real(self.muon_momentum, "muon_momentum", minimum=0, maximum=1, high_open=True)


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
    step = check_int(step, "step", minimum=0, allowed="an int >= 0 (0-based)")  # -1 gave 0.0, NaN min_lr
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    decay_steps = max(1, config.max_steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / decay_steps)
    return config.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (config.lr - config.min_lr)


def autocast_context(model: nn.Module, precision: str):
    """The context the training forward pass runs in: ``nullcontext()`` for fp32, bf16 autocast for bf16.

    Raises ValueError if the parameters' device cannot run bf16 autocast (it would silently fall back to float32).
    """
    if precision == "fp32":
        return nullcontext()
    device = next(model.parameters()).device
    if not torch.amp.is_autocast_available(device.type):
        raise ValueError(f"precision='bf16' needs torch.autocast on {device.type!r}, which this torch lacks; "
                         "use precision='fp32'")
    with warnings.catch_warnings(record=True) as caught:  # an unsupported dtype only warns and disables autocast
        warnings.simplefilter("always")
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            probe = torch.ones(2, 2, device=device) @ torch.ones(2, 2, device=device)  # (2, 2)
    if probe.dtype != torch.bfloat16:
        reason = "; ".join(str(w.message) for w in caught) or "autocast did not produce bfloat16"
        raise ValueError(f"precision='bf16' is not supported on device {device} ({reason}); use precision='fp32'")
    if device.type == "cpu" and not native_bf16("cpu"):
        warnings.warn("this CPU has no native bf16 matmul (AVX512-BF16 or AMX): bf16 autocast is emulated and much "
                      "slower than float32 here; precision='fp32' is faster", stacklevel=3)
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _adamw(params: list, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on biases, LayerNorm gains or anything 1-D)."""
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay, "lr_ratio": 1.0},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0, "lr_ratio": 1.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2),
                             fused=config.fused_optimizer or None)


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW | MuonWithAdamW:
    """The optimiser ``config.optimizer`` names, over ``model``'s trainable parameters.

    ``"adamw"``: AdamW with weight decay on matrices only (not on biases, LayerNorm gains or anything 1-D).
    ``"muon"``: Muon on the hidden matrices (:func:`course_utils.train.muon.hidden_matrices`), no weight decay, and
    the AdamW above on the rest. Every group carries ``lr_ratio``, its peak learning rate over ``config.lr``.
    """
    if config.optimizer == "adamw":
        return _adamw([p for p in model.parameters() if p.requires_grad], config)
    hidden, rest = hidden_matrices(model)
    if not hidden:
        raise ValueError("optimizer='muon' found no hidden nn.Linear weight matrix in this model; use 'adamw'")
    muon = Muon(hidden, lr=config.muon_lr, momentum=config.muon_momentum)
    muon.param_groups[0]["lr_ratio"] = config.muon_lr / config.lr
    return MuonWithAdamW(muon, _adamw(rest, config))


def set_lr(optimizer: torch.optim.Optimizer | MuonWithAdamW, step: int, config: TrainConfig) -> float:
    """Set every group's learning rate for ``step`` (the schedule times the group's ``lr_ratio``); return the
    schedule's value, :func:`lr_at`."""
    lr = lr_at(step, config)
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_ratio", 1.0)
    return lr


@torch.no_grad()
def estimate_loss(model: nn.Module, get_batch: BatchFn, n_batches: int, generator: torch.Generator,
                  split: str = "val") -> float:
    """Mean loss over ``n_batches`` batches of ``split`` drawn with ``generator``, in eval mode."""
    n_batches = check_int(n_batches, "n_batches", minimum=1)  # 0 divided by zero, -1 gave -0.0
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
    ``config.precision`` sets the training forward pass's precision; evaluation is always float32.
    """
    eval_generator_seed = check_seed(eval_generator_seed, "eval_generator_seed")  # before any step, not at step 250
    eval_get_batch = eval_get_batch or get_batch
    autocast = autocast_context(model, config.precision)
    optimizer = make_optimizer(model, config)
    history = History()
    model.train()
    start = time.perf_counter()
    bar = tqdm(range(config.max_steps), desc="training", disable=not config.progress, leave=False)
    for step in bar:
        lr = set_lr(optimizer, step, config)
        idx, targets = get_batch("train", generator)
        with autocast:  # forward pass and loss only; backward and the optimizer step run outside (float32 state)
            _, loss = model(idx, targets)
        if not torch.isfinite(loss):
            history.seconds = time.perf_counter() - start
            raise TrainingDiverged(f"loss became {loss.item()} at step {step}; lower lr (now {lr:.2e})", step, history)
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
