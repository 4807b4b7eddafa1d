"""The shared exercise checks accept every correct form, reject wrong answers, and never reveal the answer."""

import inspect
import sys
import types

import pytest
import torch

from course_utils import checks

SECRET = torch.tensor([[3, 1], [4, 1]])


@pytest.mark.parametrize("answer", [SECRET, SECRET.tolist(), SECRET.float(), SECRET.to(torch.int32),
                                    tuple(map(tuple, SECRET.tolist())), list(SECRET), [row.float() for row in SECRET]])
def test_check_equal_accepts_every_form(answer, capsys):
    checks.check_equal("toy", answer, SECRET)
    assert "[pass]" in capsys.readouterr().out


@pytest.mark.parametrize("answer", [SECRET + 1, SECRET.T, [[3, 1]], "31", None])
def test_check_equal_rejects_without_revealing(answer):
    with pytest.raises(AssertionError) as info:
        checks.check_equal("toy", answer, SECRET)
    assert "[[3, 1], [4, 1]]" not in str(info.value) and "tensor([[3" not in str(info.value)


def test_check_close_hides_the_expected_number():
    with pytest.raises(AssertionError) as info:
        checks.check_close("ppl", 3.0, 4.123456)
    assert "4.12" not in str(info.value) and "too small" in str(info.value)
    with pytest.raises(AssertionError, match="expected a number"):
        checks.check_close("ppl", "four", 4.0)
    with pytest.raises(AssertionError, match="1 of 3 values"):
        checks.check_close("vec", [1.0, 2.0, 3.5], torch.tensor([1.0, 2.0, 3.0]))
    checks.check_close("vec", (1.0, 2.0, 3.0), torch.tensor([1.0, 2.0, 3.0]))


def test_exercise_checks_the_reference_when_not_attempted(capsys):
    def stub(*args):
        raise NotImplementedError

    checks.exercise("9", stub, lambda: 4.0, lambda fn: checks.check_close("four", fn(), 4.0))
    out = capsys.readouterr().out
    assert "[todo]" in out and "[pass]" not in out  # "[pass] four" came from the reference, not the learner
    with pytest.raises(AssertionError):
        checks.exercise("9", lambda: 5.0, lambda: 4.0, lambda fn: checks.check_close("four", fn(), 4.0))


def test_exercise_refuses_an_answer_that_calls_the_reference_solution(capsys):
    from course_utils.solutions import ch09 as solutions

    x, positions = torch.randn(1, 2, 3, 4, generator=torch.Generator().manual_seed(0)), torch.arange(3)
    expected = solutions.apply_rotary(x, positions)

    def check(fn):
        checks.check_close("rotary", fn(x, positions), expected)

    with pytest.raises(AssertionError, match="switched off"):
        checks.exercise("1", lambda *a: solutions.apply_rotary(*a), solutions.apply_rotary, check)
    namespace = dict(solutions.__dict__)  # the same code, written out by the learner in their own cell
    exec(compile(inspect.getsource(solutions.apply_rotary), "<learner cell>", "exec"), namespace)
    checks.exercise("1", namespace["apply_rotary"], solutions.apply_rotary, check)
    assert "[pass] exercise 1" in capsys.readouterr().out
    assert torch.equal(solutions.apply_rotary(x, positions), expected)  # restored after the check


def test_exercise_reports_the_reference_itself_as_ref_not_pass(capsys):
    from course_utils.solutions import ch09 as solutions

    x, positions = torch.randn(1, 2, 3, 4, generator=torch.Generator().manual_seed(0)), torch.arange(3)
    expected = solutions.apply_rotary(x, positions)

    def check(fn):
        checks.check_close("rotary", fn(x, positions), expected)

    same_code = types.FunctionType(solutions.apply_rotary.__code__, solutions.apply_rotary.__globals__,
                                   argdefs=solutions.apply_rotary.__defaults__)
    for handed_in in (solutions.apply_rotary, same_code):
        checks.exercise("1", handed_in, solutions.apply_rotary, check)
        out = capsys.readouterr().out
        assert "[ref] exercise 1" in out and "[pass]" not in out
    with pytest.raises(AssertionError):  # a wrong check still fails for the reference
        checks.exercise("1", solutions.apply_rotary, solutions.apply_rotary, lambda fn: checks.check_close(
            "rotary", fn(x, positions), expected + 1))
    checks.exercise("2", 3, 3, lambda answer: checks.check_equal("three", answer, 3))  # a value: same object is fine
    assert "[pass] exercise 2" in capsys.readouterr().out


