"""Exercise checks, one module per chapter (plus :mod:`~course_utils.exercises.peft_routes`, the peft functions
chapter 06's checks switch off): importable, so tests/ can feed them right and wrong answers.

Each ``check_*`` takes the learner's function (or answer) plus whatever data from the notebook it needs, and uses
:mod:`course_utils.checks`; messages never reveal the expected answer.
"""
