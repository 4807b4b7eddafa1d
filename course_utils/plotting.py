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


def attention_heatmap(ax, values, allowed, title: str, vmax: float = 1.0, labels=None):
    """Attention weights (T_q, T_k) as a heatmap; blocked cells (``allowed`` False) white with an 'x' hatch.

    Blocked cells differ from every weight, even an exact 0, by pattern and not only by colour (cividis, colour-blind
    safe). ``labels``: optional token strings for both axes (T_q == T_k); else every 1st, 2nd or 4th position is
    ticked so labels stay readable. Tensors may live on any device. Returns the image (for a colour bar).
    """
    import numpy as np
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    values = values.detach().float().cpu()
    allowed = allowed.cpu()
    if values.dim() != 2 or tuple(allowed.shape) != tuple(values.shape):
        raise ValueError(f"values must be (T_q, T_k) and allowed the same shape, got {tuple(values.shape)} and "
                         f"{tuple(allowed.shape)}")
    shown = np.ma.masked_where(~allowed.numpy(), values.numpy())
    image = ax.imshow(shown, cmap=plt.get_cmap("cividis").with_extremes(bad="white"), vmin=0, vmax=vmax)
    for i, j in (~allowed).nonzero().tolist():
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="xxx", edgecolor="0.6", lw=0))
    ax.set_title(title, fontsize=11)
    if labels is not None:
        if len(labels) != values.shape[0] or values.shape[0] != values.shape[1]:
            raise ValueError(f"labels need one string per position of a square map, got {len(labels)} for "
                             f"{tuple(values.shape)}")
        ax.set_xticks(range(len(labels)), labels, rotation=90)
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("key (attended-to token)"); ax.set_ylabel("query (attending token)")
    else:
        T = values.shape[-1]
        every = 1 if T <= 12 else 2 if T <= 24 else 4  # tick labels stay readable (10 pt) at every T
        ax.set_xticks(range(0, T, every)); ax.set_yticks(range(0, values.shape[0], every))
        ax.set_xlabel("key position j"); ax.set_ylabel("query position i")
    ax.tick_params(labelsize=10)
    return image


def log_minor_label(value: float, view: tuple[float, float], multiples=(2, 5), max_decades: float = 2.0) -> str:
    """The label of a log axis's minor tick at ``value``: ``2×10^k``-style text at the ``multiples`` of each power of
    ten, and nothing at the others or when the axis ``view`` (low, high) spans more than ``max_decades`` decades (its
    major ticks suffice there). Matplotlib's own minor labels (every multiple) collide on short log axes."""
    low, high = sorted(float(v) for v in view)
    if value <= 0 or low <= 0 or math.log10(high / low) > max_decades:
        return ""
    exponent = math.floor(math.log10(value) + 1e-9)
    mantissa = value / 10**exponent
    hit = next((m for m in multiples if math.isclose(mantissa, m, rel_tol=1e-6)), None)
    return "" if hit is None else f"${hit:g}\\times10^{{{exponent}}}$"


def label_log_minor_ticks(axis, multiples=(2, 5)) -> None:
    """Label the minor ticks of a log-scaled ``axis`` (e.g. ``ax.xaxis``) at 2x and 5x each power of ten, so a short
    log axis (less than about two decades) can be read between its powers of ten."""
    from matplotlib.ticker import FuncFormatter

    axis.set_minor_formatter(FuncFormatter(lambda v, _: log_minor_label(v, axis.get_view_interval(), multiples)))
