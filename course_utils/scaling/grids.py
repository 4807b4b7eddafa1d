"""The sizes of chapter 04's sweep, in one place: an IsoFLOP grid per profile and the run predicted before training.

An IsoFLOP design (Hoffmann et al., 2022, "Training Compute-Optimal Large Language Models", approach 2) trains
every model shape at every compute budget ``C``: a shape with ``N`` non-embedding parameters gets
``D = C / (6 N)`` training tokens, rounded to whole batches, so each budget is a curve of loss against ``log N``
with a minimum inside it when the shapes are chosen well (too small a model is capacity-bound, too large a one sees
too few tokens). The notebook and ``benchmarks/bench_scaling_sweep.py`` both read :data:`SWEEP_GRIDS` and
:data:`PREDICTION_RUNS`, so the benchmark times exactly the sweep the chapter trains.

Small shapes get larger batches at equal tokens: a model with ``n_embd`` 24-48 runs thin matmuls that keep a core
busy for less time per step, so more tokens per step raise its throughput (measured per shape in
``benchmarks/RESULTS.md``, chapter 04). ``precision="auto"`` becomes :func:`course_utils.scaling.runs.default_precision`
of the grid's device when runs are made, so each cached spec records the precision it really trained in.

Left out: a learning-rate sweep per shape, and more than one seed per run.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from course_utils.model.gpt import GPTConfig
from course_utils.scaling.compute import gpt_parameter_count
from course_utils.scaling.runs import ScalingRun, default_precision

_GRID_FIELDS = ("n_layer", "n_head", "n_embd", "tokens", "batch_size", "block_size")  # set by the grid, per run


@dataclass(frozen=True)
class SweepGrid:
    shapes: tuple[tuple[int, int, int], ...]  # (n_layer, n_head, n_embd), smallest first
    budgets: tuple[float, ...]  # compute C = 6 N D in FLOPs, N the non-embedding parameter count; ascending
    batch_sizes: tuple[int, ...]  # one per shape (larger for small shapes: same tokens, fewer, fuller steps)
    block_size: int = 64
    lr: float = 3e-3
    max_train_chars: int | None = None  # None: every training play
    eval_batches: int = 16
    precision: str = "auto"  # "auto" (bf16 where the device has native bf16 matmuls), "fp32" or "bf16"
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not self.shapes or not all(isinstance(s, tuple) and len(s) == 3 for s in self.shapes):
            raise ValueError(f"shapes must be a non-empty tuple of (n_layer, n_head, n_embd), got {self.shapes!r}")
        for n_layer, n_head, n_embd in self.shapes:  # GPTConfig's messages for a bad shape
            GPTConfig(block_size=self.block_size, n_layer=n_layer, n_head=n_head, n_embd=n_embd)
        if len(set(self.shapes)) != len(self.shapes):
            raise ValueError(f"shapes contain duplicates: {self.shapes}")
        if len(self.batch_sizes) != len(self.shapes):
            raise ValueError(f"batch_sizes needs one entry per shape ({len(self.shapes)}), got {len(self.batch_sizes)}")
        if any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in self.batch_sizes):
            raise ValueError(f"batch_sizes must be positive ints, got {self.batch_sizes}")
        if not self.budgets or any(not isinstance(c, (int, float)) or not c > 0 for c in self.budgets):
            raise ValueError(f"budgets must be a non-empty tuple of positive FLOP counts, got {self.budgets}")
        if any(b <= a for a, b in zip(self.budgets, self.budgets[1:])):
            raise ValueError(f"budgets must be strictly ascending, got {self.budgets}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {self.precision!r}")

    def n_params(self, shape: tuple[int, int, int]) -> int:
        """Non-embedding parameters N of ``shape`` (tied head, so the vocabulary size does not enter)."""
        n_layer, n_head, n_embd = shape
        return gpt_parameter_count(GPTConfig(block_size=self.block_size, n_layer=n_layer, n_head=n_head,
                                             n_embd=n_embd))

    def resolved_precision(self) -> str:
        return default_precision(self.device) if self.precision == "auto" else self.precision


def isoflop_tokens(grid: SweepGrid, shape: tuple[int, int, int], budget: float, batch_size: int) -> int:
    """``D = C / (6 N)`` rounded to whole batches of ``batch_size x block_size`` tokens; refuses less than a batch."""
    batch_tokens = batch_size * grid.block_size
    batches = round(budget / (6 * grid.n_params(shape)) / batch_tokens)
    if batches < 1:
        raise ValueError(f"budget {budget:.3g} FLOPs gives shape {shape} (N = {grid.n_params(shape)}) less than one "
                         f"batch of {batch_tokens} tokens; raise the budget or lower that shape's batch size")
    return batches * batch_tokens


def grid_runs(grid: SweepGrid, **overrides) -> list[ScalingRun]:
    """Every shape at every budget as a :class:`ScalingRun`, largest budget first (so a process pool, taking runs in
    order, starts the longest ones first and finishes evenly). ``overrides`` set other ScalingRun fields (seed,
    threads, lr, ...); the grid's own fields (shape, tokens, batch size, block size) cannot be overridden."""
    if not isinstance(grid, SweepGrid):
        raise TypeError(f"grid must be a SweepGrid, got {type(grid).__name__}")
    allowed = {f.name for f in fields(ScalingRun)} - set(_GRID_FIELDS)
    unknown = set(overrides) - allowed
    if unknown:
        raise ValueError(f"cannot override {sorted(unknown)}; allowed: {sorted(allowed)}")
    common = {"lr": grid.lr, "max_train_chars": grid.max_train_chars, "eval_batches": grid.eval_batches,
              "precision": grid.resolved_precision(), "device": grid.device, **overrides}
    runs = []
    for budget in sorted(grid.budgets, reverse=True):
        for shape, batch_size in zip(grid.shapes, grid.batch_sizes):
            n_layer, n_head, n_embd = shape
            runs.append(ScalingRun(n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                                   tokens=isoflop_tokens(grid, shape, budget, batch_size), batch_size=batch_size,
                                   block_size=grid.block_size, **common))
    return runs


