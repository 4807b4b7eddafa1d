"""While the learner's function runs inside an exercise check, no local variable of the check holds the answer.

A learner's function runs inside the check, so ``sys._getframe(1).f_locals`` shows the check's local variables: a
check that computes the expected value before calling the learner hands it over to one line of introspection. The
checks compute it after the learner's calls. This test runs every check of every chapter on a spy: called as the
learner's function, it computes the reference solution's answer (the notebook's ``checks.exercise`` call names which),
looks through every frame of ``course_utils.exercises`` on the stack for a local variable equal to that answer (or
holding it in a list of tuples, as a list of cases would), and returns the answer. Where a check also takes the
notebook's data, small stand-ins are given. Equality counts for one non-integral number (a float or a one-element
tensor, either way, any float dtype: float32's relative 1e-5), tensors of more than one element (floating ones of
any dtype to the same 1e-5), lists and strings of more than one item and integers of at least 1,000 (a small integer
equals too many loop counters to mean anything). Not counted: the learner's own arguments and earlier answers.
Allowed, listed in ``ALLOWED``: an input that equals the answer in an identity case (no merge applies, nothing is
filtered, rotation by position 0, a uniform reward), a value the notebook hands the check (the reported bits per
byte, the GPT's own MLM loss, the text exercise 03.2 decodes). Blind spots: a small integer (03's merge counts), a
product of a returned pair, a list whose mean is the answer (03's heap-key check, whose answer is a key, has its own
frame test in ``test_exercises_ch03.py``). Reading
frames is deliberate copying rather than a shortcut, which no check can fully stop (a reader that knows a check's
layout finds truths in its case lists, or returns an object that reads the frames only when the check converts it);
this closes the one-line route. Chapter 01's
``check_top_followers`` takes the learner's answer, not a function, and is left out.
"""

import contextlib
import importlib
import io
import json
import math
import numbers
import pathlib
import re
import sys

import pytest
import torch

from course_utils.text.bpe.tokenizer import BPETokenizer

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXERCISES = str(ROOT / "course_utils" / "exercises")
LEARNERS_OWN = {"args", "answers"}  # the learner's own arguments and earlier answers, in the helpers that call it
ALLOWED = {("01", "check_bits_per_byte"): {"check_bits_per_byte.reported_bits_per_byte"},  # the notebook's value
           ("02", "check_mlm_loss"): {"check_mlm_loss.model_loss"},  # the notebook's value: the GPT's own loss
           ("03", "check_encode_word"): {"<listcomp>.ids", "<genexpr>.ids", "check_encode_word.cases"},
           ("03", "check_decode_ids"): {"check_decode_ids.text"},  # the notebook's text, which its ids encode
           ("05", "check_optimal_policy"): {"check_optimal_policy.pi_ref"},
           ("07", "check_epsilon_filter"): {"check_epsilon_filter.logits", "check_epsilon_filter.cases"},
           ("09", "check_apply_rotary"): {"<listcomp>.v", "_check_relative_property.k",
                                          "_check_relative_property.q", "check_apply_rotary.x"}}


def _data() -> dict[str, tuple]:
    """Small inputs for the checks that take the notebook's data besides the learner's function."""
    g = torch.Generator("cpu").manual_seed(0)
    probs = (0.02 + 0.5 * torch.rand(3000, generator=g, dtype=torch.float64)).tolist()
    ids = torch.randint(0, 12, (2000,), generator=g)
    table = torch.softmax(torch.randn(12, 12, generator=g), dim=1)                       # (V, V) bigram table
    logits, mlm_ids = torch.randn(2, 5, 11, generator=g), torch.randint(0, 11, (2, 5), generator=g)
    chosen = torch.zeros(2, 5, dtype=torch.bool)
    chosen[0, 1] = chosen[1, 3] = True
    mlm_loss = torch.nn.functional.cross_entropy(logits[chosen], mlm_ids[chosen])
    nats, n_tokens, n_bytes = 1.3, 1000, 4200
    text = "to be or not to be, that is the question: whether tis nobler in the mind to suffer"
    return {"check_perplexity": (probs,), "check_pair_counts": (ids, 12),
            "check_bits_per_byte": (nats, n_tokens, n_bytes, nats * n_tokens / (n_bytes * math.log(2))),
            "check_top_followers_function": (ids, "abcdefghijkl"),
            "check_bits_excluding_targets": (table, ids, [0, 1]),
            "check_mlm_loss": (logits, mlm_ids, chosen, mlm_loss),
            "check_capped_unknown_rate": (text, "to be or not, the mind", (1, 3)),
            "check_decode_ids": ([bytes([b]) for b in range(256)], list("héllo".encode()), "héllo"),
            "check_encode_word": ([(97, 98), (256, 99)], ["abc", "cab", "abcab"]),
            "check_merges_until_one_token": (BPETokenizer([(32, 116), (256, 104), (257, 101), (97, 110), (32, 259),
                                                           (260, 100)]), BPETokenizer([(108, 111)]))}


