"""Training curves: loss against step."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt

from lectures_code.plotting import fonts  # noqa: F401  (backend and CJK font first)


def plot_losses(results: Sequence, log_scale: bool = True, ax=None, title: str | None = None):
    """One line per TrainResult: loss against step. Returns the Figure."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    for r in results:
        ax.plot(range(1, len(r.losses) + 1), r.losses, label=r.name, linewidth=1.5)
    if log_scale:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return ax.figure
