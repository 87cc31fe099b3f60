"""Speed against accuracy (NFNets Fig. 1) and relative step costs (Table 2), with labels that
never overlap."""
from __future__ import annotations

import textwrap
from typing import Any, Mapping

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns


def _short(label: str) -> str:
    """'NFNet-F1' -> 'F1', 'EffNet-B7' -> 'B7', 'NFNet-F0 -NF +BN' -> 'BN-F0', 'ResNet-50' -> 'R50'."""
    head = label.split(" ")[0].replace("NFNet-", "").replace("EffNet-", "").replace("ResNet-", "R")
    return f"BN-{head}" if label.endswith("+BN") else head


# Candidate label offsets (points) around a marker, tried in order: right, left, above, below, then
# further out. The first one whose text overlaps no marker, no placed label and no legend wins.
LABEL_OFFSETS = ((5, 3), (5, -3), (-5, 3), (-5, -3), (0, 7), (0, -7), (12, 10), (12, -10),
                 (-12, 10), (-12, -10), (0, 16), (0, -16), (20, 0), (-20, 0), (24, 18), (-24, -18))


def _place_labels(ax: plt.Axes, items: list[tuple[float, float, str, Any]], marker_pt: float = 6.0,
                  fontsize: float = 8) -> list[Any]:
    """Annotate each ``(x, y, text, color)`` of ``items`` beside its point without overlaps.

    Greedy manual placement (no extra dependency): for each label, in order, the first of
    :data:`LABEL_OFFSETS` whose box stays inside the axes and overlaps no marker, no line, no label
    placed before it and no legend; if none is free, the one with the fewest overlaps. Call after the
    axes' limits and layout are final (the figure is drawn once here for that); the labels are
    kept out of the layout engine so that they cannot move the axes afterwards.
    """
    fig = ax.figure
    fig.canvas.draw()                          # settle constrained layout and the limits
    ax.set_xlim(ax.get_xlim())
    ax.set_ylim(ax.get_ylim())
    renderer = fig.canvas.get_renderer()
    half = marker_pt * fig.dpi / 72.0 / 2 + 1  # marker half-size in pixels
    taken = []
    for x, y, _, _ in items:
        px, py = ax.transData.transform((x, y))
        taken.append(matplotlib.transforms.Bbox([[px - half, py - half], [px + half, py + half]]))
    for line in ax.get_lines():                 # the lines between markers: sampled, 2 px boxes
        xy = ax.transData.transform(np.column_stack([line.get_xdata(), line.get_ydata()]).astype(float))
        if line.get_linestyle() in ("None", "", " ") or len(xy) < 2:
            continue
        for (x0, y0), (x1, y1) in zip(xy[:-1], xy[1:], strict=False):
            for f in np.linspace(0.1, 0.9, 9):
                cx, cy = x0 + f * (x1 - x0), y0 + f * (y1 - y0)
                taken.append(matplotlib.transforms.Bbox([[cx - 1, cy - 1], [cx + 1, cy + 1]]))
    legend = ax.get_legend()
    if legend is not None:
        taken.append(legend.get_window_extent(renderer))
    inside = ax.get_window_extent(renderer)
    placed = []
    for x, y, text, color in items:
        best = None
        for dx, dy in LABEL_OFFSETS:
            ha = "left" if dx > 0 else "right" if dx < 0 else "center"
            va = "bottom" if dy > 0 else "top" if dy < 0 else "center"
            t = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                            fontsize=fontsize, color=color)
            t.set_in_layout(False)
            box = t.get_window_extent(renderer)
            clashes = sum(box.overlaps(o) for o in taken) + (0 if inside.contains(box.x0, box.y0)
                                                             and inside.contains(box.x1, box.y1) else 1)
            if best is None or clashes < best[0]:
                if best is not None:
                    best[1].remove()
                best = (clashes, t, box)
            else:
                t.remove()
            if clashes == 0:
                break
        taken.append(best[2])
        placed.append(best[1])
    return placed


