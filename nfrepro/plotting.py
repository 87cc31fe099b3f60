"""Every figure of the project, drawn from DataFrames (or the CSVs in ``results/``) only.

This module imports no model, data or training code: a figure can always be redrawn from the
saved tables without recomputing anything. Functions return the ``matplotlib`` figure and never
call ``show()``, so they work under the non-interactive Agg backend; save with
``fig.savefig(figures_dir / "<paper figure>.png")``.
"""
from __future__ import annotations

import textwrap
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

# The three panels of a Signal Propagation Plot (NF-ResNet paper §3, Fig. 1 and 2).
SPP_PANELS = (
    ("avg_sq_mean", "Average squared channel mean"),
    ("avg_var", "Average channel variance"),
    ("res_avg_var", "Residual average channel variance"),
)
# A panel switches to a log axis ("auto") when its positive values span more than three decades:
# an unnormalised net's exploding variance does, a BN net's linear growth to ~50 does not (a
# straight line in depth should stay straight on the page).
LOG_SPAN = 1000.0


def spp_frames(data) -> dict[str, pd.DataFrame]:
    """Normalise SPP input to ``{net name: wide frame}``.

    Accepts one wide frame (``nfrepro.spp.signal_propagation`` output), a dict of them, a wide
    frame with a ``net`` column, or the tidy long table (``net, index, metric, value``, plus any
    other id columns) as saved in ``results/``.
    """
    if isinstance(data, Mapping):
        return {str(k): v for k, v in data.items()}
    df = pd.DataFrame(data)
    order = list(pd.unique(df["net"])) if "net" in df.columns else []
    if {"metric", "value"} <= set(df.columns):
        ids = [c for c in df.columns if c not in ("metric", "value")]
        df = df.set_index(ids + ["metric"])["value"].unstack("metric").reset_index()
        df.columns.name = None
    if "net" in df.columns:
        groups = dict(list(df.groupby("net", sort=False)))
        return {str(k): groups[k].sort_values("index") for k in order}  # first-seen order
    return {"": df}


def _panel_log(values: list[np.ndarray], logy) -> bool:
    if logy != "auto":
        return bool(logy)
    pos = np.concatenate([v[np.isfinite(v) & (v > 0)] for v in values] or [np.array([])])
    return pos.size > 0 and pos.max() / pos.min() > LOG_SPAN


