r"""The verdicts of notebooks 02 and 03 (NFNets §4.1), each with its setting and a reading, and the
"What we found" text written from them.

Every row comes from :mod:`nfrepro.analysis.verdicts` (one rule for every notebook): accuracy
compared over the seeds where both sides trained, divergence counted apart
(:func:`~nfrepro.analysis.verdicts.paired_claim_row`), and carries the setting its evidence comes
from (:func:`setting`: data set, training images, epochs, optimizer steps, batch size, peak learning
rate, warmup steps, lambda, seeds, as the engine computes them from the runs' configurations) and a
one-sentence ``reading`` built from its numbers. A claim whose gap the training-length study saw
move with the budget says "at this budget".
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from nfrepro.analysis import verdicts as V
from nfrepro.experiments import agc_analysis as N
from nfrepro.experiments.agc_ablation import (
    AGC,
    AGC_FREE_GAINS,
    BN,
    CLIPPED,
    FIRST_CONV,
    NF,
    PAPER_LAYERS,
    PLAN_COLUMNS,
    AgcScale,
    all_methods,
    run_config,
)

TOLERANCE = N.TOLERANCE
SLOPE_TOLERANCE = 0.5  # the theory's slope -1 "holds" when the interval lies within -1 ± 0.5
EXTRA = ["diverged", "estimate_best_4_of_5"]  # the columns agc_verdicts.csv adds to verdicts.COLUMNS
DEPARTURE = " (a departure)"
PAPER = "the paper's choice"
_CONFIGS: dict[tuple, Any] = {}


def label(variant: str) -> str:
    return variant + (DEPARTURE if variant == AGC_FREE_GAINS else "")


def setting(runs: pd.DataFrame, scale: AgcScale) -> V.Setting:
    """The :class:`~nfrepro.analysis.verdicts.Setting` of ``runs`` (rows of a per-run table), read
    from the configuration each run was trained with (:func:`.agc_ablation.run_config`)."""
    configs = []
    for spec in runs[PLAN_COLUMNS].drop_duplicates().to_dict("records"):
        key = (id(scale), *(str(spec[c]) for c in PLAN_COLUMNS))
        if key not in _CONFIGS:
            _CONFIGS[key] = run_config({**spec, "layers": spec["layers"] or ""}, scale, all_methods(scale))
        configs.append(_CONFIGS[key])
    return V.setting_of(configs, seeds=int(runs["seed"].nunique()))


def _points(s: V.Setting) -> str:
    return f"{s.steps} steps of batch {s.batch_size} (peak lr {s.peak_lr:g})"


def _compare(r: Mapping[str, Any], a: str, b: str) -> str:
    """A row on ``a - b`` in words: "NF + AGC trails BN by 14.8 points [10.5, 19.0]", with the runs
    that diverged, or, where no seed trained on both sides, which side diverged how often."""
    k_a, k_b = (int(x.split("/")[0]) for x in r["diverged"].split(" vs "))
    runs = int(r["diverged"].split("/")[-1])
    some = lambda k: "none" if k == 0 else f"{k} of {runs} runs"  # noqa: E731
    if r["n"] == 0:
        (worse, k), (other, m) = sorted([(a, k_a), (b, k_b)], key=lambda x: -x[1])
        return f"{worse} diverged in {some(k)} and {other} in {some(m)}"
    est = r["estimate"]
    interval = (f" [{r['ci_low']:.1f}, {r['ci_high']:.1f}]" if np.isfinite(r["ci_low"])
                else " (one seed: no interval)")
    text = f"{a} {'trails' if est < 0 else 'leads'} {b} by {abs(est):.1f} points{interval}"
    if k_a or k_b:
        text += (f" over the {r['n']} seeds where both trained ({a} diverged in {some(k_a)}, "
                 f"{b} in {some(k_b)})")
    return text


def _paired(claim: str, a: pd.Series, b: pd.Series, runs: pd.DataFrame, scale: AgcScale,
            say: Callable[[dict, V.Setting], str], kind: str = "greater", margin: float = 0.0,
            scores: tuple[pd.Series, pd.Series] | None = None) -> dict[str, Any]:
    """A :func:`~nfrepro.analysis.verdicts.paired_claim_row` with the setting of ``runs`` and the
    reading ``say(row, setting)``; ``scores``: the two sides' scores for the paper's best 4 of 5."""
    s = setting(runs, scale)
    row = V.paired_claim_row(claim, a, b, kind, margin, TOLERANCE, s)
    row["reading"] = say(row, s)
    sa, sb = scores if scores is not None else (a.fillna(10.0), b.fillna(10.0))
    row["estimate_best_4_of_5"] = N.best_k_mean(sa) - N.best_k_mean(sb)
    return row


# ----------------------------------------------------------------------------- Fig. 2a
def moved(gaps: pd.DataFrame | None, arm: str, batch: int) -> dict[str, Any] | None:
    """The length study's longest run of ``arm`` against BN at ``batch``, if its verdict differs from
    the shortest's or its interval does not overlap the base length's: the budget moves the result."""
    if gaps is None or gaps.empty:
        return None
    g = gaps[(gaps["arm"] == arm) & (gaps["batch_size"] == batch)].sort_values("steps")
    if len(g) < 2:
        return None
    last = g.iloc[-1]
    apart = last["ci_low"] > g["ci_high"].iloc[:-1].min() or last["ci_high"] < g["ci_low"].iloc[:-1].max()
    return last.to_dict() if g["verdict"].nunique() > 1 or apart else None


def _budget(gaps: pd.DataFrame | None, arm: str, batch: int) -> str:
    last = moved(gaps, arm, batch)
    return "" if last is None else (f"; at this budget: after {last['steps']} steps the gap is "
                                    f"{last['estimate']:+.1f} [{last['ci_low']:.1f}, {last['ci_high']:.1f}]")


def _gains_reason(gains: pd.DataFrame | None, batch: int, lam: float) -> str:
    if gains is None or gains.empty:
        return ""
    mine = N.mean_gain(gains, variant=AGC, batch_size=batch, clipping=lam)
    free = N.mean_gain(gains[gains["variant"] == AGC_FREE_GAINS], batch_size=batch)
    if not (np.isfinite(mine) and np.isfinite(free)):
        return ""
    return (f"; its clipped skip gains have not opened (mean |g| {mine:.3f}, against {free:.2f} when they "
            f"are left unclipped)")


def fig2a_claims(points: pd.DataFrame, scale: AgcScale, gains: pd.DataFrame | None = None,
                 gaps: pd.DataFrame | None = None, blowup: str = "") -> list[dict[str, Any]]:
    """The verdict rows of Fig. 2a from :func:`~nfrepro.experiments.agc_analysis.fig2a_points`:

    * at the smallest batch NF without clipping matches BN (``NF - BN`` within ±1 point);
    * at the largest, NF without clipping falls behind BN (``BN - NF > 0``), and diverges in some runs;
    * at every batch each clipped variant, at its best lambda, keeps up with BN (``> -1``);
    * at the largest batch each clipped variant improves on NF without clipping.

    ``gains`` (:func:`~nfrepro.experiments.agc_analysis.skip_gains` of the points) and ``gaps``
    (:func:`~nfrepro.experiments.agc_analysis.length_gaps`) give the readings their measured reasons;
    ``blowup``: a clause saying how the unclipped runs diverged. The best lambda is picked on the
    runs the verdict reads (as in the paper), which flatters the clipped lines a little."""
    small, big = int(points["batch_size"].min()), int(points["batch_size"].max())
    at = lambda line, b: N.top1(points, line=line, batch_size=b)  # noqa: E731
    runs_of = lambda lines, b: points[points["line"].isin(lines) & (points["batch_size"] == b)]  # noqa: E731
    rows = [_paired(f"Fig. 2a: at batch {small}, NF without clipping matches BN (NF - BN, top-1 points)",
                    at(NF, small), at(BN, small), runs_of([NF, BN], small), scale,
                    lambda r, s: f"At {_points(s)}, {_compare(r, 'NF without clipping', 'BN')}.",
                    "level"),
            _paired(f"Fig. 2a: at batch {big}, NF without clipping falls behind BN (BN - NF, top-1 points)",
                    at(BN, big), at(NF, big), runs_of([NF, BN], big), scale,
                    lambda r, s: (f"At {_points(s)}, {_compare(r, 'BN', 'NF without clipping')}"
                                  f"{blowup}."))]
    nf_big = points[(points["line"] == NF) & (points["batch_size"] == big)]
    s = setting(nf_big, scale)
    rate = V.rate_claim_row(f"Fig. 2a: at batch {big}, NF without clipping diverges in some runs "
                            f"(rate of diverged runs)", nf_big["diverged"], s)
    rows.append({**rate, "estimate_best_4_of_5": math.nan, "reading": (
        f"At {_points(s)}, NF without clipping diverged in {rate['diverged'].replace('/', ' of ')} runs "
        f"(95% Wilson interval {rate['ci_low']:.0%}-{rate['ci_high']:.0%}).")})
    for v in [x for x in CLIPPED if x in set(points["line"])]:
        for b in sorted(points["batch_size"].unique()):
            lam = float(runs_of([v], b)["clipping"].iloc[0])
            edge = V.grid_edge(lam, scale.clippings)
            why = _gains_reason(gains, b, lam) if v == AGC else ""
            name = f"{v} at its best λ = {lam:g}" + (f" ({edge})" if edge else "")
            rows.append(_paired(
                f"Fig. 2a: at batch {b}, {label(v)} at its best λ keeps up with BN "
                f"({v} - BN > -{TOLERANCE:g}, top-1 points)", at(v, b), at(BN, b), runs_of([v, BN], b), scale,
                lambda r, s, v=v, name=name, why=why, b=b: (
                    f"At {_points(s)}, {_compare(r, name, 'BN')}"
                    f"{why if r['verdict'] != V.REPRODUCED else ''}{_budget(gaps, v, b)}."),
                margin=-TOLERANCE))
        rows.append(_paired(
            f"Fig. 2a: at batch {big}, {label(v)} at its best λ improves on NF without clipping "
            f"({v} - NF, top-1 points)", at(v, big), at(NF, big), runs_of([v, NF], big), scale,
            lambda r, s, v=v: f"At {_points(s)}, {_compare(r, v, 'NF without clipping')}."))
    return rows


# ----------------------------------------------------------------------------- training length
def steps_of(runs: pd.DataFrame, scale: AgcScale) -> dict[tuple[int, int], int]:
    """``{(batch, epochs): steps}`` of the length study's runs (:func:`.agc_analysis.length_runs`)."""
    return {(int(b), int(e)): int(setting(g, scale).steps)
            for (b, e), g in runs.groupby(["batch_size", "epochs"])}


