"""Every figure of the project, drawn from DataFrames (or the CSVs in ``results/``) only.

This module imports no model, data or training code: a figure can always be redrawn from the
saved tables without recomputing anything. Functions return the ``matplotlib`` figure and never
call ``show()``, so they work under the non-interactive Agg backend; notebooks save them with
``nfrepro.engine.records.save_figure(fig, figures_dir / "<paper figure>.png")``, which stores the
commit in the PNG.
"""
from __future__ import annotations

import textwrap
from typing import Any, Mapping, Sequence

import matplotlib
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

    Accepts one wide frame (``nfrepro.analysis.spp.signal_propagation`` output), a dict of them, a wide
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


# A log panel shows at most this far down: below it, values are numerically zero for these plots
# (a BN net's squared channel mean of 1e-14 is float rounding, not signal) and would squash the
# curves that matter into the top of the axis. Points below are marked on the floor.
LOG_FLOOR = 1e-4
NF_THEORY_LABEL = r"NF theory $1 + k\alpha^2$"


def _theory_lines(theory) -> dict[str, pd.Series]:
    """Panel column -> predicted line, from a Series (the variance panel) or a frame with ``index``
    and ``expected_var`` / ``predicted_var`` (variance panel) and ``predicted_res_var`` (residual panel)."""
    if theory is None:
        return {}
    if isinstance(theory, pd.Series):
        return {"avg_var": theory}
    df = theory.set_index("index") if "index" in theory.columns else theory
    out: dict[str, pd.Series] = {}
    for col, panel in (("expected_var", "avg_var"), ("predicted_var", "avg_var"), ("predicted_res_var", "res_avg_var")):
        if col in df.columns and panel not in out:
            out[panel] = df[col].dropna()
    return out


def _floor_log_panel(a: plt.Axes, curves: list[tuple[np.ndarray, np.ndarray, Any]], floor: float) -> None:
    """Clamp a log panel's lower limit at ``floor`` (if its data go below it) and mark the points
    below with a triangle on the floor, so that no value silently disappears."""
    pos = np.concatenate([y[np.isfinite(y) & (y > 0)] for _, y, _ in curves] or [np.array([])])
    if not len(pos) or pos.min() >= floor or pos.max() <= floor:
        return
    a.set_ylim(bottom=floor, top=a.get_ylim()[1])
    for x, y, color in curves:
        low = np.isfinite(y) & (y < floor)
        if low.any():
            a.plot(x[low], np.full(low.sum(), floor), "v", color=color, ms=4, clip_on=False, zorder=4)
    a.text(0.01, 0.035, f"▼ below {floor:g}, drawn on the axis floor", transform=a.transAxes, fontsize=7,
           va="bottom", color="0.3")


