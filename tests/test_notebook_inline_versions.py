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


def test_chapter_08_teaches_bm25_and_fusion_inline():
    cells = inline_cells(NOTEBOOK_DIR / "08_hallucination_rag.ipynb")
    assert any("def my_bm25_scores" in c for c in cells) and any("def my_rrf" in c for c in cells)


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


# Chapter 02 writes BERT's 80-10-10 corruption inline (cell "def mask_tokens_inline"); besides the cell's own asserts,
# run by test_inline_versions_agree_with_the_package, check it against the package on many random shapes and rates.
CH02 = NOTEBOOK_DIR / "02_attention_masks.ipynb"


def _ch02_corruption_namespace(wrong: tuple[str, str] | None = None) -> dict:
    from notebook_cells import cell_with

    cell = cell_with(inline_cells(CH02), "def mask_tokens_inline")
    if wrong is not None:
        assert cell.count(wrong[0]) == 1, f"{wrong[0]!r} is no longer in the inline cell: update this test"
        cell = cell.replace(*wrong)
    namespace: dict = {}
    exec(compile(code_cells(CH02)[1], "02 imports", "exec"), namespace)
    exec(compile(cell, "02 inline corruption", "exec"), namespace)
    return namespace


def test_chapter_02_teaches_attention_and_the_mlm_corruption_inline():
    cells = inline_cells(CH02)
    assert any("def attention" in c for c in cells)
    corruption = [c for c in cells if "def mask_tokens_inline" in c]
    assert len(corruption) == 1 and "torch.where" in corruption[0] and "mlm.mask_tokens" in corruption[0]


def test_chapter_02_inline_corruption_equals_the_package_on_random_inputs():
    namespace = _ch02_corruption_namespace()
    torch, inline, mlm = namespace["torch"], namespace["mask_tokens_inline"], namespace["mlm"]
    draw = torch.Generator().manual_seed(2024)
    shapes = [(1, 1), (3, 30), (2, 190)]  # one token; 0.15 T = 4.5 and 28.5, halves that float32 rounding decides
    shapes += [tuple(int(x) for x in torch.randint(1, 200, (2,), generator=draw)) for _ in range(25)]
    for trial, (B, T) in enumerate(shapes):
        B = 1 + B % 8
        vocab = int(torch.randint(2, 300, (), generator=draw))
        mask_prob = 0.15 if trial < 3 else (0.15, 0.3, 0.5, 1.0, 0.0)[trial % 5]  # the fixed shapes at BERT's 15%
        ids = torch.randint(vocab, (B, T), generator=draw)
        ours = inline(ids, vocab, vocab, torch.Generator().manual_seed(trial), mask_prob=mask_prob)
        theirs = mlm.mask_tokens(ids, vocab, vocab, torch.Generator().manual_seed(trial), mask_prob=mask_prob)
        assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1]), (B, T, vocab, mask_prob)


@pytest.mark.parametrize("wrong", [("u < 0.8)", "u < 0.7)"),                       # 70% [MASK] instead of 80%
                                   ("torch.where(chosen, idx, -100)", "torch.where(chosen & (u < 0.8), idx, -100)")],
                         ids=["mask-share", "loss-only-at-MASK"])
def test_chapter_02_a_wrong_inline_corruption_fails(wrong):
    with pytest.raises(AssertionError, match="inline corruption == mlm.mask_tokens"):  # the cell's own assert
        _ch02_corruption_namespace(wrong)
