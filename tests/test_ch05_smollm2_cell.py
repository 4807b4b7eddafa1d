"""Chapter 05's gpu-only cell (section 11: GRPO, then preference pairs, a reward model and PPO, on SmolLM2-135M-Instruct
itself) runs in no CI profile: smoke and cpu skip it, and CI has no GPU. Its 80 lines of glue (chat prompts from the
word-level lines, the policy wrapper, the reward model on a copied trunk, held-out evaluation) would first run on a
learner's Colab GPU. Here the notebook's own cells run with the gpu profile's settings (on the CPU in CI, on CUDA where
there is a GPU), except the run's lengths: 2 iterations of 2 prompts x 2 samples of 8 tokens, 10 pairs, 2 reward-model
steps (about a minute), in a fresh process (``fresh_process.py``: the memory goes back when it ends)."""

import ast
import math
import os
import warnings

import pytest
import torch

from fresh_process import run_in_fresh_process
from notebook_cells import cell_with, code_cells

TINY_RUN = dict(iterations=2, prompts=2, group=2, max_new_tokens=8, eval_prompts=4, pairs=10, rm_steps=2)


def rl_beta_statement(cells: list[str]) -> str:
    """Only the ``RL_BETA = ...`` line of the cell that sets it (the rest of that cell trains the tiny model)."""
    tree = ast.parse(cell_with(cells, "RL_BETA = ", start=True))
    first = tree.body[0]
    assert isinstance(first, ast.Assign) and first.targets[0].id == "RL_BETA"
    return ast.unparse(first)


@pytest.mark.slow
def test_the_gpu_profiles_smollm2_cell_runs_end_to_end():
    run_in_fresh_process(run_the_gpu_profiles_smollm2_cell)


def run_the_gpu_profiles_smollm2_cell():
    """The test's body, in a fresh process: the cells, then the assertions on what they left."""
    os.environ["COURSE_PROFILE"] = "gpu"
    os.environ["MPLBACKEND"] = "Agg"
    warnings.filterwarnings("ignore", "the gpu profile found no CUDA")  # on purpose: the gpu profile's code, on a CPU
    import matplotlib.pyplot as plt

    cells = code_cells("05_rlhf.ipynb")
    ns: dict = {"__name__": "__main__"}

    def run(name, source):
        exec(compile(source, f"05_rlhf.ipynb: {name}", "exec"), ns)

    run("imports", cell_with(cells, "PROFILE = get_profile()"))
    run("sizes", cell_with(cells, "CFG = by_profile(", start=True))
    assert ns["PROFILE"] == "gpu"  # on the CPU here; on a CUDA machine the same test runs the cell on the GPU
    gpu_run = ns["CFG"]["smollm2_rl"]
    assert gpu_run is not None and set(TINY_RUN) <= set(gpu_run), "the gpu profile's SmolLM2 settings changed"
    ns["CFG"]["smollm2_rl"] = S = {**gpu_run, **TINY_RUN}  # train_layers and lr stay the gpu profile's
    run("corpus", cell_with(cells, "corpus = load_shakespeare()", start=True))
    run("RL_BETA", rl_beta_statement(cells))
    run("chat template", cell_with(cells, "from course_utils.model.pretrained import load_smollm2", start=True))
    try:
        run("SmolLM2 RL", cell_with(cells, 'if CFG["smollm2_rl"] is None:', start=True))
    finally:
        plt.close("all")

    assert len(ns["smol_log"].true_score) == S["iterations"]
    for result in (ns["before"], ns["after"], ns["ppo_after"]):
        assert math.isfinite(result.true_score) and math.isfinite(result.kl) and math.isfinite(result.reward)
    assert 0.0 <= ns["rm_log_s"].val_accuracy[-1] <= 1.0
    # only the last train_layers decoder layers (and the final norm) moved; the reference is untouched
    policy, reference = ns["smol_policy"].model.state_dict(), ns["smol_ref"].model.state_dict()
    n_layers = ns["smol_policy"].model.config.num_hidden_layers
    first = [k for k in policy if ".layers.0." in k]
    last = [k for k in policy if f".layers.{n_layers - 1}." in k]
    assert first and last
    assert all(torch.equal(policy[k], reference[k]) for k in first)
    assert any(not torch.equal(policy[k], reference[k]) for k in last)
    assert not any(p.requires_grad for p in ns["smol_ref"].parameters())
