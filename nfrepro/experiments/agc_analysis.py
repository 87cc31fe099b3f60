r"""The numbers behind notebooks 02 and 03 (NFNets §4.1: Fig. 2a, Fig. 2b, layers, training length).

Everything here reads the tidy run tables that :func:`nfrepro.experiments.agc_ablation.run_plan`
returns and the notebooks save (one row per run and metric), so every number can be recomputed from
the CSVs in ``results/`` without training. Rules, stated once: a run's result is its final test
top-1; a diverged run is its own outcome (counted, with Wilson's interval), and accuracy is
compared over the seeds where both sides trained (:func:`nfrepro.analysis.verdicts.paired_claim_row`).
Where a mean must *pick* something (the best lambda), a diverged run is scored at chance (10% for
10 classes), so that a lambda that diverges is not picked for the runs that happened to train.
The verdict rows, with their settings and readings, are built in
:mod:`nfrepro.experiments.agc_verdicts`.

The theory the notebooks test (:func:`step_bound`): AGC caps each unit's gradient at
:math:`\lambda\max(\|W_i\|,\epsilon)`, so one SGD step moves a unit by at most
:math:`\eta\lambda` of its norm (momentum :math:`\beta` raises the cap to
:math:`\eta\lambda/(1-\beta)` when successive gradients align). With :math:`\eta \propto B`, the
same relative step needs :math:`\lambda^* \propto 1/B`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from nfrepro.analysis import verdicts as V
from nfrepro.engine.checkpoint import load_checkpoint
from nfrepro.experiments.agc_ablation import (
    BN,
    CLIPPED,
    FP32_SUFFIX,
    LAYERS,
    NF,
    PAPER_LAYERS,
    PLAN_COLUMNS,
    UNCLIPPED,
    AgcScale,
    split_length,
)

TOLERANCE = 1.0  # points of top-1: smaller differences count as "no difference" in the verdicts
BEST_OF = (4, 5)  # the paper's points: the mean of the best 4 of 5 runs (§4.1)


def _grid(runs: pd.DataFrame, clippings: Iterable[float] | None) -> pd.DataFrame:
    """The clipped runs of the paper's layer choice, restricted to ``clippings`` (None: all)."""
    df = runs[runs["variant"].isin(CLIPPED) & (runs["layers"] == PAPER_LAYERS)]
    if clippings is not None:
        df = df[df["clipping"].round(6).isin([round(c, 6) for c in clippings])]
    return df


def _best(scores: pd.Series) -> float:
    """The lambda (index) with the highest score; ties go to the smaller lambda."""
    return float(scores[scores == scores.max()].index.min())


def best_clipping(runs: pd.DataFrame, clippings: Iterable[float] | None = None) -> pd.DataFrame:
    """Best lambda per (clipped variant, batch size): the highest mean score over seeds (a diverged
    run at chance). ``runs`` as :func:`~nfrepro.experiments.sweep_plan.per_run` returns;
    ``clippings`` restricts the search (e.g. to the paper's grid). Columns: variant, batch_size,
    clipping, mean_top1 (mean score), seeds, diverged (runs), edge ("at least" / "at most" when the
    best is at the end of the grid searched: the true best may lie beyond)."""
    grouped = (_grid(runs, clippings).groupby(["variant", "batch_size", "clipping"])
               .agg(mean_top1=("score", "mean"), seeds=("seed", "nunique"), diverged=("diverged", "sum"))
               .reset_index())
    rows = []
    for _, g in grouped.groupby(["variant", "batch_size"]):
        lam = _best(g.set_index("clipping")["mean_top1"])
        best = g[g["clipping"] == lam].iloc[0].to_dict()
        rows.append({**best, "edge": V.grid_edge(lam, g["clipping"])})
    return pd.DataFrame(rows, columns=["variant", "batch_size", "clipping", "mean_top1", "seeds", "diverged",
                                       "edge"])


def nf_trains_batch(runs: pd.DataFrame) -> int | None:
    """The largest batch size at which no run of NF without clipping diverged (None: none)."""
    nf = runs[runs["variant"] == NF].groupby("batch_size")["diverged"].sum()
    return int(nf[nf == 0].index.max()) if (nf == 0).any() else None


