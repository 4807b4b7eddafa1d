"""Chapter 06's rank sweep on SmolLM2 (section 7: extra ranks with the alpha/r and rsLoRA alpha/sqrt(r) scalings, a
figure and a sentence on the top rank) runs only in the gpu profile, so no CI profile executes it: smoke and cpu set
``sweep_ranks=()`` and print a line instead. Here the notebook's own cells up to the sweep's figure run under the gpu
profile with the smoke profile's sizes and two ranks added to the sweep (1, and 16 above the main run's 8, as the gpu
profile's top rank is): on the CPU in CI (about 90 s), on CUDA where there is a GPU, so the sweep's loop, its figure
and its sentence, and the chapter's first sections on the accelerator, run before a learner's GPU first meets them.
It runs in a fresh process (``fresh_process.py``: the memory goes back when it ends)."""

import math
import os
import warnings

import pytest
import torch

from fresh_process import run_in_fresh_process
from notebook_cells import cell_with, code_cells

SWEEP_RANKS = (1, 16)  # above the main run's rank, as the gpu profile's top rank is: the sentence on it runs


@pytest.mark.slow
def test_the_gpu_profiles_rank_sweep_cells_run():
    run_in_fresh_process(run_the_gpu_profiles_rank_sweep_cells)


def run_the_gpu_profiles_rank_sweep_cells():
    """The test's body, in a fresh process: the cells up to the sweep's figure, then assertions on what they left."""
    os.environ["COURSE_PROFILE"] = "gpu"
    os.environ["MPLBACKEND"] = "Agg"
    warnings.filterwarnings("ignore", category=UserWarning)  # Agg shows no figures; the gpu profile found no CUDA
    import matplotlib.pyplot as plt

    cells = code_cells("06_lora.ipynb")
    sizes = cell_with(cells, "SIZES = {", start=True)
    last = cells.index(cell_with(cells, 'if CFG["sweep_ranks"]:', start=True))
    ns: dict = {"__name__": "__main__"}
    try:
        for i, source in enumerate(cells[:last + 1]):
            exec(compile(source, f"06_lora.ipynb: code cell {i}", "exec"), ns)
            if source is sizes:
                assert ns["PROFILE"] == "gpu" and ns["CFG"]["sweep_ranks"], "the gpu profile no longer sweeps ranks"
                ns["CFG"] = {**ns["SIZES"]["smoke"], "sweep_ranks": SWEEP_RANKS}  # the gpu code at smoke's sizes
        figures = [plt.figure(n) for n in plt.get_fignums()]
        sweep_figure = [f for f in figures if any(ax.get_xlabel() == "rank r" for ax in f.axes)]
        assert len(sweep_figure) == 1 and len(sweep_figure[0].axes) == 2
    finally:
        plt.close("all")

    sweep, rank = ns["sweep"], ns["RANK"]
    assert set(sweep) == {(rank, False), (1, False), (16, False), (16, True)}  # r = 1: one scaling (they coincide)
    for result in sweep.values():
        assert math.isfinite(result["final_loss"]) and 0.0 <= result["strict"] <= 1.0
    per_rank = sweep[(1, False)]["trainable"]  # LoRA's trainable parameters grow linearly with the rank
    assert [sweep[(r, False)]["trainable"] for r in (rank, 16)] == [rank * per_rank, 16 * per_rank]
    assert sweep[(16, True)]["trainable"] == sweep[(16, False)]["trainable"]  # rsLoRA changes the scale, not the size
    assert ns["top"] == 16 and isinstance(ns["lower"], bool)  # the sentence on the top rank was written
    assert not any(p.requires_grad for n, p in ns["model"].named_parameters() if "lora_" not in n)
    assert torch.isfinite(torch.tensor(ns["history"].loss)).all()