def plot_spp(data, theory=None, ax: Sequence[plt.Axes] | None = None, logy="auto",
             title: str | None = None, palette: str = "colorblind") -> plt.Figure:
    """The three panels of a Signal Propagation Plot, one line per network.

    ``data``: see :func:`spp_frames`. ``theory``: the NF expected variance per SPP index (a
    Series indexed by ``index``, or a frame with ``index`` and ``expected_var``), drawn dashed on
    the variance panel. ``logy``: ``"auto"`` (log where a panel's values span more than
    ``LOG_SPAN``, as an unnormalised net's exploding variance does), a bool, or one of those per
    panel. Black dots mark the last block of each stage, as in the paper's figures.
    ``ax``: three axes to draw into; a new 1 x 3 figure otherwise.
    """
    frames = spp_frames(data)
    if ax is None:
        fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), constrained_layout=True)
    else:
        axes = list(ax)
        if len(axes) != 3:
            raise ValueError(f"plot_spp draws three panels; got {len(axes)} axes")
        fig = axes[0].figure
    logys = list(logy) if isinstance(logy, (list, tuple)) else [logy] * 3
    colors = dict(zip(frames, sns.color_palette(palette, n_colors=max(len(frames), 1))))

    for panel, ((column, label), a, lg) in enumerate(zip(SPP_PANELS, axes, logys)):
        values = []
        for name, df in frames.items():
            df = df.sort_values("index")
            x, y = df["index"].to_numpy(), df[column].to_numpy(dtype=float)
            keep = np.isfinite(y)
            values.append(y[keep])
            a.plot(x[keep], y[keep], color=colors[name], lw=1.6, label=name or None)
            if "stage" in df.columns:  # black dots: the last block of each stage
                ends = df[(df["stage"] >= 0) & (df["stage"] != df["stage"].shift(-1))]
                ends = ends[np.isfinite(ends[column].to_numpy(dtype=float))]
                a.plot(ends["index"], ends[column], "o", color="black", ms=3.5, zorder=3)
        if theory is not None and column == "avg_var":
            th = theory.set_index("index")["expected_var"] if isinstance(theory, pd.DataFrame) else theory
            a.plot(th.index, th.to_numpy(dtype=float), "--", color="black", lw=1.1,
                   label=r"NF theory $1 + k\alpha^2$")
            values.append(th.to_numpy(dtype=float))
        if _panel_log(values, lg):
            a.set_yscale("log")
        a.set_title(label)
        a.set_xlabel("Block index (0 = stem)")
        a.grid(True, which="major", alpha=0.3)
    handles, labels = axes[1].get_legend_handles_labels()
    if labels and ax is None:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), frameon=False)
    elif labels:  # beside the row, clear of the curves
        axes[2].legend(handles, labels, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    if title:
        fig.suptitle(title)
    return fig


def plot_spp_grid(rows: Mapping[str, object], theory: Mapping[str, object] | None = None,
                  logy="auto", title: str | None = None, palette: str = "colorblind") -> plt.Figure:
    """Several SPPs stacked: one row of three panels per entry of ``rows`` (row label -> data).

    ``theory`` maps a row label to the theory line to draw in that row (see :func:`plot_spp`).
    Each row has its own legend and its own y scales, so that an exploding unnormalised net does
    not flatten the normalised ones.
    """
    theory = dict(theory or {})
    fig, axes = plt.subplots(len(rows), 3, figsize=(18, 3.9 * len(rows)), squeeze=False,
                             constrained_layout=True)
    for r, (label, data) in enumerate(rows.items()):
        plot_spp(data, theory=theory.get(label), ax=axes[r], logy=logy, palette=palette)
        axes[r][0].set_ylabel(label, fontsize="large")
        for a in axes[r]:
            if r > 0:
                a.set_title("")
            if r < len(rows) - 1:
                a.set_xlabel("")
    if title:
        fig.suptitle(title, fontsize="x-large")
    return fig


# ---------------------------------------------------------------- speed and size (NFNets Fig. 1, Table 2)
def _short(label: str) -> str:
    """'NFNet-F1' -> 'F1', 'EffNet-B7' -> 'B7', 'NFNet-F0 -NF +BN' -> 'F0', 'ResNet-50' -> 'R50'."""
    head = label.split(" ")[0]
    return head.replace("NFNet-", "").replace("EffNet-", "").replace("ResNet-", "R")


def plot_speed_accuracy(points: pd.DataFrame, top1_label: str = "paper top-1, Table 3 (%)",
                        logx: bool = True, palette: str = "colorblind") -> plt.Figure:
    """Fig. 1 of the NFNets paper: top-1 (y) against training-step latency (x), one line per family.

    ``points``: columns ``panel`` (one axis per value, in order of appearance), ``family``,
    ``label``, ``latency_ms``, ``top1``; rows with a missing value are left out. Each panel's title
    is its ``panel`` value (wrapped), so the caller says where the latencies come from (measured
    here, and in what setting, or the paper's TPUv3 times).
    """
    df = points.dropna(subset=["latency_ms", "top1"])
    panels = list(dict.fromkeys(points["panel"]))
    families = list(dict.fromkeys(points["family"]))
    colors = dict(zip(families, sns.color_palette(palette, n_colors=max(len(families), 1))))
    markers = dict(zip(families, "os^DvP*X"))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 4.8), squeeze=False,
                             constrained_layout=True)
    for a, panel in zip(axes[0], panels):
        sub = df[df["panel"] == panel]
        for family in families:
            fam = sub[sub["family"] == family].sort_values("latency_ms")
            if fam.empty:
                continue
            a.plot(fam["latency_ms"], fam["top1"], marker=markers[family], color=colors[family],
                   lw=1.4, ms=6, label=family)
            for r in fam.itertuples():
                a.annotate(_short(r.label), (r.latency_ms, r.top1), textcoords="offset points",
                           xytext=(4, -10), fontsize=8, color=colors[family])
        if logx:
            a.set_xscale("log")
        a.set_title("\n".join(textwrap.fill(line, 64) for line in str(panel).splitlines()), fontsize="medium")
        a.set_xlabel("training latency (ms / step)")
        a.set_ylabel(top1_label)
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize="small", loc="best")
    return fig


def plot_relative_cost(df: pd.DataFrame, baseline: str, title: str | None = None,
                       palette: str = "colorblind") -> plt.Figure:
    """Grouped bars: each ``quantity`` of each ``step`` divided by the same quantity of ``baseline``.

    ``df``: columns ``step`` (x, in order of appearance), ``quantity`` (hue) and ``value``. For
    the architecture steps of NFNets Table 2: params, multiply-adds, measured and paper latency.
    """
    base = df[df["step"] == baseline].set_index("quantity")["value"]
    rel = df.assign(relative=df["value"] / df["quantity"].map(base)).dropna(subset=["relative"])
    fig, ax = plt.subplots(figsize=(8.5, 4.2), constrained_layout=True)
    sns.barplot(data=rel, x="step", y="relative", hue="quantity", palette=palette, ax=ax)
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xlabel("")
    ax.set_ylabel(f"relative to {baseline}")
    ax.legend(fontsize="small", loc="upper left")
    if title:
        ax.set_title(title)
    return fig
