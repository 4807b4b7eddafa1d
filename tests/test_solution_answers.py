"""The answers to the exercises' open questions: every ``alias.WHY_...`` a notebook's markdown names exists in that
chapter's solutions module (imported under that alias), and every ``WHY_...`` answer there is named by its notebook,
so a renamed answer or a question that lost its pointer fails here."""

import importlib
import re

import pytest
from notebook_cells import cell_sources, notebook_paths


@pytest.mark.parametrize("path", notebook_paths(chapters_only=True), ids=lambda p: p.stem)
def test_named_answers_exist_and_every_answer_is_named(path):
    chapter = path.name[:2]
    solutions = importlib.import_module(f"course_utils.solutions.ch{chapter}")
    code = "\n".join(cell_sources(path, "code"))
    aliases = set(re.findall(rf"from course_utils\.solutions import ch{chapter} as (\w+)", code))
    assert len(aliases) == 1, f"{path.name}: expected one import of course_utils.solutions.ch{chapter}, got {aliases}"
    alias = aliases.pop()
    markdown = "\n".join(cell_sources(path, "markdown"))
    named = set(re.findall(rf"`{alias}\.(WHY_\w+)`", markdown))
    answers = {name for name in vars(solutions) if name.startswith("WHY_")}
    assert named <= answers, f"{path.name} names answers its solutions module lacks: {sorted(named - answers)}"
    assert answers <= named, f"answers in solutions/ch{chapter}.py that {path.name} never names: {answers - named}"
    other = set(re.findall(r"`(\w+)\.WHY_\w+`", markdown)) - {alias}
    assert not other, f"{path.name} names answers under another name than its import ({alias}): {other}"
    for name in answers:
        assert isinstance(getattr(solutions, name), str) and len(getattr(solutions, name).split()) >= 10, name
