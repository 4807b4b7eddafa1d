"""Mixed precision beyond the trainer's bf16 switch: number formats, gradient underflow, and dynamic loss scaling.

Follows Micikevicius et al., 2018, "Mixed Precision Training": float16 has 5 exponent bits, so gradients below about
2^-25 (half its smallest subnormal, 2^-24, under round-to-nearest) round to zero; multiplying the loss by a scale S
moves every gradient up by S (the chain rule is linear), the optimizer sees the gradients divided by S again in
float32, and a step whose scaled gradients overflowed to inf/NaN is skipped. The *dynamic* rule of the common
implementations (NVIDIA's AMP, TensorFlow's ``DynamicLossScale``, ``torch.amp.GradScaler``) halves S on every overflow
and doubles it after ``growth_interval`` clean steps in a row, so S sits just below overflow. bfloat16 keeps float32's
8 exponent bits (range down to 2^-133) and needs no scaling; the course trainer's ``TrainConfig(precision="bf16")``
(course_utils.train.loop) is that recipe and is reused, not repeated, here.

What is here: :func:`float_ranges` (torch.finfo in one table), :func:`cast_outcomes` (what casting scaled values
to a format does to them), :func:`collect_gradients` (a real model's weight and activation gradients),
:class:`LossScaler` (the dynamic scaler, written out; tests check it against ``torch.amp.GradScaler``),
:func:`train_fp16` (float16 autocast with the scaler, for GPUs; it runs, slowly, on CPU too, which is how CI tests
it), :func:`step_seconds` (time of training steps at a given precision; it waits for a GPU's queued kernels with
:func:`course_utils.device.synchronize` before reading the clock); single kernels, a matmul and an attention forward
and backward, are timed by :mod:`course_utils.parallel.kernel_timing`). Left out: float8, per-tensor scaling, master
weights kept in a separate float32 copy (here weights stay float32 and autocast casts on the fly).
"""

from __future__ import annotations

import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from course_utils.arguments import check_int, check_real
from course_utils.device import synchronize
from course_utils.train.loop import BatchFn, History, TrainConfig, estimate_loss, make_optimizer, set_lr

FORMATS = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


@dataclass(frozen=True)
class FloatRange:
    """What a floating-point format can represent (IEEE-style: sign, exponent and mantissa bits)."""

    name: str
    bits: int
    mantissa_bits: int  # stored fraction bits; precision is mantissa_bits + 1 significant bits
    max: float  # largest finite value
    smallest_normal: float  # 2^(1 - bias)
    smallest_subnormal: float  # smallest_normal * eps: anything below about half of it rounds to 0
    eps: float  # gap between 1 and the next representable value


def float_ranges(names: tuple[str, ...] = ("float16", "bfloat16", "float32")) -> list[FloatRange]:
    """The range of each named format, read from ``torch.finfo`` (the smallest subnormal is tiny * eps)."""
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise ValueError(f"unknown format(s) {unknown}; allowed: {list(FORMATS)}")
    rows = []
    for name in names:
        info = torch.finfo(FORMATS[name])
        rows.append(FloatRange(name, info.bits, round(-torch.log2(torch.tensor(info.eps)).item()), info.max,
                               info.smallest_normal, info.smallest_normal * info.eps, info.eps))
    return rows


def cast_outcomes(values: torch.Tensor, scale: float = 1.0, dtype: torch.dtype = torch.float16) -> dict[str, float]:
    """Fractions of the non-zero ``values`` that, multiplied by ``scale`` and cast to ``dtype``, become zero
    ("underflow"), subnormal (fewer significant bits), infinite ("overflow"), or stay normal.

    The product is formed in float64, on the CPU (MPS has no float64), so that only the cast to ``dtype`` decides the
    outcome.
    """
    if not isinstance(values, torch.Tensor) or not values.is_floating_point():
        raise TypeError("values must be a floating-point tensor")
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    nonzero = values.detach().flatten().to("cpu", torch.float64)
    nonzero = nonzero[nonzero != 0]
    if nonzero.numel() == 0:
        raise ValueError("values has no non-zero entries; nothing can underflow")
    cast = (nonzero * scale).to(dtype)
    tiny = torch.finfo(dtype).smallest_normal
    underflow = cast == 0
    overflow = ~torch.isfinite(cast)
    subnormal = ~underflow & ~overflow & (cast.abs() < tiny)
    n = nonzero.numel()
    result = {"underflow": underflow.sum().item() / n, "subnormal": subnormal.sum().item() / n,
              "overflow": overflow.sum().item() / n}
    result["normal"] = 1.0 - sum(result.values())
    return result


