"""The sizes of chapter 04's sweep, in one place: an IsoFLOP grid per profile and the run predicted before training.

An IsoFLOP design (Hoffmann et al., 2022, "Training Compute-Optimal Large Language Models", approach 2) trains
several model shapes at each compute budget ``C``: a shape with ``N`` non-embedding parameters gets
``D = C / (6 N)`` training tokens, rounded to whole batches, so each budget is a curve of loss against ``log N``
with a minimum inside it when the shapes are chosen well (too small a model is capacity-bound, too large a one sees
too few tokens). A grid trains every shape at every budget, or, with ``windows``, a window of shapes per budget that
slides up with compute, as Hoffmann et al. did: the optimum grows with the budget, and a shape far from it costs
time (a tiny model at a large budget trains for many steps) without telling us where the minimum is.
The notebook and ``benchmarks/bench_scaling_sweep.py`` both read :data:`SWEEP_GRIDS` and :data:`PREDICTION_RUNS`,
so the benchmark times exactly the sweep the chapter trains.

Batch sizes: the cpu and gpu grids train every run at one batch size. A larger batch for the small shapes (the smoke
grid still does that) raises their throughput, but at equal tokens it costs them optimizer steps, and in short
runs the loss follows the steps more than ``N``: it held the cpu grid's vertex still at one size over 8x of compute
(``benchmarks/RESULTS.md``, chapter 04, "the batch sizes confound the vertex"). ``precision="auto"`` becomes
:func:`course_utils.scaling.runs.default_precision` of the grid's device when runs are made (by :func:`grid_runs`,
and when a :data:`PREDICTION_RUNS` entry is looked up, never at import), so each cached spec records the precision it
really trained in.

The gpu grid, designed on paper: the cpu design study's recipe (2-layer shapes, batch 16
of 64 characters, lr 3e-3, float32 on every GPU: these models are too small for bfloat16 autocast to pay, and one
precision keeps a T4's sweep and an H100's the same experiment) over the budgets that study named as the passing
design it could not afford on 2 cores (about 4.8e10 to 1.5e12 FLOPs, leaving out the early-plateau budget 2e10 whose
losses drove E to zero). Five budgets 4.8e10 to 1.52e12 (31.7x, above the 30x that section 5's verdict asks for;
6.4e11 repeats cpu's top budget and window), a window of 5 shapes per budget centred near the optimum extrapolated
from cpu's four vertices (3.0k to 19.7k, N* ~ C^0.56), 4.4k at the smallest budget and 30k at the largest: it sits at
31-45% of each window's log-N span, like cpu's measured vertices (24-42%); the fitted cpu surface's own optimum
(allocation exponent about 0.39) falls inside every window too, at 17-49% of its span. 25 runs, 539 to 17,066
optimizer steps (the fewest: the largest shape at the smallest budget), 29 to 2,583 tokens per parameter; the longest
run sees 3.8 epochs of the 4.6M training characters (Muennighoff et al.'s ~4 epochs of repetition cost little). The
prediction run is (2, 4, 40), N = 39,520, at 3.04e12 (2x the top budget, 12.8M tokens, 324 tokens/param, 2.8
epochs), between the two extrapolated optima there (36k and 45k).

Run once on a GPU, through the benchmark, not the notebook (``benchmarks/RESULTS.md``, "GPU checks on a lent NVIDIA
H200", 2026-12-04: ``bench_scaling_sweep.py --grid gpu --workers 12``): 25 runs in 135.5 s of wall time with 12
processes sharing the GPU (1,107.5 s of training summed over the runs), every budget's IsoFLOP minimum inside its
window, N* ~ C^0.72 through the vertices, a = 0.64 from the fitted surface, and the loss predicted for the
prediction run 2.0% below the loss it reached. The notebook's gpu profile runs one process per spare CPU core, up
to 12 (one on a 2-core Colab machine, where the runs go one after another: that serial time is unmeasured; the paper
estimate, at 5-10 ms per launch-bound step of ~104,000, was 9-17 minutes).

Left out: a learning-rate sweep per shape, and more than one seed per run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

from course_utils.model.gpt import GPTConfig
from course_utils.scaling.compute import gpt_parameter_count
from course_utils.scaling.runs import ScalingRun, default_precision

_GRID_FIELDS = ("n_layer", "n_head", "n_embd", "tokens", "batch_size", "block_size")  # set by the grid, per run


@dataclass(frozen=True)
class SweepGrid:
    shapes: tuple[tuple[int, int, int], ...]  # (n_layer, n_head, n_embd), smallest first
    budgets: tuple[float, ...]  # compute C = 6 N D in FLOPs, N the non-embedding parameter count; ascending
    batch_sizes: tuple[int, ...]  # one per shape
    block_size: int = 64
    lr: float = 3e-3
    max_train_chars: int | None = None  # None: every training play
    eval_batches: int = 16
    precision: str = "auto"  # "auto" (bf16 where the device has native bf16 matmuls), "fp32" or "bf16"
    device: str = "cpu"
    windows: tuple[tuple[int, ...], ...] | None = None  # per budget, the indices of the shapes it trains; None: all

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
        if not self.budgets or any(not isinstance(c, (int, float)) or not 0 < c < math.inf for c in self.budgets):
            raise ValueError(f"budgets must be a non-empty tuple of positive finite FLOP counts, got {self.budgets}")
        if any(b <= a for a, b in zip(self.budgets, self.budgets[1:])):
            raise ValueError(f"budgets must be strictly ascending, got {self.budgets}")
        if self.windows is not None:
            self._check_windows()
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {self.precision!r}")
        if not isinstance(self.lr, (int, float)) or not 0 < self.lr < math.inf:
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        if isinstance(self.eval_batches, bool) or not isinstance(self.eval_batches, int) or self.eval_batches < 1:
            raise ValueError(f"eval_batches must be an int >= 1, got {self.eval_batches!r}")
        chars = self.max_train_chars
        if chars is not None and (isinstance(chars, bool) or not isinstance(chars, int) or chars < 1):
            raise ValueError(f"max_train_chars must be an int >= 1 or None (every training play), got {chars!r}")

    def _check_windows(self) -> None:
        windows, n = self.windows, len(self.shapes)
        if not isinstance(windows, tuple):
            raise ValueError(f"windows must be a tuple (one tuple of shape indices per budget), got a "
                             f"{type(windows).__name__}")
        if len(windows) != len(self.budgets):
            raise ValueError(f"windows needs one tuple of shape indices per budget ({len(self.budgets)}), "
                             f"got {len(windows)}")
        for budget, window in zip(self.budgets, windows):
            if not isinstance(window, tuple):
                raise ValueError(f"the window of budget {budget:.3g} must be a tuple of shape indices, got a "
                                 f"{type(window).__name__}")
            odd = [i for i in window if isinstance(i, bool) or not isinstance(i, int)]
            if odd:
                raise ValueError(f"the window of budget {budget:.3g} must hold Python ints (shape indices), got "
                                 f"{odd[0]!r} of type {type(odd[0]).__name__}")
            if not window or not all(0 <= i < n for i in window) or list(window) != sorted(set(window)):
                raise ValueError(f"the window of budget {budget:.3g} must be a non-empty ascending tuple of distinct "
                                 f"shape indices in 0..{n - 1}, got {window!r}")
        unused = sorted(set(range(n)) - {i for window in windows for i in window})
        if unused:
            raise ValueError(f"shapes {[self.shapes[i] for i in unused]} are in no budget's window; drop them or add "
                             "them to a window")

    def shapes_at(self, budget: float) -> tuple[tuple[int, int, int], ...]:
        """The shapes trained at ``budget`` (one of :attr:`budgets`): its window, or every shape."""
        if budget not in self.budgets:
            raise ValueError(f"{budget!r} is not one of the grid's budgets {self.budgets}")
        if self.windows is None:
            return self.shapes
        return tuple(self.shapes[i] for i in self.windows[self.budgets.index(budget)])

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
    """Each budget's shapes (every shape, or the budget's window) as :class:`ScalingRun` specs, largest budget first
    (so a process pool, taking runs in order, starts the longest ones first and finishes evenly). ``overrides`` set
    other ScalingRun fields (seed, threads, lr, ...); the grid's own fields (shape, tokens, batch size, block size)
    cannot be overridden."""
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
        for shape in grid.shapes_at(budget):
            batch_size = grid.batch_sizes[grid.shapes.index(shape)]
            n_layer, n_head, n_embd = shape
            runs.append(ScalingRun(n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                                   tokens=isoflop_tokens(grid, shape, budget, batch_size), batch_size=batch_size,
                                   block_size=grid.block_size, **common))
    return runs


SWEEP_GRIDS = {
    "smoke": SweepGrid(shapes=((1, 1, 8), (1, 2, 16), (2, 2, 32)), budgets=(2e9, 4e9, 8e9), batch_sizes=(64, 32, 16),
                       block_size=32, max_train_chars=200_000, eval_batches=4, precision="fp32"),
    # cpu: 2-layer shapes of width 8 to 48 (N = 1,760 to 56,640), one batch size, a window of 5 shapes per budget,
    # chosen in a design study of these same (deterministic) runs so that each budget's minimum falls inside its
    # window (benchmarks/RESULTS.md); budgets half a decade apart, 32x in all.
    "cpu": SweepGrid(shapes=((2, 2, 8), (2, 2, 12), (2, 2, 16), (2, 2, 20), (2, 2, 24), (2, 2, 32), (2, 4, 40),
                             (2, 4, 48)),
                     budgets=(2e10, 6.35e10, 2.02e11, 6.4e11), batch_sizes=(16,) * 8,
                     windows=((0, 1, 2, 3, 4), (0, 1, 2, 3, 4), (2, 3, 4, 5, 6), (3, 4, 5, 6, 7))),
    # gpu: the cpu recipe at the budgets cpu cannot afford, windows centred on cpu's extrapolated vertices (see the
    # module docstring: designed on paper, run once through the benchmark on an H200).
    "gpu": SweepGrid(shapes=((2, 2, 8), (2, 2, 12), (2, 2, 16), (2, 2, 20), (2, 2, 24), (2, 2, 32), (2, 4, 40),
                             (2, 4, 48), (2, 4, 56)),
                     budgets=(4.8e10, 1.14e11, 2.7e11, 6.4e11, 1.52e12), batch_sizes=(16,) * 9,
                     windows=((0, 1, 2, 3, 4), (1, 2, 3, 4, 5), (2, 3, 4, 5, 6), (3, 4, 5, 6, 7), (4, 5, 6, 7, 8)),
                     device="cuda", precision="fp32"),  # launch-bound: bf16's casts would add kernels, not speed
}

class _PredictionRuns(Mapping):
    """Each profile's prediction run, its precision resolved from its grid's (``"auto"``: bf16 on a GPU that has it)
    when the run is looked up, not at import: resolving asks the device (``torch.cuda.is_bf16_supported`` initialises
    CUDA), and importing this module must change no global state."""

    def __init__(self, runs: dict[str, ScalingRun]) -> None:
        self._runs = runs  # the specs with the default precision, replaced on lookup

    def __getitem__(self, profile: str) -> ScalingRun:
        return replace(self._runs[profile], precision=SWEEP_GRIDS[profile].resolved_precision())

    def __iter__(self):
        return iter(self._runs)

    def __len__(self) -> int:
        return len(self._runs)

    def __contains__(self, profile: object) -> bool:  # Mapping's would look the run up, resolving its precision
        return profile in self._runs

    def __repr__(self) -> str:  # the specs as given, precision unresolved (resolving would ask the device)
        return f"PREDICTION_RUNS({sorted(self._runs)}, unresolved: {self._runs!r})"


PREDICTION_RUNS = _PredictionRuns({
    "smoke": ScalingRun(n_layer=2, n_head=2, n_embd=32, tokens=isoflop_tokens(SWEEP_GRIDS["smoke"], (2, 2, 32),
                        1.6e10, 16), batch_size=16, block_size=32, max_train_chars=200_000, eval_batches=4,
                        threads=2),
    "cpu": ScalingRun(n_layer=2, n_head=2, n_embd=24, tokens=isoflop_tokens(SWEEP_GRIDS["cpu"], (2, 2, 24),
                      1.28e12, 16), batch_size=16, threads=2),
    "gpu": ScalingRun(n_layer=2, n_head=4, n_embd=40, tokens=isoflop_tokens(SWEEP_GRIDS["gpu"], (2, 4, 40), 3.04e12,
                      16), batch_size=16, device="cuda"),
})