def test_every_reference_solution_can_be_switched_off():
    """checks.exercise switches a reference off only when it is a plain function without closures."""
    import importlib
    import pkgutil

    import course_utils.solutions as package

    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for name, value in vars(module).items():
            if callable(value) and not name.startswith("_") and getattr(value, "__module__", None) == module.__name__ \
                    and not isinstance(value, type):
                assert checks._switchable(value), f"{module.__name__}.{name} cannot be switched off"


def test_package_functions_switched_off_refuses_every_route_and_restores():
    from course_utils.model import modern
    from course_utils.model.modern import rotate_half  # a name imported before the switch is caught too

    x = torch.arange(4.0)
    with checks.package_functions_switched_off(modern.rotate_half, modern.RMSNorm.forward):
        for call in (lambda: rotate_half(x), lambda: modern.rotate_half(x), lambda: modern.RMSNorm(4)(x)):
            with pytest.raises(AssertionError, match="switched off") as info:
                call()
        assert "course_utils.model.modern.RMSNorm.forward" in str(info.value)  # says which function
        assert modern.rope_cos_sin(torch.arange(2), torch.ones(1))[0].shape == (2, 2)  # others keep working
    assert rotate_half(x).tolist() == [-2.0, -3.0, 0.0, 1.0]  # restored
    with pytest.raises(RuntimeError, match="boom"):
        with checks.package_functions_switched_off(modern.rotate_half):
            raise RuntimeError("boom")
    assert modern.rotate_half(x).tolist() == [-2.0, -3.0, 0.0, 1.0]  # restored after an error as well
    with pytest.raises(TypeError, match="plain Python functions"):
        with checks.package_functions_switched_off(torch.cat):
            pass


def test_a_c_profiler_running_around_a_check_is_left_alone():
    """Under cProfile (or %prun) sys.getprofile() is the profiler object, which cannot be called from a Python hook:
    the switch-off still refuses, and leaves the profiler running and working."""
    import cProfile
    import pstats

    from course_utils.model import modern

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        with checks.package_functions_switched_off(modern.rotate_half):
            with pytest.raises(AssertionError, match="switched off"):
                modern.rotate_half(torch.arange(4.0))
        assert sys.getprofile() is profiler
        modern.rotate_half(torch.arange(4.0))  # restored, and seen by the profiler
    finally:
        profiler.disable()
    assert any(name == "rotate_half" for _, _, name in pstats.Stats(profiler).stats)


def test_exercise_switches_off_the_chapters_other_solutions_too():
    from course_utils.solutions import ch06 as solutions

    delta = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    expected = solutions.captured_fraction(delta, 2)

    def through_another_solution(d, r):  # exercise 2b answered with exercise 2a's solution
        b, a = solutions.best_rank_r_update(d, r)
        return float((b @ a).pow(2).sum() / d.pow(2).sum())

    def check(fn):
        checks.check_close("fraction", fn(delta, 2), expected)

    assert through_another_solution(delta, 2) == pytest.approx(expected, rel=1e-5)  # it works outside the check
    with pytest.raises(AssertionError, match="switched off"):
        checks.exercise("2b", through_another_solution, solutions.captured_fraction, check)
    assert solutions.best_rank_r_update(delta, 2) is not None  # switched back on


