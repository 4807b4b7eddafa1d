"""Figures shared by several chapters; every axis is labelled with its unit."""

from __future__ import annotations

import math


def plot_history(history, ax=None, title: str = "Training curve", unit: str = "nats/token"):
    """Per-step training loss (faint), evaluated train/validation loss (markers) against optimisation steps.

    ``history`` is a :class:`course_utils.train.loop.History` (read by attribute, so this module imports nothing
    from the training code).
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    ax.plot(history.steps, history.train_loss, color="tab:blue", alpha=0.25, lw=0.8, label="train (per batch)")
    if history.eval_train_loss:
        ax.plot(history.eval_steps, history.eval_train_loss, "o-", color="tab:blue", label="train (evaluated)")
    ax.plot(history.eval_steps, history.eval_val_loss, "s-", color="tab:orange", label="validation (held-out plays)")
    ax.set_xlabel("optimisation step")
    ax.set_ylabel(f"cross-entropy ({unit})")
    ax.set_title(title)
    secondary = ax.secondary_yaxis("right", functions=(lambda n: n / math.log(2), lambda b: b * math.log(2)))
    secondary.set_ylabel("bits per token")
    ax.grid(alpha=0.3)
    ax.legend()
    return ax
