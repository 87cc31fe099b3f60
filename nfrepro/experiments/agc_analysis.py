"""The numbers behind the verdicts of notebooks 02 and 03 (NFNets §4.1: Fig. 2a, Fig. 2b, layers).

Everything here reads the tidy run tables that :func:`nfrepro.experiments.agc_ablation.run_plan` returns and
the notebooks save (one row per run and metric), so a verdict can be recomputed from the CSVs in
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

from nfrepro.engine.checkpoint import load_checkpoint
from nfrepro.experiments.agc_ablation import (
    AGC,
    BN,
    CLIPPED,
    LAYERS,
    NF,
    PAPER_LAYERS,
    PLAN_COLUMNS,
    UNCLIPPED,
)

TOLERANCE = 1.0  # points of top-1: smaller differences count as "no difference" in the verdicts
CHANCE_TOP1 = 10.0  # 10 classes (Fashion-MNIST, CIFAR-10): how a diverged run is scored

def per_run(tidy: pd.DataFrame, metric: str = "final_test_top1") -> pd.DataFrame:
    """One row per run: plan columns, ``status``, ``diverged``, ``top1`` (NaN when diverged),
    ``steps`` and ``score`` (top-1, with a diverged run scored at chance: 100 / 10 classes)."""
    keys = [*PLAN_COLUMNS, "run", "status"]
    tidy = tidy.assign(layers=tidy["layers"].fillna(""))  # a CSV reads the empty label as NaN
    wide = tidy.pivot_table(index="run", columns="metric", values="value", aggfunc="first")
    out = tidy.drop_duplicates("run")[keys].reset_index(drop=True)
    wide = wide.reindex(out["run"]).reset_index(drop=True)
    out["diverged"] = wide["diverged"].astype(bool).to_numpy() | (out["status"] == "diverged")
    out["top1"] = wide[metric].where(~out["diverged"])
    out["steps"] = wide["steps"]
    out["score"] = out["top1"].fillna(CHANCE_TOP1)
    return out


def best_clipping(runs: pd.DataFrame, clippings: Iterable[float] | None = None) -> pd.DataFrame:
    """Best lambda per (clipped variant, batch size): the highest mean score over seeds.

    ``runs`` as :func:`per_run` returns (only runs with ``layers == PAPER_LAYERS`` count);
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
    for (variant, batch), g in grouped.groupby(["variant", "batch_size"]):
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


def _mean_score(points: pd.DataFrame, line: str, batch: int) -> float:
    sel = points[(points["line"] == line) & (points["batch_size"] == batch)]
    return float(sel["score"].mean()) if len(sel) else float("nan")


def verdict_fig2a(points: pd.DataFrame, agc: str = AGC, nf: str = NF,
                  tolerance: float = TOLERANCE) -> dict[str, Any]:
    """Fig. 2a's claim at the largest batch size, from :func:`fig2a_points`.

    Part 1 (the problem): NF without clipping falls behind BN by at least ``tolerance`` points
    (a diverged run scores chance). Part 2 (the fix): AGC gains at least ``tolerance`` over NF and
    ends within ``tolerance`` of BN. Both: "reproduced"; one, or AGC helping without catching BN:
    "partly"; neither: "not reproduced".
    """
    big, small = int(points["batch_size"].max()), int(points["batch_size"].min())
    bn, nf_, agc_ = (_mean_score(points, x, big) for x in (BN, nf, agc))
    at_big = points[(points["batch_size"] == big) & (points["line"] == nf)]
    numbers = {"batch_size": big, "seeds": int(at_big["seed"].nunique()),
               f"{nf} diverged": int(at_big["diverged"].sum()), "BN": bn, nf: nf_, agc: agc_,
               "BN - NF (largest batch)": bn - nf_, "BN - NF (smallest batch)":
               _mean_score(points, BN, small) - _mean_score(points, nf, small),
               "AGC - NF": agc_ - nf_, "BN - AGC": bn - agc_}
    problem = bn - nf_ >= tolerance
    helps, catches_up = agc_ - nf_ >= tolerance, bn - agc_ <= tolerance
    if problem and helps and catches_up:
        verdict = "reproduced"
    elif problem or helps:
        verdict = "partly reproduced"
    else:
        verdict = "not reproduced"
    return {"verdict": verdict, "problem": problem, "agc_helps": helps,
            "agc_catches_up": catches_up, **numbers}


def verdict_fig2b(best: pd.DataFrame, variant: str = AGC) -> dict[str, Any]:
    """Fig. 2b's claim (the best lambda falls as the batch grows), from :func:`best_clipping`.

    "reproduced": the best lambda never rises from one batch size to the next and ends lower
    than it starts; "partly reproduced": it ends lower but rises somewhere; "not reproduced":
    it ends at or above where it starts. ``censored`` counts batch sizes whose best lambda is the
    top of the grid searched (the true best may be larger).
    """
    b = best[best["variant"] == variant].sort_values("batch_size")
    lam = b["clipping"].to_numpy()
    never_rises = bool(np.all(np.diff(lam) <= 0))
    falls = bool(len(lam) > 1 and lam[-1] < lam[0])
    verdict = ("reproduced" if falls and never_rises else
               "partly reproduced" if falls else "not reproduced")
    return {"verdict": verdict, "variant": variant, "best_clipping": dict(zip(b["batch_size"], lam)),
            "falls": falls, "never_rises": never_rises, "censored": int(b["at_top"].sum())}


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
LAYER_CLAIMS = {
    "never clip the final linear layer": ("also the classifier", "hurts"),
    "the first conv can be left unclipped": ("first conv unclipped", "no difference"),
    "every stage must be clipped (first)": ("first stage unclipped", "hurts"),
    "every stage must be clipped (last)": ("last stage unclipped", "hurts"),
}


