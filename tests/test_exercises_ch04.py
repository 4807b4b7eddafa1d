"""Chapter 04's exercise checks accept the reference solution and other correct forms, reject likely wrong answers
without revealing the expected value, and count parameters exactly as transformers does."""

import math

import numpy as np
import pytest
import torch

from course_utils.exercises import ch04 as ex
from course_utils.solutions import ch04 as sol


from exercise_helpers import rejects  # noqa: E402


# ---------- exercise 1: Llama parameter count ----------

@pytest.mark.parametrize("name", list(ex.LLAMA_CONFIGS))
def test_reference_count_equals_transformers(name):
    transformers = pytest.importorskip("transformers")
    import torch

    config = transformers.LlamaConfig(**ex.LLAMA_CONFIGS[name], attention_bias=False, mlp_bias=False)
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(config)
    assert sum(p.numel() for p in model.parameters()) == sol.llama_parameter_count(ex.LLAMA_CONFIGS[name])


def test_smollm2_count_is_the_published_135m():
    assert sol.llama_parameter_count(ex.LLAMA_CONFIGS["SmolLM2-135M"]) == 134_515_008


def test_llama_count_accepts_solution_and_numpy_int():
    ex.check_llama_parameter_count(sol.llama_parameter_count)
    ex.check_llama_parameter_count(lambda c: np.int64(sol.llama_parameter_count(c)))


def no_gqa(c):  # k and v as wide as q
    return sol.llama_parameter_count({**c, "num_key_value_heads": c["num_attention_heads"]})


def head_always_counted(c):
    return sol.llama_parameter_count({**c, "tie_word_embeddings": False})


def no_norms(c):
    return sol.llama_parameter_count(c) - (2 * c["num_hidden_layers"] + 1) * c["hidden_size"]


def two_mlp_matrices(c):
    return sol.llama_parameter_count(c) - c["num_hidden_layers"] * c["hidden_size"] * c["intermediate_size"]


@pytest.mark.parametrize("wrong", [no_gqa, head_always_counted, no_norms, two_mlp_matrices])
def test_llama_count_rejects_likely_mistakes(wrong):
    message = rejects(ex.check_llama_parameter_count, wrong)
    assert str(sol.llama_parameter_count(ex.LLAMA_CONFIGS["SmolLM2-135M"])) not in message.replace(",", "")


def _through_transformers(c):
    import torch
    import transformers

    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**c, attention_bias=False, mlp_bias=False))
    return sum(p.numel() for p in model.parameters())


def _through_chapter_11(c):
    from course_utils.parallel.memory import ModelShape

    return ModelShape("x", c["num_hidden_layers"], c["hidden_size"], c["num_attention_heads"],
                      c["num_key_value_heads"], c["intermediate_size"], c["vocab_size"],
                      c["tie_word_embeddings"]).n_params()


@pytest.mark.parametrize("ready_made", [_through_transformers, _through_chapter_11, lambda c: ex._llama_reference(c)])
def test_llama_count_refuses_ready_made_counters_and_restores_them(ready_made):
    pytest.importorskip("transformers")
    config = ex.LLAMA_CONFIGS["SmolLM2-135M"]
    assert ready_made(dict(config)) == sol.llama_parameter_count(config)  # each is right outside the check
    assert "switched off" in rejects(ex.check_llama_parameter_count, ready_made)
    assert ready_made(dict(config)) == sol.llama_parameter_count(config)  # and works again afterwards


def test_llama_count_rejects_a_fractional_count():
    assert "whole number" in rejects(ex.check_llama_parameter_count,
                                     lambda c: float(sol.llama_parameter_count(c)) + 0.5)
    message = rejects(ex.check_llama_parameter_count, lambda c: sol.llama_parameter_count(c) / 7)  # 19216429.71...
    assert "whole number" in message
    assert str(sol.llama_parameter_count(ex.LLAMA_CONFIGS["SmolLM2-135M"])) not in message.replace(",", "")


# ---------- exercise 2: compute to reach a loss ----------

def closed_form_value(fit, target):  # C = 6 ((L - E) / K)^(-(alpha + beta) / (alpha beta)), K = A G^-alpha + B G^beta
    E, A, B, a, b = (fit[k] for k in ("E", "A", "B", "alpha", "beta"))
    G = (a * A / (b * B)) ** (1 / (a + b))  # N* = G (C/6)^(beta/(alpha+beta)), D* = (C/6) / N*
    K = A * G ** -a + B * G ** b
    return 6 * ((target - E) / K) ** (-(a + b) / (a * b))


