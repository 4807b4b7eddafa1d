"""course_utils.widgets: the static view equals the widget defaults, redraws follow the controls (or the button),
views return nothing, model-calling views wait for a release or a button, and no ipywidgets still shows the view."""

import sys

import pytest

from course_utils import widgets as w


class Recorder:
    """A view that records the settings it was drawn with and displays nothing."""

    def __init__(self):
        self.calls = []

    def __call__(self, **values) -> None:
        self.calls.append(values)


@pytest.fixture
def shown(monkeypatch):
    """What explore() hands to IPython's display (the live panel), captured instead of rendered."""
    captured = []
    monkeypatch.setattr("IPython.display.display", lambda *objs, **_: captured.extend(objs))
    return captured


def controls():
    return {"T": w.control("IntSlider", 12, min=2, max=32, description="T"),
            "kind": w.control("Dropdown", "causal", options=["causal", "bidirectional"], description="kind")}


def test_the_static_view_uses_the_controls_initial_values_and_the_panel_is_displayed(shown):
    view = Recorder()
    w.explore(view, controls())
    assert view.calls == [{"T": 12, "kind": "causal"}]
    assert len(shown) == 1 and shown[0].children[-1].__class__.__name__ == "Output"


def test_the_built_widgets_start_at_the_spec_values_with_their_settings():
    panel = w.build_panel(Recorder(), controls())
    assert panel.widgets["T"].value == 12 and (panel.widgets["T"].min, panel.widgets["T"].max) == (2, 32)
    assert panel.widgets["T"].description == "T" and panel.widgets["kind"].options == ("causal", "bidirectional")
    assert panel.button is None


def test_changing_a_control_redraws_with_the_new_value():
    view = Recorder()
    panel = w.build_panel(view, controls())
    panel.widgets["T"].value = 20
    panel.widgets["kind"].value = "bidirectional"
    assert view.calls == [{"T": 20, "kind": "causal"}, {"T": 20, "kind": "bidirectional"}]


def test_with_a_button_the_view_is_drawn_only_on_click():
    view = Recorder()
    panel = w.build_panel(view, controls(), button="draw")
    panel.widgets["T"].value = 5
    assert view.calls == []
    assert panel.button.description == "draw"
    assert panel.button in panel.box.children[0].children, "the button is shown beside the controls"
    panel.button.click()
    assert view.calls == [{"T": 5, "kind": "causal"}]


def test_on_change_can_adjust_a_widget_before_the_redraw():
    view = Recorder()

    def fit_range(built) -> None:
        built["T"].max = 40 if built["kind"].value == "bidirectional" else 32

    panel = w.build_panel(view, controls(), on_change=fit_range)
    panel.widgets["kind"].value = "bidirectional"
    panel.widgets["T"].value = 38
    assert panel.widgets["T"].max == 40 and view.calls[-1] == {"T": 38, "kind": "bidirectional"}


def test_on_change_runs_before_the_redraw_and_must_return_nothing():
    events = []
    panel = w.build_panel(lambda **values: events.append("draw"), controls(),
                          on_change=lambda built: events.append("adjust"))
    panel.widgets["T"].value = 20
    assert events == ["adjust", "draw"]
    panel = w.build_panel(Recorder(), controls(), on_change=lambda built: "adjusted")
    with pytest.raises(TypeError, match="returns nothing"):
        panel.widgets["T"].value = 20


def test_explore_passes_on_change_to_the_live_panel(shown):
    adjusted = []
    w.explore(Recorder(), controls(), on_change=lambda built: adjusted.append(built["T"].value))
    slider = next(c for c in shown[0].children[0].children if c.__class__.__name__ == "IntSlider")
    slider.value = 7
    assert adjusted == [7]


def test_each_redraw_replaces_the_previous_view_inside_the_output_area(monkeypatch):
    import ipywidgets

    events = []

    class RecordingOutput(ipywidgets.Output):
        def __enter__(self):
            events.append("enter")
            return super().__enter__()

        def __exit__(self, *exc):
            events.append("exit")
            return super().__exit__(*exc)

        def clear_output(self, *args, **kwargs):
            events.append(("clear", kwargs.get("wait")))

    monkeypatch.setattr(ipywidgets, "Output", RecordingOutput)
    panel = w.build_panel(lambda **values: events.append("draw"), controls())
    panel.widgets["T"].value = 20
    panel.widgets["T"].value = 21
    assert events == ["enter", ("clear", True), "draw", "exit"] * 2


def test_continuous_kinds_follow_ipywidgets_own_defaults():
    import ipywidgets

    kinds = ["IntSlider", "FloatSlider", "FloatLogSlider", "SelectionSlider", "IntRangeSlider", "FloatRangeSlider",
             "SelectionRangeSlider", "Text", "Textarea", "IntText", "FloatText", "BoundedIntText", "Combobox",
             "Password"]  # Combobox and Password fire on every keystroke too (they were missing from the set)
    for kind in kinds:
        default = getattr(ipywidgets, kind).class_traits()["continuous_update"].default_value
        assert w.control(kind, None).continuous is default, kind
    assert not w.control("Dropdown", "a").continuous and not w.control("Checkbox", True).continuous
    assert w.control("IntSlider", 3, continuous_update=False).continuous is False


def test_a_view_that_returns_a_value_is_refused_statically_and_on_redraw(shown):
    def returns_figure(T, kind):
        return "a figure"

    with pytest.raises(TypeError, match="return nothing"):
        w.explore(returns_figure, controls())
    panel = w.build_panel(returns_figure, controls())
    with pytest.raises(TypeError, match="return nothing"):
        panel.widgets["T"].value = 3
    for falsy in (0, "", [], False):  # a falsy value is still echoed by Jupyter
        with pytest.raises(TypeError, match="return nothing"):
            w.explore(lambda T, kind: falsy, controls())


def test_a_model_calling_view_must_wait_for_release_or_a_button(shown):
    view = Recorder()
    with pytest.raises(ValueError, match="continuous_update=False"):
        w.explore(view, controls(), calls_model=True)
    assert view.calls == [], "refused before the model is called"
    typing = {"prompt": w.control("Text", "To be", continuous_update=True)}
    with pytest.raises(ValueError, match="prompt"):
        w.explore(view, typing, calls_model=True)
    released = {"T": w.control("IntSlider", 12, min=2, max=32, continuous_update=False),
                "kind": w.control("Dropdown", "causal", options=["causal"])}
    w.explore(view, released, calls_model=True)
    w.explore(view, controls(), calls_model=True, button="run the model")
    assert len(view.calls) == 2


def test_bad_arguments_are_refused_with_a_message():
    with pytest.raises(TypeError, match="ipywidgets class"):
        w.control("intslider", 3)
    with pytest.raises(TypeError, match="control"):
        w.explore(Recorder(), {"T": 12})
    with pytest.raises(TypeError, match="function"):
        w.explore("not a view", controls())
    with pytest.raises(TypeError, match="control"):
        w.explore(Recorder(), {})
    with pytest.raises(TypeError, match="control"):
        w.explore(Recorder(), {"T": w.control("IntSlider", 12), "kind": "causal"})  # one plain value among specs


def test_without_ipywidgets_the_static_view_is_shown_with_an_install_hint(monkeypatch, shown, capsys):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # `import ipywidgets` now raises ImportError
    view = Recorder()
    w.explore(view, controls(), button="draw")
    assert view.calls == [{"T": 12, "kind": "causal"}]
    assert shown == [], "no live panel without ipywidgets"
    out = capsys.readouterr().out
    assert "static view above" in out and "pip install ipywidgets" in out and len(out.strip().splitlines()) == 1