def plot_spp(data, theory=None, ax: Sequence[plt.Axes] | None = None, logy="auto",
             title: str | None = None, palette: str = "colorblind", theory_label: str = NF_THEORY_LABEL,
             log_floor: float = LOG_FLOOR) -> plt.Figure:
    """The three panels of a Signal Propagation Plot, one line per network.

    ``data``: see :func:`spp_frames`. ``theory``: the predicted variance per SPP index (a Series
    indexed by ``index``, or a frame with ``index`` and ``expected_var`` or ``predicted_var``, plus
    optionally ``predicted_res_var`` for the residual panel), drawn dashed, in the legend as
    ``theory_label`` (default: the NF bookkeeping 1 + k alpha^2, NF-ResNet paper §4). ``logy``:
    ``"auto"`` (log where a panel's values span more than ``LOG_SPAN``, as an unnormalised net's
    exploding variance does), a bool, or one of those per panel; a log panel stops at
    ``log_floor`` and marks the values below it (:func:`_floor_log_panel`). Black dots mark the
    last block of each stage, as in the paper's figures. ``ax``: three axes to draw into; a new
    1 x 3 figure otherwise.
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
    lines = _theory_lines(theory)

    for panel, ((column, label), a, lg) in enumerate(zip(SPP_PANELS, axes, logys)):
        values, curves = [], []
        for name, df in frames.items():
            df = df.sort_values("index")
            x, y = df["index"].to_numpy(), df[column].to_numpy(dtype=float)
            keep = np.isfinite(y)
            values.append(y[keep])
            curves.append((x[keep], y[keep], colors[name]))
            a.plot(x[keep], y[keep], color=colors[name], lw=1.6, label=name or None)
            if "stage" in df.columns:  # black dots: the last block of each stage
                ends = df[(df["stage"] >= 0) & (df["stage"] != df["stage"].shift(-1))]
                ends = ends[np.isfinite(ends[column].to_numpy(dtype=float))]
                a.plot(ends["index"], ends[column], "o", color="black", ms=3.5, zorder=3)
        if column in lines:
            th = lines[column]
            a.plot(th.index, th.to_numpy(dtype=float), "--", color="black", lw=1.1,
                   label=theory_label if column == "avg_var" else None)
            values.append(th.to_numpy(dtype=float))
        if _panel_log(values, lg):
            a.set_yscale("log")
            _floor_log_panel(a, curves, log_floor)
        a.set_title(label)
        a.set_xlabel("Block index (0 = stem)")
        a.set_ylabel(f"{label.lower()} (unit-variance input)")
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
        for (x0, y0), (x1, y1) in zip(xy[:-1], xy[1:]):
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
    colors = dict(zip(families, sns.color_palette(palette, n_colors=max(len(families), 1))))
    markers = dict(zip(families, "os^DvP*X"))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.8 * len(panels), 5.2), squeeze=False,
                             constrained_layout=True)
    for a, panel in zip(axes[0], panels):
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
    for a, panel in zip(axes[0], panels):  # after every panel is drawn: the layout is final
        _place_labels(a, _label_items(df[df["panel"] == panel], colors))
    return fig


def _label_items(sub: pd.DataFrame, colors: Mapping[str, Any]) -> list[tuple[float, float, str, Any]]:
    """``(x, y, text, color)`` for every point of a panel; a SAM-trained point's text says so."""
    sam = sub["sam"].astype(bool) if "sam" in sub.columns else pd.Series(False, index=sub.index)
    return [(r.latency_ms, r.top1, _short(r.label) + (" (SAM)" if s else ""), colors[r.family])
            for r, s in zip(sub.itertuples(), sam)]


def plot_relative_cost(df: pd.DataFrame, baseline: str, title: str | None = None,
                       palette: str = "colorblind") -> plt.Figure:
    """Grouped bars: each ``quantity`` of each ``step`` divided by the same quantity of ``baseline``.

    ``df``: columns ``step`` (x, in order of appearance), ``quantity`` (hue) and ``value``. For
    the architecture steps of NFNets Table 2: params, multiply-adds, measured and paper latency.
    A quantity whose name contains "paper" is the paper's number: its bars are hatched, so that
    it is never read as one of ours.
    """
    base = df[df["step"] == baseline].set_index("quantity")["value"]
    rel = df.assign(relative=df["value"] / df["quantity"].map(base)).dropna(subset=["relative"])
    fig, ax = plt.subplots(figsize=(8.5, 4.2), constrained_layout=True)
    sns.barplot(data=rel, x="step", y="relative", hue="quantity", palette=palette, ax=ax)
    for container, quantity in zip(ax.containers, dict.fromkeys(rel["quantity"])):
        if "paper" in str(quantity):
            for bar in container:
                bar.set_hatch("//")
                bar.set_edgecolor("white")
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xlabel("architecture step (NFNets Table 2)")
    ax.set_ylabel(f"relative to {baseline}")
    ax.legend(fontsize="small", loc="upper left")
    if title:
        ax.set_title(title)
    return fig


# ----------------------------------------------------------------------------- AGC (NFNets §4.1)
DIVERGED_BAND = 0.12  # the strip at the low end of an axis that holds diverged runs only


