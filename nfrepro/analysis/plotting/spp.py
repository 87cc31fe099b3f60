"""Signal Propagation Plots (NF-ResNet paper §3, Fig. 1 and 2): three panels per net, theory beside."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

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
# Each panel's y label: short, because the column title already names the quantity in full and a
# long rotated label runs past a short panel into the next row. The input has variance 1 (N(0, 1)
# noise, or images standardised to it), so the values need no unit.
SPP_AXIS_LABELS = {"avg_sq_mean": "squared mean", "avg_var": "variance", "res_avg_var": "residual variance"}
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
    for col, panel in (("expected_var", "avg_var"), ("predicted_var", "avg_var"),
                       ("predicted_res_var", "res_avg_var")):
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
    colors = dict(zip(frames, sns.color_palette(palette, n_colors=max(len(frames), 1)), strict=False))
    lines = _theory_lines(theory)

    for _panel, ((column, label), a, lg) in enumerate(zip(SPP_PANELS, axes, logys, strict=False)):
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
        a.set_ylabel(SPP_AXIS_LABELS[column])
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
