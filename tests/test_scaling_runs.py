"""A scaling run is deterministic, validated, and reports what the fits and the benchmark need."""

import dataclasses
import math

import pytest
import torch

from course_utils.scaling.runs import PRECISIONS, ScalingRun, default_precision, train_scaling_run

TINY = ScalingRun(n_layer=1, n_head=2, n_embd=16, tokens=40 * 8 * 32, block_size=32, batch_size=8,
                  max_train_chars=50_000, eval_batches=2)


def test_run_is_deterministic_and_leaves_the_thread_setting_alone():
    threads = torch.get_num_threads()
    a, b = train_scaling_run(TINY), train_scaling_run(TINY)
    assert torch.get_num_threads() == threads
    assert a["val_loss"] == b["val_loss"] and a["steps"] == 40 and a["tokens"] == 40 * 8 * 32
    assert a["val_loss"] < math.log(a["vocab_size"])  # learned more than a uniform guess over the characters
    assert a["flops_counted"] > a["flops_6nd"] > 0
    assert a["flops_6nd"] == 6 * a["n_params"] * a["tokens"] and a["n_params"] < a["n_params_total"]  # N: no embeddings
    assert a["gflops_per_s"] == pytest.approx(a["flops_counted"] / a["seconds"] / 1e9)
    assert (a["precision"], a["device"], a["threads"]) == ("fp32", "cpu", 1)


def test_a_progress_bar_changes_nothing_but_the_display(capsys):
    assert train_scaling_run(TINY, progress=True)["val_loss"] == train_scaling_run(TINY)["val_loss"]
    assert "/40" in capsys.readouterr().err  # tqdm's bar over the run's 40 steps (its last count may be cleared)
    with pytest.raises(TypeError, match="progress"):
        train_scaling_run(TINY, progress="yes")


@pytest.mark.filterwarnings("ignore:this CPU has no native bf16")
def test_bf16_run_is_deterministic_and_uses_the_explicit_attention_on_cpu():
    spec = dataclasses.replace(TINY, tokens=8 * 8 * 32, precision="bf16")
    assert spec.config(65).attention == "manual" and TINY.config(65).attention == "sdpa"
    assert dataclasses.replace(spec, device="cuda").config(65).attention == "sdpa"  # fused attention on GPUs
    a, b = train_scaling_run(spec), train_scaling_run(spec)
    assert a["val_loss"] == b["val_loss"] and a["precision"] == "bf16" and math.isfinite(a["val_loss"])


def test_default_precision_is_a_known_precision():
    assert default_precision("cpu") == "fp32" and default_precision("mps") == "fp32"   # bf16 is slower on CPUs
    assert default_precision("cuda") in PRECISIONS
    if not torch.cuda.is_available():
        assert default_precision("cuda") == "fp32"


@pytest.mark.parametrize("kwargs,match", [
    ({"tokens": 10}, "at least one batch"),
    ({"n_embd": 15}, "divisible"),
    ({"threads": 0}, "threads"),
    ({"warmup_frac": 1.0}, "warmup_frac"),
    ({"warmup_frac": True}, "warmup_frac"),
    ({"warmup_frac": "0.1"}, "warmup_frac"),
    ({"precision": "fp16"}, "precision"),
    ({"precision": "BF16"}, "precision"),
    ({"device": "gpu"}, "device"),
    ({"device": 0}, "device"),
    ({"tokens": 4096.0}, "tokens must be a positive int"),
    ({"n_layer": True}, "n_layer must be a positive int"),
    ({"seed": -1}, "seed must be a non-negative int"),
    ({"max_train_chars": 0}, "max_train_chars"),
])
def test_bad_specs_are_refused(kwargs, match):
    fields = {**TINY.__dict__, **kwargs}
    with pytest.raises(ValueError, match=match):
        ScalingRun(**fields)


def test_numpy_ints_are_stored_as_python_ints_with_the_same_run_key():
    import numpy as np

    from course_utils.scaling.sweep import run_key

    as_numpy = {name: np.int64(value) for name, value in TINY.__dict__.items()
                if isinstance(value, int) and not isinstance(value, bool)}  # as read from a numpy grid
    run = ScalingRun(**{**TINY.__dict__, **as_numpy})
    assert run == TINY and run_key(run) == run_key(TINY)  # the cache of a Python-int spec is found
    assert all(type(getattr(run, name)) is int for name in as_numpy)


def test_a_spec_is_required():
    with pytest.raises(TypeError, match="ScalingRun"):
        train_scaling_run({"n_layer": 1})


def test_a_run_in_the_callers_process_leaves_its_global_generator_alone():
    spec = dataclasses.replace(TINY, tokens=4 * 8 * 32)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = train_scaling_run(spec)
    assert torch.equal(torch.rand(3), expected)  # the caller's next draws do not depend on the run
    torch.manual_seed(7)  # another caller state: the run's weights come from spec.seed alone
    assert train_scaling_run(spec)["val_loss"] == first["val_loss"]