def length_claims(runs: pd.DataFrame, gaps: pd.DataFrame, keep: pd.DataFrame,
                  scale: AgcScale) -> list[dict[str, Any]]:
    """The training-length rows: per series (an arm against BN at one batch) and length, "keeps up
    with BN" (``arm - BN > -1``); then per series the answer, after how many steps it keeps up for
    good (:func:`~nfrepro.experiments.agc_analysis.keep_up_steps`): reproduced when the whole 95%
    band has crossed within the longest run, contradicted when not even its top has ("not within
    N steps"), otherwise not resolved."""
    rows = []
    for g in gaps.itertuples():
        sub = runs[(runs["batch_size"] == g.batch_size) & (runs["epochs"] == g.epochs)
                   & runs["arm"].isin([g.arm, BN])]
        rows.append(_paired(
            f"Training length: at batch {g.batch_size}, {label(g.arm)} keeps up with BN after {g.epochs} "
            f"epoch(s) ({g.arm} - BN > -{TOLERANCE:g}, top-1 points)",
            N.top1(sub, arm=g.arm), N.top1(sub, arm=BN), sub, scale,
            lambda r, s, arm=g.arm: f"After {_points(s)}, {_compare(r, arm, 'BN')}.",
            margin=-TOLERANCE))
    for k in keep.itertuples():
        sub = runs[(runs["batch_size"] == k.batch_size) & runs["arm"].isin([k.arm, BN])]
        s = setting(sub, scale)
        verdict = (V.REPRODUCED if math.isfinite(k.latest) else V.CONTRADICTED if math.isinf(k.earliest)
                   else V.NOT_RESOLVED)
        latest = f"more than {k.longest}" if math.isinf(k.latest) else f"{k.latest:.0f}"
        text = (f"{k.arm} keeps up with BN (within {TOLERANCE:g} point) after about {k.steps:.0f} steps "
                f"(95% band {k.earliest:.0f} to {latest})" if math.isfinite(k.steps) else
                f"{k.arm} does not keep up with BN within {k.longest} steps: it still trails by "
                f"{-k.gap_at_longest:.1f} points there")
        rows.append({"claim": f"Training length: steps after which {label(k.arm)} keeps up with BN at batch "
                              f"{k.batch_size} (gap above -{TOLERANCE:g} point)",
                     "estimate": k.steps, "ci_low": k.earliest, "ci_high": k.latest,
                     "n": int(sub.loc[sub["epochs"] == sub["epochs"].max(), "seed"].nunique()),
                     "verdict": verdict, "rule": "where the gap's 95% band rises above -1 for good "
                                                 "(log-steps interpolation)",
                     "diverged": "", "estimate_best_4_of_5": math.nan, **s.row(),
                     "reading": f"At batch {k.batch_size} (peak lr {s.peak_lr}), {text}."})
    return rows


