"""The sweep grids: IsoFLOP token counts, every profile's grid valid and grouped by budget, bad grids refused."""

import numpy as np
import pytest

from course_utils.scaling.grids import PREDICTION_RUNS, SWEEP_GRIDS, SweepGrid, grid_runs, isoflop_tokens
from course_utils.scaling.runs import PRECISIONS, ScalingRun

GRID = SweepGrid(shapes=((1, 2, 16), (2, 2, 32), (2, 4, 64)), budgets=(1e9, 4e9), batch_sizes=(8, 8, 4),
                 block_size=16, precision="fp32")


def test_tokens_are_budget_over_6n_in_whole_batches():
    runs = grid_runs(GRID)
    assert len(runs) == 6 and [r.tokens for r in runs[:3]] != [r.tokens for r in runs[3:]]
    assert all(6 * r.tokens * GRID.n_params((r.n_layer, r.n_head, r.n_embd)) > 3e9 for r in runs[:3])  # largest first
    for run in runs:
        shape = (run.n_layer, run.n_head, run.n_embd)
        budget = 4e9 if run in runs[:3] else 1e9
        batch = run.batch_size * run.block_size
        assert run.tokens % batch == 0 and run.tokens == round(budget / (6 * GRID.n_params(shape)) / batch) * batch
        assert run.precision == "fp32" and run.device == "cpu"
    assert GRID.n_params((2, 2, 32)) == 2 * (12 * 32 * 32 + 13 * 32) + 2 * 32  # 12 C^2 + biases/norms per layer


@pytest.mark.parametrize("profile", sorted(SWEEP_GRIDS))
def test_every_profile_grid_is_a_valid_isoflop_design(profile):
    grid = SWEEP_GRIDS[profile]
    runs = grid_runs(grid)
    per_budget = [len(grid.shapes_at(b)) for b in sorted(grid.budgets, reverse=True)]
    assert len(runs) == sum(per_budget) and all(r.precision in PRECISIONS for r in runs)
    n = np.array([grid.n_params((r.n_layer, r.n_head, r.n_embd)) for r in runs], dtype=float)
    compute = 6 * n * np.array([r.tokens for r in runs])
    first = 0
    for budget, count in zip(sorted(grid.budgets, reverse=True), per_budget):  # each budget's runs within 2.5% of it
        block = compute[first:first + count]
        assert np.all(np.abs(block / budget - 1) < 0.025), (profile, budget, block)
        first += count
    assert min(per_budget) >= 3 and len(grid.budgets) >= 2  # a parabola per budget needs 3 sizes
    pred = PREDICTION_RUNS[profile]
    assert isinstance(pred, ScalingRun) and pred.block_size == grid.block_size
    # 2-4x the largest budget
    assert 6 * pred.tokens * grid.n_params((pred.n_layer, pred.n_head, pred.n_embd)) > 1.9 * max(grid.budgets)
    # section 6 calls the prediction an extrapolation in D at fixed N: a grid shape, on more tokens than its grid runs
    shape = (pred.n_layer, pred.n_head, pred.n_embd)
    assert shape in grid.shapes
    assert pred.tokens > max(r.tokens for r in runs if (r.n_layer, r.n_head, r.n_embd) == shape)


def test_cpu_grid_meets_the_issue():
    grid = SWEEP_GRIDS["cpu"]
    sizes = [grid.n_params(s) for s in grid.shapes]
    assert min(len(grid.shapes_at(b)) for b in grid.budgets) >= 5 and len(grid.budgets) >= 4  # >= 5 sizes x 4 budgets
    assert len(grid_runs(grid)) >= 20 and max(sizes) / min(sizes) >= 30
    assert max(grid.budgets) / min(grid.budgets) >= 30  # the span section 5's verdict asks for
    # One batch size for every run: per-shape batches trade optimizer steps for speed and held the vertex still
    # (benchmarks/RESULTS.md, chapter 04, "the batch sizes confound the vertex").
    assert len(set(grid.batch_sizes)) == 1
    assert grid.device == "cpu" and SWEEP_GRIDS["gpu"].device == "cuda"
    assert len(grid_runs(SWEEP_GRIDS["gpu"])) > len(grid_runs(grid))