def test_copies_made_before_the_check_and_reloaded_modules_are_caught():
    import importlib
    import sys

    from course_utils.solutions import ch06 as solutions

    delta = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    expected = solutions.captured_fraction(delta, 2)
    ref = solutions.captured_fraction
    saved_copy = types.FunctionType(ref.__code__, ref.__globals__)  # made before the switch-off

    def check(fn):
        checks.check_close("fraction", fn(delta, 2), expected)

    def through_a_copy(d, r):
        return saved_copy(d, r)

    def through_a_reload(d, r):
        return importlib.reload(sys.modules[ref.__module__]).captured_fraction(d, r)

    def swallowing(d, r):  # catching the refusal does not help: the call is recorded, not only refused
        try:
            return saved_copy(d, r)
        except Exception:
            return saved_copy(d, r)

    outer = sys.getprofile()
    try:
        for answer in (through_a_copy, through_a_reload, swallowing):
            with pytest.raises(AssertionError, match="ran a copy of course_utils.solutions.ch06.captured_fraction"):
                checks.exercise("2b", answer, ref, check)
            assert sys.getprofile() is outer  # the watch is removed afterwards
    finally:
        importlib.reload(sys.modules[ref.__module__])  # leave one consistent module behind
    from course_utils.solutions import ch06 as reloaded

    def own(d, r):  # written out by the learner: passes, and nothing is left switched off
        u, s, v = torch.linalg.svd(d)
        return float(s[:r].pow(2).sum() / s.pow(2).sum())

    checks.exercise("2b", own, reloaded.captured_fraction, check)
    assert reloaded.captured_fraction(delta, 2) == pytest.approx(expected, rel=1e-5)


def test_a_nested_switch_off_keeps_the_outer_watch():
    # chapter 11's checks run the learner inside their own switch-off, within exercise()'s: the inner watch
    # replaced the outer one, so a reloaded solution passed all four exercises (a second reader found it)
    import importlib
    import sys

    from course_utils.exercises import ch11 as ex
    from course_utils.solutions import ch11 as sol

    module = sys.modules[sol.ring_schedule.__module__]
    try:
        with pytest.raises(AssertionError, match="ran a copy of course_utils.solutions.ch11.ring_schedule"):
            checks.exercise("1", lambda p: importlib.reload(module).ring_schedule(p), sol.ring_schedule,
                            ex.check_ring_schedule)
    finally:
        importlib.reload(module)


# ---- added by the mutation audit


