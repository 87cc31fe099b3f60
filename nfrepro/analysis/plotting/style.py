"""What every figure of training runs shares: the "diverged" strip, its crosses and legend entry,
and the mean over the completed seeds."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

DIVERGED_BAND = 0.12  # the strip at the low end of an axis that holds diverged runs only


def seed_means(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean and spread of ``top1`` over the completed seeds of each group (diverged ones left out)."""
    done = df[~df["diverged"].astype(bool)]
    return (done.groupby(keys)["top1"].agg(["mean", "min", "max", "count"]).reset_index()
            .sort_values(keys))


def mark_diverged(ax: plt.Axes, x, color, offset: float = 0.0, vertical: bool = True) -> None:
    """Crosses in the middle of the diverged strip (:func:`diverged_band`): a run that diverged.

    ``x`` is in data units along the other axis; ``vertical``: the strip is at the bottom (top-1
    on y), else at the left (top-1 on x)."""
    if len(x):
        pos = np.asarray(x, dtype=float) + offset
        mid = [DIVERGED_BAND / 2] * len(pos)
        xy, transform = ((pos, mid), ax.get_xaxis_transform()) if vertical else \
            ((mid, pos), ax.get_yaxis_transform())
        ax.plot(*xy, "x", color=color, ms=8, mew=2, transform=transform, clip_on=False, zorder=4)


def diverged_band(axes: Sequence[plt.Axes], vertical: bool = True) -> None:
    """Widen the top-1 axis so that no result falls in its lowest :data:`DIVERGED_BAND`, shade
    that strip and label it "diverged": a diverged run drawn there cannot be read as a top-1
    value (its crosses stand beside no tick). Call after everything else is drawn; axes that
    share the top-1 axis are widened once."""
    get, set_, ticks, set_ticks = (("get_ylim", "set_ylim", "get_yticks", "set_yticks") if vertical
                                   else ("get_xlim", "set_xlim", "get_xticks", "set_xticks"))
    for ax in axes:
        lo, hi = getattr(ax, get)()
        shown = [t for t in getattr(ax, ticks)() if lo <= t <= hi]
        if not getattr(ax, "_nfrepro_band", False):
            new_lo = lo - (hi - lo) * DIVERGED_BAND / (1 - DIVERGED_BAND)
            shared = ax.get_shared_y_axes() if vertical else ax.get_shared_x_axes()
            for other in [ax, *shared.get_siblings(ax)]:
                other._nfrepro_band = True
            getattr(ax, set_)(new_lo, hi)
            getattr(ax, set_ticks)(shown)  # no tick inside the strip
        if vertical:
            ax.fill_between([0, 1], 0, DIVERGED_BAND, transform=ax.transAxes, color="0.93", zorder=0, lw=0)
            ax.text(0.005, DIVERGED_BAND / 2, "diverged", transform=ax.transAxes, va="center",
                    ha="left", fontsize=7.5, color="0.35", style="italic")
        else:
            ax.fill_betweenx([0, 1], 0, DIVERGED_BAND, transform=ax.transAxes, color="0.93",
                             zorder=0, lw=0)
            ax.text(DIVERGED_BAND / 2, 0.995, "diverged", transform=ax.transAxes, va="top",
                    ha="center", fontsize=7.5, color="0.35", style="italic")  # inside: clear of the title


def diverged_legend(ax: plt.Axes, any_diverged: bool, **legend) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if any_diverged:
        handles.append(plt.Line2D([], [], ls="", marker="x", color="gray", ms=8, mew=2))
        labels.append("diverged run")
    if labels:
        ax.legend(handles, labels, **legend)