def plot_speed_accuracy(points: pd.DataFrame, top1_label: str = "ImageNet top-1 (%), paper's Table 3",
                        logx: bool = True, palette: str = "colorblind") -> plt.Figure:
    """Fig. 1 of the NFNets paper: top-1 (y) against training-step latency (x), one line per family.

    ``points``: columns ``panel`` (one axis per value, in order of appearance), ``family``,
    ``label``, ``latency_ms``, ``top1``; rows with a missing value are left out. Each panel's title
    is its ``panel`` value (wrapped), so the caller says where the latencies come from. Optional:

    * ``source``: ``"paper"`` (the paper's own step times, Table 3 / 6: hollow markers, dashed lines,
      legend "paper (T3/T6)") or ``"measured"`` (timed here: filled markers, solid lines, legend
      "measured here"). Without it, a panel whose title starts with "paper" is the paper's.
    * ``sam``: the top-1 was reached with SAM (NFNets App. A.4; F6 in Table 3): the point is ringed,
      its label says "(SAM)" and the legend explains the ring.
    * ``rank``: the model's position among the family members the paper reports
      (``speed_accuracy.family_rank``). A line joins two points only when their ranks are
      consecutive, so it never bridges a model that exists but is not drawn (e.g. EfficientNet
      B3..B6 when only B0 and B7 were timed); B1 and B2, absent from Table 3, break nothing.
      Without it every point of a family is joined, in order of latency.

    Labels are placed so that none overlaps another, a marker or the legend (:func:`_place_labels`).
    """
    df = points.dropna(subset=["latency_ms", "top1"])
    panels = list(dict.fromkeys(points["panel"]))
    families = list(dict.fromkeys(points["family"]))
    colors = dict(zip(families, sns.color_palette(palette, n_colors=max(len(families), 1)), strict=False))
    markers = dict(zip(families, "os^DvP*X", strict=False))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.8 * len(panels), 5.2), squeeze=False,
                             constrained_layout=True)
    for a, panel in zip(axes[0], panels, strict=False):
        sub = df[df["panel"] == panel]
        if "source" in sub.columns and sub["source"].notna().any():
            paper = str(sub["source"].dropna().iloc[0]) == "paper"
        else:
            paper = str(panel).lower().startswith("paper")
        suffix = "paper (T3/T6)" if paper else "measured here"
        sam_drawn = False
        for family in families:
            fam = sub[sub["family"] == family]
            if fam.empty:
                continue
            style = dict(color=colors[family], marker=markers[family], ms=6.5, mew=1.4,
                         mfc="white" if paper else colors[family], ls="--" if paper else "-", lw=1.3)
            ranked = "rank" in fam.columns and fam["rank"].notna().all()
            fam = fam.sort_values("rank" if ranked else "latency_ms")
            # split the family into runs of consecutive ranks; each run is one line
            breaks = np.flatnonzero(np.diff(fam["rank"].to_numpy(dtype=float)) != 1) + 1 if ranked else []
            for i, run in enumerate(np.split(np.arange(len(fam)), breaks)):
                part = fam.iloc[run]
                a.plot(part["latency_ms"], part["top1"], label=f"{family}, {suffix}" if i == 0 else None,
                       zorder=3, **style)
            sam = fam[fam["sam"].astype(bool)] if "sam" in fam.columns else fam.iloc[:0]
            if len(sam):
                a.plot(sam["latency_ms"], sam["top1"], "o", ms=15, mfc="none", mec="black", mew=1.2, zorder=2,
                       label=None if sam_drawn else "ring: top-1 trained with SAM (App. A.4)")
                sam_drawn = True
        if logx:
            a.set_xscale("log")
        a.set_title("\n".join(textwrap.fill(line, 64) for line in str(panel).splitlines()), fontsize="medium")
        a.set_xlabel("training step latency (ms per step, log scale)" if logx else
                     "training step latency (ms per step)")
        a.set_ylabel(top1_label)
        a.grid(True, which="both", alpha=0.3)
        a.margins(x=0.12, y=0.08)
        a.legend(fontsize="small", loc="lower right")
    for a, panel in zip(axes[0], panels, strict=False):  # after every panel is drawn: the layout is final
        _place_labels(a, _label_items(df[df["panel"] == panel], colors))
    return fig


def _label_items(sub: pd.DataFrame, colors: Mapping[str, Any]) -> list[tuple[float, float, str, Any]]:
    """``(x, y, text, color)`` for every point of a panel; a SAM-trained point's text says so."""
    sam = sub["sam"].astype(bool) if "sam" in sub.columns else pd.Series(False, index=sub.index)
    return [(r.latency_ms, r.top1, _short(r.label) + (" (SAM)" if s else ""), colors[r.family])
            for r, s in zip(sub.itertuples(), sam, strict=False)]


def plot_relative_cost(df: pd.DataFrame, baseline: str, title: str | None = None,
                       palette: str = "colorblind") -> plt.Figure:
    """Grouped bars: each ``quantity`` of each ``step`` divided by the same quantity of ``baseline``.

    ``df``: columns ``step`` (x, in order of appearance), ``quantity`` (hue) and ``value``. For
    the architecture steps of NFNets Table 2: params, multiply-adds, measured and paper latency.
    A quantity whose name contains "paper" is the paper's number: its bars are hatched, so that
    it is never read as one of ours. Optional columns ``low`` and ``high`` (same unit as ``value``,
    NaN where there is none) draw a black range on a bar, e.g. the IQR of a measured time.
    """
    base = df[df["step"] == baseline].set_index("quantity")["value"]
    rel = df.assign(relative=df["value"] / df["quantity"].map(base)).dropna(subset=["relative"])
    fig, ax = plt.subplots(figsize=(8.5, 4.2), constrained_layout=True)
    sns.barplot(data=rel, x="step", y="relative", hue="quantity", palette=palette, ax=ax)
    steps = list(dict.fromkeys(rel["step"]))
    for container, quantity in zip(ax.containers, dict.fromkeys(rel["quantity"]), strict=False):
        if "paper" in str(quantity):
            for bar in container:
                bar.set_hatch("//")
                bar.set_edgecolor("white")
        if {"low", "high"} <= set(rel.columns):
            rows = rel[rel["quantity"] == quantity].set_index("step")
            for step, bar in zip(steps, container, strict=False):
                low, high = rows.loc[step, ["low", "high"]] / base[quantity]
                if low == low and high == high:  # not NaN
                    x = bar.get_x() + bar.get_width() / 2
                    ax.plot([x, x], [low, high], color="black", lw=1.6)
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xlabel("architecture step (NFNets Table 2)")
    ax.set_ylabel(f"relative to {baseline}")
    handles, labels = ax.get_legend_handles_labels()
    ax.get_legend().remove()  # below the axes: inside, it covered the tallest bars
    fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize="small", frameon=False)
    if title:
        ax.set_title(title)
    return fig