# ----------------------------------------------------------------------------- Fig. 2b and the theory
def fig2b_claims(runs: pd.DataFrame, scale: AgcScale, clippings: Iterable[float] | None = None
                 ) -> list[dict[str, Any]]:
    """Per clipped variant: Fig. 2b's claim that the best lambda falls as the batch grows, as minus
    the slope of log2 lambda* on log2 B fitted per seed (> 0), and the theory's prediction that the
    slope is -1 (within ±:data:`SLOPE_TOLERANCE`), each with the 95% t interval over seeds."""
    best = N.per_seed_best(runs, clippings)
    slopes = N.lambda_slope(best).set_index("variant")
    spread = N.collapse_spread(N.collapse(runs, scale)).set_index("variant")
    rows = []
    for v, g in best.groupby("variant", sort=False):
        per_seed = pd.Series([float(x) for x in slopes.loc[v, "per_seed"].split(", ") if x])
        sub = N._grid(runs, clippings)
        sub = sub[sub["variant"] == v]
        s = setting(sub, scale)
        small, big = int(g["batch_size"].min()), int(g["batch_size"].max())
        octaves = math.log2(big / small)
        edges = int(slopes.loc[v, "at_edge"])
        edge_text = (f"; {edges} of {int(slopes.loc[v, 'points'])} per-seed best λs sit at the edge of the "
                     f"grid that hides a larger fall, so the fall is at least this" if edges else "")
        row = V.claim_row(f"Fig. 2b: the best λ falls as the batch grows, {label(v)} (minus the slope of "
                          f"log2 λ* on log2 B, per seed)", (-per_seed).tolist(), setting=s)
        row["reading"] = (f"Between batch {small} and {big} ({octaves:.0f} octaves) the per-seed best λ of "
                          f"{v} fell by {row['estimate'] * octaves:.1f} octaves on average "
                          f"[{row['ci_low'] * octaves:.1f}, {row['ci_high'] * octaves:.1f}]{edge_text}.")
        rows.append({**row, "diverged": "", "estimate_best_4_of_5": math.nan})
        theory = V.claim_row(f"Theory: λ* ∝ 1/B, {label(v)} (slope of log2 λ* on log2 B + 1, within "
                             f"±{SLOPE_TOLERANCE:g})", (per_seed + 1).tolist(), "level",
                             tolerance=SLOPE_TOLERANCE, setting=s)
        sp = spread.loc[v]
        theory["reading"] = (
            f"A fixed step bound ηλ predicts a slope of -1; the seeds give {per_seed.mean():.2f}, and the "
            f"best ηλ of the batch sizes lie {sp['octaves_of_best_step']:.1f} octaves apart where their best "
            f"λs lie {sp['octaves_of_best_lambda']:.1f} apart{edge_text}.")
        rows.append({**theory, "diverged": "", "estimate_best_4_of_5": math.nan})
    return rows


