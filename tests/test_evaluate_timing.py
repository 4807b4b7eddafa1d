import itertools

import pytest

from course_utils.evaluate.timing import VERDICTS, compare_rounds, ranges_overlap, separation_chance


def test_ranges_overlap_at_a_shared_end_and_not_when_apart():
    assert ranges_overlap([1.0, 2.0], [2.0, 3.0])
    assert ranges_overlap([1.0, 5.0], [2.0, 3.0])  # one range inside the other
    assert not ranges_overlap([1.0, 1.9], [2.0, 3.0])
    assert not ranges_overlap([4.0], [2.0, 3.0])


@pytest.mark.parametrize("a, b, ratio, verdict", [
    ([10.0, 11.0, 12.0], [5.0, 6.0, 7.0], 11 / 6, "separate"),        # a higher in every round
    ([5.0, 6.0, 7.0], [10.0, 11.0, 12.0], 6 / 11, "separate"),
    ([10.0, 10.5, 12.0], [9.9, 10.0, 10.2], 10.5 / 10.0, "about even"),  # medians 5 % apart, ranges overlap
    ([8.0, 13.0, 14.0], [9.0, 10.0, 11.0], 13 / 10, "not ranked"),       # overlap, medians 30 % apart
])
def test_compare_rounds_verdicts(a, b, ratio, verdict):
    got_ratio, got_verdict = compare_rounds(a, b)
    assert got_ratio == pytest.approx(ratio) and got_verdict == verdict and verdict in VERDICTS


def test_the_tie_band_is_inclusive_and_symmetric():
    assert compare_rounds([2.0, 3.0], [2.0, 3.0], tie=0.0) == (1.0, "about even")  # equal medians, no band needed
    assert compare_rounds([1.0, 3.0, 4.0], [2.0, 4.0, 4.5], tie=0.25) == (0.75, "about even")  # |0.75 - 1| == tie
    assert compare_rounds([8.0, 9.0, 10.0], [9.5, 13.0, 14.0]) == (9 / 13, "not ranked")  # a ratio below 1 too
    assert compare_rounds([9.5, 13.0, 14.0], [8.0, 9.0, 10.0])[1] == "not ranked"


def test_the_tie_band_is_a_parameter():
    assert compare_rounds([8.0, 13.0, 14.0], [9.0, 10.0, 11.0], tie=0.35)[1] == "about even"
    assert compare_rounds([10.0, 10.5, 12.0], [9.9, 10.0, 10.2], tie=0.0)[1] == "not ranked"


@pytest.mark.parametrize("a, b, tie, message", [
    ([], [1.0], 0.1, "no rounds"),
    ([1.0, 0.0], [1.0], 0.1, "positive finite"),
    ([1.0, float("nan")], [1.0], 0.1, "positive finite"),
    ([1.0], [float("inf")], 0.1, "positive finite"),
    ([1.0], [1.0], 1.5, "tie must be"),
    ([1.0], [1.0], 1.0, "tie must be"),
    ([1.0], [1.0], -0.1, "tie must be"),
    ([1.0], [1.0], True, "tie must be"),
    ([1.0], [1.0], "0.1", "tie must be"),
])
def test_bad_input_is_refused(a, b, tie, message):
    with pytest.raises(ValueError, match=message):
        compare_rounds(a, b, tie)


def test_separation_chance_counts_the_orders_of_two_equal_arms():
    assert [separation_chance(n) for n in (1, 2, 3, 4)] == [1.0, 1 / 3, 1 / 10, 1 / 35]
    # by enumeration: every way to give 3 of 6 equally likely ranks to arm a; separate when a holds 0-2 or 3-5
    orders = list(itertools.combinations(range(6), 3))
    assert sum(set(a) in ({0, 1, 2}, {3, 4, 5}) for a in orders) / len(orders) == separation_chance(3)
    with pytest.raises(ValueError, match="n_rounds"):
        separation_chance(0)
