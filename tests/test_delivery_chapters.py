"""The chapter map: one table behind the README, the start-here notebook and the notebook names."""

import json
import pathlib

import pytest

from course_utils.delivery.chapters import (CHAPTERS, START_HERE, Chapter, book_minutes, chapter,
                                            chapter_map_markdown, notebook_filenames)

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_the_readme_carries_the_generated_chapter_map():
    readme = (ROOT / "README.md").read_text()
    assert chapter_map_markdown() in readme, (
        "README's chapter table differs from course_utils.delivery.chapters: paste chapter_map_markdown()'s output")


def test_the_readmes_book_times_are_the_maps_sums():
    """The README types the book's total times; they must be the map's sums, rounded, so they cannot drift."""
    import re
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"about (\d+) minutes for the cpu book and about (\d+) minutes for the smoke book", readme)
    assert found, "README no longer states the book's cpu and smoke times in the expected sentence"
    sums = [book_minutes(p) for p in ("cpu", "smoke")]
    assert [int(found[1]), int(found[2])] == sums, f"README's book times should be the map's sums, {sums} minutes"


def test_every_chapter_row_links_its_file_and_colab():
    table = chapter_map_markdown()
    for c in (START_HERE, *CHAPTERS):
        assert f"(notebooks/{c.filename})" in table
        assert f"blob/main/notebooks/{c.filename})" in table
        assert (ROOT / "notebooks" / c.filename).exists()


def test_the_map_links_siblings_and_a_forks_colab_when_asked():
    table = chapter_map_markdown("https://github.com/someone/fork", link_prefix="")  # as the start-here notebook
    for c in (START_HERE, *CHAPTERS):
        assert f"]({c.filename}):" in table and f"](notebooks/{c.filename})" not in table
        assert f"(https://colab.research.google.com/github/someone/fork/blob/main/notebooks/{c.filename})" in table


def test_notebook_filenames_are_the_notebooks_folder_in_reading_order():
    on_disk = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert notebook_filenames() == on_disk and on_disk[0] == START_HERE.filename == "00_start_here.ipynb"


def test_each_notebook_title_opens_with_its_name_in_the_map():
    """The map, the README and other chapters name a chapter by its map title; the notebook's heading starts with it."""
    for c in (START_HERE, *CHAPTERS):
        first = json.loads((ROOT / "notebooks" / c.filename).read_text())["cells"][0]
        heading = "".join(first["source"]).splitlines()[0]
        assert heading.startswith(f"# {c.number} · {c.title}"), (c.filename, heading, c.title)


def test_times_and_lookup():
    c = Chapter("42", "x", "X", "y", {"smoke": 0.4, "cpu": 9.6, "gpu": None})
    assert [c.time_text(p) for p in ("smoke", "cpu", "gpu")] == ["<\u00a01\u00a0min", "10\u00a0min", "–"]
    edges = Chapter("43", "x", "X", "y", {"smoke": 0.0, "cpu": 1.0})  # 0.0 is measured (a quick notebook)
    assert [edges.time_text(p) for p in ("smoke", "cpu", "gpu")] == ["<\u00a01\u00a0min", "1\u00a0min", "–"]
    assert chapter("07").slug == "sampling" and chapter("00") is START_HERE
    with pytest.raises(ValueError, match="no notebook numbered '99'"):
        chapter("99")
    with pytest.raises(ValueError, match="two digits"):
        Chapter("7", "x", "X", "y")
    with pytest.raises(ValueError, match="two digits"):
        Chapter("7a", "x", "X", "y")
    with pytest.raises(ValueError, match="unknown profiles"):
        Chapter("07", "x", "X", "y", {"laptop": 3.0})
    with pytest.raises(ValueError, match="allowed"):
        c.time_text("tpu")


def test_start_here_checks_the_runtime_and_shows_the_map():
    nb = json.loads((ROOT / "notebooks" / START_HERE.filename).read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    for needed in ("get_profile()", "pick_device()", "missing_assets()", "chapter_map_markdown(", "explore("):
        assert needed in code, f"00_start_here lacks {needed}"


def test_book_minutes_add_the_map_up_half_up():
    for profile in ("cpu", "smoke"):
        total = sum(c.minutes[profile] for c in (START_HERE, *CHAPTERS))
        assert book_minutes(profile) == int(total + 0.5)  # 8.5 -> 9, where round() would give 8
    assert book_minutes("gpu") is None  # no notebook has run the gpu profile on a GPU
    with pytest.raises(ValueError, match="allowed"):
        book_minutes("laptop")