# ----------------------------------------------------------------------------- §4.1 layers
LAYER_CLAIMS = {  # layer choice -> (the paper's statement, what it expects of the choice)
    "also the classifier": ("never clip the final linear layer", "hurts"),
    FIRST_CONV: ("the first conv can be left unclipped", "no difference"),
    "first stage unclipped": ("every stage must be clipped (first)", "hurts"),
    "last stage unclipped": ("every stage must be clipped (last)", "hurts"),
}


def layer_claims(layer_runs: pd.DataFrame, scale: AgcScale, why_first_conv: str = "") -> list[dict[str, Any]]:
    """§4.1's statements (:data:`LAYER_CLAIMS`) per base variant and batch size, each choice against
    the paper's (every parameter but the classifier weight) of the same base, lambda and batch:
    "hurts" claims are ``paper - choice > 0``; the first conv's "can be left unclipped" is
    ``choice - paper`` within ±1 point. ``why_first_conv``: a clause with the measured reason if
    the first conv unclipped diverges (the diagnosis of notebook 03)."""
    rows = []
    for (v, b), g in layer_runs.groupby(["variant", "batch_size"], sort=False):
        ref, lam = N.top1(g, layers=PAPER_LAYERS), float(g["clipping"].iloc[0])
        for layers, (text, expected) in LAYER_CLAIMS.items():
            mine = N.top1(g, layers=layers)
            if mine.empty:
                continue
            runs = g[g["layers"].isin([layers, PAPER_LAYERS])]
            claim = f"§4.1: {text}, {label(v)} at λ = {lam:g}, batch {b}"
            why = why_first_conv if layers == FIRST_CONV else ""
            if expected == "hurts":
                sides, kind = (ref, mine), "greater"
                names = (f"{v} as the paper clips it", f"the same net with {layers!r}")
                claim += f" (paper's choice - '{layers}', top-1 points)"
            else:
                sides, names, kind = (mine, ref), (f"{v} with {layers!r}", PAPER), "level"
                claim += f" ('{layers}' - paper's choice, top-1 points)"

            def say(r: dict, s: V.Setting, names: tuple[str, str] = names, why: str = why) -> str:
                reason = why if r["verdict"] == V.CONTRADICTED else ""
                return f"At {_points(s)}, {_compare(r, *names)}{reason}."
            rows.append(_paired(claim, *sides, runs, scale, say, kind))
    return rows


