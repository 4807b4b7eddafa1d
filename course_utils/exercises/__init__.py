"""Exercise checks, one module per chapter: importable, so tests/ can feed them right and wrong answers.

Each ``check_*`` takes the learner's function (or answer) plus whatever data from the notebook it needs, and uses
:mod:`course_utils.checks`; messages never reveal the expected answer.
"""