def _seed_means(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean and spread of ``top1`` over the completed seeds of each group (diverged ones left out)."""
    done = df[~df["diverged"].astype(bool)]
    return (done.groupby(keys)["top1"].agg(["mean", "min", "max", "count"]).reset_index()
            .sort_values(keys))


def _mark_diverged(ax: plt.Axes, x, color, offset: float = 0.0, vertical: bool = True) -> None:
    """Crosses in the middle of the diverged strip (:func:`_diverged_band`): a run that diverged.

    ``x`` is in data units along the other axis; ``vertical``: the strip is at the bottom (top-1
    on y), else at the left (top-1 on x)."""
    if len(x):
        pos = np.asarray(x, dtype=float) + offset
        mid = [DIVERGED_BAND / 2] * len(pos)
        xy, transform = ((pos, mid), ax.get_xaxis_transform()) if vertical else \
            ((mid, pos), ax.get_yaxis_transform())
        ax.plot(*xy, "x", color=color, ms=8, mew=2, transform=transform, clip_on=False, zorder=4)


def _diverged_band(axes: Sequence[plt.Axes], vertical: bool = True) -> None:
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
            for other in [ax, *(ax.get_shared_y_axes() if vertical else ax.get_shared_x_axes()).get_siblings(ax)]:
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


def _diverged_legend(ax: plt.Axes, any_diverged: bool, **legend) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if any_diverged:
        handles.append(plt.Line2D([], [], ls="", marker="x", color="gray", ms=8, mew=2))
        labels.append("diverged run")
    if labels:
        ax.legend(handles, labels, **legend)


def plot_agc_batch_size(points: pd.DataFrame, ax: plt.Axes | None = None, title: str | None = None,
                        ylabel: str = "final test top-1 (%)", styles: Mapping[str, Mapping] | None = None,
                        palette: str = "colorblind") -> plt.Figure:
    """NFNets Fig. 2a: top-1 (y) against batch size (x, log2), one line per ``line``.

    ``points``: one row per run, columns ``line``, ``batch_size``, ``seed``, ``top1``,
    ``diverged`` and optionally ``clipping`` (the lambda behind a clipped line, written beside its
    points). The line joins the mean over the seeds that completed; bars span their min to max and
    dots are the seeds. Diverged runs are crosses in a shaded "diverged" strip below every result
    (:func:`_diverged_band`), never dropped.
    ``styles``: matplotlib keywords per line (``color``, ``ls``); other lines take ``palette``.
    """
    lines = list(dict.fromkeys(points["line"]))
    styles = {line: dict((styles or {}).get(line, {})) for line in lines}
    for line, color in zip(lines, sns.color_palette(palette, n_colors=max(len(lines), 1))):
        styles[line].setdefault("color", color)
    colors = {line: st["color"] for line, st in styles.items()}
    if ax is None:
        fig, ax = plt.subplots(figsize=(7.2, 4.8), constrained_layout=True)
    fig = ax.figure
    df = points.assign(x=np.log2(points["batch_size"].astype(float)))
    width = 0.06 * (len(lines) - 1)  # nudge the lines apart so seeds do not hide each other
    for i, line in enumerate(lines):
        sub = df[df["line"] == line]
        dx = (i / max(len(lines) - 1, 1) - 0.5) * width if len(lines) > 1 else 0.0
        m = _seed_means(sub, ["x"])
        ax.errorbar(m["x"] + dx, m["mean"], yerr=[m["mean"] - m["min"], m["max"] - m["mean"]],
                    marker="o", ms=6, lw=1.6, capsize=3, label=line, **styles[line])
        done = sub[~sub["diverged"].astype(bool)]
        ax.plot(done["x"] + dx, done["top1"], ".", color=colors[line], alpha=0.5, ms=5)
        _mark_diverged(ax, sub.loc[sub["diverged"].astype(bool), "x"], colors[line], dx)
        if "clipping" in sub and sub["clipping"].notna().any():
            for r in m.itertuples():
                lam = sub.loc[sub["x"] == r.x, "clipping"].dropna()
                if len(lam):
                    ax.annotate(f"λ={lam.iloc[0]:g}", (r.x + dx, r.mean), textcoords="offset points",
                                xytext=(5, 5 if i % 2 else -12), fontsize=7.5, color=colors[line])
    ticks = sorted(df["x"].unique())
    ax.set_xticks(ticks, [f"{2 ** t:.0f}" for t in ticks])
    ax.set_xlabel("batch size (log2 scale)")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if df["diverged"].astype(bool).any():
        _diverged_band([ax])
    _diverged_legend(ax, bool(df["diverged"].astype(bool).any()), fontsize="small", loc="best")
    if title:
        ax.set_title(title)
    return fig


def plot_clipping_threshold(runs: pd.DataFrame, best: pd.DataFrame | None = None,
                            panel: str = "variant", grid_top: float | None = None,
                            ylabel: str = "final test top-1 (%)", palette: str = "viridis",
                            xlabel: str = "clipping threshold λ (log scale)") -> plt.Figure:
    """NFNets Fig. 2b: top-1 (y) against the clipping threshold lambda (x, log), one line per batch size.

    ``runs``: one row per run, columns ``panel`` (one axis per value), ``batch_size``,
    ``clipping``, ``seed``, ``top1``, ``diverged``. Lines join the mean over completed seeds; dots
    are the seeds; diverged runs are crosses in a shaded strip below every result. ``best`` (columns ``panel``,
    ``batch_size``, ``clipping``) rings the best lambda of each line. ``grid_top``: the largest
    lambda of the paper's grid; the lambdas above it are shaded as an extension.
    """
    panels = list(dict.fromkeys(runs[panel]))
    batches = sorted(runs["batch_size"].unique())
    colors = dict(zip(batches, sns.color_palette(palette, n_colors=max(len(batches), 1))))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 4.6), squeeze=False,
                             sharey=True, constrained_layout=True)
    lams = sorted(runs["clipping"].dropna().unique())
    handles: dict[str, Any] = {}
    for a, name in zip(axes[0], panels):
        sub = runs[runs[panel] == name]
        for b in batches:
            s = sub[sub["batch_size"] == b]
            if s.empty:
                continue
            m = _seed_means(s, ["clipping"])
            (line,) = a.plot(m["clipping"], m["mean"], "o-", color=colors[b], lw=1.6, ms=5, label=f"batch {b}")
            handles.setdefault(f"batch {b}", line)
            done = s[~s["diverged"].astype(bool)]
            a.plot(done["clipping"], done["top1"], ".", color=colors[b], alpha=0.5, ms=5)
            _mark_diverged(a, s.loc[s["diverged"].astype(bool), "clipping"], colors[b])
            if best is not None:
                pick = best[(best[panel] == name) & (best["batch_size"] == b)]
                top = m[m["clipping"].isin(pick["clipping"])]
                a.plot(top["clipping"], top["mean"], "o", ms=13, mfc="none", mec=colors[b], mew=1.8)
        if grid_top is not None and lams and max(lams) > grid_top:
            a.axvspan(grid_top * 2 ** 0.5, max(lams) * 2 ** 0.5, color="0.9", zorder=0)
            a.text(grid_top * 2 ** 0.5, 1.0, " beyond the paper's grid", transform=a.get_xaxis_transform(),
                   va="bottom", ha="left", fontsize=7.5, color="0.35")  # above the panel: clear of the data
        ticks = sorted(sub["clipping"].dropna().unique())  # each panel its own thresholds
        a.set_xscale("log", base=2)
        a.set_xticks(ticks, [f"{v:g}" for v in ticks])
        a.minorticks_off()
        a.set_xlabel(xlabel)
        a.set_title(str(name))
        a.grid(True, alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    if runs["diverged"].astype(bool).any():
        _diverged_band(list(axes[0]))
    labels, handles = list(handles), list(handles.values())  # every batch size, from every panel
    if runs["diverged"].astype(bool).any():
        handles.append(plt.Line2D([], [], ls="", marker="x", color="gray", ms=8, mew=2))
        labels.append("diverged run")
    fig.legend(handles, labels, loc="outside right upper", fontsize="small",
               title="ring: best threshold" if best is not None else None)
    return fig


def plot_agc_layers(runs: pd.DataFrame, order: Sequence[str] | None = None,
                    xlabel: str = "final test top-1 (%)", title: str | None = None,
                    palette: str = "colorblind") -> plt.Figure:
    """NFNets §4.1, which layers to clip: top-1 (x) of each clipping choice (y), one colour per variant.

    ``runs``: one row per run, columns ``variant``, ``layers``, ``seed``, ``top1``, ``diverged``.
    Dots are seeds, a bar marks their mean; diverged runs are crosses in a shaded strip left of
    every result.
    """
    order = list(order) if order is not None else list(dict.fromkeys(runs["layers"]))
    variants = list(dict.fromkeys(runs["variant"]))
    colors = dict(zip(variants, sns.color_palette(palette, n_colors=max(len(variants), 1))))
    fig, ax = plt.subplots(figsize=(8.0, 0.75 * len(order) + 1.6), constrained_layout=True)
    ypos = {k: i for i, k in enumerate(order)}
    any_div = False
    for j, v in enumerate(variants):
        sub = runs[runs["variant"] == v]
        dy = (j - (len(variants) - 1) / 2) * 0.22
        m = _seed_means(sub, ["layers"])
        ax.plot(m["mean"], m["layers"].map(ypos) + dy, "|", color=colors[v], ms=16, mew=2.5, label=v)
        done = sub[~sub["diverged"].astype(bool)]
        ax.plot(done["top1"], done["layers"].map(ypos) + dy, "o", color=colors[v], alpha=0.6, ms=5)
        div = sub[sub["diverged"].astype(bool)]
        if len(div):
            any_div = True
            _mark_diverged(ax, div["layers"].map(ypos), colors[v], dy, vertical=False)
    ax.set_yticks(range(len(order)), order)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.grid(True, axis="x", alpha=0.3)
    if any_div:
        _diverged_band([ax], vertical=False)
    _diverged_legend(ax, any_div, fontsize="small", loc="best")
    if title:
        ax.set_title(title)
    return fig


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
    ax.set_xlabel(f"relative change of the example's logits (max |Δ| / max |logit|; 0 drawn at {floor:g})")
    ax.set_ylabel("")
    ax.grid(True, axis="x", alpha=0.3)
    return fig


def plot_batch_dependence(points: pd.DataFrame, difference: pd.DataFrame, tolerance: float | None = None,
                          styles: Mapping[str, Mapping] | None = None) -> plt.Figure:
    """Two panels: top-1 against batch size per net (:func:`plot_agc_batch_size`: mean, seeds'
    range, single runs) and their difference with its 95% interval (:func:`plot_difference`)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), constrained_layout=True)
    plot_agc_batch_size(points, ax=axes[0], styles=styles, title="final test top-1 (line: mean; bar: seeds' range)")
    plot_difference(difference, ax=axes[1], tolerance=tolerance, title="difference, paired by seed (95% t interval)")
    return fig


