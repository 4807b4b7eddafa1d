"""One copy of the course's widget pattern: a static view that always runs, plus ipywidgets controls when installed.

``explore(view, controls)`` first calls ``view(**defaults)`` once as ordinary cell output: that static view is what a
headless run, an HTML export or a runtime without ipywidgets shows, and it is by construction the same figure as the
widget's default settings. With ipywidgets installed it then displays the controls and an ``Output`` area below
them, and redraws ``view(**current values)`` there when a control changes (or only when the button is clicked).

Controls are *specs*, not widgets: ``control("IntSlider", 12, min=2, max=32, description="T")`` names an ipywidgets
class, its initial value and its other settings, so a notebook never imports ipywidgets itself and the static view
needs no widget library. The course's widget rules (CONTRIBUTING.md, "Rules") are enforced, not just documented:

- a view displays and returns None (Jupyter would echo a returned value under the widget): TypeError otherwise;
- a view that calls a model (``calls_model=True``) redraws on a button click or when a slider or text box is released
  (``continuous_update=False``), never on every intermediate value: ValueError otherwise.

Deliberately left out: layouts beyond one row of controls, and progress bars (tqdm is not a widget concern).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

# ipywidgets classes whose ``continuous_update`` defaults to True (they fire while dragging or typing).
_CONTINUOUS_BY_DEFAULT = {"IntSlider", "FloatSlider", "FloatLogSlider", "SelectionSlider", "IntRangeSlider",
                          "FloatRangeSlider", "SelectionRangeSlider", "Text", "Textarea", "Combobox", "Password"}
INSTALL_HINT = "pip install ipywidgets"


@dataclasses.dataclass(frozen=True)
class Control:
    """An ipywidgets control described without importing ipywidgets: class name, initial value, other settings."""

    kind: str
    value: Any
    settings: dict

    @property
    def continuous(self) -> bool:
        """Whether the widget reports every intermediate value while the learner drags or types."""
        return bool(self.settings.get("continuous_update", self.kind in _CONTINUOUS_BY_DEFAULT))

    def build(self, widgets) -> Any:
        """The ipywidgets widget for this spec (``widgets`` is the imported ipywidgets module)."""
        settings = {"style": {"description_width": "initial"}, **self.settings}   # labels are never cut off
        return getattr(widgets, self.kind)(value=self.value, **settings)


def control(kind: str, value: Any, **settings) -> Control:
    """Describe one control: ``kind`` is an ipywidgets class name, e.g.
    ``control("FloatSlider", 1.0, min=0, max=2)``."""
    if not isinstance(kind, str) or not kind[:1].isupper():
        raise TypeError(f"kind is the name of an ipywidgets class such as 'IntSlider', got {kind!r}")
    return Control(kind, value, dict(settings))


def _checked_call(view: Callable[..., None], values: dict) -> None:
    """Call the view; refuse a returned value, which Jupyter would echo below the figure."""
    result = view(**values)
    if result is not None:
        raise TypeError(f"{getattr(view, '__name__', 'the view')} returned {type(result).__name__}: widget callbacks "
                        "display and return nothing; Jupyter would echo a returned value (end with plt.show())")


def _validate(view, controls: dict, button: str | None, calls_model: bool) -> None:
    if not callable(view):
        raise TypeError(f"view must be a function that displays one view, got {type(view).__name__}")
    if not controls or not all(isinstance(c, Control) for c in controls.values()):
        raise TypeError("controls maps each argument of the view to control(...), e.g. {'T': control('IntSlider', 12)}")
    continuous = [name for name, c in controls.items() if c.continuous]
    if calls_model and button is None and continuous:
        raise ValueError(f"the view calls a model, so it must wait for the slider's release or a button: give "
                         f"{continuous} continuous_update=False, or pass button='...'")


@dataclasses.dataclass
class Panel:
    """The live part of an explorer: the built widgets, the optional button, the Output area and the whole box."""

    widgets: dict
    button: Any
    output: Any
    box: Any


def build_panel(view, controls: dict, *, button: str | None = None, calls_model: bool = False,
                on_change: Callable[[dict], None] | None = None) -> Panel:
    """Build the controls, their Output area and the redraw wiring (ipywidgets must be importable).

    ``on_change(widgets)`` runs after any control changes and before a redraw, e.g. to fit a slider's range to a text
    box's value; it must return None like the view.
    """
    import ipywidgets

    _validate(view, controls, button, calls_model)
    built = {name: c.build(ipywidgets) for name, c in controls.items()}
    output = ipywidgets.Output()
    push = ipywidgets.Button(description=button) if button is not None else None

    def redraw(_=None) -> None:
        with output:
            output.clear_output(wait=True)
            _checked_call(view, {name: w.value for name, w in built.items()})

    def changed(_) -> None:
        if on_change is not None and on_change(built) is not None:
            raise TypeError("on_change adjusts the widgets and returns nothing")
        if push is None:
            redraw()

    for widget in built.values():
        widget.observe(changed, names="value")
    if push is not None:
        push.on_click(redraw)
    row = list(built.values()) + ([push] if push is not None else [])
    box = ipywidgets.VBox([ipywidgets.HBox(row, layout=ipywidgets.Layout(flex_flow="row wrap")), output])
    return Panel(built, push, output, box)


def explore(view: Callable[..., None], controls: dict, *, button: str | None = None, calls_model: bool = False,
            on_change: Callable[[dict], None] | None = None) -> None:
    """Show ``view`` at the controls' initial values (the static view), then the live controls if ipywidgets exists.

    ``button``: redraw only when this button is clicked (its label). ``calls_model``: the view is expensive, so
    sliders and text boxes must not update continuously unless a button is given.
    """
    from IPython.display import display

    _validate(view, controls, button, calls_model)
    _checked_call(view, {name: c.value for name, c in controls.items()})
    try:
        import ipywidgets  # noqa: F401  (only to know whether the live controls can be shown)
    except ImportError:
        print(f"ipywidgets is not installed: the static view above is what there is ({INSTALL_HINT} to explore)")
        return
    display(build_panel(view, controls, button=button, calls_model=calls_model, on_change=on_change).box)
