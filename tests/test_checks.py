"""The shared exercise checks accept every correct form, reject wrong answers, and never reveal the answer."""

import pytest
import torch

from course_utils import checks

SECRET = torch.tensor([[3, 1], [4, 1]])


@pytest.mark.parametrize("answer", [SECRET, SECRET.tolist(), SECRET.float(), SECRET.to(torch.int32),
                                    tuple(map(tuple, SECRET.tolist()))])
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
    assert "[todo]" in capsys.readouterr().out
    with pytest.raises(AssertionError):
        checks.exercise("9", lambda: 5.0, lambda: 4.0, lambda fn: checks.check_close("four", fn(), 4.0))


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