def verdict_layers(effects: pd.DataFrame, variant: str = AGC) -> dict[str, Any]:
    """Which of §4.1's layer claims hold here for ``variant`` (see :data:`LAYER_CLAIMS`).

    A claim expecting "no difference" also holds when leaving the layer out helps. All hold:
    "reproduced"; some: "partly reproduced"; none: "not reproduced".
    """
    e = effects[effects["variant"] == variant].set_index("layers")["effect"]
    holds = {}
    for claim, (layers, expected) in LAYER_CLAIMS.items():
        if layers in e.index:
            found = e[layers]
            holds[claim] = found == expected or (expected == "no difference" and found == "helps")
    n = sum(holds.values())
    verdict = ("reproduced" if holds and n == len(holds) else
               "partly reproduced" if n else "not reproduced")
    return {"verdict": verdict, "variant": variant, "holds": holds}



def skip_gains(runs: pd.DataFrame, runs_dir: str | Path) -> pd.DataFrame:
    """The learned SkipInit gains of finished NF runs, read from their last checkpoints.

    One row per (run, block): the plan columns, ``block`` (its index in ``model.blocks``) and
    ``skip_gain``. With AGC as published the gains start at 0 and are clipped against
    ``max(|g|, eps)``, so over a short run they barely move (:mod:`nfrepro.experiments.agc_ablation`);
    the variant that leaves them unclipped shows how far they move otherwise.
    """
    rows = []
    nf = runs[runs["variant"].isin([NF, *CLIPPED]) & ~runs["diverged"]]
    for r in nf.to_dict("records"):
        path = Path(runs_dir) / r["run"] / "checkpoint.pt"
        if not path.exists():
            continue
        state = load_checkpoint(path, required=("model",))["model"]
        gains = [(k, float(v)) for k, v in state.items() if k.endswith("skip_gain")]
        rows += [{**{c: r[c] for c in PLAN_COLUMNS}, "block": int(k.split(".")[1]), "skip_gain": g}
                 for k, g in gains]
    return pd.DataFrame(rows, columns=[*PLAN_COLUMNS, "block", "skip_gain"])


def describe_fig2a(v: Mapping[str, Any], agc: str = AGC, nf: str = NF) -> str:
    """One paragraph, in words, of :func:`verdict_fig2a`'s numbers (for a Markdown cell)."""
    lag = v["BN - AGC"]
    nf_div = (f" ({v[f'{nf} diverged']} of {v['seeds']} runs diverged, scored at chance)"
              if v[f"{nf} diverged"] else "")
    return (f"At batch {v['batch_size']}, BN reached {v['BN']:.1f}% and {nf} without clipping "
            f"{v[nf]:.1f}%{nf_div}: BN ahead by {v['BN - NF (largest batch)']:.1f} points (at the "
            f"smallest batch by {v['BN - NF (smallest batch)']:.1f}). {agc} at its best λ reached "
            f"{v[agc]:.1f}%: {v['AGC - NF']:+.1f} points over {nf}, {abs(lag):.1f} "
            f"{'behind' if lag > 0 else 'ahead of'} BN. NF falls behind BN at the largest batch: "
            f"{'yes' if v['problem'] else 'no'}; AGC gains ≥ {TOLERANCE:g} point: "
            f"{'yes' if v['agc_helps'] else 'no'}; AGC ends within {TOLERANCE:g} point of BN or "
            f"above it: {'yes' if v['agc_catches_up'] else 'no'}. Verdict: **{v['verdict']}**.")


def describe_fig2b(v: Mapping[str, Any]) -> str:
    """One sentence of :func:`verdict_fig2b`'s finding (for a Markdown cell)."""
    path = ", ".join(f"{b}: {lam:g}" for b, lam in v["best_clipping"].items())
    note = (f" At {v['censored']} batch size(s) the best λ is the largest one tried, so the true "
            f"best may lie higher." if v["censored"] else "")
    return (f"{v['variant']}: best λ by batch size {path}. It falls with the batch: "
            f"{'yes' if v['falls'] else 'no'}; never rises: {'yes' if v['never_rises'] else 'no'}."
            f"{note} Verdict: **{v['verdict']}**.")


def missing_runs(plan: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """The planned runs that :func:`per_run` does not hold as completed or diverged (empty: none)."""
    def keys(df: pd.DataFrame) -> pd.Series:
        d = df[PLAN_COLUMNS].fillna({"clipping": -1.0, "layers": ""})
        return d.astype(str).agg("|".join, axis=1)

    done = runs[runs["status"].isin(["completed", "diverged"])]
    return plan[~keys(plan).isin(set(keys(done)))].reset_index(drop=True)


def line_summary(points: pd.DataFrame) -> pd.DataFrame:
    """Per line and batch size: lambda, mean / min / max top-1 over completed seeds, diverged runs."""
    return (points.groupby(["line", "batch_size"], sort=False)
            .agg(clipping=("clipping", "first"), mean_top1=("top1", "mean"), min_top1=("top1", "min"),
                 max_top1=("top1", "max"), seeds=("seed", "nunique"), diverged=("diverged", "sum"))
            .reset_index().sort_values(["line", "batch_size"], ignore_index=True))
