"""The chapter-01 benchmark's arm names: each ``+``-joined change does what its docstring says, from either base."""

import pathlib
from dataclasses import replace

import pytest

PATH = pathlib.Path(__file__).parents[1] / "benchmarks" / "bench_char_training.py"


@pytest.fixture(scope="module")
def bench(benchmark_script):
    return benchmark_script("bench_char_training")


def test_arms_start_from_the_named_recipe_and_apply_each_change(bench):
    from course_utils.train.recipes import adamw_char_recipe, course_char_recipe

    course, compiled = bench.make_arm("course", 65, 1.0)
    assert course.train == replace(course_char_recipe(65).train, eval_batches=bench.EVAL_BATCHES, progress=False)
    assert not compiled and course.batch_size == 48
    arm, _ = bench.make_arm("adamw+muon+b48+steps200+warm25+muonmom0.85+muonlr0.05+eval40", 65, 1.0)
    assert (arm.batch_size, arm.train.optimizer, arm.train.max_steps, arm.train.warmup_steps) == (48, "muon", 200, 25)
    assert (arm.train.muon_momentum, arm.train.muon_lr, arm.train.eval_interval) == (0.85, 0.05, 40)
    assert arm.train.lr == adamw_char_recipe(65).train.lr
    # the AdamW recipe plus the course recipe's changes is the course recipe
    assert arm.train == course.train and arm.model == course.model
    back, _ = bench.make_arm("course+adamwopt", 65, 1.0)
    assert back.train.optimizer == "adamw"
    assert bench.make_arm("course+compile", 65, 1.0)[1] is True


def test_steps_scale_shrinks_steps_and_warm_up(bench):
    arm, _ = bench.make_arm("course", 65, 0.05)
    assert arm.train.max_steps == 10 and arm.train.warmup_steps == 10


@pytest.mark.parametrize("name", ["course+bogus", "baseline+muon", "adamw+b"])
def test_unknown_or_misplaced_changes_are_refused(bench, name):
    with pytest.raises(SystemExit):
        bench.make_arm(name, 65, 1.0)