def closed_form(fit, target):
    if target <= fit["E"]:
        raise ValueError("unreachable")
    return closed_form_value(fit, target)


def test_compute_to_reach_accepts_solution_search_closed_form_and_tensors():
    ex.check_compute_to_reach(sol.compute_to_reach)
    ex.check_compute_to_reach(closed_form)
    ex.check_compute_to_reach(lambda fit, target: torch.tensor(closed_form(fit, target), dtype=torch.float64))
    ex.check_compute_to_reach(lambda fit, target: torch.tensor([closed_form(fit, target)], dtype=torch.float64))

    def by_grid(fit, target):  # another correct method: a fine grid over log C, then refine
        if target <= fit["E"]:
            raise ValueError("unreachable")
        grid = np.exp(np.linspace(0, 200, 400_001))
        losses = np.array([sol._optimal_loss(fit, c) for c in grid[::100]])
        i = int(np.argmax(losses <= target))
        lo, hi = math.log(grid[::100][i - 1]), math.log(grid[::100][i])
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if sol._optimal_loss(fit, math.exp(mid)) > target else (lo, mid)
        return math.exp(hi)

    ex.check_compute_to_reach(by_grid)


def closed_form_refusing_below_e_only(fit, target):  # at target == E: Python's own ZeroDivisionError (0.0 ** -x)
    if target < fit["E"]:
        raise ValueError("unreachable")
    return closed_form_value(fit, target)


def test_compute_to_reach_names_another_error_at_e():
    said = rejects(ex.check_compute_to_reach, closed_form_refusing_below_e_only)
    assert "raise ValueError" in said and "ZeroDivisionError" in said

    def bare_error_at_e(fit, target):  # an exception without a message: named, with no dangling colon
        if target <= fit["E"]:
            raise NotImplementedError
        return closed_form_value(fit, target)

    assert rejects(ex.check_compute_to_reach, bare_error_at_e).endswith("your function raised NotImplementedError")


def twenty_tokens_per_param(fit, target):  # Chinchilla's rule of thumb instead of this fit's optimum
    if target <= fit["E"]:
        raise ValueError
    lo, hi = 0.0, 200.0
    for _ in range(200):
        c = math.exp((lo + hi) / 2)
        n = math.sqrt(c / 120)
        loss = fit["E"] + fit["A"] / n ** fit["alpha"] + fit["B"] / (20 * n) ** fit["beta"]
        lo, hi = ((lo + hi) / 2, hi) if loss > target else (lo, (lo + hi) / 2)
    return math.exp(hi)


def returns_n_opt(fit, target):
    c = sol.compute_to_reach(fit, target)
    a, b = fit["alpha"], fit["beta"]
    return (a * fit["A"] / (b * fit["B"])) ** (1 / (a + b)) * (c / 6) ** (b / (a + b))


def never_refuses(fit, target):
    return sol.compute_to_reach(fit, target) if target > fit["E"] else 1e300


@pytest.mark.parametrize("wrong", [twenty_tokens_per_param, returns_n_opt, never_refuses,
                                   lambda fit, t: sol.compute_to_reach(fit, t) / 6])
def test_compute_to_reach_rejects_likely_mistakes(wrong):
    message = rejects(ex.check_compute_to_reach, wrong)
    assert f"{sol.compute_to_reach(ex.PUBLISHED_FITS['Hoffmann et al. 2022'], 2.5):.6g}" not in message


# ---------- exercise 3: effective tokens ----------

def test_effective_tokens_accepts_solution_numpy_and_tensors():
    ex.check_effective_tokens(sol.effective_tokens)
    ex.check_effective_tokens(lambda s, u, r=15.4: torch.tensor(sol.effective_tokens(s, u, r), dtype=torch.float64))
    ex.check_effective_tokens(lambda s, u, r=15.4: np.float32(sol.effective_tokens(s, u, r)).astype(np.float64)
                              if s < 1e9 else sol.effective_tokens(s, u, r))


def epochs_not_repetitions(seen, unique, r_star=15.4):
    if seen <= unique:
        return seen
    return unique + unique * r_star * (1 - math.exp(-(seen / unique) / r_star))