def test_check_close_refuses_a_broadcastable_shape():
    # torch.allclose broadcasts: without the shape check a (1, 3) answer or one number would pass for a (3,) tensor
    for answer in ([[1.0, 2.0, 3.0]], [[1.0], [2.0], [3.0]]):
        with pytest.raises(AssertionError, match="shape"):
            checks.check_close("vec", answer, torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(AssertionError, match="shape"):
        checks.check_close("twos", 2.0, torch.tensor([2.0, 2.0]))


def test_check_equal_refuses_a_broadcastable_shape():
    for answer in (5, [5], [[5, 5]]):
        with pytest.raises(AssertionError, match="shape"):
            checks.check_equal("fives", answer, torch.tensor([5, 5]))


def test_check_close_default_tolerance_on_numbers():
    # the defaults are atol 1e-6 and rtol 1e-5: 5e-5 off at 1.0 fails, 5e-6 off passes, also for a 0-d tensor
    checks.check_close("one", 1.0 + 5e-6, 1.0)
    checks.check_close("zero", 5e-7, 0.0)
    for answer in (1.0 + 5e-5, torch.tensor(1.0 + 5e-5, dtype=torch.float64)):
        with pytest.raises(AssertionError):
            checks.check_close("one", answer, 1.0)
    with pytest.raises(AssertionError):
        checks.check_close("zero", 5e-6, 0.0)


def test_check_true_fails_on_every_false_value():
    import numpy as np

    for false in (False, torch.tensor(False), np.bool_(False), 0):
        with pytest.raises(AssertionError, match="not satisfied"):
            checks.check_true("toy", false)
    checks.check_true("toy", torch.tensor(True))


def test_only_a_solutions_modules_own_functions_are_switched_off():
    # a solutions module may import a package helper the learner is free to call; exercise() must not switch it off
    import sys

    from course_utils.device import make_generator

    name = "course_utils.solutions._audit_toy"
    module = types.ModuleType(name)
    exec("def answer(x):\n    return x\n\ndef other(x):\n    return -x\n", module.__dict__)
    module.make_generator = make_generator  # what `from course_utils.device import make_generator` leaves behind
    sys.modules[name] = module
    try:
        reach = checks._solutions_in_reach(module.answer)
        assert reach[0] is module.answer and module.other in reach and make_generator not in reach
        checks.exercise("toy", lambda x: make_generator(0, "cpu").initial_seed() + x, module.answer,
                        lambda fn: checks.check_equal("toy", fn(1), 1))
    finally:
        del sys.modules[name]


def test_check_equal_keeps_integers_beyond_float32_exact():
    # a tensor answer is compared in float64: 2^24 + 1 is not a float32, so a float32 detour would both reject the
    # right count and accept the count next to it
    count = 2**24 + 1
    checks.check_equal("count", torch.tensor([count]), torch.tensor([count]))
    with pytest.raises(AssertionError):
        checks.check_equal("count", torch.tensor([count]), torch.tensor([count - 1]))


def test_a_closure_is_not_switched_off_and_still_checked():
    def make_answer():
        offset = 1

        def answer(x):
            return x + offset
        return answer

    closure = make_answer()
    with pytest.raises(TypeError, match="plain Python functions"):
        with checks.package_functions_switched_off(closure):
            pass
    assert closure(1) == 2  # untouched
    checks.exercise("c", lambda x: x + 1, closure, lambda fn: checks.check_equal("plus one", fn(1), 2))
    with pytest.raises(AssertionError):
        checks.exercise("c", lambda x: x, closure, lambda fn: checks.check_equal("plus one", fn(1), 2))


def test_check_close_names_the_shape_of_a_tensor_given_for_a_number():
    with pytest.raises(AssertionError, match=r"shape \(2,\), expected \(\)"):
        checks.check_close("ppl", torch.tensor([4.0, 4.0]), 4.0)
    checks.check_close("ppl", torch.tensor(4.0, dtype=torch.float16), 4.0)  # a 0-d tensor of any dtype is a number
    checks.check_close("ppl", torch.tensor([4.0]), 4.0)  # so is a one-element tensor, as chapters 05, 09, 10 accept
    checks.check_close("ppl", torch.tensor([[4.0]], dtype=torch.bfloat16), 4.0)
    with pytest.raises(AssertionError, match="too large"):
        checks.check_close("ppl", torch.tensor([4.5]), 4.0)
    with pytest.raises(AssertionError, match=r"shape \(1,\), expected \(\)"):  # a tensor expected: its exact shape
        checks.check_close("ppl", torch.tensor([4.0]), torch.tensor(4.0))


def test_a_ragged_list_fails_as_an_assertion_with_a_clear_message():
    with pytest.raises(AssertionError, match="expected a tensor or a list of numbers"):
        checks.check_close("rows", [[1.0, 2.0], [3.0]], torch.tensor([[1.0, 2.0], [3.0, 4.0]]))


def test_a_list_of_one_element_tensors_is_a_vector():
    for answer in ([torch.tensor(1.0), torch.tensor(2.0)], [torch.tensor([1.0]), torch.tensor([2.0])]):
        assert checks.as_float_tensor("v", answer).shape == (2,)
    checks.check_close("v", [torch.tensor([1.0]), torch.tensor([2.0])], torch.tensor([1.0, 2.0]))


def test_rows_of_length_one_are_rows_where_the_expected_shape_says_so():
    rows = [torch.tensor([True])]  # a (1, 1) mask built row by row, at T = 1
    assert checks.as_float_tensor("m", rows).shape == (1,)  # no shape known: a loop's scalars
    assert checks.as_float_tensor("m", rows, shape=(1, 1)).shape == (1, 1)
    checks.check_equal("mask at T = 1", rows, torch.tensor([[True]]))
    checks.check_close("v", [torch.tensor([1.0]), torch.tensor([2.0])], torch.tensor([[1.0], [2.0]]))  # (2, 1) too


def test_a_list_of_tensors_of_different_shapes_fails_with_a_clear_message():
    with pytest.raises(AssertionError, match=r"tensors of different shapes \[\(1,\), \(2,\)\]"):
        checks.check_close("rows", [torch.tensor([1.0, 2.0]), torch.tensor([3.0])],
                           torch.tensor([[1.0, 2.0], [3.0, 4.0]]))


def test_another_method_of_the_same_name_in_the_same_file_keeps_working():
    # the watch for copies matches the qualified name (RMSNorm.forward), not the bare name shared by SwiGLU.forward
    from course_utils.model import modern

    mlp = modern.SwiGLU(4, 8)  # any weights: the output is compared with itself
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(0))
    expected = mlp(x)
    with checks.package_functions_switched_off(modern.RMSNorm.forward):
        assert torch.equal(mlp(x), expected)


