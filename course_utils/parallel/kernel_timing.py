"""Single kernels timed at a precision: one matmul and one causal attention (SDPA) forward and backward, in float32,
bfloat16, or float32 under bfloat16 autocast, at a model's own shapes.

A training step's time is the sum of its kernels', and a precision can speed up some and slow down others: on a CPU
with native bfloat16 (AVX512-BF16, AMX) a large bf16 matmul is faster than float32, while PyTorch's CPU attention
backward in bf16 can be much slower (chapter 11 times both at its model's shapes to explain a step that bf16 slowed
down). :func:`matmul_seconds` and :func:`sdpa_seconds` return the best seconds per call over a few rounds of
back-to-back calls, waiting for a GPU's queue with :func:`course_utils.device.synchronize` before reading the clock.

Left out: other kernels (LayerNorm, softmax alone, the optimizer step), float16, and profiling a whole step (use
``torch.profiler`` for that).
"""

from __future__ import annotations

import time
from contextlib import nullcontext

import torch

from course_utils.device import synchronize

MATMUL_PRECISIONS = ("fp32", "bf16", "bf16 autocast")


def _best_seconds_per_call(call, device: torch.device, repeats: int, min_seconds: float) -> float:
    """Best seconds per ``call()`` over ``repeats`` rounds of back-to-back calls. Two untimed calls first: the first
    carries one-off set-up (kernel selection, lazy loading), so the calls per round (as many as fill ``min_seconds``,
    at least 3) are estimated from the second."""

    def run(calls: int) -> float:
        synchronize(device)
        start = time.perf_counter()
        for _ in range(calls):
            call()
        synchronize(device)
        return time.perf_counter() - start

    run(1)  # untimed warm-up: one-off set-up
    once = run(1)  # untimed: the estimate of one call
    calls = max(3, min(10_000, int(min_seconds / max(once, 1e-9)) + 1))
    return min(run(calls) for _ in range(repeats)) / calls


def _check_timing_args(precision: str, dims: tuple, repeats: int, min_seconds: float) -> None:
    if precision not in MATMUL_PRECISIONS:
        raise ValueError(f"precision must be one of {list(MATMUL_PRECISIONS)}, got {precision!r}")
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in dims) or not isinstance(
            repeats, int) or repeats < 1 or not min_seconds > 0:
        raise ValueError(f"sizes and repeats must be ints >= 1 and min_seconds > 0, got {dims!r}, {repeats!r} and "
                         f"{min_seconds!r}")


def _inputs(shapes: list[tuple[int, ...]], precision: str, device: torch.device) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)  # drawn on the CPU, then moved: the same numbers on every device
    tensors = [torch.randn(shape, generator=generator).to(device) for shape in shapes]
    return [t.bfloat16() for t in tensors] if precision == "bf16" else tensors


def matmul_seconds(size: int | tuple[int, int, int], precision: str = "fp32", device: torch.device | str = "cpu",
                   repeats: int = 5, min_seconds: float = 0.01) -> float:
    """Best seconds per matmul over ``repeats`` rounds of back-to-back calls (as many calls per round as fill
    ``min_seconds``, at least 3; two untimed calls first). ``size``: n for a square ``(n, n) @ (n, n)``, or
    ``(m, k, n)`` for ``(m, k) @ (k, n)``, e.g. a linear layer's ``(B*T, C) @ (C, 4C)``.

    ``precision``: "fp32"; "bf16", both inputs already bfloat16 (the bare bf16 matmul); "bf16 autocast", float32
    inputs under ``torch.autocast(dtype=torch.bfloat16)``, which rounds both to bfloat16 on every call, as it does
    with a model's float32 weights and activations. The best round is the one least disturbed by other work."""
    dims = tuple(size) if isinstance(size, (tuple, list)) else (size, size, size)
    if len(dims) != 3:
        raise ValueError(f"size must be an int or (m, k, n), got {size!r}")
    _check_timing_args(precision, dims, repeats, min_seconds)
    m, k, n = dims
    device = torch.device(device)
    a, b = _inputs([(m, k), (k, n)], precision, device)
    autocast = precision == "bf16 autocast"

    def call() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16) if autocast else nullcontext():
            a @ b

    return _best_seconds_per_call(call, device, repeats, min_seconds)


def sdpa_seconds(shape: tuple[int, int, int, int], precision: str = "fp32", device: torch.device | str = "cpu",
                 repeats: int = 5, min_seconds: float = 0.01) -> float:
    """Best seconds per causal ``F.scaled_dot_product_attention`` forward *and* backward (the gradients of q, k and
    v) at ``shape`` = (batch, heads, sequence, head size), timed like :func:`matmul_seconds`, with the same
    ``precision`` choices: this is the attention a training step of the course GPT runs once per layer."""
    if not isinstance(shape, (tuple, list)) or len(shape) != 4:
        raise ValueError(f"shape must be (batch, heads, sequence, head size), got {shape!r}")
    _check_timing_args(precision, tuple(shape), repeats, min_seconds)
    device = torch.device(device)
    q, k, v, grad_out = _inputs([tuple(shape)] * 4, precision, device)
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    autocast = precision == "bf16 autocast"

    def call() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16) if autocast else nullcontext():
            out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, D)
        torch.autograd.grad(out, (q, k, v), grad_out.to(out.dtype))

    return _best_seconds_per_call(call, device, repeats, min_seconds)
