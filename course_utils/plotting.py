"""Figures shared by several chapters, and the course's figure style; every axis is labelled with its unit.

``use_course_style()`` sets matplotlib for a lecture hall and for colour-blind readers: fonts that a projector still
shows (base 12 pt, titles 13, ticks and legends 11), lines 2 pt wide, and the Okabe-Ito palette (Okabe and Ito,
"Color Universal Design", 2008), which stays distinguishable under the common colour-vision deficiencies. Importing
this module changes nothing; a notebook calls the function visibly after its imports. Colour is never the only cue
in a course figure: the palette helps, markers, line styles, hatching and text carry the information.
"""

from __future__ import annotations

import math

# Okabe-Ito, without its yellow (too pale on a white projector screen), black last.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000")
SEQUENTIAL_CMAP = "viridis"  # perceptually uniform and colour-blind safe; readable in greyscale
COURSE_STYLE = {
    "font.size": 12, "axes.titlesize": 13, "axes.labelsize": 12, "figure.titlesize": 13,
    "xtick.labelsize": 11, "ytick.labelsize": 11, "legend.fontsize": 11, "legend.title_fontsize": 11,
    "lines.linewidth": 2.0, "lines.markersize": 7, "image.cmap": SEQUENTIAL_CMAP, "figure.dpi": 100,
}


def use_course_style() -> None:
    """Apply the projector-sized, colour-blind-safe matplotlib style to this session (rcParams); returns nothing."""
    import matplotlib as mpl
    from cycler import cycler

    mpl.rcParams.update(COURSE_STYLE)
    mpl.rcParams["axes.prop_cycle"] = cycler(color=list(OKABE_ITO))


def _bits_unit(unit: str) -> str:
    """The base-2 name of a natural-log unit ("nats/char" -> "bits/char"), for the right-hand axis in bits."""
    if not unit.startswith("nats"):
        raise ValueError(f"unit must be in nats (e.g. 'nats/token'), got {unit!r}")
    return "bits" + unit[len("nats"):]


def plot_history(history, ax=None, title: str = "Training curve", unit: str = "nats/token"):
    """Per-step training loss (faint), evaluated train/validation loss (markers) against optimisation steps.

    ``history`` is a :class:`course_utils.train.loop.History` (read by attribute, so this module imports nothing
    from the training code).
    """
    import matplotlib.pyplot as plt

    bits_unit = _bits_unit(unit)  # checked before any figure is made
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    ax.plot(history.steps, history.train_loss, color=OKABE_ITO[0], alpha=0.3, lw=1, label="train (per batch)")
    if history.eval_train_loss:
        ax.plot(history.eval_steps, history.eval_train_loss, "o-", color=OKABE_ITO[0], label="train (evaluated)")
    ax.plot(history.eval_steps, history.eval_val_loss, "s--", color=OKABE_ITO[1], label="validation (held-out plays)")
    ax.set_xlabel("optimisation step")
    ax.set_ylabel(f"cross-entropy ({unit})")
    ax.set_title(title)
    secondary = ax.secondary_yaxis("right", functions=(lambda n: n / math.log(2), lambda b: b * math.log(2)))
    secondary.set_ylabel(f"cross-entropy ({bits_unit})")
    ax.grid(alpha=0.3)
    ax.legend()
    return ax
