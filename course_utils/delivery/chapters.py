"""The chapter map: one table of every chapter (file, title, what it measures, time per profile), used by the
README's chapter table, the start-here notebook, the notebook-naming test and the book build.

Times are wall-clock minutes for a whole notebook executed top to bottom on :data:`REFERENCE_MACHINE`: each row's latest
whole-notebook run recorded in ``benchmarks/RESULTS.md`` (the comment beside it gives the run) with no other heavy job
beside it, either in a book (``python -m course_utils.delivery.book``, 2026-12-05) or alone with ``jupyter nbconvert
--execute`` after a fresh read changed the chapter (2026-12-06 or 2026-12-07). Three times are instead first runs from
an empty course cache: chapter 01's smoke time (the 2026-12-05 book's, which includes SmolLM2's one-time conversion,
20-45 s) and chapter 04's two (its sweep trained afresh; 0:21 smoke and 0:28 cpu with the sweep cached); the others had
SmolLM2's converted weights cached. Times vary between sessions and machines by up to about 2x (a Zen 3 box with AVX2
only, with other work beside it, took 1.4 to 2.1 times these for chapters 04 to 06 on 2026-12-07): the map is a rough
guide, not a benchmark.
The start-here notebook has no profile-dependent work, so its cpu time is its smoke time.
``None`` means not measured yet (no notebook has run the gpu profile on a GPU, so it has no times; benchmark scripts
have run some chapters' code on one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from course_utils.profile import PROFILES

REFERENCE_MACHINE = "a 2-core AMD EPYC (Zen 4, AVX-512), 24 GB, no GPU"


@dataclass(frozen=True)
class Chapter:
    number: str  # two digits, "01"
    slug: str  # file name part after the number
    title: str
    summary: str  # what the learner runs and measures, one line
    minutes: dict[str, float | None] = field(default_factory=dict)  # profile -> measured wall minutes

    def __post_init__(self) -> None:
        if len(self.number) != 2 or not self.number.isdigit():
            raise ValueError(f"chapter number must be two digits, got {self.number!r}")
        unknown = set(self.minutes) - set(PROFILES)
        if unknown:
            raise ValueError(f"chapter {self.number}: unknown profiles {sorted(unknown)}; allowed: {PROFILES}")

    @property
    def filename(self) -> str:
        return f"{self.number}_{self.slug}.ipynb"

    def time_text(self, profile: str) -> str:
        """'3 min', '< 1 min', or '–' when not measured yet, for the chapter map."""
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; allowed: {', '.join(PROFILES)}")
        value = self.minutes.get(profile)
        if value is None:
            return "–"
        return "<\u00a01\u00a0min" if value < 1 else f"{round(value)}\u00a0min"  # no-break spaces: one line


START_HERE = Chapter("00", "start_here", "Start here",
                     "check your runtime (device, profile, assets, widgets) and see the chapter map",
                     {"smoke": 0.05, "cpu": 0.05, "gpu": None})

CHAPTERS = (
    Chapter("01", "language_modelling", "Language modelling",
            "chain rule, n-grams, bits per byte, a tiny GPT, SmolLM2 on held-out plays",
            {"smoke": 0.6, "cpu": 6.7, "gpu": None}),  # 6:41 cpu (12-06 night), 34 s smoke (book, empty cache)
    Chapter("02", "attention_masks", "Attention masks",
            "causal, padding, bidirectional, prefix-LM, sliding window, MLM vs causal",
            {"smoke": 0.5, "cpu": 3.9, "gpu": None}),  # 3:56 cpu (12-06), 31 s smoke (12-07, 04f7d1b)
    Chapter("03", "bpe", "Byte-pair encoding",
            "a fast exact BPE trainer against `tokenizers` and tiktoken, vocabulary size at a fixed token budget",
            {"smoke": 0.35, "cpu": 4.9, "gpu": None}),  # 4:55 cpu, 21 s smoke (12-06 late night)
    Chapter("04", "scaling_laws", "Scaling laws",
            "a grid of tiny GPTs, L(N, D) fits, IsoFLOP curves, a prediction made before the run, emergence",
            {"smoke": 0.6, "cpu": 7.8, "gpu": None}),  # 7:49 cpu, 36 s smoke, both from an empty cache (12-06)
    Chapter("05", "rlhf", "RLHF",
            "a Bradley-Terry reward model, PPO with a KL penalty, reward hacking, DPO and GRPO, scored by a hidden "
            "preference", {"smoke": 0.9, "cpu": 6.9, "gpu": None}),  # 6:55 cpu, 0:54 smoke (12-06, 3adbcab)
    Chapter("06", "lora", "LoRA",
            "a LoRA layer from scratch on SmolLM2, memory accounting, SFT with label masking, merging, rank and "
            "rsLoRA, LoRA vs full fine-tuning",
            {"smoke": 1.1, "cpu": 8.2, "gpu": None}),  # 8:09 cpu (12-06), 1:06 smoke (12-07, 04f7d1b)
    Chapter("07", "sampling", "Sampling",
            "temperature, top-k/p, min-p, penalties, beam search, KV cache, checked against transformers",
            {"smoke": 0.7, "cpu": 2.3, "gpu": None}),  # 2:20 cpu (12-06 night), 40 s smoke (12-07, 7894c6e)
    Chapter("08", "hallucination_rag", "Hallucination and RAG",
            "SmolLM2's hallucination rate on a generated knowledge base, calibration and abstention, BM25/dense/"
            "hybrid retrieval, RAG, detection by self-consistency, FAISS",
            {"smoke": 1.5, "cpu": 5.6, "gpu": None}),  # 5:38 cpu (12-06 late night), 1:30 smoke (12-07, 04f7d1b)
    Chapter("09", "inside_a_modern_llm", "Inside a modern LLM",
            "the GPT block from scratch with an ablation of each piece; RMSNorm, RoPE, SwiGLU, GQA; SmolLM2 in our "
            "own code, logits matching transformers' (exactly on the CPU); a tiny mixture of experts",
            {"smoke": 0.5, "cpu": 5.2, "gpu": None}),  # 5:13 cpu (12-07, 7894c6e), 31 s smoke (12-07, 7894c6e)
    Chapter("10", "classify_and_prompt", "Classify and prompt",
            "Shakespeare's Folio genres split by play: a linear probe on SmolLM2, zero-shot and few-shot label "
            "scoring, leakage, prompt sensitivity, constrained answers, chain of thought",
            {"smoke": 1.1, "cpu": 7.2, "gpu": None}),  # 7:14 cpu (b24d4c3), 1:04 smoke (12-06)
    Chapter("11", "training_at_scale", "Training at scale",
            "where training memory goes, mixed precision, checkpointing, accumulation; DDP, FSDP2 and tensor "
            "parallelism on two torch.distributed processes; the pipeline bubble; a 70B parallelism planner",
            {"smoke": 0.6, "cpu": 1.8, "gpu": None}),  # 1:46 cpu, 36 s smoke (12-07, 7894c6e)
)

PLANNED: tuple[Chapter, ...] = ()  # chapters announced in the README before they are written


def chapter(number: str) -> Chapter:
    """The written chapter (or the start-here notebook) with this two-digit number."""
    for item in (START_HERE, *CHAPTERS):
        if item.number == number:
            return item
    written = ", ".join(c.number for c in (START_HERE, *CHAPTERS))
    raise ValueError(f"no notebook numbered {number!r}; written: {written}")


def book_minutes(profile: str) -> int | None:
    """The map's minutes for every notebook at ``profile``, added up and rounded half up (the README states these
    and the start-here notebook prints them); None where no notebook has a time at that profile."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; allowed: {', '.join(PROFILES)}")
    times = [c.minutes.get(profile) for c in (START_HERE, *CHAPTERS)]
    measured = [t for t in times if t is not None]
    return math.floor(math.fsum(measured) + 0.5) if measured else None