def collect_gradients(model: nn.Module, idx: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """One float32 forward and backward of the course GPT; returns the flattened gradients in two groups:
    ``"weight gradients"`` (every parameter's .grad) and ``"activation gradients"`` (the gradients of the loss with
    respect to each block's output and to the logits, the tensors a float16 backward pass carries from layer to
    layer).

    The activation gradients are kept with ``retain_grad`` from forward hooks, so the model's code is unchanged.
    The parameters' .grad are overwritten.
    """
    if not hasattr(model, "blocks") or not hasattr(model, "lm_head"):
        raise TypeError("collect_gradients expects the course GPT (a model with .blocks and .lm_head)")
    outputs: list[torch.Tensor] = []

    def keep(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        output.retain_grad()
        outputs.append(output)

    handles = [m.register_forward_hook(keep) for m in [*model.blocks, model.lm_head]]
    try:
        model.zero_grad(set_to_none=True)
        _, loss = model(idx, targets)
        loss.backward()
    finally:
        for h in handles:
            h.remove()
    weights = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    activations = torch.cat([o.grad.flatten() for o in outputs])
    return {"weight gradients": weights.detach(), "activation gradients": activations.detach()}


class LossScaler:
    """Dynamic loss scaling (loss scaling of Micikevicius et al., 2018), the same rule as ``torch.amp.GradScaler``.

    Use per step: ``scaler.scale(loss).backward()``; optionally ``scaler.unscale_(optimizer)`` before gradient
    clipping; ``scaler.step(optimizer)`` (unscales if not done yet; skips the step if any gradient is inf/NaN);
    ``scaler.update()`` (halve the scale after an overflow, multiply it by ``growth_factor`` after
    ``growth_interval`` clean steps in a row). ``scales`` and ``skipped`` record each step's scale and outcome.
    """

    def __init__(self, init_scale: float = 2.0**16, growth_factor: float = 2.0, backoff_factor: float = 0.5,
                 growth_interval: int = 2000) -> None:
        # an infinite scale (or growth to one) overflows every step: each one skipped, the scale stuck at inf
        check_real(init_scale, "init_scale", minimum=0, low_open=True, allowed="a finite number > 0")
        check_real(growth_factor, "growth_factor", minimum=1, low_open=True, allowed="a finite number > 1")
        check_real(backoff_factor, "backoff_factor", minimum=0, maximum=1, low_open=True, high_open=True,
                   allowed="in (0, 1)")
        growth_interval = check_int(growth_interval, "growth_interval", minimum=1, allowed="a positive int")
        self.scale_value = float(init_scale)
        self.growth_factor, self.backoff_factor = float(growth_factor), float(backoff_factor)
        self.growth_interval = growth_interval
        self.clean_steps = 0  # consecutive steps without overflow since the last change of scale
        self.scales: list[float] = []  # the scale each step used
        self.skipped: list[bool] = []  # whether each step was skipped
        self._found_inf: bool | None = None  # set by unscale_, cleared by update

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        """The loss times the current scale (backward of it gives gradients times the scale)."""
        return loss * self.scale_value

    def unscale_(self, optimizer: torch.optim.Optimizer) -> bool:
        """Divide every gradient by the scale, in place; return True if any gradient is inf or NaN."""
        if self._found_inf is not None:
            raise RuntimeError("unscale_() was already called this step; call update() after step()")
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            raise ValueError("no parameter of the optimizer has a gradient; call backward on the scaled loss first")
        torch._foreach_mul_(grads, 1.0 / self.scale_value)
        bad = torch.stack([~torch.isfinite(g).all() for g in grads]).any()  # one device-to-host sync in all
        self._found_inf = bool(bad.item())
        return self._found_inf

    def step(self, optimizer: torch.optim.Optimizer) -> bool:
        """Unscale (if not done yet) and take the optimizer step unless a gradient overflowed; True if it stepped."""
        if self._found_inf is None:
            self.unscale_(optimizer)
        if not self._found_inf:
            optimizer.step()
        return not self._found_inf

    def update(self) -> None:
        """Record this step, then back off after an overflow or grow after ``growth_interval`` clean steps."""
        if self._found_inf is None:
            raise RuntimeError("update() needs unscale_() or step() first in the same step")
        self.scales.append(self.scale_value)
        self.skipped.append(self._found_inf)
        if self._found_inf:
            self.scale_value *= self.backoff_factor
            self.clean_steps = 0
        else:
            self.clean_steps += 1
            if self.clean_steps == self.growth_interval:
                self.scale_value *= self.growth_factor
                self.clean_steps = 0
        self._found_inf = None


def train_fp16(model: nn.Module, get_batch: BatchFn, config: TrainConfig, generator: torch.Generator,
               scaler: LossScaler, eval_generator_seed: int = 1234) -> History:
    """Train like :func:`course_utils.train.loop.train` (same optimizer, schedule, clipping and validation batches)
    but with the forward pass under float16 autocast and dynamic loss scaling; validation runs in float32.

    Meant for CUDA, where float16 matmuls are fast; on CPU float16 autocast works but is emulated and slow (tests
    use it there on a tiny model). ``config.precision`` is ignored. Skipped steps are in ``scaler.skipped``.
    """
    if not isinstance(scaler, LossScaler):
        raise TypeError(f"scaler must be a LossScaler, got {type(scaler).__name__}")
    device = next(model.parameters()).device
    optimizer = make_optimizer(model, config)
    history = History()
    model.train()
    start = time.perf_counter()
    for step in range(config.max_steps):
        lr = set_lr(optimizer, step, config)
        idx, targets = get_batch("train", generator)
        with torch.autocast(device_type=device.type, dtype=torch.float16):
            _, loss = model(idx, targets)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        history.steps.append(step)
        history.train_loss.append(loss.item())
        history.lr.append(lr)
        history.tokens_seen += targets.numel()
        if (step + 1) % config.eval_interval == 0 or step == config.max_steps - 1:
            val_gen = torch.Generator().manual_seed(eval_generator_seed + 1)  # the val batches train() uses
            history.eval_val_loss.append(estimate_loss(model, get_batch, config.eval_batches, val_gen, "val"))
            history.eval_steps.append(step + 1)
            history.eval_seconds.append(time.perf_counter() - start)
    history.seconds = time.perf_counter() - start
    return history


@dataclass
class StepTimes:
    """Seconds of each timed training step (forward, backward, optimizer step) after the warm-up steps."""

    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def step_seconds(model: nn.Module, idx: torch.Tensor, targets: torch.Tensor, steps: int, precision: str = "fp32",
                 warmup: int = 1) -> StepTimes:
    """Time ``steps`` training steps on one fixed batch (after ``warmup`` untimed ones) with the forward pass in
    ``precision``: "fp32", "bf16" or "fp16" (autocast; fp16 without loss scaling, which does not change the time).

    Uses plain SGD (lr 0) so the parameters stay as they are and arms can be timed one after another on one model.
    """
    if precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"precision must be 'fp32', 'bf16' or 'fp16', got {precision!r}")
    steps, warmup = check_int(steps, "steps", minimum=1), check_int(warmup, "warmup", minimum=0)  # numpy ints too
    device = idx.device
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    times = StepTimes()
    for i in range(warmup + steps):
        synchronize(device)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext():
            _, loss = model(idx, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        synchronize(device)
        if i >= warmup:
            times.seconds.append(time.perf_counter() - start)
    return times
