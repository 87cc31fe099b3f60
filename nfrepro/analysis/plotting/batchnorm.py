"""The BatchNorm figures of notebook 06: a difference with its interval (against batch size or training
images), each family's change against its own best batch beside the per-net top-1, the batch-mates' effect."""
from __future__ import annotations

from typing import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from nfrepro.analysis.plotting.agc import plot_agc_batch_size


def plot_difference(table: pd.DataFrame, ax: plt.Axes | None = None, tolerance: float | None = None,
                    ylabel: str = "NF - BN, top-1 points", title: str | None = None, x: str = "batch_size",
                    xlabel: str = "batch size (log2 scale)", value: str = "top1") -> plt.Figure:
    """A difference against ``x`` (log2 axis) with its 95% interval: ``table`` has ``x``, ``value``
    (the mean difference), ``ci_low`` and ``ci_high``. The zero line and, if given, the
    +-``tolerance`` band of "level" are drawn, so a reader sees which intervals decide a verdict."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.0, 4.0), constrained_layout=True)
    fig = ax.figure
    pos = np.log2(table[x].astype(float))
    low = (table[value] - table["ci_low"]).clip(upper=1e3)
    high = (table["ci_high"] - table[value]).clip(upper=1e3)
    ax.errorbar(pos, table[value], yerr=[low, high], marker="o", capsize=4, color="black",
                label="mean over seeds, 95% t interval")
    ax.axhline(0.0, color="grey", lw=1)
    if tolerance:
        ax.axhspan(-tolerance, tolerance, color="grey", alpha=0.15, label=f"level: within ±{tolerance:g}")
    ax.set_xticks(pos, [f"{v:,.0f}" for v in table[x]])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    if title:
        ax.set_title(title)
    return fig


def plot_changes(changes: pd.DataFrame, ax: plt.Axes | None = None,
                 styles: Mapping[str, Mapping] | None = None, tolerance: float | None = None) -> plt.Figure:
    """Each family's change of top-1 against its own best batch size, at every batch size (x, log2),
    with its 95% interval: ``changes`` has ``line`` (family), ``small_batch``, ``best_batch``,
    ``change``, ``ci_low``, ``ci_high`` (``nfrepro.experiments.why_no_batchnorm.within_table``)."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.0, 4.0), constrained_layout=True)
    fig = ax.figure
    families = changes[changes["best_batch"].notna()]  # the difference-in-differences rows have none
    lines = list(dict.fromkeys(families["line"]))
    for i, line in enumerate(lines):
        g = families[families["line"] == line]
        pos = np.log2(g["small_batch"].astype(float)) + 0.04 * (i - (len(lines) - 1) / 2)
        err = [(g["change"] - g["ci_low"]).clip(upper=1e3), (g["ci_high"] - g["change"]).clip(upper=1e3)]
        label = f"{line} (best at batch {int(g['best_batch'].iloc[0])})"
        ax.errorbar(pos, g["change"], yerr=err, marker="o", capsize=4, label=label,
                    **dict((styles or {}).get(line, {})))
    ax.axhline(0.0, color="grey", lw=1)
    if tolerance:
        ax.axhspan(-tolerance, tolerance, color="grey", alpha=0.15, label=f"level: within ±{tolerance:g}")
    batches = sorted(families["small_batch"].unique())
    ax.set_xticks(np.log2(np.asarray(batches, dtype=float)), [f"{b:.0f}" for b in batches])
    ax.set_xlabel("batch size (log2 scale)")
    ax.set_ylabel("top-1 minus top-1 at the net's own best batch (points)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    ax.set_title("change within each family, paired by seed (95% t interval)")
    return fig


def plot_batch_mates(effects: pd.DataFrame, floor: float = 1e-9) -> plt.Figure:
    """How far an example's logits move when its batch-mates change: one dot per draw, by family
    (``family``) and mode (``mode``), on a log axis; a change of exactly 0 is drawn at ``floor``."""
    df = effects.assign(change=effects["relative_change"].clip(lower=floor),
                        group=effects["family"] + ", " + effects["mode"] + " mode")
    fig, ax = plt.subplots(figsize=(6.4, 3.6), constrained_layout=True)
    sns.stripplot(data=df, x="change", y="group", hue="family", ax=ax, palette="colorblind", legend=False,
                  jitter=0.2, size=4)
    ax.set_xscale("log")
    ax.axvline(floor, color="grey", lw=0.8, ls=":")
    # two lines: on one, the label is wider than the figure and its end is cut off
    ax.set_xlabel(f"relative change of the example's logits\n(max |Δ| / max |logit|; 0 drawn at {floor:g})")
    ax.set_ylabel("")
    ax.grid(True, axis="x", alpha=0.3)
    return fig


def plot_batch_dependence(points: pd.DataFrame, changes: pd.DataFrame, tolerance: float | None = None,
                          styles: Mapping[str, Mapping] | None = None) -> plt.Figure:
    """Two panels: top-1 against batch size per net (:func:`plot_agc_batch_size`: mean, seeds'
    range, single runs) and each net's change against its own best batch (:func:`plot_changes`)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), constrained_layout=True)
    plot_agc_batch_size(points, ax=axes[0], styles=styles,
                        title="final test top-1 (line: mean; bar: seeds' range)")
    plot_changes(changes, ax=axes[1], styles=styles, tolerance=tolerance)
    return fig