SWEEP_GRIDS = {
    "smoke": SweepGrid(shapes=((1, 1, 8), (1, 2, 16), (2, 2, 32)), budgets=(2e9, 4e9, 8e9), batch_sizes=(64, 32, 16),
                       block_size=32, max_train_chars=200_000, eval_batches=4, precision="fp32"),
    "cpu": SweepGrid(shapes=((2, 2, 24), (2, 2, 40), (2, 4, 64), (3, 4, 80), (4, 4, 96)),
                     budgets=(1.6e11, 3.2e11, 6.4e11, 1.28e12), batch_sizes=(128, 64, 32, 16, 16)),
    # Shakespeare holds 4.6M training characters, which bounds the gpu grid: the smallest shape at the largest budget
    # sees ~15 epochs (exercise 3), the largest shape at the smallest budget ~170 steps. Not yet run on a GPU.
    "gpu": SweepGrid(shapes=((2, 4, 64), (3, 4, 96), (4, 4, 128), (4, 8, 160), (4, 8, 192), (6, 8, 256)),
                     budgets=(5e12, 1e13, 2e13, 4e13), batch_sizes=(64, 64, 32, 16, 16, 8),
                     block_size=128, device="cuda"),
}

PREDICTION_RUNS = {
    "smoke": ScalingRun(n_layer=2, n_head=2, n_embd=32, tokens=isoflop_tokens(SWEEP_GRIDS["smoke"], (2, 2, 32),
                        1.6e10, 16), batch_size=16, block_size=32, max_train_chars=200_000, eval_batches=4,
                        threads=2),
    "cpu": ScalingRun(n_layer=3, n_head=4, n_embd=80, tokens=isoflop_tokens(SWEEP_GRIDS["cpu"], (3, 4, 80),
                      2.56e12, 16), batch_size=16, threads=2, precision=SWEEP_GRIDS["cpu"].resolved_precision()),
    "gpu": ScalingRun(n_layer=6, n_head=8, n_embd=256, tokens=isoflop_tokens(SWEEP_GRIDS["gpu"], (6, 8, 256), 8e13, 8),
                      batch_size=8, block_size=128, precision=SWEEP_GRIDS["gpu"].resolved_precision(), device="cuda"),
}
