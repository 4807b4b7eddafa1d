"""A scaling run is deterministic, validated, and reports what the fits need."""

import math

import pytest
import torch

from course_utils.scaling.runs import ScalingRun, train_scaling_run

TINY = ScalingRun(n_layer=1, n_head=2, n_embd=16, tokens=40 * 8 * 32, block_size=32, batch_size=8,
                  max_train_chars=50_000, eval_batches=2)


def test_run_is_deterministic_and_leaves_the_thread_setting_alone():
    threads = torch.get_num_threads()
    a, b = train_scaling_run(TINY), train_scaling_run(TINY)
    assert torch.get_num_threads() == threads
    assert a["val_loss"] == b["val_loss"] and a["steps"] == 40 and a["tokens"] == 40 * 8 * 32
    assert a["val_loss"] < math.log(a["vocab_size"])  # learned more than a uniform guess over the characters
    assert a["flops_counted"] > a["flops_6nd"] > 0


@pytest.mark.parametrize("kwargs,match", [
    ({"tokens": 10}, "at least one batch"),
    ({"n_embd": 15}, "divisible"),
    ({"threads": 0}, "threads"),
    ({"warmup_frac": 1.0}, "warmup_frac"),
])
def test_bad_specs_are_refused(kwargs, match):
    fields = {**TINY.__dict__, **kwargs}
    with pytest.raises(ValueError, match=match):
        ScalingRun(**fields)