def test_a_one_element_numpy_array_is_a_number_too():
    # scipy.optimize.fsolve returns shape (1,), and float() of a NumPy array with ndim > 0 fails under NumPy 2
    import numpy as np

    for answer in (np.array([4.0]), np.array([[4.0]], dtype=np.float32), np.array(4.0), np.array([4])):
        checks.check_close("ppl", answer, 4.0)
    with pytest.raises(AssertionError, match="too large"):
        checks.check_close("ppl", np.array([4.5]), 4.0)
    with pytest.raises(AssertionError, match=r"expected one number, got shape \(2,\)"):
        checks.check_close("ppl", np.array([4.0, 4.0]), 4.0)
    assert checks.one_element("n", np.array([[7]])) == 7 and checks.one_element("n", [7, 8]) == [7, 8]  # kept


def test_a_one_element_list_is_a_number_too():  # a loss handed in as [loss.item()]
    for answer in ([4.0], (4.0,), [torch.tensor(4.0)], [[4.0]]):
        checks.check_close("ppl", answer, 4.0)
    with pytest.raises(AssertionError, match="expected a number, got list"):
        checks.check_close("ppl", [4.0, 4.0], 4.0)


def test_a_longdouble_array_is_read_as_numbers():  # torch has no such dtype; the values are fine
    np = pytest.importorskip("numpy")
    checks.check_close("probs", np.asarray([0.25, 0.75], dtype=np.longdouble), torch.tensor([0.25, 0.75]))
    for wrong in (["a", "b"], "0.25", None, ["0.25", "0.75"], np.asarray(["0.25", "0.75"])):  # not numbers
        with pytest.raises(AssertionError, match="expected a tensor or a list of numbers"):
            checks.as_float_tensor("probs", wrong)
    with pytest.raises(AssertionError, match="expected a number, got str"):
        checks.check_close("count", "5", 5.0)
    with pytest.raises(AssertionError, match="expected a tensor or a list of numbers"):
        checks.check_close("probs", ["0.25", "0.75"], torch.tensor([0.25, 0.75]))


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
def test_a_sparse_tensor_is_compared_by_its_values():  # a count matrix built with .to_sparse() is a right answer
    dense = torch.tensor([[0.0, 2.0], [1.0, 0.0]])
    for layout in (dense.to_sparse(), dense.to_sparse_csr()):
        assert torch.equal(checks.as_float_tensor("counts", layout), dense.double())
        checks.check_equal("counts", layout, dense)
        checks.check_close("counts", [layout], dense[None])
    with pytest.raises(AssertionError, match="counts"):
        checks.check_equal("counts", (2 * dense).to_sparse(), dense)
    checks.check_close("one count", torch.tensor([[2.0]]).to_sparse(), 2.0)  # one_element's path


@pytest.mark.parametrize("answer", [torch.tensor(4.0, device="meta"), torch.empty(3, device="meta")])
def test_a_meta_tensor_fails_as_a_check_not_a_crash(answer):  # a shape without a value, never a right answer
    with pytest.raises(AssertionError, match="meta device holds a shape but no value"):
        checks.check_close("count", answer, 4.0, hint="the hint")
    with pytest.raises(AssertionError, match="meta device"):
        checks.as_float_tensor("probs", answer)
    with pytest.raises(AssertionError, match="meta device"):
        checks.check_equal("count", answer, 4)
    with pytest.raises(AssertionError, match="no comparable values"):
        checks.check_equal("counts", [answer, answer], [4, 4])


@pytest.mark.parametrize("answer", [float("nan"), float("inf"), torch.tensor(float("-inf"))])
def test_check_close_names_a_non_finite_number(answer):  # not "too small", which sends the learner the wrong way
    with pytest.raises(AssertionError, match="not a finite number") as info:
        checks.check_close("loss", answer, 0.0, hint="the hint")
    assert "too small" not in str(info.value) and "too large" not in str(info.value)