def _checks_and_solutions() -> list:
    """(chapter, check name, solution name) for every ``checks.exercise`` call in the notebooks."""
    found = []
    for path in sorted((ROOT / "notebooks").glob("[01][0-9]_*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        pattern = r'checks\.exercise\(\s*"[^"]+",\s*\w+,\s*\w+\.(\w+),\s*(?:lambda \w+: )?\w+\.(check_\w+)'
        found += [pytest.param(path.name[:2], m[2], m[1], id=f"ch{path.name[:2]}.{m[2]}")
                  for m in re.finditer(pattern, code)]
    return found


def _items(value, depth: int = 2):
    """The value, and the items of lists and tuples in it down to ``depth`` levels (a list of cases of tuples)."""
    yield value
    if depth and isinstance(value, (list, tuple)) and len(value) < 10_000:
        for item in value:
            yield from _items(item, depth - 1)


def _scalar(value) -> float | None:
    """A real number held as a Python or NumPy float or a one-element floating tensor (any dtype), else None."""
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 and value.is_floating_point() and not value.is_meta else None
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, numbers.Integral)):
        return float(value)
    return None


def _same(value, answer) -> bool:
    """Whether local ``value`` holds ``answer``: one real number within float32's precision (rel 1e-5), in any
    float or one-element tensor; a larger tensor of any floating dtype within the same tolerance (of the same dtype
    and exactly, for integers and booleans); a large integer; a list, tuple or string item by item."""
    number = _scalar(answer)
    if number is not None:
        other = _scalar(value)
        return (other is not None and math.isfinite(number) and abs(number - round(number)) > 1e-6
                and math.isclose(other, number, rel_tol=1e-5))
    if isinstance(answer, torch.Tensor):
        if not (isinstance(value, torch.Tensor) and value.shape == answer.shape and answer.numel() > 1):
            return False
        value, answer = value.detach().cpu(), answer.detach().cpu()
        if value.is_floating_point() and answer.is_floating_point():
            return torch.allclose(value.double(), answer.double(), rtol=1e-5, atol=0.0)
        return value.dtype == answer.dtype and torch.equal(value, answer)
    if isinstance(answer, bool) or answer is None:
        return False
    if isinstance(answer, numbers.Integral):
        return isinstance(value, numbers.Integral) and not isinstance(value, bool) and abs(answer) >= 1000 \
            and value == answer
    if isinstance(answer, (list, tuple, str)):
        return type(value) is type(answer) and len(answer) > 1 and len(value) == len(answer) and all(
            _equal(v, a) for v, a in zip(value, answer))
    return False


def _equal(value, item) -> bool:
    if isinstance(item, torch.Tensor) or isinstance(value, torch.Tensor):
        return (isinstance(value, torch.Tensor) and isinstance(item, torch.Tensor) and value.shape == item.shape
                and torch.equal(value.detach().cpu(), item.detach().cpu()))
    return type(value) is type(item) and value == item


def test_every_exercise_call_in_the_notebooks_is_found():
    assert len(_checks_and_solutions()) >= 40  # a change in the call's form must not empty the test below


@pytest.mark.parametrize("chapter,check_name,solution_name", _checks_and_solutions())
def test_no_local_of_a_check_holds_the_answer_while_the_learner_runs(chapter, check_name, solution_name):
    check = getattr(importlib.import_module(f"course_utils.exercises.ch{chapter}"), check_name)
    solution = getattr(importlib.import_module(f"course_utils.solutions.ch{chapter}"), solution_name)
    leaks, calls = set(), []

    def spy(*args, **kwargs):
        answer = solution(*args, **kwargs)
        calls.append(1)
        frame = sys._getframe(1)
        while frame is not None:
            if frame.f_code.co_filename.startswith(EXERCISES):
                leaks.update(f"{frame.f_code.co_name}.{name}" for name, value in list(frame.f_locals.items())
                             if name not in LEARNERS_OWN and any(_same(item, answer) for item in _items(value)))
            frame = frame.f_back
        return answer

    with contextlib.redirect_stdout(io.StringIO()):
        check(spy, *_data().get(check_name, ()))  # the solution's answers pass: the stand-in data is valid
    assert calls, "the check never called the learner's function"
    unexpected = leaks - ALLOWED.get((chapter, check_name), set())
    assert not unexpected, f"while the learner's function runs, these locals hold its answer: {sorted(unexpected)}"
