"""The pipeline bubble: GPipe and 1F1B schedules simulated step by step, their idle cells against (p - 1)/(m + p - 1),
their dependencies, and how many micro-batches' activations the first stage holds."""

import pytest

from course_utils.parallel.pipeline import bubble_fraction, pipeline_schedule

SIZES = [(1, 1), (1, 5), (2, 1), (2, 2), (4, 4), (4, 8), (4, 2), (8, 32), (5, 3)]


def test_bubble_fraction_by_hand():
    assert bubble_fraction(4, 4) == 3 / 7
    assert bubble_fraction(1, 10) == 0
    assert bubble_fraction(8, 1) == 7 / 8


@pytest.mark.parametrize("kind", ["gpipe", "1f1b"])
@pytest.mark.parametrize("p, m", SIZES)
def test_idle_cells_equal_the_formula(kind, p, m):
    schedule = pipeline_schedule(p, m, kind)
    assert schedule.n_steps == 2 * (m + p - 1)
    assert schedule.idle_fraction() == pytest.approx(bubble_fraction(p, m), abs=1e-12)
    for row in schedule.grid:  # every stage runs each forward and each backward exactly once
        assert sorted(cell for cell in row if cell) == sorted([f"F{j}" for j in range(m)] + [f"B{j}" for j in range(m)])


@pytest.mark.parametrize("kind", ["gpipe", "1f1b"])
@pytest.mark.parametrize("p, m", SIZES)
def test_dependencies_are_respected(kind, p, m):
    grid = pipeline_schedule(p, m, kind).grid
    when = {(stage, cell): t for stage, row in enumerate(grid) for t, cell in enumerate(row) if cell}
    for j in range(m):
        for stage in range(1, p):
            assert when[(stage, f"F{j}")] > when[(stage - 1, f"F{j}")]
        for stage in range(p - 1):
            assert when[(stage, f"B{j}")] > when[(stage + 1, f"B{j}")]
        assert when[(p - 1, f"B{j}")] > when[(p - 1, f"F{j}")]


def test_gpipe_by_hand_and_1f1b_holds_fewer_micro_batches():
    gpipe = pipeline_schedule(2, 2, "gpipe").grid
    assert gpipe == [["F0", "F1", "", "", "B0", "B1"], ["", "F0", "F1", "B0", "B1", ""]]
    assert pipeline_schedule(4, 8, "gpipe").in_flight == [8, 8, 8, 8]  # every stage holds all m
    assert pipeline_schedule(4, 8, "1f1b").in_flight == [4, 3, 2, 1]  # stage i holds p - i
    assert pipeline_schedule(4, 2, "1f1b").in_flight[0] == 2  # min(p, m)


@pytest.mark.parametrize("args", [(0, 4), (4, 0), (2.0, 4), (True, 4)])
def test_bad_sizes_are_rejected(args):
    with pytest.raises(ValueError, match="positive int"):
        bubble_fraction(*args)
    with pytest.raises(ValueError, match="positive int"):
        pipeline_schedule(*args)


def test_unknown_schedule_is_rejected():
    with pytest.raises(ValueError, match="gpipe"):
        pipeline_schedule(2, 2, "interleaved")


def test_numpy_sizes_are_taken_and_the_schedule_holds_python_ints():
    import numpy as np

    assert bubble_fraction(np.int64(4), np.int32(8)) == bubble_fraction(4, 8)
    schedule = pipeline_schedule(np.int64(3), np.int64(4), "1f1b")
    assert schedule == pipeline_schedule(3, 4, "1f1b") and (type(schedule.p), type(schedule.m)) == (int, int)
    for bad in ((np.float64(4.0), 8), (4, True)):
        with pytest.raises(ValueError, match="must be a positive int"):
            bubble_fraction(*bad)