def fig2a_points(runs: pd.DataFrame, clippings: Iterable[float] | None = None) -> pd.DataFrame:
    """The runs of Fig. 2a: the unclipped variants, and each clipped one at its best lambda per
    batch size (:func:`best_clipping` over ``clippings``). One row per run, ``line`` = variant."""
    best = best_clipping(runs, clippings)[["variant", "batch_size", "clipping"]]
    plain = runs[runs["variant"].isin(UNCLIPPED)]
    clipped = runs[runs["layers"] == PAPER_LAYERS].merge(best, on=["variant", "batch_size", "clipping"])
    out = pd.concat([plain, clipped], ignore_index=True)
    return out.assign(line=out["variant"]).sort_values(["line", "batch_size", "seed"], ignore_index=True)


def top1(runs: pd.DataFrame, **where: Any) -> pd.Series:
    """Top-1 per seed (NaN: diverged) of the runs whose columns equal ``where``'s values."""
    sel = pd.Series(True, index=runs.index)
    for col, val in where.items():
        sel &= runs[col] == val
    return runs[sel].set_index("seed")["top1"].sort_index()


def best_k_mean(values: Iterable[float], k: int = BEST_OF[0]) -> float:
    """The mean of the ``k`` largest values (all of them when there are fewer): the paper's
    "best 4 of 5" (§4.1). Give it scores (a diverged run at chance)."""
    v = sorted((float(x) for x in values if x == x), reverse=True)
    return float(np.mean(v[:k])) if v else float("nan")


def line_summary(points: pd.DataFrame) -> pd.DataFrame:
    """Per line and batch size: lambda, mean / min / max top-1 over the runs that trained, runs that
    diverged ("k/n"), and the paper's summary, the mean of the best 4 of 5 (a diverged run at chance)."""
    out = (points.groupby(["line", "batch_size"], sort=False)
           .agg(clipping=("clipping", "first"), mean_top1=("top1", "mean"), min_top1=("top1", "min"),
                max_top1=("top1", "max"), seeds=("seed", "nunique"), k=("diverged", "sum"),
                best_4_of_5=("score", best_k_mean))
           .reset_index().sort_values(["line", "batch_size"], ignore_index=True))
    out.insert(7, "diverged", [f"{int(k)}/{n}" for k, n in zip(out.pop("k"), out["seeds"], strict=True)])
    return out


def lambda_ties(runs: pd.DataFrame, clippings: Iterable[float] | None = None) -> pd.DataFrame:
    """The best lambda per (clipped variant, batch size), and which lambdas tie with it.

    A lambda ties with the best unless :func:`~nfrepro.analysis.verdicts.paired_claim_row` finds
    the best ahead of it (over the seeds where both trained, divergence apart): one diverged seed
    cannot make a clearly worse lambda tie. Columns: variant, batch_size, best (lambda), edge,
    mean (top-1 of the trained runs), diverged ("k/n" at the best), tied (the lambdas that tie)."""
    rows = []
    for (v, b), g in _grid(runs, clippings).groupby(["variant", "batch_size"], sort=False):
        top = g.pivot_table(index="seed", columns="clipping", values="top1", dropna=False)
        best = _best(g.groupby("clipping")["score"].mean())
        tied = [lam for lam in top.columns if lam == best or V.paired_claim_row(
            "", top[best], top[lam])["verdict"] != V.REPRODUCED]
        rows.append({"variant": v, "batch_size": int(b), "best": best, "edge": V.grid_edge(best, top.columns),
                     "mean": float(top[best].mean()), "diverged": f"{int(top[best].isna().sum())}/{len(top)}",
                     "tied": ", ".join(f"{x:g}" for x in sorted(tied))})
    return pd.DataFrame(rows, columns=["variant", "batch_size", "best", "edge", "mean", "diverged", "tied"])


# ----------------------------------------------------------------------------- Fig. 2b and the theory
def step_bound(runs: pd.DataFrame, scale: AgcScale) -> pd.Series:
    r"""Per run, :math:`\eta\lambda`: the most one (momentum-free) SGD step can move a clipped unit,
    relative to its norm, with :math:`\eta` the run's peak learning rate (base_lr B / 256)."""
    return scale.base_config().base_lr * runs["batch_size"] / 256 * runs["clipping"]