def plot_clipping_census(census: pd.DataFrame, palette: str = "colorblind") -> plt.Figure:
    """Which units each clipping rule would clip, over training: one panel per rule (``rule``: unit,
    tensor, global), the fraction of units (``fraction``) against the step (``step``), one line per
    parameter kind (``kind``)."""
    rules = list(dict.fromkeys(census["rule"]))
    kinds = list(dict.fromkeys(census["kind"]))
    colors = dict(zip(kinds, sns.color_palette(palette, n_colors=max(len(kinds), 1))))
    titles = {"unit": "unit-wise (AGC)", "tensor": "whole tensor", "global": "global norm"}
    fig, axes = plt.subplots(1, len(rules), figsize=(4.6 * len(rules), 3.8), squeeze=False, sharey=True,
                             constrained_layout=True)
    for ax, rule in zip(axes[0], rules):
        sub = census[census["rule"] == rule]
        for kind in kinds:
            k = sub[sub["kind"] == kind].sort_values("step")
            ax.plot(k["step"], k["fraction"], "-", color=colors[kind], lw=1.5, label=kind)
        ax.set_title(titles.get(rule, rule))
        ax.set_xlabel("training step")
        ax.set_ylim(-0.03, 1.03)
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("fraction of units clipped")
    axes[0][-1].legend(fontsize="small", loc="best")
    return fig