def verdict_table(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """The rows as :func:`nfrepro.analysis.verdicts.table` with :data:`EXTRA` (what
    ``results/agc_verdicts.csv`` holds): every row with its setting and reading."""
    return V.table([dict(r) for r in rows], extra=EXTRA)


def precision_check(bf16: list[dict[str, Any]], fp32: list[dict[str, Any]]) -> pd.DataFrame:
    """The same claims computed from bf16 runs and from their fp32 twins, side by side, and
    whether the verdict is the same (``same_verdict``)."""
    cols = ["claim", "estimate", "ci_low", "ci_high", "verdict"]
    out = verdict_table(bf16)[cols].merge(verdict_table(fp32)[cols], on="claim", suffixes=("_bf16", "_fp32"))
    return out.assign(same_verdict=out["verdict_bf16"] == out["verdict_fp32"])


# ----------------------------------------------------------------------------- what we found
HOLDS = {V.REPRODUCED: "holds here", V.CONTRADICTED: "fails here",
         V.NOT_RESOLVED: "is not resolved by these runs"}


def _find(claims: pd.DataFrame, *parts: str) -> pd.Series | None:
    hit = claims[claims["claim"].map(lambda c: all(p in c for p in parts))]
    return hit.iloc[0] if len(hit) else None


def _say(row: pd.Series | None) -> str:
    """A row's reading as a clause: without its final full stop, its first letter lower case."""
    text = "" if row is None else row["reading"].rstrip(".")
    return text[:1].lower() + text[1:]


def _batch(claim: str) -> str:
    return claim.split("at batch ")[1].split(",")[0]


def findings_02(claims: pd.DataFrame, mechanism: str = "") -> str:
    """"What we found" for notebook 02, from its verdict rows (Fig. 2a and the training length);
    ``mechanism``: how the unclipped runs blew up, in words (:func:`.agc_diagnosis.describe_blowup`)."""
    parts = []
    small = _find(claims, "NF without clipping matches BN")
    behind = _find(claims, "NF without clipping falls behind")
    if small is not None and behind is not None:
        said = mechanism and mechanism.rstrip(".") in behind["reading"]  # the reading may carry it already
        how = (f" Stepped by hand, the failure has one shape: {mechanism}." if mechanism and not said else "")
        how += (" Nothing bounds a unit's step against its weight, so the step grows until the loss explodes."
                if mechanism else "")
        parts.append(f"**Without clipping.** The paper's first observation {HOLDS[small['verdict']]}: "
                     f"{_say(small)}. Its second, that NF falls behind at the largest batch, "
                     f"{HOLDS[behind['verdict']]}: {_say(behind)}.{how}")
    for v in CLIPPED:
        keeps = claims[claims["claim"].str.contains(f"{label(v)} at its best λ keeps up", regex=False)]
        better = _find(claims, f"{label(v)} at its best λ improves")
        if keeps.empty or better is None:
            continue
        held, short = keeps[keeps["verdict"] == V.REPRODUCED], keeps[keeps["verdict"] != V.REPRODUCED]
        text = f"**{v}.** That clipping removes the instability {HOLDS[better['verdict']]}: {_say(better)}. "
        if len(held):
            text += f"It keeps up with BN at batch {', '.join(_batch(c) for c in held['claim'])}. "
        if len(short):
            text += "It does not keep up everywhere: " + "; ".join(
                f"{_say(r)} (*{r['verdict']}*)" for _, r in short.iterrows()) + "."
        parts.append(text.strip())
    answers = claims[claims["claim"].str.startswith("Training length: steps after which")]
    if len(answers):
        steps = [float(x) for x in str(answers["steps"].iloc[0]).split("-")]
        said = " ".join(f"{r['reading'].rstrip('.')} (*{r['verdict']}*)." for _, r in answers.iterrows())
        parts.append("**How the verdicts move with training length.** Where a comparison could depend on "
                     f"the budget, it was trained at lengths spanning {steps[-1] / steps[0]:.0f}x in steps. "
                     f"{said}"
                     + " A reading above that says \"at this budget\" is such a comparison: after more "
                       "steps it reads differently, so its verdict is a statement about its steps.")
    return "\n\n".join(parts)


def findings_03(claims: pd.DataFrame) -> str:
    """"What we found" for notebook 03, from its verdict rows (Fig. 2b, the theory, the layers)."""
    parts = []
    for v in CLIPPED:
        falls, theory = _find(claims, "Fig. 2b", label(v) + " ("), _find(claims, "Theory", label(v) + " (")
        if falls is None or theory is None:
            continue
        parts.append(f"**The best λ against the batch, {v}.** Fig. 2b's trend {HOLDS[falls['verdict']]}: "
                     f"{_say(falls)}. The step-bound theory (λ* ∝ 1/B, a slope of -1) "
                     f"{HOLDS[theory['verdict']]}: {_say(theory)}.")
    layers = claims[claims["claim"].str.startswith("§4.1")]
    if len(layers):
        said = []
        for _, r in layers.iterrows():
            what, where = r["claim"].removeprefix("§4.1: ").replace(DEPARTURE, "").split(", ", 1)
            said.append(f"\"{what}\" ({where.split(' (')[0]}) {HOLDS[r['verdict']]}: {_say(r)}.")
        parts.append("**Which layers to clip.** Each arm changes one thing against its base: a stage left "
                     "unclipped keeps its skip gains clipped, and the same arms run again on the base whose "
                     "skip gains are unclipped. " + " ".join(said))
    return "\n\n".join(parts)