def per_seed_best(runs: pd.DataFrame, clippings: Iterable[float] | None = None) -> pd.DataFrame:
    """Per clipped variant, seed and batch size, the lambda that seed scored best with (a diverged
    run at chance; ties go to the smaller lambda) and whether it sits at an edge of the grid."""
    rows = []
    for (v, s, b), g in _grid(runs, clippings).groupby(["variant", "seed", "batch_size"]):
        lam = _best(g.set_index("clipping")["score"])
        rows.append({"variant": v, "seed": int(s), "batch_size": int(b), "best": lam,
                     "edge": V.grid_edge(lam, g["clipping"])})
    return pd.DataFrame(rows, columns=["variant", "seed", "batch_size", "best", "edge"])


def lambda_slope(best: pd.DataFrame) -> pd.DataFrame:
    """Per variant, the slope of log2 lambda* against log2 B fitted per seed (:func:`per_seed_best`),
    its mean and 95% t interval over seeds (:func:`~nfrepro.analysis.verdicts.per_seed_slope`), and
    how many per-seed best lambdas sit at an edge that makes the fall look smaller than it is
    (the top of the grid at the smallest batch, the bottom at the largest)."""
    rows = []
    for v, g in best.groupby("variant", sort=False):
        table = np.log2(g.pivot_table(index="seed", columns="batch_size", values="best"))
        table.columns = np.log2(table.columns.astype(float))
        mean, low, high, n, slopes = V.per_seed_slope(table)
        small, big = g["batch_size"].min(), g["batch_size"].max()
        censored = int(((g["batch_size"] == small) & (g["edge"] == "at least")).sum()
                       + ((g["batch_size"] == big) & (g["edge"] == "at most")).sum())
        rows.append({"variant": v, "slope": mean, "ci_low": low, "ci_high": high, "seeds": n,
                     "per_seed": ", ".join(f"{x:.2f}" for x in slopes), "at_edge": censored,
                     "points": len(g)})
    return pd.DataFrame(rows, columns=["variant", "slope", "ci_low", "ci_high", "seeds", "per_seed",
                                       "at_edge", "points"])


def collapse(runs: pd.DataFrame, scale: AgcScale) -> pd.DataFrame:
    r"""Fig. 2b against the step bound :math:`\eta\lambda` instead of :math:`\lambda`: per clipped
    variant, batch size and lambda, the step bound, mean top-1 of the trained runs and runs diverged;
    and per (variant, batch) the best step bound (``best``: True on the best lambda's row, by mean
    score). If the theory holds, the batch sizes peak at the same :math:`\eta\lambda`."""
    g = _grid(runs, None).assign(step_bound=lambda d: step_bound(d, scale))
    out = (g.groupby(["variant", "batch_size", "clipping"])
           .agg(step_bound=("step_bound", "first"), mean_top1=("top1", "mean"), mean_score=("score", "mean"),
                diverged=("diverged", "sum"), seeds=("seed", "nunique")).reset_index())
    best = best_clipping(runs)[["variant", "batch_size", "clipping"]].assign(best=True)
    out = out.merge(best, on=["variant", "batch_size", "clipping"], how="left")
    return out.assign(best=out["best"].eq(True))


def collapse_spread(table: pd.DataFrame) -> pd.DataFrame:
    """Per variant, how far apart (octaves) the batch sizes' best step bounds lie, against how far
    apart their best lambdas lie: the theory predicts the first near 0 and the second equal to
    the octaves spanned by the batch sizes."""
    best = table[table["best"]]
    return (best.groupby("variant", sort=False)
            .agg(octaves_of_batch=("batch_size", lambda b: np.log2(b.max() / b.min())),
                 octaves_of_best_lambda=("clipping", lambda c: np.log2(c.max() / c.min())),
                 octaves_of_best_step=("step_bound", lambda u: np.log2(u.max() / u.min())))
            .reset_index())


# ----------------------------------------------------------------------------- the training length
def length_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The length study's per-run table with ``arm`` (the variant) and ``epochs`` split from its labels."""
    parts = runs["variant"].map(split_length)
    return runs.assign(arm=parts.str[0], epochs=parts.str[1].astype(int))


def length_gaps(runs: pd.DataFrame, steps_of: dict[tuple[int, int], int],
                tolerance: float = TOLERANCE) -> pd.DataFrame:
    """Per series (an arm against BN at one batch size) and length: ``arm - BN`` over the seeds where
    both trained, its 95% interval and the verdict on "keeps up with BN" (``> -tolerance``), with
    the runs diverged. ``runs``: :func:`length_runs`; ``steps_of[(batch, epochs)]``: the steps."""
    rows = []
    for (arm, b), g in runs[runs["arm"] != BN].groupby(["arm", "batch_size"], sort=False):
        for e in sorted(g["epochs"].unique()):
            bn = top1(runs, arm=BN, batch_size=b, epochs=e)
            r = V.paired_claim_row("", top1(g, epochs=e), bn, margin=-tolerance)
            rows.append({"series": f"{arm} - BN", "arm": arm, "batch_size": int(b), "epochs": int(e),
                         "steps": steps_of[(int(b), int(e))], **{k: r[k] for k in (
                             "estimate", "ci_low", "ci_high", "n", "diverged", "verdict")}})
    return pd.DataFrame(rows)