def plot_clip_fraction(trace: pd.DataFrame, title: str | None = None,
                       palette: str = "viridis") -> plt.Figure:
    """The fraction of units AGC clipped over training: one panel per ``variant``, one line per
    ``batch_size`` (mean over seeds, the seeds' range shaded), x = ``progress`` (share of the
    run's steps done, so that runs of different lengths line up).

    ``trace``: one row per logged step: ``variant``, ``batch_size``, ``seed``, ``progress``,
    ``frac_clipped`` (and optionally ``clipping``, written in the legend)."""
    panels = list(dict.fromkeys(trace["variant"]))
    batches = sorted(trace["batch_size"].unique())
    colors = dict(zip(batches, sns.color_palette(palette, n_colors=max(len(batches), 1))))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.0 * len(panels), 4.0), squeeze=False,
                             sharey=True, constrained_layout=True)
    bins = np.linspace(0, 1, 41)
    for a, name in zip(axes[0], panels):
        sub = trace[trace["variant"] == name]
        for b in batches:
            s = sub[sub["batch_size"] == b].assign(bin=lambda d: np.digitize(d["progress"], bins[1:-1]))
            if s.empty:
                continue
            per_seed = s.groupby(["seed", "bin"])["frac_clipped"].mean().unstack("seed")
            x = (bins[:-1] + bins[1:])[per_seed.index] / 2
            lam = s["clipping"].iloc[0] if "clipping" in s else None
            label = f"batch {b}" + (f", λ={lam:g}" if lam is not None and lam == lam else "")
            a.plot(x, per_seed.mean(axis=1), color=colors[b], lw=1.6, label=label)
            a.fill_between(x, per_seed.min(axis=1), per_seed.max(axis=1), color=colors[b], alpha=0.2, lw=0)
        a.set_xlabel("share of the run's steps done")
        a.set_title(str(name))
        a.set_xlim(0, 1)
        a.grid(True, alpha=0.3)
        a.legend(fontsize="small", loc="best")
    axes[0][0].set_ylabel("fraction of units clipped (per step)")
    if title:
        fig.suptitle(title)
    return fig


