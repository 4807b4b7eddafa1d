"""No line of code is longer than 120 characters: every line of the package, the tests and the benchmarks, and every
line of every notebook's code cells (a learner reads those in a browser and a lecturer projects them; a longer line
scrolls sideways). Markdown cells are not checked: a renderer wraps prose. Characters are counted, not bytes."""

import pathlib

from notebook_cells import indexed_cell_sources, notebook_paths

ROOT = pathlib.Path(__file__).resolve().parents[1]
LIMIT = 120


def long_lines(text: str) -> list[tuple[int, int]]:
    """(line number from 1, length) of every line of ``text`` longer than LIMIT characters."""
    return [(n, len(line)) for n, line in enumerate(text.splitlines(), 1) if len(line) > LIMIT]


def test_long_lines_counts_characters_not_bytes():
    assert long_lines("x" * LIMIT + "\n" + "é" * LIMIT) == []
    assert long_lines("ok\n" + "y" * (LIMIT + 1)) == [(2, LIMIT + 1)]


def test_no_python_file_has_a_line_over_120_characters():
    found = [f"{path.relative_to(ROOT)}:{n} ({length})"
             for folder in ("course_utils", "tests", "benchmarks") for path in sorted((ROOT / folder).rglob("*.py"))
             for n, length in long_lines(path.read_text(encoding="utf-8"))]
    assert not found, f"{len(found)} lines over {LIMIT} characters: " + ", ".join(found[:20])


def test_no_notebook_code_cell_has_a_line_over_120_characters():
    found = [f"{path.name} cell {index} line {n} ({length})" for path in notebook_paths()
             for index, source in indexed_cell_sources(path, "code") for n, length in long_lines(source)]
    assert not found, f"{len(found)} code lines over {LIMIT} characters: " + ", ".join(found[:20])