def keep_up_steps(gaps: pd.DataFrame, tolerance: float = TOLERANCE) -> pd.DataFrame:
    """Per series, after how many steps the gap to BN rises above ``-tolerance`` for good
    (:func:`~nfrepro.analysis.verdicts.crossing` on log2 steps): ``steps`` and the band
    ``earliest`` / ``latest`` (0: from the shortest run on; inf: not within the longest run)."""
    rows = []
    for series, g in gaps.groupby("series", sort=False):
        g = g.sort_values("steps")
        x = np.log2(g["steps"].astype(float))
        at, early, late = V.crossing(x, g["estimate"], g["ci_low"], g["ci_high"], -tolerance)
        rows.append({"series": series, "arm": g["arm"].iloc[0], "batch_size": int(g["batch_size"].iloc[0]),
                     **{k: (0.0 if v == -np.inf else float(2 ** v)) for k, v in
                        (("steps", at), ("earliest", early), ("latest", late))},
                     "longest": int(g["steps"].max()), "gap_at_longest": float(g["estimate"].iloc[-1])})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- skip gains, clipping
def skip_gains(runs: pd.DataFrame, runs_dir: str | Path) -> pd.DataFrame:
    """The learned SkipInit gains of finished NF runs, read from their last checkpoints: one row per
    (run, block) with the plan columns, ``block`` (its index in ``model.blocks``) and ``skip_gain``.
    With AGC as published a gain starts at 0 and is clipped against ``max(|g|, eps)``, so over a
    short run it barely moves; the variant that leaves the gains unclipped shows how far they move."""
    rows = []
    nf = runs[~runs["variant"].str.startswith(BN) & ~runs["diverged"]]  # every NF variant, any length
    for r in nf.to_dict("records"):
        path = Path(runs_dir) / r["run"] / "checkpoint.pt"
        if not path.exists():
            continue
        state = load_checkpoint(path, required=("model",))["model"]
        rows += [{**{c: r[c] for c in PLAN_COLUMNS}, "block": int(k.split(".")[1]), "skip_gain": float(v)}
                 for k, v in state.items() if k.endswith("skip_gain")]
    return pd.DataFrame(rows, columns=[*PLAN_COLUMNS, "block", "skip_gain"])


def mean_gain(gains: pd.DataFrame, **where: Any) -> float:
    """Mean |skip gain| over blocks and seeds of the :func:`skip_gains` rows matching ``where``."""
    sel = pd.Series(True, index=gains.index)
    for col, val in where.items():
        sel &= np.isclose(gains[col], val) if col == "clipping" else gains[col] == val
    return float(gains.loc[sel, "skip_gain"].abs().mean())


def gain_growth(gains: pd.DataFrame, steps: pd.Series) -> pd.DataFrame:
    """How fast the clipped SkipInit gains open: per variant, mean |gain| at each length (``gains``:
    :func:`skip_gains` of the length study, with ``epochs``; ``steps``: steps per epochs) and the
    growth per step between consecutive lengths. AGC lets a gain above eps grow by at most a factor
    ``1 + lr * lambda`` per step (``1 + lr * lambda / (1 - momentum)`` with aligned momentum)."""
    g = (gains.assign(a=gains["skip_gain"].abs()).groupby(["variant", "epochs"])["a"].mean()
         .rename("mean_abs_gain").reset_index())
    g["steps"] = g["epochs"].map(steps)
    g["growth_per_step"] = g.groupby("variant")["mean_abs_gain"].transform(
        lambda s: (s / s.shift()) ** (1 / g.loc[s.index, "steps"].diff()))
    return g


