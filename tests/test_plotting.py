"""course_utils.plotting: the course style is explicit, projector-sized and colour-blind safe; plot_history labels
its axes and tells its curves apart by more than colour."""

import math
import subprocess
import sys
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402

from course_utils import plotting  # noqa: E402


@pytest.fixture
def styled():
    """The course style applied inside a context that restores matplotlib's settings afterwards."""
    with matplotlib.rc_context():
        assert plotting.use_course_style() is None
        yield matplotlib.rcParams


def points(size_param) -> float:
    return FontProperties(size=matplotlib.rcParams[size_param]).get_size_in_points()


def test_importing_the_module_changes_no_matplotlib_setting():
    code = ("import matplotlib as m; before = dict(m.rcParams); import course_utils.plotting; "
            "print(before == dict(m.rcParams))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True", out.stderr


def test_fonts_and_lines_are_sized_for_a_projector(styled):
    assert points("font.size") >= 12 and points("axes.titlesize") >= 13
    assert points("figure.titlesize") >= 13
    for name in ("xtick.labelsize", "ytick.labelsize", "legend.fontsize", "legend.title_fontsize", "axes.labelsize"):
        assert points(name) >= 10, f"{name} is {points(name)} pt; a projector needs at least 10"
    assert styled["lines.linewidth"] >= 2


def test_the_colour_cycle_is_okabe_ito_and_the_sequential_map_is_colour_blind_safe(styled):
    cycle = [c.lower() for c in styled["axes.prop_cycle"].by_key()["color"]]
    assert cycle == [c.lower() for c in plotting.OKABE_ITO] and len(set(cycle)) == len(cycle) >= 6
    assert styled["image.cmap"] in {"viridis", "cividis"}


def test_the_style_is_undone_by_leaving_the_context():
    default = matplotlib.rcParams["font.size"]
    with matplotlib.rc_context():
        plotting.use_course_style()
        assert matplotlib.rcParams["font.size"] == 12
    assert matplotlib.rcParams["font.size"] == default


def test_plot_history_labels_axes_and_marks_curves_by_more_than_colour(styled):
    history = SimpleNamespace(steps=[0, 1, 2, 3], train_loss=[4.0, 3.5, 3.2, 3.0], eval_steps=[0, 3],
                              eval_train_loss=[4.0, 3.0], eval_val_loss=[4.1, 3.3])
    ax = plotting.plot_history(history, unit="nats/char")
    try:
        assert ax.get_xlabel() == "optimisation step" and "nats/char" in ax.get_ylabel()
        lines = {line.get_label(): line for line in ax.get_lines()}
        train, val = lines["train (evaluated)"], lines["validation (held-out plays)"]
        assert (train.get_marker(), train.get_linestyle()) != (val.get_marker(), val.get_linestyle())
        assert list(val.get_ydata()) == [4.1, 3.3] and list(val.get_xdata()) == [0, 3]
        assert list(train.get_ydata()) == [4.0, 3.0] and list(train.get_xdata()) == [0, 3]
        per_batch = lines["train (per batch)"]
        assert list(per_batch.get_xdata()) == [0, 1, 2, 3] and list(per_batch.get_ydata()) == [4.0, 3.5, 3.2, 3.0]
        secondary_labels = [child.get_ylabel() for child in ax.child_axes]
        assert secondary_labels == ["cross-entropy (bits/char)"], "the bits axis names the same unit as the nats axis"
        ax.figure.canvas.draw()
        bits = ax.child_axes[0]
        low, high = ax.get_ylim()
        assert bits.get_ylim() == pytest.approx((low / math.log(2), high / math.log(2)))  # 1 nat = 1/ln 2 bits
        nats_at = ax.transData.transform([(0, 3 * math.log(2))])[0, 1]  # 3 bits drawn where 3 ln 2 nats are
        assert bits.transData.transform([(0, 3.0)])[0, 1] == pytest.approx(nats_at)
        assert bits.transData.inverted().transform([(0, nats_at)])[0, 1] == pytest.approx(3.0)  # cursor read-out
    finally:
        plt.close(ax.figure)


def test_plot_history_refuses_a_unit_that_is_not_in_nats(styled):
    history = SimpleNamespace(steps=[0], train_loss=[1.0], eval_steps=[0], eval_train_loss=[], eval_val_loss=[1.0])
    with pytest.raises(ValueError, match="nats"):
        plotting.plot_history(history, unit="bits/char")


def test_attention_heatmap_hatches_exactly_the_blocked_cells_and_checks_shapes():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    weights = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.2, 0.3, 0.5]])  # an exact 0 is a weight, not a block
    allowed = torch.ones(3, 3, dtype=torch.bool).tril()
    fig, ax = plt.subplots()
    plotting.attention_heatmap(ax, weights, allowed, "causal", labels=["a", "b", "c"])
    hatched = {(round(p.get_x() + 0.5), round(p.get_y() + 0.5)) for p in ax.patches if p.get_hatch()}
    assert hatched == {(1, 0), (2, 0), (2, 1)}  # (key j, query i) above the diagonal, nothing else
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="same shape"):
        plotting.attention_heatmap(ax, weights, allowed[:2], "bad")
    with pytest.raises(ValueError, match="one string per position"):
        plotting.attention_heatmap(ax, weights, allowed, "bad", labels=["a"])
    plt.close(fig)