def plot_first_steps(traces: pd.DataFrame, clipping: float, title: str | None = None) -> plt.Figure:
    """The first updates of a run with and without its first conv clipped (``traces``: one row
    per ``layers``, ``seed``, ``step`` with ``loss``, ``first_conv_ratio``, ``others_ratio``;
    :func:`nfrepro.experiments.agc_diagnosis.trace_first_steps`). Left: the loss (log scale);
    right: the largest unit ratio ||G_i|| / max(||W_i||, eps) before clipping, of the first conv
    (solid) and of every other clipped weight (dashed), with lambda drawn. One thin line per seed."""
    settings = list(dict.fromkeys(traces["layers"]))
    colors = dict(zip(settings, sns.color_palette("colorblind", n_colors=max(len(settings), 1))))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11.5, 4.0), constrained_layout=True)
    for name in settings:
        for seed, s in traces[traces["layers"] == name].groupby("seed"):
            first = seed == traces["seed"].min()
            left.plot(s["step"], s["loss"], color=colors[name], lw=1.2, alpha=0.8, label=name if first else None)
            right.plot(s["step"], s["first_conv_ratio"], color=colors[name], lw=1.2, alpha=0.8,
                       label=f"{name}: first conv" if first else None)
            right.plot(s["step"], s["others_ratio"], color=colors[name], lw=1.0, ls="--", alpha=0.6,
                       label=f"{name}: largest other layer" if first else None)
    right.axhline(clipping, color="0.3", lw=1, ls=":", label=f"λ = {clipping:g}")
    for a, ylabel in ((left, "training loss (log scale)"),
                      (right, "largest ‖G_i‖ / max(‖W_i‖, ε), before clipping")):
        a.set_yscale("log")
        a.set_xlabel("update (step)")
        a.set_ylabel(ylabel)
        a.grid(True, alpha=0.3)
    left.legend(fontsize="small", loc="upper left")
    right.legend(fontsize="x-small", loc="upper left")
    if title:
        fig.suptitle(title)
    return fig