def missing_runs(plan: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """The planned runs that :func:`~nfrepro.experiments.sweep_plan.per_run` does not hold as
    completed or diverged (empty: none)."""
    def keys(df: pd.DataFrame) -> pd.Series:
        d = df[PLAN_COLUMNS].fillna({"clipping": -1.0, "layers": ""})
        return d.astype(str).agg("|".join, axis=1)

    done = runs[runs["status"].isin(["completed", "diverged"])]
    return plan[~keys(plan).isin(set(keys(done)))].reset_index(drop=True)


def clip_fraction_trace(runs: pd.DataFrame, runs_dir: str | Path) -> pd.DataFrame:
    """The fraction of units AGC clipped over training, read from the clipped runs' ``steps.csv``
    (``TrainConfig.log_every``): one row per logged step with the plan columns, ``step``,
    ``progress`` (step / the run's steps) and ``frac_clipped``. Runs without the file are left out."""
    frames = []
    for r in runs[runs["variant"].isin(CLIPPED) & runs["clipping"].notna()].to_dict("records"):
        path = Path(runs_dir) / r["run"] / "steps.csv"
        if path.exists():
            steps = pd.read_csv(path)
            total = max(float(r["steps"]), float(steps["step"].max()))
            frames.append(steps[["step", "frac_clipped"]].assign(
                progress=steps["step"] / total, **{c: r[c] for c in PLAN_COLUMNS}))
    if not frames:
        return pd.DataFrame(columns=[*PLAN_COLUMNS, "step", "progress", "frac_clipped"])
    return pd.concat(frames, ignore_index=True)[[*PLAN_COLUMNS, "step", "progress", "frac_clipped"]]


def layer_effects(layer_runs: pd.DataFrame, tolerance: float = TOLERANCE) -> pd.DataFrame:
    """§4.1 layer choice: each choice against the paper's, per base variant and batch size.

    One row per (variant, batch_size, layers): mean top-1 of the trained runs, runs diverged, the
    difference to the paper's choice over the seeds where both trained with its 95% interval, and
    the ``effect`` read from that interval (:func:`~nfrepro.analysis.verdicts.paired_claim_row`):
    "helps" / "hurts" when it lies above / below 0, "no difference" when within
    ±``tolerance``, else "not resolved"."""
    rows = []
    order = {k: i for i, k in enumerate(LAYERS)}
    for (v, b), g in layer_runs.groupby(["variant", "batch_size"], sort=False):
        ref = top1(g, layers=PAPER_LAYERS)
        for layers in sorted(g["layers"].unique(), key=order.get):
            mine = top1(g, layers=layers)
            row = {"variant": v, "batch_size": int(b), "layers": layers,
                   "clipping": float(g["clipping"].iloc[0]), "mean_top1": float(mine.mean()),
                   "diverged": f"{int(mine.isna().sum())}/{len(mine)}"}
            if layers == PAPER_LAYERS:
                rows.append({**row, "effect": "(reference)"})
                continue
            d = V.paired_claim_row("", mine, ref)
            effect = {V.REPRODUCED: "helps", V.CONTRADICTED: "hurts"}.get(d["verdict"], "not resolved")
            level = V.paired_claim_row("", mine, ref, "level", tolerance=tolerance)["verdict"]
            if effect == "not resolved" and level == V.REPRODUCED:
                effect = "no difference"
            rows.append({**row, "vs_paper": d["estimate"], "ci_low": d["ci_low"], "ci_high": d["ci_high"],
                         "effect": effect})
    cols = ["variant", "batch_size", "layers", "clipping", "mean_top1", "diverged", "vs_paper", "ci_low",
            "ci_high", "effect"]
    return pd.DataFrame(rows, columns=cols)


# ----------------------------------------------------------------------------- bf16 against fp32
def precision_shift(points: pd.DataFrame, fp32_runs: pd.DataFrame) -> pd.DataFrame:
    """Per line: the per-seed change of top-1 from bf16 to fp32 (fp32 - bf16, over the seeds where
    both trained), mean with its 95% t interval, and the runs diverged in each."""
    rows = []
    fp32_runs = fp32_runs.assign(line=fp32_runs["variant"].str.replace(FP32_SUFFIX, "", regex=False))
    for (line, b), g in fp32_runs.groupby(["line", "batch_size"], sort=False):
        r = V.paired_claim_row("", top1(g), top1(points, line=line, batch_size=b))
        rows.append({"line": line, "batch_size": int(b), "fp32_minus_bf16": r["estimate"],
                     "ci_low": r["ci_low"], "ci_high": r["ci_high"], "n": r["n"], "diverged": r["diverged"]})
    return pd.DataFrame(rows)