def always_formula(seen, unique, r_star=15.4):  # applies the repetition formula below one epoch too
    repetitions = seen / unique - 1
    return unique + unique * r_star * (1 - math.exp(-repetitions / r_star))


def unique_only(seen, unique, r_star=15.4):
    return min(seen, unique)


def whole_repetitions(seen, unique, r_star=15.4):  # rounds the repetitions down to whole epochs
    if seen <= unique:
        return seen
    return unique * (1 + r_star * (1 - math.exp(-(seen // unique - 1) / r_star)))


def nothing_repeated_until_a_second_epoch(seen, unique, r_star=15.4):  # right from two epochs on only
    return min(seen, unique) if seen < 2 * unique else sol.effective_tokens(seen, unique, r_star)


@pytest.mark.parametrize("wrong", [epochs_not_repetitions, always_formula, unique_only, whole_repetitions,
                                   nothing_repeated_until_a_second_epoch, lambda s, u, r=15.4: s])
def test_effective_tokens_rejects_likely_mistakes(wrong):
    rejects(ex.check_effective_tokens, wrong)


def test_repeated_data_is_worth_less_but_more_than_unique():
    value = sol.effective_tokens(4 * 100e9, 100e9)
    assert 100e9 < value < 400e9


# ---------- the checks' own references are no shortcut ----------

def _via_compute_reference(fit, target):  # the check's reference, with the refusal it lacks
    if target <= fit["E"]:
        raise ValueError("unreachable")
    return ex._compute_reference(fit, target)


@pytest.mark.parametrize("check,shortcut", [
    (ex.check_compute_to_reach, _via_compute_reference),
    (ex.check_effective_tokens, lambda s, u, r=15.4: ex._effective_reference(s, u, r)),
    (ex.check_effective_tokens, ex._effective_reference),
])
def test_checks_refuse_their_own_reference(check, shortcut):
    assert "switched off" in rejects(check, shortcut)
    # and the reference works again afterwards
    assert ex._effective_reference(30.0, 10.0, 5.0) == sol.effective_tokens(30.0, 10.0, 5.0)
    assert ex._compute_reference(ex.PUBLISHED_FITS["Hoffmann et al. 2022"], 2.5) == pytest.approx(
        sol.compute_to_reach(ex.PUBLISHED_FITS["Hoffmann et al. 2022"], 2.5), rel=1e-9)


def test_exercises_refuse_the_reference_through_checks_exercise():
    from course_utils import checks

    for number, shortcut, solution, check in [
        ("2", _via_compute_reference, sol.compute_to_reach, ex.check_compute_to_reach),
        ("3", ex._effective_reference, sol.effective_tokens, ex.check_effective_tokens),
    ]:
        with pytest.raises(AssertionError, match="switched off"):
            checks.exercise(number, shortcut, solution, check)


# ---------- added by the mutation audit ----------

def log_grid_search(fit, target, per_decade=100):  # the first C of a grid of 100 points per decade: up to 2.3% high
    if target <= fit["E"]:
        raise ValueError("unreachable")
    return next(10 ** (i / per_decade) for i in range(40 * per_decade)
                if sol._optimal_loss(fit, 10 ** (i / per_decade)) <= target)


def refuses_only_below_e(fit, target):  # "<" for "<=": at exactly E the search runs to its upper end instead
    if target < fit["E"]:
        raise ValueError("unreachable")
    return sol.compute_to_reach(fit, target) if target > fit["E"] else math.exp(200.0)


def refuses_only_exactly_e(fit, target):  # "==" for "<=": below E it answers instead of refusing
    if target == fit["E"]:
        raise ValueError("unreachable")
    return sol.compute_to_reach(fit, target) if target > fit["E"] else 1.0


@pytest.mark.parametrize("wrong", [log_grid_search, refuses_only_below_e, refuses_only_exactly_e])
def test_compute_to_reach_rejects_near_misses(wrong):
    # the grid's answers are 0.3% to 1.6% high on the four cases: inside a tolerance of 2e-2, outside 2e-3
    rejects(ex.check_compute_to_reach, wrong)


def test_effective_tokens_rejects_an_answer_that_ignores_r_star():
    rejects(ex.check_effective_tokens, lambda s, u, r=15.4: sol.effective_tokens(s, u))


# ---------- a one-element array is a number ----------

def compute_by_fsolve(fit, target):  # the adversarial review's route: fsolve returns an array of shape (1,)
    from scipy.optimize import fsolve

    from course_utils.scaling.fit import ChinchillaFit

    if target <= fit["E"]:
        raise ValueError("the loss E is never reached")
    law = ChinchillaFit(**fit, objective=0.0)
    return np.exp(fsolve(lambda log_c: law.optimal_loss(np.exp(log_c)) - target, 10.0, xtol=1e-13))


def test_one_element_arrays_are_accepted_as_numbers():
    ex.check_llama_parameter_count(lambda c: np.array([sol.llama_parameter_count(c)]))
    ex.check_llama_parameter_count(lambda c: np.array([[float(sol.llama_parameter_count(c))]]))
    ex.check_compute_to_reach(lambda fit, target: np.array([sol.compute_to_reach(fit, target)]))
    ex.check_effective_tokens(lambda s, u, r=15.4: np.array([[sol.effective_tokens(s, u, r)]]))
    pytest.importorskip("scipy.optimize")
    assert compute_by_fsolve(dict(ex.PUBLISHED_FITS["Hoffmann et al. 2022"]), 2.5).shape == (1,)
    ex.check_compute_to_reach(compute_by_fsolve)


def test_arrays_of_more_than_one_number_and_fractional_arrays_are_still_refused():
    message = rejects(ex.check_llama_parameter_count, lambda c: np.array([sol.llama_parameter_count(c)] * 2))
    assert "expected one number, got shape (2,)" in message
    assert "whole number" in rejects(ex.check_llama_parameter_count,
                                     lambda c: np.array([sol.llama_parameter_count(c) + 0.5]))
    message = rejects(ex.check_compute_to_reach, lambda f, t: np.array([sol.compute_to_reach(f, t)] * 2))
    assert "expected one number, got shape (2,)" in message


def _bracketed(fit, target, top=1e25):  # raises for reachable targets beyond a fixed upper bracket
    if not target > fit["E"]:
        raise ValueError("unreachable")
    if sol._optimal_loss(fit, top) > target:
        raise ValueError("not reachable below the bracket")
    return sol.compute_to_reach(fit, target)


def _refuses_near_e(fit, target):  # "too close to E" taken for "unreachable"
    if target <= 1.1 * fit["E"]:
        raise ValueError("unreachable")
    return sol.compute_to_reach(fit, target)


@pytest.mark.parametrize("wrong", [_bracketed, lambda fit, t: _bracketed(fit, t, top=1e30), _refuses_near_e])
def test_compute_to_reach_rejects_refusing_reachable_targets_near_e(wrong):
    assert "raised ValueError" in rejects(ex.check_compute_to_reach, wrong)
    ex.check_compute_to_reach(sol.compute_to_reach)


def _from_the_checks_frame(*args):  # reads the expected value from the calling frames' locals, if one holds it
    import sys
    frame = sys._getframe(1)
    while frame is not None:
        if "expected" in frame.f_locals:
            return frame.f_locals["expected"]
        frame = frame.f_back
    return 1.0  # none found (or only an earlier case's, above): a wrong answer


def _refusing_from_the_checks_frame(fit, target):  # with the refusal below E that exercise 2 asks for
    if target <= fit["E"]:
        raise ValueError("unreachable")
    return _from_the_checks_frame()


@pytest.mark.parametrize("check,route", [(ex.check_compute_to_reach, _refusing_from_the_checks_frame),
                                         (ex.check_effective_tokens, _from_the_checks_frame)])
def test_no_calling_frame_holds_the_expected_value(check, route):  # the checks compute it after the learner's call
    rejects(check, route)


def test_compute_to_reach_names_the_precision_a_coarse_grid_misses():
    def grid(fit, target, per_decade=100):  # the first budget of a log grid that reaches the target: up to 2.3% over
        if target <= fit["E"]:
            raise ValueError("unreachable")
        law = ex.ChinchillaFit(**fit, objective=0.0)
        c = 1.0
        while float(law.optimal_loss(c)[0]) > target:
            c *= 10 ** (1 / per_decade)
        return c
    assert "0.2%" in rejects(ex.check_compute_to_reach, grid)
