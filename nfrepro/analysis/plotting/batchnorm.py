"""The BatchNorm figures of notebook 06: a difference with its interval against batch size, the
batch-mates' effect, and both beside the per-net top-1."""
from __future__ import annotations

from typing import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from nfrepro.analysis.plotting.agc import plot_agc_batch_size


def plot_difference(table: pd.DataFrame, ax: plt.Axes | None = None, tolerance: float | None = None,
                    ylabel: str = "NF - BN, top-1 points", title: str | None = None) -> plt.Figure:
    """A difference against batch size (x, log2) with its 95% interval: ``table`` has ``batch_size``,
    ``top1`` (the mean difference), ``ci_low`` and ``ci_high``. The zero line and, if given, the
    +-``tolerance`` band of "level" are drawn, so a reader sees which intervals decide a verdict."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.0, 4.0), constrained_layout=True)
    fig = ax.figure
    x = np.log2(table["batch_size"].astype(float))
    low = (table["top1"] - table["ci_low"]).clip(upper=1e3)
    high = (table["ci_high"] - table["top1"]).clip(upper=1e3)
    ax.errorbar(x, table["top1"], yerr=[low, high], marker="o", capsize=4, color="black",
                label="mean over seeds, 95% t interval")
    ax.axhline(0.0, color="grey", lw=1)
    if tolerance:
        ax.axhspan(-tolerance, tolerance, color="grey", alpha=0.15, label=f"level: within ±{tolerance:g}")
    ax.set_xticks(x, [f"{b:.0f}" for b in table["batch_size"]])
    ax.set_xlabel("batch size (log2 scale)")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    if title:
        ax.set_title(title)
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


def plot_batch_dependence(points: pd.DataFrame, difference: pd.DataFrame, tolerance: float | None = None,
                          styles: Mapping[str, Mapping] | None = None) -> plt.Figure:
    """Two panels: top-1 against batch size per net (:func:`plot_agc_batch_size`: mean, seeds'
    range, single runs) and their difference with its 95% interval (:func:`plot_difference`)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), constrained_layout=True)
    plot_agc_batch_size(points, ax=axes[0], styles=styles,
                        title="final test top-1 (line: mean; bar: seeds' range)")
    plot_difference(difference, ax=axes[1], tolerance=tolerance,
                    title="difference, paired by seed (95% t interval)")
    return fig
