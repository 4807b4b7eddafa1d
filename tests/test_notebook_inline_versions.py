"""A chapter teaches an idea inline (a few lines in the notebook) and then uses the package's copy. Its inline cells,
the code cells that start with ``# inline``, assert on random inputs that the two agree. This test runs those cells
on their own (after the notebook's import cell), so a change to either copy fails here, in seconds, without executing
the whole notebook."""

import pytest

from notebook_cells import NOTEBOOKS as NOTEBOOK_DIR, code_cells

NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def inline_cells(path) -> list[str]:
    return [c for c in code_cells(path) if c.startswith("# inline")]


WITH_INLINE = [p for p in NOTEBOOKS if inline_cells(p)]


def test_chapter_03_writes_its_fast_trainer_inline():
    cells = inline_cells(NOTEBOOK_DIR / "03_bpe.ipynb")
    assert any("def train_fast_inline" in c and "heapq" in c for c in cells)


def test_chapter_04_writes_its_fitting_objective_inline():
    cells = inline_cells(NOTEBOOK_DIR / "04_scaling_laws.ipynb")
    assert any("def my_chinchilla_objective" in c and "def my_compute_optimal" in c for c in cells)


def test_chapter_05_teaches_its_losses_inline():
    names = {p.name for p in WITH_INLINE}
    assert "05_rlhf.ipynb" in names
    assert len(inline_cells(NOTEBOOK_DIR / "05_rlhf.ipynb")) >= 4  # BT, PPO, DPO, GRPO


def test_chapter_06_teaches_lora_and_the_masked_loss_inline():
    cells = inline_cells(NOTEBOOK_DIR / "06_lora.ipynb")
    assert any("class MyLoRALinear" in c for c in cells) and any("def my_masked_lm_loss" in c for c in cells)


def test_chapter_07_teaches_temperature_nucleus_and_the_kv_cache_inline():
    cells = inline_cells(NOTEBOOK_DIR / "07_sampling.ipynb")
    for name in ("def softmax_with_temperature", "def nucleus_from_scratch", "K_cache, V_cache", "def kv_bytes"):
        assert any(name in c for c in cells), f"{name} is not taught in an inline cell of chapter 07"


def test_chapter_08_teaches_bm25_inline():
    cells = inline_cells(NOTEBOOK_DIR / "08_hallucination_rag.ipynb")
    assert any("def my_bm25_scores" in c for c in cells)


@pytest.mark.parametrize("path", WITH_INLINE, ids=lambda p: p.name)
def test_inline_versions_agree_with_the_package(path):
    imports = code_cells(path)[1]  # the cell after the Colab set-up: imports, profile, device, seed
    namespace: dict = {}
    exec(compile(imports, f"{path.name}:imports", "exec"), namespace)
    for i, cell in enumerate(inline_cells(path)):
        exec(compile(cell, f"{path.name}:inline cell {i}", "exec"), namespace)


def test_a_disagreeing_inline_version_fails(tmp_path):
    # the mechanism can fail: an inline loss that differs from the package's raises
    path = NOTEBOOK_DIR / "05_rlhf.ipynb"
    imports = code_cells(path)[1]
    cell = inline_cells(path)[0].replace("-F.logsigmoid(r_chosen - r_rejected).mean()",
                                          "-F.logsigmoid(r_rejected - r_chosen).mean()")
    namespace: dict = {}
    exec(compile(imports, "imports", "exec"), namespace)
    with pytest.raises(AssertionError):
        exec(compile(cell, "bad inline cell", "exec"), namespace)


def test_chapter_09_builds_the_gpt_block_and_the_llama_pieces_inline():
    cells = inline_cells(NOTEBOOK_DIR / "09_inside_a_modern_llm.ipynb")
    for name in ("def causal_attention", "class MyMultiHeadAttention", "class MyMLP", "class MyBlock", "class MyGPT",
                 "def my_rms_norm", "def my_swiglu"):
        assert any(name in c for c in cells), f"{name} is not taught in an inline cell of chapter 09"
