"""Chapter 09's cells after the ablation name an arm that diverged at the shared learning rate wherever they use its
trained model (the attention-scale, collapse and stream-size cells): such an arm was trained at a lower rate, and a
reader must not take its numbers for an equal-rate comparison. No arm diverges at the course's profiles, so the test
runs the notebook's own cells at the smoke profile, then marks three arms as diverged and runs those three cells."""

import pytest

from notebook_cells import cell_with, code_cells

NOTEBOOK = "09_inside_a_modern_llm.ipynb"


@pytest.mark.slow
def test_a_diverged_arm_is_named_as_such_wherever_its_trained_model_is_used(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    cells = code_cells(NOTEBOOK)
    first = next(i for i, c in enumerate(cells) if c.startswith("import inspect, math\n"))  # imports, profile
    users = [cell_with(cells, marker) for marker in ("def attention_entropy", "def position_similarity",
                                                     "def stream_rms")]
    before = cells[first:cells.index(users[0])]  # everything up to them: data, model, the ablation's training
    namespace: dict = {}
    for i, cell in enumerate(before):
        exec(compile(cell, f"{NOTEBOOK}: cell {i}", "exec"), namespace)
    assert not namespace["DIVERGED"], "an arm diverged at smoke: this test's premise (none does) changed"
    lr = namespace["A"]["lr"]
    for name in ("no 1/sqrt(D)", "no residual", "no norm"):
        namespace["DIVERGED"][name] = [(lr, 7)]  # as train_arm records a divergence at step 7 of the shared rate
    shown: list[str] = []
    namespace["display"] = lambda *objects: shown.extend(str(getattr(o, "data", o)) for o in objects)
    namespace["print"] = lambda *args, **kwargs: shown.append(" ".join(map(str, args)))
    for cell, arm in zip(users, ("no 1/sqrt(D)", "no residual", "no norm")):
        shown.clear()
        exec(compile(cell, f"{NOTEBOOK}: the cell that uses {arm!r}", "exec"), namespace)
        note = namespace["lr_note"](arm)
        assert "trained at lr" in note and any(note in text for text in shown), (arm, shown)