TRAIN_CHARS = 4_587_762  # the training plays of the sweep's data (chapter 04, section 5 prints it)
CPU_OPTIMUM_TOKENS_PER_PARAM = (276, 584)  # cpu's IsoFLOP vertices (benchmarks/RESULTS.md, chapter 04)


def test_gpu_grid_can_pass_the_chapters_checks_on_paper():
    # Static properties: a CPU-only CI can check only the design. The grid has run once on a GPU, through
    # benchmarks/bench_scaling_sweep.py (benchmarks/RESULTS.md, "GPU checks on a lent NVIDIA H200").
    grid, pred = SWEEP_GRIDS["gpu"], PREDICTION_RUNS["gpu"]
    assert max(grid.budgets) / min(grid.budgets) >= 30  # section 5's verdict fails any span under 30x
    # per-shape batches froze the vertex
    assert len(set(grid.batch_sizes)) == 1 and pred.batch_size == grid.batch_sizes[0]
    assert grid.windows is not None and len(grid.budgets) >= 4
    for budget, window in zip(grid.budgets, grid.windows):
        assert len(window) >= 5 and all(0 <= i < len(grid.shapes) for i in window)  # every window's shapes exist
        tokens = [isoflop_tokens(grid, shape, budget, grid.batch_sizes[0]) for shape in grid.shapes_at(budget)]
        per_param = [d / grid.n_params(shape) for d, shape in zip(tokens, grid.shapes_at(budget))]
        # the window straddles the tokens per parameter of cpu's optima, so the minimum can fall inside it
        assert min(per_param) < CPU_OPTIMUM_TOKENS_PER_PARAM[0] and max(per_param) > CPU_OPTIMUM_TOKENS_PER_PARAM[1]
        assert min(tokens) >= 200 * grid.batch_sizes[0] * grid.block_size  # section 2 flags runs under 200 steps
        assert max(tokens) <= 4 * TRAIN_CHARS  # at most ~4 epochs of the text (Muennighoff et al., 2023)
    shape = (pred.n_layer, pred.n_head, pred.n_embd)
    n_pred = grid.n_params(shape)
    assert sum(shape in grid.shapes_at(b) for b in grid.budgets) >= 3  # section 6's baseline: the shape's own L(D)
    assert 1.9 * max(grid.budgets) < 6 * n_pred * pred.tokens < 4 * max(grid.budgets)  # a budget above the grid
    # near the optimum
    assert CPU_OPTIMUM_TOKENS_PER_PARAM[0] <= pred.tokens / n_pred <= CPU_OPTIMUM_TOKENS_PER_PARAM[1]
    assert pred.tokens <= 4 * TRAIN_CHARS and pred.block_size == grid.block_size and pred.device == grid.device


WINDOWED = SweepGrid(**{**GRID.__dict__, "windows": ((0, 1), (1, 2))})


def test_windows_choose_each_budgets_shapes():
    assert WINDOWED.shapes_at(1e9) == ((1, 2, 16), (2, 2, 32)) and WINDOWED.shapes_at(4e9) == ((2, 2, 32), (2, 4, 64))
    assert GRID.shapes_at(4e9) == GRID.shapes  # no windows: every shape at every budget
    runs = grid_runs(WINDOWED)
    assert [(r.n_embd, r.batch_size) for r in runs] == [(32, 8), (64, 4), (16, 8), (32, 8)]  # largest budget first
    assert [r.tokens for r in runs] == [isoflop_tokens(WINDOWED, (r.n_layer, r.n_head, r.n_embd), b, r.batch_size)
                                        for r, b in zip(runs, (4e9, 4e9, 1e9, 1e9))]
    with pytest.raises(ValueError, match="not one of the grid's budgets"):
        WINDOWED.shapes_at(2e9)


@pytest.mark.parametrize("windows,match", [
    (((0, 1),), r"one tuple of shape indices per budget \(2\), got 1"),
    (((0, 1), ()), "non-empty ascending"),
    (((0, 3), (1, 2)), "non-empty ascending"),
    (((1, 0), (1, 2)), "non-empty ascending"),
    (((0, 0), (1, 2)), "non-empty ascending"),
    (((0, True), (1, 2)), "Python ints .* of type bool"),
    (((0, np.int64(1)), (1, 2)), "Python ints .* of type int64"),
    (((0, 1), [1, 2]), "must be a tuple of shape indices, got a list"),
    (((0, 1), (0, 1)), r"in no budget's window"),
    ([(0, 1), (1, 2)], "must be a tuple .*got a list"),
])
def test_bad_windows_are_refused(windows, match):
    with pytest.raises(ValueError, match=match):
        SweepGrid(**{**GRID.__dict__, "windows": windows})


