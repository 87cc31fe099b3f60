"""The AGC figures (NFNets Fig. 2a, 2b, the layer choice of §4.1) and what clipping does over
training: top-1 against batch size or lambda, clipped fractions, the first steps."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from nfrepro.analysis.plotting.style import (
    DIVERGED_BAND,
    diverged_band,
    diverged_legend,
    mark_diverged,
    seed_means,
)


def plot_agc_batch_size(points: pd.DataFrame, ax: plt.Axes | None = None, title: str | None = None,
                        ylabel: str = "final test top-1 (%)", styles: Mapping[str, Mapping] | None = None,
                        palette: str = "colorblind", diverged_counts: bool = False,
                        longer: pd.DataFrame | None = None) -> plt.Figure:
    """NFNets Fig. 2a: top-1 (y) against batch size (x, log2), one line per ``line``.

    ``points``: one row per run, columns ``line``, ``batch_size``, ``seed``, ``top1``,
    ``diverged`` and optionally ``clipping`` (the lambda behind a clipped line, written beside its
    points). The line joins the mean over the seeds that completed; bars span their min to max and
    dots are the seeds. Diverged runs are crosses in a shaded "diverged" strip below every result
    (:func:`diverged_band`), never dropped.
    ``styles``: matplotlib keywords per line (``color``, ``ls``); other lines take ``palette``.
    ``diverged_counts``: write "k/n diverged" in the strip under each point where a run diverged.
    ``longer``: runs of the same lines trained longer (columns ``line``, ``batch_size``, ``top1``,
    ``diverged``, ``epochs``), drawn as open markers with their mean, labelled with the epochs.
    """
    lines = list(dict.fromkeys(points["line"]))
    styles = {line: dict((styles or {}).get(line, {})) for line in lines}
    for line, color in zip(lines, sns.color_palette(palette, n_colors=max(len(lines), 1)), strict=False):
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
        m = seed_means(sub, ["x"])
        ax.errorbar(m["x"] + dx, m["mean"], yerr=[m["mean"] - m["min"], m["max"] - m["mean"]],
                    marker="o", ms=6, lw=1.6, capsize=3, label=line, **styles[line])
        done = sub[~sub["diverged"].astype(bool)]
        ax.plot(done["x"] + dx, done["top1"], ".", color=colors[line], alpha=0.5, ms=5)
        mark_diverged(ax, sub.loc[sub["diverged"].astype(bool), "x"], colors[line], dx)
        if diverged_counts:
            counts = sub.groupby("x")["diverged"].agg(["sum", "size"])
            for x, (k, n) in counts[counts["sum"] > 0].iterrows():
                ax.text(x + dx, DIVERGED_BAND * (0.2 + 0.6 * (i % 2)), f"{int(k)}/{n} diverged", fontsize=7,
                        color=colors[line], ha="center", va="center", transform=ax.get_xaxis_transform())
        if longer is not None and line in set(longer["line"]):
            more = longer[(longer["line"] == line) & ~longer["diverged"].astype(bool)]
            more = more.assign(x=np.log2(more["batch_size"].astype(float)) + dx + 0.12)
            for (x, e), m in more.groupby(["x", "epochs"]):
                ax.plot([x] * len(m), m["top1"], ".", color=colors[line], alpha=0.4, ms=4)
                ax.plot(x, m["top1"].mean(), "D", mfc="none", mec=colors[line], ms=7, mew=1.6)
                ax.annotate(f"{e} ep", (x, m["top1"].mean()), textcoords="offset points", xytext=(6, -3),
                            fontsize=7, color=colors[line])
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
        diverged_band([ax])
    diverged_legend(ax, bool(df["diverged"].astype(bool).any()), fontsize="small", loc="best")
    if longer is not None and len(longer):
        handles, labels = ax.get_legend_handles_labels()
        handles.append(plt.Line2D([], [], ls="", marker="D", mfc="none", mec="gray", ms=7, mew=1.6))
        labels.append("trained longer (mean; epochs beside)")
        ax.legend(handles, labels, fontsize="small", loc="best")
    if title:
        ax.set_title(title)
    return fig


def plot_clipping_threshold(runs: pd.DataFrame, best: pd.DataFrame | None = None,
                            panel: str = "variant", grid_top: float | None = None,
                            ylabel: str = "final test top-1 (%)", palette: str = "viridis",
                            xlabel: str = "clipping threshold λ (log scale)", x: str = "clipping",
                            diverged_counts: bool = False,
                            reference: Mapping[str, tuple[str, float]] | None = None) -> plt.Figure:
    """NFNets Fig. 2b: top-1 (y) against the clipping threshold lambda (x, log), one line per batch size.

    ``runs``: one row per run, columns ``panel`` (one axis per value), ``batch_size``,
    ``clipping``, ``seed``, ``top1``, ``diverged``. Lines join the mean over completed seeds; dots
    are the seeds; diverged runs are crosses in a shaded strip below every result. ``best``
    (columns ``panel``, ``batch_size``, ``clipping``) rings the best lambda of each line.
    ``grid_top``: the largest lambda of the paper's grid; the lambdas above it are shaded as an
    extension. ``x``: the column on the x axis (``clipping``, or e.g. the step bound eta * lambda).
    ``diverged_counts``: write "k/n" under each lambda where runs diverged, and say in the legend
    that the lines average the runs that trained (the verdicts compare those and count the rest).
    ``reference``: ``{panel value: (label, top-1)}``, a dashed horizontal line in that panel (an
    unclipped baseline), named in the legend.
    """
    runs = runs.assign(clipping=runs[x]) if x != "clipping" else runs
    if best is not None and x != "clipping":
        best = best.assign(clipping=best[x])
    panels = list(dict.fromkeys(runs[panel]))
    batches = sorted(runs["batch_size"].unique())
    colors = dict(zip(batches, sns.color_palette(palette, n_colors=max(len(batches), 1)), strict=False))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 4.6), squeeze=False,
                             sharey=True, constrained_layout=True)
    lams = sorted(runs["clipping"].dropna().unique())
    handles: dict[str, Any] = {}
    for a, name in zip(axes[0], panels, strict=False):
        sub = runs[runs[panel] == name]
        for b in batches:
            s = sub[sub["batch_size"] == b]
            if s.empty:
                continue
            m = seed_means(s, ["clipping"])
            (line,) = a.plot(m["clipping"], m["mean"], "o-", color=colors[b], lw=1.6, ms=5,
                             label=f"batch {b}")
            handles.setdefault(f"batch {b}", line)
            done = s[~s["diverged"].astype(bool)]
            a.plot(done["clipping"], done["top1"], ".", color=colors[b], alpha=0.5, ms=5)
            mark_diverged(a, s.loc[s["diverged"].astype(bool), "clipping"], colors[b])
            if diverged_counts:
                counts = s.groupby("clipping")["diverged"].agg(["sum", "size"])
                for lam, (k, n) in counts[counts["sum"] > 0].iterrows():
                    a.text(lam, DIVERGED_BAND * (0.15 + 0.7 * batches.index(b) / max(len(batches) - 1, 1)),
                           f"{int(k)}/{n}", fontsize=7, color=colors[b], ha="center", va="center",
                           transform=a.get_xaxis_transform())
            if best is not None:
                pick = best[(best[panel] == name) & (best["batch_size"] == b)]
                top = m[m["clipping"].isin(pick["clipping"])]
                a.plot(top["clipping"], top["mean"], "o", ms=13, mfc="none", mec=colors[b], mew=1.8)
        if grid_top is not None and lams and max(lams) > grid_top:
            a.axvspan(grid_top * 2 ** 0.5, max(lams) * 2 ** 0.5, color="0.9", zorder=0)
            a.text(grid_top * 2 ** 0.5, 1.0, " beyond the paper's grid", transform=a.get_xaxis_transform(),
                   va="bottom", ha="left", fontsize=7.5, color="0.35")  # above the panel: clear of the data
        if reference and name in reference:
            label, value = reference[name]
            handles[label] = a.axhline(value, color="0.3", ls="--", lw=1.3, label=label)
        ticks = sorted(sub["clipping"].dropna().unique())  # each panel its own thresholds
        a.set_xscale("log", base=2)
        a.set_xticks(ticks, [f"{v:g}" for v in ticks])
        a.minorticks_off()
        a.set_xlabel(xlabel)
        a.set_title(str(name))
        a.grid(True, alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    if runs["diverged"].astype(bool).any():
        diverged_band(list(axes[0]))
    labels, handles = list(handles), list(handles.values())  # every batch size, from every panel
    if runs["diverged"].astype(bool).any():
        handles.append(plt.Line2D([], [], ls="", marker="x", color="gray", ms=8, mew=2))
        labels.append("diverged run")
    if diverged_counts:
        handles.append(plt.Line2D([], [], color="gray", lw=1.6))
        labels.append("line: mean of the runs\nthat trained; k/n: runs\nthat diverged")
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
    colors = dict(zip(variants, sns.color_palette(palette, n_colors=max(len(variants), 1)), strict=False))
    fig, ax = plt.subplots(figsize=(8.0, 0.75 * len(order) + 1.6), constrained_layout=True)
    ypos = {k: i for i, k in enumerate(order)}
    any_div = False
    for j, v in enumerate(variants):
        sub = runs[runs["variant"] == v]
        dy = (j - (len(variants) - 1) / 2) * 0.22
        m = seed_means(sub, ["layers"])
        ax.plot(m["mean"], m["layers"].map(ypos) + dy, "|", color=colors[v], ms=16, mew=2.5, label=v)
        done = sub[~sub["diverged"].astype(bool)]
        ax.plot(done["top1"], done["layers"].map(ypos) + dy, "o", color=colors[v], alpha=0.6, ms=5)
        div = sub[sub["diverged"].astype(bool)]
        if len(div):
            any_div = True
            mark_diverged(ax, div["layers"].map(ypos), colors[v], dy, vertical=False)
    ax.set_yticks(range(len(order)), order)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.grid(True, axis="x", alpha=0.3)
    if any_div:
        diverged_band([ax], vertical=False)
    diverged_legend(ax, any_div, fontsize="small", loc="best")
    if title:
        ax.set_title(title)
    return fig


def plot_clipping_census(census: pd.DataFrame, ratio: pd.DataFrame | None = None,
                         clipping: float | None = None, palette: str = "colorblind") -> plt.Figure:
    """Which units each clipping rule would clip, over training: one panel per rule (``rule``: unit,
    tensor, global), the fraction of units (``fraction``) against the step (``step``), one line per
    parameter kind (``kind``). The global rule clips every unit or none, so its panel draws one line.
    ``ratio`` (columns ``step``, ``global_ratio``) adds a panel with the global ratio ‖G‖/‖W‖ against
    ``clipping`` (λ, dashed), on a log scale: when that rule fires."""
    found = list(dict.fromkeys(census["rule"]))
    rules = [r for r in ("unit", "tensor", "global") if r in found] + [r for r in found
                                                                     if r not in ("unit", "tensor", "global")]
    kinds = list(dict.fromkeys(census["kind"]))
    colors = dict(zip(kinds, sns.color_palette(palette, n_colors=max(len(kinds), 1)), strict=False))
    titles = {"unit": "unit-wise (AGC): ‖G_i‖ / max(‖W_i‖, ε) > λ",
              "tensor": "whole tensor: ‖G‖ / max(‖W‖, ε) > λ", "global": "global norm: one ratio, whole net"}
    n = len(rules) + (ratio is not None)
    fig, axes = plt.subplots(1, n, figsize=(4.4 * n, 3.9), squeeze=False, constrained_layout=True)
    handles: dict[str, Any] = {}
    for ax, rule in zip(axes[0], rules, strict=False):
        sub = census[census["rule"] == rule]
        for kind in kinds if rule != "global" else kinds[:1]:
            k = sub[sub["kind"] == kind].groupby("step", as_index=False)["fraction"].mean()
            label = kind if rule != "global" else "every kind (all or none)"
            (handles[label],) = ax.plot(k["step"], k["fraction"], "-", lw=1.6, label=label,
                                        color=colors[kind] if rule != "global" else "0.2")
        ax.set_title(titles.get(rule, rule), fontsize="medium")
        ax.set_xlabel("training step")
        ax.set_ylim(-0.03, 1.03)
        ax.set_ylabel("fraction of units clipped")
        ax.grid(True, alpha=0.3)
    if ratio is not None:
        ax = axes[0][-1]
        (handles["global ratio ‖G‖ / ‖W‖"],) = ax.plot(ratio["step"], ratio["global_ratio"], "-", color="0.2",
                                                      lw=1.6, label="global ratio ‖G‖ / ‖W‖")
        if clipping is not None:
            handles[f"λ = {clipping:g}"] = ax.axhline(clipping, color="tab:red", ls="--", lw=1.3)
        ax.set_yscale("log")
        ax.set_ylabel("‖G‖ / ‖W‖ (log scale)")
        ax.set_title("the global rule's ratio against λ", fontsize="medium")
        ax.set_xlabel("training step")
        ax.grid(True, alpha=0.3)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=min(len(handles), 4),
               fontsize="small")
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
    colors = dict(zip(batches, sns.color_palette(palette, n_colors=max(len(batches), 1)), strict=False))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.0 * len(panels), 4.0), squeeze=False,
                             sharey=True, constrained_layout=True)
    bins = np.linspace(0, 1, 41)
    for a, name in zip(axes[0], panels, strict=False):
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


def plot_first_steps(traces: pd.DataFrame, clipping: float, title: str | None = None, group: str = "layers",
                     ratios: Mapping[str, str] | None = None) -> plt.Figure:
    """The first updates of a run with and without its first conv clipped (``traces``: one row
    per ``layers``, ``seed``, ``step`` with ``loss``, ``first_conv_ratio``, ``others_ratio``;
    :func:`nfrepro.experiments.agc_diagnosis.trace_first_steps`). Left: the loss (log scale);
    right: the largest unit ratio ||G_i|| / max(||W_i||, eps) before clipping, of the first conv
    (solid) and of every other clipped weight (dashed), with lambda drawn. One thin line per seed.
    ``group``: the column that names the lines' settings; ``ratios``: ratio column -> its label
    (default: the first conv and the largest other layer)."""
    ratios = ratios or {"first_conv_ratio": "first conv", "others_ratio": "largest other layer"}
    settings = list(dict.fromkeys(traces[group]))
    colors = dict(zip(settings, sns.color_palette("colorblind", n_colors=max(len(settings), 1)),
                      strict=False))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11.5, 4.0), constrained_layout=True)
    for name in settings:
        for seed, s in traces[traces[group] == name].groupby("seed"):
            first = seed == traces["seed"].min()
            left.plot(s["step"], s["loss"], color=colors[name], lw=1.2, alpha=0.8,
                      label=name if first else None)
            for (col, what), ls in zip(ratios.items(), ("-", "--"), strict=False):
                right.plot(s["step"], s[col], color=colors[name], lw=1.2, ls=ls, alpha=0.8,
                           label=f"{name}: {what}" if first else None)
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


def plot_training_length(gaps: pd.DataFrame, level: float = -1.0, title: str | None = None,
                         palette: str = "colorblind") -> plt.Figure:
    """How a gap to BN moves with training length: one line per ``series`` (``steps`` on a log2 x
    axis, ``estimate`` with its ``ci_low``-``ci_high`` interval as bars), the ``level`` a verdict
    reads ("keeps up": above it) and 0 drawn. ``diverged`` ("k/n vs m/n") is written where not 0."""
    series = list(dict.fromkeys(gaps["series"]))
    colors = dict(zip(series, sns.color_palette(palette, n_colors=max(len(series), 1)), strict=False))
    fig, ax = plt.subplots(figsize=(7.2, 4.6), constrained_layout=True)
    for i, name in enumerate(series):
        g = gaps[gaps["series"] == name].sort_values("steps")
        x = g["steps"].astype(float) * 2 ** (0.04 * (i - (len(series) - 1) / 2))  # apart, not hiding
        lo, hi = (g["estimate"] - g["ci_low"]).clip(lower=0), (g["ci_high"] - g["estimate"]).clip(lower=0)
        ax.errorbar(x, g["estimate"], yerr=[lo.fillna(0), hi.fillna(0)], marker="o", ms=6, lw=1.6, capsize=3,
                    color=colors[name], label=f"{name} (batch {g['batch_size'].iloc[0]})")
        for xi, r in zip(x, g.itertuples(), strict=True):
            if any(k.split("/")[0] != "0" for k in str(r.diverged).split(" vs ")):
                ax.annotate(f"diverged {r.diverged}", (xi, r.estimate), textcoords="offset points",
                            xytext=(5, -10), fontsize=7, color=colors[name])
    ax.axhline(0.0, color="0.3", lw=1)
    ax.axhline(level, color="0.3", lw=1, ls=":", label=f"keeps up with BN: above {level:g}")
    ax.set_xscale("log", base=2)
    ticks = sorted(gaps["steps"].unique())
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("optimizer steps (log2 scale)")
    ax.set_ylabel("gap to BN, top-1 points (trained seeds, 95% interval)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    if title:
        ax.set_title(title)
    return fig


def plot_lambda_theory(table: pd.DataFrame, best: pd.DataFrame, slopes: pd.DataFrame,
                       palette: str = "viridis") -> plt.Figure:
    """The lambda rule against its theory. Top row, one panel per variant: mean top-1 of the trained
    runs against the step bound eta * lambda (``table``: variant, batch_size, step_bound,
    mean_top1, best), one line per batch size, the best of each ringed: if the bound is what
    matters, the lines peak at one place. Bottom: the per-seed best lambda against the batch
    (``best``: variant, seed, batch_size, best; log2 axes, jittered) with the mean fitted slope
    (``slopes``: variant, slope) through their centre and the theory's slope -1."""
    variants = list(dict.fromkeys(table["variant"]))
    batches = sorted(table["batch_size"].unique())
    colors = dict(zip(batches, sns.color_palette(palette, n_colors=max(len(batches), 1)), strict=False))
    fig, axes = plt.subplots(2, len(variants), figsize=(6.0 * len(variants), 8.0), squeeze=False,
                             constrained_layout=True)
    for j, v in enumerate(variants):
        top, bottom = axes[0][j], axes[1][j]
        for b in batches:
            t = table[(table["variant"] == v) & (table["batch_size"] == b)].sort_values("step_bound")
            top.plot(t["step_bound"], t["mean_top1"], "o-", color=colors[b], lw=1.6, ms=5, label=f"batch {b}")
            pick = t[t["best"]]
            top.plot(pick["step_bound"], pick["mean_top1"], "o", ms=13, mfc="none", mec=colors[b], mew=1.8)
        top.set_xscale("log", base=2)
        top.set_xlabel("step bound ηλ (peak lr x λ, log2 scale)")
        top.set_title(f"{v}: top-1 against ηλ")
        top.grid(True, alpha=0.3)
        top.legend(fontsize="small", loc="best", title="ring: best λ")
        g = best[best["variant"] == v]
        seeds = sorted(g["seed"].unique())
        jitter = {s: 0.06 * (k - (len(seeds) - 1) / 2) for k, s in enumerate(seeds)}
        x = np.log2(g["batch_size"].astype(float)) + g["seed"].map(jitter)
        bottom.plot(x, np.log2(g["best"]), "o", color="0.3", alpha=0.6, ms=6, label="per-seed best λ")
        xs = np.log2(np.array(batches, dtype=float))
        centre = (xs.mean(), float(np.log2(g["best"]).mean()))
        slope = float(slopes.loc[slopes["variant"] == v, "slope"].iloc[0])
        bottom.plot(xs, centre[1] + slope * (xs - centre[0]), "-", color="tab:green", lw=1.8,
                    label=f"mean fitted slope {slope:.2f}")
        bottom.plot(xs, centre[1] - (xs - centre[0]), ":", color="0.2", lw=1.6, label="theory: slope -1")
        bottom.set_xticks(xs, [f"{b:g}" for b in batches])
        lams = sorted(table["clipping"].unique())
        bottom.set_yticks(np.log2(lams), [f"{c:g}" for c in lams])
        bottom.set_xlabel("batch size (log2 scale)")
        bottom.set_ylabel("best λ (log2 scale)")
        bottom.set_title(f"{v}: best λ per seed")
        bottom.grid(True, alpha=0.3)
        bottom.legend(fontsize="small", loc="best")
    axes[0][0].set_ylabel("final test top-1 (%), trained runs")
    return fig
