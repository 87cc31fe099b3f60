"""The numbers behind the verdicts of notebooks 02 and 03 (NFNets §4.1: Fig. 2a, Fig. 2b, layers).

Everything here reads the tidy run tables that :func:`nfrepro.experiments.agc_ablation.run_plan`
returns and the notebooks save (one row per run and metric), so a verdict can be recomputed from the CSVs in
``results/`` without training. Rules, stated once: a run's result is its final test top-1; a
diverged run is *shown* as diverged and, where a mean must decide something (the best lambda, a
verdict), *scored* at chance (10% for 10 classes); differences under :data:`TOLERANCE` points
count as no difference.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from nfrepro.analysis import verdicts as V
from nfrepro.engine.checkpoint import load_checkpoint
from nfrepro.experiments.agc_ablation import (
    AGC_FREE_GAINS,
    BN,
    CLIPPED,
    FP32_SUFFIX,
    LAYERS,
    NF,
    PAPER_LAYERS,
    PLAN_COLUMNS,
    UNCLIPPED,
)

TOLERANCE = 1.0  # points of top-1: smaller differences count as "no difference" in the verdicts

def best_clipping(runs: pd.DataFrame, clippings: Iterable[float] | None = None) -> pd.DataFrame:
    """Best lambda per (clipped variant, batch size): the highest mean score over seeds.

    ``runs`` as :func:`~nfrepro.experiments.sweep_plan.per_run` returns (only runs with
    ``layers == PAPER_LAYERS`` count);
    ``clippings`` restricts the search (e.g. to the paper's grid). Ties go to the smaller lambda.
    Columns: variant, batch_size, clipping, mean_top1 (mean score), seeds, diverged (runs),
    at_top (the best is the largest lambda searched: the true best may lie above).
    """
    df = runs[runs["variant"].isin(CLIPPED) & (runs["layers"] == PAPER_LAYERS)]
    if clippings is not None:
        df = df[df["clipping"].round(6).isin([round(c, 6) for c in clippings])]
    grouped = (df.groupby(["variant", "batch_size", "clipping"])
               .agg(mean_top1=("score", "mean"), seeds=("seed", "nunique"),
                    diverged=("diverged", "sum")).reset_index())
    rows = []
    for _, g in grouped.groupby(["variant", "batch_size"]):
        g = g.sort_values("clipping")
        best = g.loc[g["mean_top1"].idxmax()]  # idxmax keeps the first (smallest lambda) of ties
        rows.append({**best.to_dict(), "at_top": best["clipping"] == g["clipping"].max()})
    return pd.DataFrame(rows, columns=["variant", "batch_size", "clipping", "mean_top1", "seeds",
                                       "diverged", "at_top"])


def fig2a_points(runs: pd.DataFrame, clippings: Iterable[float] | None = None) -> pd.DataFrame:
    """The runs of Fig. 2a: the unclipped variants, and each clipped one at its best lambda per
    batch size (:func:`best_clipping` over ``clippings``). One row per run, ``line`` = variant."""
    best = best_clipping(runs, clippings)[["variant", "batch_size", "clipping"]]
    plain = runs[runs["variant"].isin(UNCLIPPED)]
    clipped = runs[runs["layers"] == PAPER_LAYERS].merge(best, on=["variant", "batch_size",
                                                                   "clipping"])
    out = pd.concat([plain, clipped], ignore_index=True)
    return out.assign(line=out["variant"]).sort_values(["line", "batch_size", "seed"],
                                                      ignore_index=True)


def layer_effects(runs: pd.DataFrame, tolerance: float = TOLERANCE) -> pd.DataFrame:
    """§4.1 layer choice: each layer setting against the paper's (all but the classifier).

    One row per (variant, layers): mean score, its difference to the paper's setting, diverged
    runs, and ``effect``: "hurts" / "helps" (by at least ``tolerance``) or "no difference".
    """
    m = (runs.groupby(["variant", "layers"])
         .agg(mean_top1=("score", "mean"), seeds=("seed", "nunique"), diverged=("diverged", "sum"),
              clipping=("clipping", "first")).reset_index())
    ref = m[m["layers"] == PAPER_LAYERS].set_index("variant")["mean_top1"]
    m["vs_paper_setting"] = m["mean_top1"] - m["variant"].map(ref)
    m["effect"] = np.select([m["vs_paper_setting"] <= -tolerance, m["vs_paper_setting"] >= tolerance],
                            ["hurts", "helps"], "no difference")
    m.loc[m["layers"] == PAPER_LAYERS, "effect"] = "(reference)"
    order = {k: i for i, k in enumerate(LAYERS)}
    return m.sort_values(["variant", "layers"], key=lambda s: s.map(order) if s.name == "layers"
                         else s, ignore_index=True)


# claim -> (layer setting, what the paper's text expects of it)
LAYER_CLAIMS = {  # (read by layer_claims)
    "never clip the final linear layer": ("also the classifier", "hurts"),
    "the first conv can be left unclipped": ("first conv unclipped", "no difference"),
    "every stage must be clipped (first)": ("first stage unclipped", "hurts"),
    "every stage must be clipped (last)": ("last stage unclipped", "hurts"),
}


def skip_gains(runs: pd.DataFrame, runs_dir: str | Path) -> pd.DataFrame:
    """The learned SkipInit gains of finished NF runs, read from their last checkpoints.

    One row per (run, block): the plan columns, ``block`` (its index in ``model.blocks``) and
    ``skip_gain``. With AGC as published the gains start at 0 and are clipped against
    ``max(|g|, eps)``, so over a short run they barely move (:mod:`nfrepro.experiments.agc_ablation`);
    the variant that leaves them unclipped shows how far they move otherwise.
    """
    rows = []
    nf = runs[~runs["variant"].str.startswith(BN) & ~runs["diverged"]]  # every NF variant, any length
    for r in nf.to_dict("records"):
        path = Path(runs_dir) / r["run"] / "checkpoint.pt"
        if not path.exists():
            continue
        state = load_checkpoint(path, required=("model",))["model"]
        gains = [(k, float(v)) for k, v in state.items() if k.endswith("skip_gain")]
        rows += [{**{c: r[c] for c in PLAN_COLUMNS}, "block": int(k.split(".")[1]), "skip_gain": g}
                 for k, g in gains]
    return pd.DataFrame(rows, columns=[*PLAN_COLUMNS, "block", "skip_gain"])


def missing_runs(plan: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """The planned runs that :func:`~nfrepro.experiments.sweep_plan.per_run` does not hold as
    completed or diverged (empty: none)."""
    def keys(df: pd.DataFrame) -> pd.Series:
        d = df[PLAN_COLUMNS].fillna({"clipping": -1.0, "layers": ""})
        return d.astype(str).agg("|".join, axis=1)

    done = runs[runs["status"].isin(["completed", "diverged"])]
    return plan[~keys(plan).isin(set(keys(done)))].reset_index(drop=True)


def line_summary(points: pd.DataFrame) -> pd.DataFrame:
    """Per line and batch size: lambda, mean / min / max top-1 over completed seeds, diverged
    runs, and the two summaries of the score (a diverged run at chance): the mean of all seeds
    and the paper's mean of the best 4 of 5 (:func:`best_k_mean`)."""
    return (points.groupby(["line", "batch_size"], sort=False)
            .agg(clipping=("clipping", "first"), mean_top1=("top1", "mean"), min_top1=("top1", "min"),
                 max_top1=("top1", "max"), seeds=("seed", "nunique"), diverged=("diverged", "sum"),
                 mean_score=("score", "mean"), best_4_of_5=("score", best_k_mean))
            .reset_index().sort_values(["line", "batch_size"], ignore_index=True))


# ----------------------------------------------------------------------------- verdicts from intervals
BEST_OF = (4, 5)  # the paper's points: the mean of the best 4 of 5 runs (§4.1)
VERDICT_COLUMNS = ["claim", "estimate", "ci_low", "ci_high", "n", "verdict", "rule",
                   "estimate_best_4_of_5"]
DEPARTURE = " (a departure)"


def best_k_mean(values: Iterable[float], k: int = BEST_OF[0]) -> float:
    """The mean of the ``k`` largest values (all of them when there are fewer): the paper's
    "best 4 of 5" (§4.1). A diverged run enters with its score (chance)."""
    v = sorted((float(x) for x in values if x == x), reverse=True)
    return float(np.mean(v[:k])) if v else float("nan")


def _scores(runs: pd.DataFrame, **where: Any) -> pd.Series:
    """Score per seed of the runs whose columns equal ``where``'s values."""
    sel = pd.Series(True, index=runs.index)
    for col, val in where.items():
        sel &= runs[col] == val
    return runs[sel].set_index("seed")["score"].sort_index()


def difference_row(claim: str, a: pd.Series, b: pd.Series, kind: str = "greater",
                   margin: float = 0.0, tolerance: float = TOLERANCE) -> dict[str, Any]:
    """A verdict row (:data:`VERDICT_COLUMNS`) on ``a - b``, paired by seed (the index).

    The estimate is the mean of the per-seed differences with its 95% t interval and the rule of
    :func:`nfrepro.analysis.verdicts.claim_row`; ``estimate_best_4_of_5`` is the same difference
    between the paper's summaries (best 4 of 5 of each side, unpaired). Seeds present on one side
    only are left out of the pairing."""
    seeds = a.index.intersection(b.index)
    row = V.claim_row(claim, (a[seeds] - b[seeds]).tolist(), kind=kind, margin=margin,
                      tolerance=tolerance)
    row["estimate_best_4_of_5"] = best_k_mean(a[seeds]) - best_k_mean(b[seeds])
    return row


def rate_row(claim: str, events: Iterable[bool]) -> dict[str, Any]:
    """A verdict row on "this happens in some runs" (a rate above 0): Wilson's 95% interval;
    reproduced when its lower end is above 0, otherwise not resolved (no finite number of clean
    runs proves a rate of 0)."""
    e = [bool(x) for x in events]
    rate, low, high = V.rate_ci(sum(e), len(e))
    verdict = V.REPRODUCED if len(e) and low > 0 else V.NOT_RESOLVED
    return {"claim": claim, "estimate": rate, "ci_low": low, "ci_high": high, "n": len(e),
            "verdict": verdict, "rule": "95% Wilson interval of the rate > 0",
            "estimate_best_4_of_5": float("nan")}


def _label(variant: str) -> str:
    return variant + (DEPARTURE if variant == AGC_FREE_GAINS else "")


def fig2a_claims(points: pd.DataFrame, tolerance: float = TOLERANCE) -> list[dict[str, Any]]:
    """The verdict rows of Fig. 2a from :func:`fig2a_points` (each clipped line at its best lambda).

    * at the smallest batch NF without clipping matches BN: ``NF - BN`` within ±``tolerance``;
    * at the largest, NF without clipping falls behind BN: ``BN - NF > 0``; and it diverges in
      some runs (a rate);
    * at every batch size each clipped variant keeps up with BN: ``AGC - BN > -tolerance``;
    * at the largest batch each clipped variant improves on NF: ``AGC - NF > 0``.

    The best lambda is picked on the same runs the verdict reads (the paper did the same), which
    flatters the clipped lines slightly at small seed counts."""
    small, big = int(points["batch_size"].min()), int(points["batch_size"].max())
    at = lambda line, b: _scores(points, line=line, batch_size=b)  # noqa: E731
    rows = [difference_row(f"Fig. 2a: at batch {small}, NF without clipping matches BN "
                           f"(NF - BN, top-1 points)", at(NF, small), at(BN, small), "level",
                           tolerance=tolerance),
            difference_row(f"Fig. 2a: at batch {big}, NF without clipping falls behind BN "
                           f"(BN - NF, top-1 points)", at(BN, big), at(NF, big)),
            rate_row(f"Fig. 2a: at batch {big}, NF without clipping diverges in some runs "
                     f"(rate of diverged runs)",
                     points[(points["line"] == NF) & (points["batch_size"] == big)]["diverged"])]
    for v in CLIPPED:
        if v not in set(points["line"]):
            continue
        for b in sorted(points["batch_size"].unique()):
            rows.append(difference_row(f"Fig. 2a: at batch {b}, {_label(v)} at its best λ keeps up "
                                       f"with BN ({v} - BN > -{tolerance:g}, top-1 points)",
                                       at(v, b), at(BN, b), margin=-tolerance))
        rows.append(difference_row(f"Fig. 2a: at batch {big}, {_label(v)} at its best λ improves "
                                   f"on NF without clipping ({v} - NF, top-1 points)",
                                   at(v, big), at(NF, big)))
    return rows


def long_claims(long_runs: pd.DataFrame, epochs: int, tolerance: float = TOLERANCE) -> list[dict[str, Any]]:
    """Fig. 2a again at the largest batch size with ``epochs`` epochs
    (:func:`~nfrepro.experiments.sweep_plan.per_run` of
    :func:`~nfrepro.experiments.agc_ablation.plan_long`'s runs): does each clipped variant keep
    up with BN once the skip gains have had the steps to grow?"""
    bn = f"{BN}, {epochs} epochs"
    big = int(long_runs["batch_size"].max())
    rows = []
    for v in CLIPPED:
        name = f"{v}, {epochs} epochs"
        if name not in set(long_runs["variant"]):
            continue
        lam = long_runs.loc[long_runs["variant"] == name, "clipping"].iloc[0]
        rows.append(difference_row(f"Fig. 2a, {epochs} epochs: at batch {big}, {_label(v)} at "
                                   f"λ = {lam:g} keeps up with BN ({v} - BN > -{tolerance:g}, "
                                   f"top-1 points)", _scores(long_runs, variant=name),
                                   _scores(long_runs, variant=bn), margin=-tolerance))
    return rows


def _best(means: pd.Series) -> float:
    """The lambda (index) with the highest mean score; ties go to the smaller lambda."""
    return float(means[means == means.max()].index.min())


def _best_log2_lambda(means: pd.DataFrame) -> pd.Series:
    """Per batch size, log2 of the lambda with the highest mean score (ties: the smaller)."""
    return np.log2(means.groupby("batch_size").apply(lambda g: _best(g.set_index("clipping")["score"])))


def fig2b_claims(runs: pd.DataFrame, clippings: Iterable[float] | None = None,
                 n_boot: int = 2000, seed: int = 0) -> list[dict[str, Any]]:
    """Fig. 2b's claim per clipped variant: the best lambda falls as the batch grows.

    The estimate is ``log2 best-lambda(smallest batch) - log2 best-lambda(largest batch)`` (an
    octave per unit; > 0: the best lambda falls), the best picked by mean score over seeds. Its
    95% interval is a percentile bootstrap over seeds (``n_boot`` resamples of the seeds, the same
    seeds for every lambda and batch size, a fixed generator ``seed``: the same runs give the same
    interval). Reproduced when the interval lies above 0, contradicted when below."""
    df = runs[runs["variant"].isin(CLIPPED) & (runs["layers"] == PAPER_LAYERS)]
    if clippings is not None:
        df = df[df["clipping"].round(6).isin([round(c, 6) for c in clippings])]
    rng = np.random.default_rng(seed)
    rows = []
    for v, g in df.groupby("variant", sort=False):
        table = g.pivot_table(index="seed", columns=["batch_size", "clipping"], values="score")
        small, big = int(g["batch_size"].min()), int(g["batch_size"].max())

        def drop(t: pd.DataFrame, small: int = small, big: int = big) -> float:
            m = t.mean().rename("score").reset_index()
            best = _best_log2_lambda(m)
            return float(best[small] - best[big])

        estimate, n = drop(table), len(table)
        boots = [drop(table.iloc[rng.integers(0, n, n)]) for _ in range(n_boot)] if n > 1 else []
        low, high = (np.percentile(boots, [2.5, 97.5]) if boots else (-np.inf, np.inf))
        verdict = V.greater(low, high) if n > 1 else V.NOT_RESOLVED
        rows.append({"claim": f"Fig. 2b: the best λ falls from batch {small} to {big}, {_label(v)} "
                              f"(log2 λ*({small}) - log2 λ*({big}), octaves)",
                     "estimate": estimate, "ci_low": float(low), "ci_high": float(high), "n": n,
                     "verdict": verdict, "rule": "95% percentile bootstrap over seeds > 0",
                     "estimate_best_4_of_5": float("nan")})
    return rows


def lambda_ties(runs: pd.DataFrame, clippings: Iterable[float] | None = None) -> pd.DataFrame:
    """The best lambda per (clipped variant, batch size), and which lambdas tie with it.

    A lambda ties with the best when the 95% t interval of its per-seed difference to the best
    (paired by seed) contains 0. Columns: variant, batch_size, best (lambda), mean, mean_best_4_of_5,
    tied (the lambdas that tie, the best included, as text)."""
    df = runs[runs["variant"].isin(CLIPPED) & (runs["layers"] == PAPER_LAYERS)]
    if clippings is not None:
        df = df[df["clipping"].round(6).isin([round(c, 6) for c in clippings])]
    rows = []
    for (v, b), g in df.groupby(["variant", "batch_size"], sort=False):
        table = g.pivot_table(index="seed", columns="clipping", values="score")
        means = table.mean()
        best = _best(means)
        tied = []
        for lam in table.columns:
            _, low, high, n = V.mean_ci((table[lam] - table[best]).dropna())
            if lam == best or n < 2 or low <= 0 <= high:
                tied.append(lam)
        rows.append({"variant": v, "batch_size": int(b), "best": best, "mean": float(means[best]),
                     "mean_best_4_of_5": best_k_mean(table[best]),
                     "tied": ", ".join(f"{x:g}" for x in sorted(tied))})
    return pd.DataFrame(rows, columns=["variant", "batch_size", "best", "mean", "mean_best_4_of_5", "tied"])


def layer_claims(layer_runs: pd.DataFrame, tolerance: float = TOLERANCE) -> list[dict[str, Any]]:
    """§4.1's layer claims (:data:`LAYER_CLAIMS`) per clipped variant, each layer choice against
    the paper's (every parameter but the classifier weight), paired by seed: "hurts" claims are
    ``paper - choice > 0``; the first conv's "can be left unclipped" is ``choice - paper`` within
    ±``tolerance`` (a diverged run scores chance, so a choice that diverges contradicts it)."""
    rows = []
    for v in [x for x in CLIPPED if x in set(layer_runs["variant"])]:
        ref = _scores(layer_runs, variant=v, layers=PAPER_LAYERS)
        lam = layer_runs.loc[layer_runs["variant"] == v, "clipping"].iloc[0]
        for claim, (layers, expected) in LAYER_CLAIMS.items():
            other = _scores(layer_runs, variant=v, layers=layers)
            if other.empty:
                continue
            text = f"§4.1: {claim}, {_label(v)} at λ = {lam:g}"
            if expected == "hurts":
                rows.append(difference_row(f"{text} (paper's choice - '{layers}', top-1 points)", ref, other))
            else:
                rows.append(difference_row(f"{text} ('{layers}' - paper's choice, top-1 points)",
                                           other, ref, "level", tolerance=tolerance))
    return rows


def verdict_table(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """The rows as a table with :data:`VERDICT_COLUMNS` (what ``results/agc_verdicts.csv`` holds)."""
    return pd.DataFrame(list(rows), columns=VERDICT_COLUMNS)


def precision_check(bf16: list[dict[str, Any]], fp32: list[dict[str, Any]]) -> pd.DataFrame:
    """The same claims computed from bf16 runs and from their fp32 twins, side by side, and
    whether the verdict is the same (``same_verdict``)."""
    a, b = verdict_table(bf16), verdict_table(fp32)
    out = a[["claim", "estimate", "ci_low", "ci_high", "verdict"]].merge(
        b[["claim", "estimate", "ci_low", "ci_high", "verdict"]], on="claim", suffixes=("_bf16", "_fp32"))
    out["same_verdict"] = out["verdict_bf16"] == out["verdict_fp32"]
    return out


def precision_shift(points: pd.DataFrame, fp32_runs: pd.DataFrame) -> pd.DataFrame:
    """Per line: the per-seed change of top-1 score from bf16 to fp32 (fp32 - bf16, paired by
    seed and lambda), mean with its 95% t interval."""
    rows = []
    fp32_runs = fp32_runs.assign(line=fp32_runs["variant"].str.replace(FP32_SUFFIX, "", regex=False))
    for line, g in fp32_runs.groupby("line", sort=False):
        for b, gb in g.groupby("batch_size"):
            a = gb.set_index("seed")["score"]
            ref = points[(points["line"] == line) & (points["batch_size"] == b)].set_index("seed")["score"]
            seeds = a.index.intersection(ref.index)
            mean, low, high, n = V.mean_ci((a[seeds] - ref[seeds]).tolist())
            rows.append({"line": line, "batch_size": int(b), "fp32_minus_bf16": mean, "ci_low": low,
                         "ci_high": high, "n": n, "diverged_bf16": int(points.loc[
                             (points["line"] == line) & (points["batch_size"] == b), "diverged"].sum()),
                         "diverged_fp32": int(gb["diverged"].sum())})
    return pd.DataFrame(rows)


def clip_fraction_trace(runs: pd.DataFrame, runs_dir: str | Path) -> pd.DataFrame:
    """The fraction of units AGC clipped over training, read from the clipped runs' ``steps.csv``
    (``TrainConfig.log_every``): one row per logged step with the plan columns, ``step``,
    ``progress`` (step / the run's steps) and ``frac_clipped``. Runs without the file (made
    before it was logged) are left out."""
    frames = []
    clipped = runs[runs["variant"].isin(CLIPPED) & runs["clipping"].notna()]
    for r in clipped.to_dict("records"):
        path = Path(runs_dir) / r["run"] / "steps.csv"
        if not path.exists():
            continue
        steps = pd.read_csv(path)
        total = max(float(r["steps"]), float(steps["step"].max()))
        frames.append(steps[["step", "frac_clipped"]].assign(
            progress=steps["step"] / total, **{c: r[c] for c in PLAN_COLUMNS}))
    if not frames:
        return pd.DataFrame(columns=[*PLAN_COLUMNS, "step", "progress", "frac_clipped"])
    return pd.concat(frames, ignore_index=True)[[*PLAN_COLUMNS, "step", "progress", "frac_clipped"]]


def gain_growth(short: pd.DataFrame, long: pd.DataFrame, target: pd.DataFrame,
                short_steps: int, long_steps: int) -> dict[str, Any]:
    """How fast the clipped SkipInit gains grow, and how many steps they would need.

    ``short`` / ``long``: :func:`skip_gains` rows of the same variant and lambda after
    ``short_steps`` and ``long_steps`` updates; ``target``: the gains the unclipped-gains variant
    reached. The mean |gain| over blocks and seeds is taken at each length; assuming it keeps
    growing geometrically at the rate measured between the two lengths (AGC lets a gain grow by at
    most a factor ``1 + lr * lambda`` per step once it is above eps, so geometric is the fastest
    it can), ``steps_to_target`` is when it would reach the target's mean (inf when it did not
    grow). A measured rate and an extrapolation, not a run of that length."""
    g_short, g_long = float(short["skip_gain"].abs().mean()), float(long["skip_gain"].abs().mean())
    g_target = float(target["skip_gain"].abs().mean())
    rate = (g_long / g_short) ** (1.0 / (long_steps - short_steps)) if g_short > 0 else float("nan")
    if g_long >= g_target:
        needed = float(long_steps)
    elif rate > 1:
        needed = long_steps + float(np.log(g_target / g_long) / np.log(rate))
    else:
        needed = float("inf")
    return {"mean |gain|, short": g_short, "mean |gain|, long": g_long, "target mean |gain|": g_target,
            "short steps": short_steps, "long steps": long_steps, "growth per step": rate,
            "steps to target": needed}


def describe_claims(claims: pd.DataFrame) -> str:
    """The verdict table in words (for a Markdown cell): a count per verdict, then one line per
    claim with its estimate, interval, number of seeds and verdict, all read from ``claims``."""
    counts = claims["verdict"].value_counts()
    head = ", ".join(f"{int(counts.get(v, 0))} {v}" for v in (V.REPRODUCED, V.CONTRADICTED, V.NOT_RESOLVED))
    lines = [f"Of {len(claims)} claims: {head}."]
    for r in claims.itertuples():
        interval = (f"[{r.ci_low:.2f}, {r.ci_high:.2f}]" if np.isfinite(r.ci_low)
                    else "(one value: no interval)")
        lines.append(f"- {r.claim}: {r.estimate:.2f} {interval}, n = {r.n}: **{r.verdict}**")
    return "\n".join(lines)
