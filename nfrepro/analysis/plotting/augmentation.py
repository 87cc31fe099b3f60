"""The figures of notebooks 08 and 09: top-1 per augmentation and net (NFNets Table 2, §4), the
images each augmentation makes, the gradient-to-weight ratio per step, and the transfer analogue
of Table 4 (top-1 against target images per class)."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from nfrepro.analysis.plotting.style import diverged_band, diverged_legend, mark_diverged, seed_means


def _colors(labels: Sequence[str]) -> dict[str, tuple]:
    return dict(zip(labels, sns.color_palette("colorblind", n_colors=max(len(labels), 1)), strict=False))


def plot_augmentation_top1(runs: pd.DataFrame, augmentations: Sequence[str],
                           nets: Sequence[str]) -> plt.Figure:
    """Top-1 (y) per augmentation (x), one marker per net, one panel per batch size.

    ``runs``: one row per run with ``batch_size``, ``net``, ``augmentation``, ``seed``, ``top1``,
    ``diverged``. Markers are the mean over completed seeds, bars their range, dots the seeds;
    diverged runs are crosses in the shaded strip (never dropped)."""
    batches = sorted(runs["batch_size"].unique())
    fig, axes = plt.subplots(1, len(batches), figsize=(5.6 * len(batches), 4.2), sharey=True,
                             constrained_layout=True, squeeze=False)
    colors = _colors(list(nets))
    x_of = {a: i for i, a in enumerate(augmentations)}
    for ax, b in zip(axes[0], batches, strict=True):
        sub = runs[runs["batch_size"] == b].assign(x=lambda d: d["augmentation"].map(x_of))
        for j, net in enumerate(nets):
            dx = (j - (len(nets) - 1) / 2) * 0.18
            g = sub[sub["net"] == net]
            m = seed_means(g, ["x"])
            ax.errorbar(m["x"] + dx, m["mean"], yerr=[m["mean"] - m["min"], m["max"] - m["mean"]], fmt="o",
                        ms=6, capsize=3, color=colors[net], label=net)
            done = g[~g["diverged"].astype(bool)]
            ax.plot(done["x"] + dx, done["top1"], ".", color=colors[net], alpha=0.5, ms=5)
            mark_diverged(ax, g.loc[g["diverged"].astype(bool), "x"], colors[net], dx)
        ax.set_xticks(range(len(augmentations)), augmentations, rotation=15)
        ax.set_xlabel("augmentation")
        ax.set_title(f"batch {b}, peak lr {0.1 * b / 256:g}")
        ax.grid(True, axis="y", alpha=0.3)
    axes[0][0].set_ylabel("final test top-1 (%)")
    any_div = bool(runs["diverged"].astype(bool).any())
    if any_div:
        diverged_band(list(axes[0]))
    diverged_legend(axes[0][-1], any_div, fontsize="small", loc="lower left")
    return fig


def plot_augmented_examples(examples: Mapping[str, np.ndarray]) -> plt.Figure:
    """One row per augmentation (label -> ``N x H x W`` uint8 images, the same N images in each)."""
    rows, n = len(examples), len(next(iter(examples.values())))
    label_width = 1.3  # inches for the row labels
    fig, axes = plt.subplots(rows, n, figsize=(1.1 * n + label_width, 1.15 * rows), squeeze=False)
    for r, (label, images) in enumerate(examples.items()):
        for c in range(n):
            ax = axes[r][c]
            ax.imshow(images[c], cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    fig.supxlabel("the same training images, one draw of each augmentation", fontsize=9)
    fig.supylabel("augmentation", fontsize=9, x=0.01)
    fig.subplots_adjust(wspace=0.05, hspace=0.08, left=label_width / (1.1 * n + label_width), right=0.98)
    return fig


def plot_ratio_trace(trace: pd.DataFrame, clipping: float | None = None) -> plt.Figure:
    """Per step: the largest filter ratio ||G_i|| / ||W_i|| (log), the loss and the input's standard
    deviation, one line per augmentation (median over seeds, band: min to max)."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8), constrained_layout=True)
    augs = list(dict.fromkeys(trace["augmentation"]))
    colors = _colors(augs)
    for ax, column, label in zip(axes, ("max_ratio", "loss", "input_std"),
                                 ("largest filter ratio ‖G_i‖ / ‖W_i‖ (log)", "training loss",
                                  "input std after augmentation"), strict=True):
        for aug in augs:
            g = trace[trace["augmentation"] == aug].groupby("step")[column]
            med, lo, hi = g.median(), g.min(), g.max()
            ax.plot(med.index, med, color=colors[aug], label=f"{aug} (median over seeds)")
            ax.fill_between(med.index, lo, hi, color=colors[aug], alpha=0.2, lw=0)
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    axes[0].set_yscale("log")
    if clipping:
        axes[0].axhline(clipping, color="grey", ls="--", lw=1, label=f"AGC's λ = {clipping:g}")
    axes[0].legend(fontsize="small")
    return fig


def plot_curves(curves: pd.DataFrame, nets: Sequence[str]) -> plt.Figure:
    """Test top-1 (y) against epoch (x) per augmentation, one panel per net (mean over seeds of
    the runs that completed): is an augmented run still climbing when the budget ends?"""
    fig, axes = plt.subplots(1, len(nets), figsize=(4.6 * len(nets), 3.6), sharey=True,
                             constrained_layout=True, squeeze=False)
    augs = list(dict.fromkeys(curves["augmentation"]))
    colors = _colors(augs)
    for ax, net in zip(axes[0], nets, strict=True):
        sub = curves[curves["net"] == net]
        for aug in augs:
            m = sub[sub["augmentation"] == aug].groupby("epoch")["test_top1"].mean()
            ax.plot(m.index, m, marker=".", color=colors[aug], label=aug)
        ax.set_title(net)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("test top-1 (%)")
    axes[0][-1].legend(fontsize="small", loc="lower right")
    return fig


def plot_transfer(summary: pd.DataFrame, arms: Sequence[str], families: Sequence[str]) -> plt.Figure:
    """Top-1 (y) against target images per class (x, log), one panel per arm, one line per family;
    bars: 95% t interval over seeds (clipped to 0-100). ``summary``: ``arm``, ``per_class``,
    ``family``, ``top1``, ``ci_low``, ``ci_high``."""
    fig, axes = plt.subplots(1, len(arms), figsize=(4.2 * len(arms), 3.8), sharey=True,
                             constrained_layout=True, squeeze=False)
    colors = _colors(list(families))
    for ax, arm in zip(axes[0], arms, strict=True):
        sub = summary[summary["arm"] == arm]
        for j, family in enumerate(families):
            g = sub[sub["family"] == family].sort_values("per_class")
            if g.empty:
                continue
            x = np.log2(g["per_class"].astype(float)) + (j - (len(families) - 1) / 2) * 0.07
            low, high = g["ci_low"].clip(0, 100), g["ci_high"].clip(0, 100)  # an interval of 2 seeds is wide
            ax.errorbar(x, g["top1"], yerr=[g["top1"] - low, high - g["top1"]], marker="o",
                        capsize=3, color=colors[family], label=family)
        ticks = sorted(summary["per_class"].unique())
        ax.set_xticks(np.log2(np.asarray(ticks, float)), [str(t) for t in ticks])
        ax.set_xlabel("target images per class (log scale)")
        ax.set_title(arm, fontsize=10)
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("target test top-1 (%, EMA weights)")
    axes[0][0].legend(fontsize="small")
    return fig