def test_check_close_counts_non_finite_values_of_a_tensor():
    with pytest.raises(AssertionError, match=r"2 of 3 values are wrong \(1 of them NaN or infinite"):
        checks.check_close("probs", torch.tensor([0.5, float("nan"), 0.0]), torch.tensor([0.5, 0.25, 0.25]))


def test_a_numpy_view_with_negative_strides_is_accepted():  # V[:, ::-1], scipy's svds: torch.as_tensor refuses them
    import numpy as np

    checks.check_close("reversed", np.arange(6.0)[::-1], torch.arange(6.0).flip(0))
    checks.check_equal("reversed", np.arange(6)[::-1], torch.arange(6).flip(0))


def test_a_string_is_not_a_number():  # float("0.5") would take it
    with pytest.raises(AssertionError, match="expected a number"):
        checks.check_close("a string", "0.5", 0.5)


def test_a_not_implemented_error_from_an_attempted_answer_is_not_read_as_not_attempted(capsys):
    def check(fn):
        for k in (1, 2, 3):
            checks.check_close(f"k = {k}", fn(k), 2.0 * k)

    def partial_answer(k):  # handles small cases only, and says so
        if k > 2:
            raise NotImplementedError("only small groups")
        return 2.0 * k

    library = {}  # a bare NotImplementedError raised outside the learner's notebook (a device lacking an operation)
    exec("def operation(k):\n    raise NotImplementedError\n", library)

    def calls_a_library(k):
        return 2.0 * k if k < 3 else library["operation"](k)

    for answer in (partial_answer, calls_a_library):
        with pytest.raises(AssertionError, match="raised NotImplementedError"):
            checks.exercise("9", answer, lambda k: 2.0 * k, check)
        assert "[todo]" not in capsys.readouterr().out


def test_a_half_done_answer_with_a_bare_stub_raise_is_not_read_as_not_attempted(capsys):
    def check(fn):
        for k in (1, 2, 3):
            checks.check_close(f"k = {k}", fn(k), 2.0 * k)

    def half_done(k):  # the small cases written, the stub's bare raise kept for the rest
        if k > 2:
            raise NotImplementedError
        return 2.0 * k

    with pytest.raises(AssertionError, match="raised NotImplementedError"):
        checks.exercise("9", half_done, lambda k: 2.0 * k, check)
    out = capsys.readouterr().out
    assert out.count("[pass] k = ") == 2 and "[todo]" not in out  # the passes still show, once each


def test_stubs_still_read_as_not_attempted(capsys):
    def earlier_stub(k):
        raise NotImplementedError

    def later_answer(k):  # written, but built on an earlier exercise that is still a stub
        return earlier_stub(k)

    def value_check(answer):
        if answer is None:
            raise NotImplementedError
        checks.check_close("four", answer, 4.0)

    @torch.no_grad()  # a decorator from another module: its wrapper's globals are torch's
    def decorated_answer(k):
        return earlier_stub(k)

    checks.exercise("9", later_answer, lambda k: 2.0 * k, lambda fn: checks.check_close("two", fn(1), 2.0))
    checks.exercise("9", decorated_answer, lambda k: 2.0 * k, lambda fn: checks.check_close("two", fn(1), 2.0))
    checks.exercise("9", None, 4.0, value_check)
    assert capsys.readouterr().out.count("[todo]") == 3


def test_library_functions_unwraps_every_layer(monkeypatch):  # scikit-learn wraps some functions twice
    import functools

    def inner(x):
        return x + 1

    middle = functools.wraps(inner)(lambda x: inner(x))
    outer = functools.wraps(middle)(lambda x: middle(x))
    module = types.ModuleType("stand_in_metrics")
    module.score = outer
    monkeypatch.setitem(sys.modules, "stand_in_metrics", module)
    assert checks.library_functions("stand_in_metrics", "score", loaded_only=True) == (inner,)
    with checks.package_functions_switched_off(*checks.library_functions("stand_in_metrics", "score")):
        with pytest.raises(AssertionError, match="switched off"):
            module.score(1)
    assert module.score(1) == 2  # restored afterwards