def test_overrides_reach_every_run_but_not_the_grid_fields():
    runs = grid_runs(GRID, seed=3, threads=2)
    assert {(r.seed, r.threads) for r in runs} == {(3, 2)}
    with pytest.raises(ValueError, match="cannot override"):
        grid_runs(GRID, tokens=1000)
    with pytest.raises(TypeError, match="SweepGrid"):
        grid_runs({"shapes": GRID.shapes})


@pytest.mark.parametrize("kwargs,match", [
    ({"batch_sizes": (8, 8)}, "one entry per shape"),
    ({"budgets": (4e9, 1e9)}, "ascending"),
    ({"budgets": ()}, "non-empty"),
    ({"budgets": (-1.0,)}, "positive"),
    ({"shapes": ((1, 3, 16), (2, 2, 32), (2, 4, 64))}, "divisible"),
    ({"shapes": ((1, 2, 16), (1, 2, 16), (2, 4, 64))}, "duplicates"),
    ({"precision": "fp16"}, "precision"),
    ({"batch_sizes": (8, 0, 4)}, "positive ints"),
    ({"budgets": (1e9, float("inf"))}, "finite"),
    ({"lr": float("nan")}, "lr must be"), ({"lr": float("inf")}, "lr must be"), ({"lr": 0.0}, "lr must be"),
    ({"eval_batches": 0}, "eval_batches"), ({"eval_batches": 2.5}, "eval_batches"),
    ({"max_train_chars": 0}, "max_train_chars"), ({"max_train_chars": 1e6}, "max_train_chars"),
])
def test_bad_grids_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SweepGrid(**{**GRID.__dict__, **kwargs})


def test_a_budget_below_one_batch_is_refused_with_the_shape_named():
    tiny = SweepGrid(**{**GRID.__dict__, "budgets": (1e6,)})
    with pytest.raises(ValueError, match=r"less than one batch.*\(2, 4, 64\)|\(1, 2, 16\).*less than one batch"):
        grid_runs(tiny)
    with pytest.raises(ValueError, match="less than one batch"):
        isoflop_tokens(GRID, (2, 4, 64), 1e6, 4)


_IMPORT_ON_A_GPU_MACHINE = """
import torch

def boom(*args, **kwargs):
    raise RuntimeError("CUDA initialised at import")

torch.cuda.is_available = lambda: True  # a GPU machine, but asking the device anything fails
torch.cuda.current_device = torch.cuda.is_bf16_supported = torch.cuda.init = boom
import course_utils.scaling.grids as grids  # must not ask the device
assert "gpu" in grids.PREDICTION_RUNS and "tpu" not in grids.PREDICTION_RUNS  # membership does not look runs up
assert "gpu" in repr(grids.PREDICTION_RUNS) and "unresolved" in repr(grids.PREDICTION_RUNS)  # nor does the repr
assert grids.PREDICTION_RUNS["cpu"].precision == "fp32"  # a cpu run never asks it
assert grids.PREDICTION_RUNS["gpu"].precision == "fp32"  # nor does the gpu grid's fixed precision
auto_on_a_gpu = grids.SweepGrid(**{**grids.SWEEP_GRIDS["gpu"].__dict__, "precision": "auto"})  # made, not resolved
try:
    auto_on_a_gpu.resolved_precision()
except RuntimeError:
    print("resolved on lookup")
"""


def test_importing_the_grids_does_not_initialise_cuda():
    # Importing course_utils changes no global state: a grid's "auto" precision (bf16 where the GPU has it) is
    # resolved when runs are made or looked up, not at import (that called torch.cuda.is_bf16_supported).
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _IMPORT_ON_A_GPU_MACHINE], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "resolved on lookup"


def test_prediction_runs_resolve_their_grids_precision():
    assert sorted(PREDICTION_RUNS) == sorted(SWEEP_GRIDS) and len(PREDICTION_RUNS) == 3
    assert PREDICTION_RUNS["smoke"].precision == "fp32" and PREDICTION_RUNS["cpu"].precision == "fp32"