def test_attention_heatmap_masks_exactly_the_blocked_cells_on_a_fixed_colour_blind_safe_scale():
    import torch

    weights = torch.tensor([[0.9, 0.1, 0.0], [0.5, 0.25, 0.25]], dtype=torch.bfloat16)  # bf16, as models give
    allowed = torch.tensor([[True, True, False], [True, True, True]])
    fig, ax = plt.subplots()
    image = plotting.attention_heatmap(ax, weights, allowed, "prefix")
    data = image.get_array()
    assert data.mask.tolist() == [[False, False, True], [False, False, False]]
    assert data.filled(-1).tolist() == [[0.8984375, 0.10009765625, -1], [0.5, 0.25, 0.25]]  # bf16 values, unmasked
    assert image.get_cmap().name in {"cividis", "viridis"} and image.get_clim() == (0, 1.0)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("key position j", "query position i")
    assert list(ax.get_yticks()) == [0, 1] and list(ax.get_xticks()) == [0, 1, 2]  # (T_q, T_k) not square
    high = torch.tensor([[0.6, 0.4], [0.3, 0.7]])
    image = plotting.attention_heatmap(ax, high, torch.ones(2, 2, dtype=torch.bool), "no zero weight",
                                       labels=["a", "b"])
    assert image.get_clim() == (0, 1.0), "0 stays the bottom of the scale even when no weight is 0"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("key (attended-to token)", "query (attending token)")
    with pytest.raises(ValueError, match="one string per position"):
        plotting.attention_heatmap(ax, weights.float(), allowed, "non-square", labels=["a", "b"])
    with pytest.raises(ValueError, match="T_q, T_k"):
        plotting.attention_heatmap(ax, torch.rand(2, 2, 3), torch.ones(2, 2, 3, dtype=torch.bool), "3-d")
    plt.close(fig)


def test_log_minor_label_marks_two_and_five_on_short_axes_only():
    from course_utils.plotting import log_minor_label

    view = (3e3, 1e5)  # 1.5 decades
    assert log_minor_label(2e4, view) == "$2\\times10^{4}$" and log_minor_label(5e3, view) == "$5\\times10^{3}$"
    assert log_minor_label(3e4, view) == "" and log_minor_label(7e3, view) == ""  # other multiples stay blank
    assert log_minor_label(2e4, (1e2, 1e6)) == ""  # four decades: the powers of ten suffice
    assert log_minor_label(2e10, (1e10, 1e12), multiples=(2,)) == "$2\\times10^{10}$"
    assert log_minor_label(0.0, view) == "" and log_minor_label(2e4, (0.0, 1e5)) == ""
    assert log_minor_label(2e4, (1e5, 3e3)) == "$2\\times10^{4}$"  # an inverted axis gives its view high to low
    assert log_minor_label(2e4, (1e6, 1e2)) == ""
    assert log_minor_label(2e4 * (1 + 1e-12), view) == "$2\\times10^{4}$"  # a tick value with rounding error


def test_label_log_minor_ticks_labels_the_minor_ticks_and_leaves_the_major_ones():
    fig, (ax, other) = plt.subplots(1, 2)
    for axes in (ax, other):
        axes.set_xscale("log")
        axes.set_xlim(3e3, 1e5)
    major_before = ax.xaxis.get_major_formatter()
    plotting.label_log_minor_ticks(ax.xaxis)
    plotting.label_log_minor_ticks(other.xaxis, multiples=(3,))
    minor, minor_other = ax.xaxis.get_minor_formatter(), other.xaxis.get_minor_formatter()
    assert [minor(v, 0) for v in (5e3, 2e4, 3e4)] == ["$5\\times10^{3}$", "$2\\times10^{4}$", ""]
    assert [minor_other(v, 0) for v in (5e3, 2e4, 3e4)] == ["", "", "$3\\times10^{4}$"]
    assert ax.xaxis.get_major_formatter() is major_before
    ax.set_xlim(1e2, 1e6)  # the formatter reads the axis's current view: four decades, no minor labels
    assert minor(2e4, 0) == ""
    plt.close(fig)