def notebook_filenames() -> list[str]:
    """The notebooks of the course in reading order, start-here first."""
    return [c.filename for c in (START_HERE, *CHAPTERS)]


def chapter_map_markdown(repository: str | None = None, link_prefix: str = "notebooks/") -> str:
    """The chapter map as a Markdown table: file link, what it measures, measured minutes per profile, and an
    "Open in Colab" link; the README carries exactly this table (a test checks) and the start-here notebook shows it.
    """
    from course_utils.delivery.colab import colab_url

    head = ["| # | chapter | smoke | cpu | gpu | Colab |", "|---|---|---|---|---|---|"]
    rows = []
    for c in (START_HERE, *CHAPTERS):
        times = " | ".join("-" if not c.minutes else c.time_text(p) for p in PROFILES)
        rows.append(f"| {c.number} | [{c.title}]({link_prefix}{c.filename}): {c.summary} | {times} | "
                    f"[open]({colab_url(c.filename, repository)}) |")
    note = (f"Minutes: one whole notebook, measured on {REFERENCE_MACHINE}, each chapter's latest run recorded in "
            "benchmarks/RESULTS.md with no other heavy job beside it (a book on 2026-12-05, or a run of the chapter "
            "alone on 2026-12-06 or 12-07 after it changed; course_utils/delivery/chapters.py names each run; 01's "
            "smoke time and 04's times are first runs from an empty course cache): a rough guide, which varies "
            "between sessions and machines by up to about 2x (benchmarks/RESULTS.md); – means not measured yet (no "
            "notebook has run the gpu profile on a GPU yet).")
    table = "\n".join(head + rows) + f"\n\n{note}"
    if PLANNED:
        table += "\n\nComing next: " + "; ".join(f"{c.number} {c.title} ({c.summary})" for c in PLANNED) + "."
    return table
