"""Chapter 09's collapse probe (section 2.1: a deeper copy of the model at initialisation, one per variant) holds its
assertion at every profile's sizes. CI has no GPU, so the gpu profile's sizes (8 x 256, a 32-block copy, batch
64 x 128) are run here on the CPU: the notebook's own cells, from its imports to the batch the probe reads, then the
probe cell up to its figure. About 30 s for the gpu profile on two cores."""

import pytest

from notebook_cells import cell_with, code_cells

NOTEBOOK = "09_inside_a_modern_llm.ipynb"


def probe_cells() -> list[str]:
    cells = code_cells(NOTEBOOK)
    first = next(i for i, c in enumerate(cells) if c.startswith("import inspect, math\n"))  # imports, profile
    last = next(i for i, c in enumerate(cells) if c.startswith('A = CFG["ablation"]'))  # the model size and `idx`
    probe = cell_with(cells, "def position_similarity")
    return cells[first:last + 1] + [probe[:probe.index("\nfig, ax")]]  # the figure needs the trained models


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:the gpu profile found no CUDA")  # on purpose: its sizes, on the CPU
@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_collapse_probe_holds_at_every_profiles_sizes(profile, monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", profile)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict = {}
    for i, cell in enumerate(probe_cells()):
        exec(compile(cell, f"{NOTEBOOK}: probe cell {i}", "exec"), namespace)  # the probe cell asserts itself
    assert namespace["PROFILE"] == profile and namespace["deep"].n_layer == namespace["CFG"]["depth_probe"]
    similarity, collapse = namespace["similarity"], namespace["COLLAPSE"]
    assert collapse["no residual"] > 0.9 and collapse["no residual"] - collapse["pre-norm (GPT-2)"] > 0.5
    assert similarity["no residual"][1] > 0.5  # the first block alone averages the positions (the prose's point)
    assert 0 < namespace["FROM_AVERAGE"] < 0.1  # attention rows at initialisation: close to a plain average
    if profile == "gpu":  # the reviewer's measurement at these sizes: pre-norm drifts up to 0.32 (the old check: < 0.2)
        pre = similarity["pre-norm (GPT-2)"]
        assert 0.2 < pre[-1] < 0.45 and pre[-1] > pre[0] + 0.005  # "drifts upward", as the prose then says
