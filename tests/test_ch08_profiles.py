"""Chapter 08's profile sizes fit what the knowledge base and the corpus hold, in every profile: the gpu profile
cannot be executed in CI (no GPU), so its sizes are checked here without running the notebook."""

import pytest

from course_utils.profile import PROFILES, by_profile
from course_utils.rag.chunking import chunk_lines
from course_utils.rag.knowledge import REAL_FACTS, make_knowledge_base
from course_utils.text.corpus import list_works, load_work
from notebook_cells import cell_with, code_cells

NOTEBOOK = "08_hallucination_rag.ipynb"


def profile_sizes(profile: str) -> dict:
    source = cell_with(code_cells(NOTEBOOK), "CFG = by_profile(", start=True)
    namespace = {"by_profile": lambda options: by_profile(options, profile), "REAL_FACTS": REAL_FACTS}
    exec(compile(source, "CFG cell", "exec"), namespace)
    return namespace["CFG"]


@pytest.mark.parametrize("profile", PROFILES)
def test_sizes_fit_the_knowledge_base(profile):
    cfg, kb = profile_sizes(profile), make_knowledge_base(seed=0)
    n_fictional, n_real = len(kb.questions_of("fictional")), len(kb.questions_of("real"))
    assert 1 <= cfg["n_fictional"] <= n_fictional and 1 <= cfg["n_real"] <= n_real
    questions = kb.sample_questions(cfg["n_fictional"], cfg["n_real"], seed=0)
    assert len(questions) == cfg["n_fictional"] + cfg["n_real"]
    assert cfg["n_probe"] <= n_fictional and cfg["n_probe"] // 2 <= n_fictional
    assert max(cfg["ks"]) <= 50  # HybridRetriever's default fusion depth
    assert cfg["n_consistency"] >= 2 and cfg["n_samples"] >= 2


@pytest.mark.parametrize("profile", PROFILES)
def test_the_works_hold_enough_passages_for_the_faiss_section(profile):
    cfg, kb = profile_sizes(profile), make_knowledge_base(seed=0)
    available = sum(len(chunk_lines(load_work(k), lines_per_chunk=2, stride=cfg["faiss_stride"]))
                    for k in sorted(list_works()))
    assert cfg["faiss_chunks"] - len(kb.documents) <= available, (profile, available)
