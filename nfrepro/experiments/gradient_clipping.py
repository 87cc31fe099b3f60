r"""Notebook 07: why clip unit-wise (NFNets, arXiv:2102.06171, §4).

AGC's premise: :math:`\|\Delta W\| / \|W\|` is the relative change one step makes to a layer, and
for SGD :math:`\Delta W = -\eta G`, so bounding :math:`\|G_i\| / \|W_i\|` per unit bounds how far one
step can move each unit, whatever the layer's scale. §4 says the unit-wise ratio works better than a
layer-wise one (the ratio LARS, You et al. 2017, sets each layer's step from), and that the best
threshold of ordinary clipping depends on the batch size. Measured here:

1. :func:`track_clipping`: on the real gradients of the first epoch of an AGC run, which units the
   unit-wise, the whole-tensor and the global-norm rule would clip at the same lambda;
2. AGC as published (unit-wise), the same rule per tensor (layer-wise,
   :class:`~nfrepro.optim.norm_clipping.TensorwiseAGC`) and ``clip_grad_norm_``, each over its
   thresholds at two batch sizes: each at its best against the others, and how each best threshold
   transfers to the other batch size;
3. AGC with AdamW against unclipped AdamW. Adam's step :math:`m / \sqrt v` is unchanged when a
   coordinate's gradients are all multiplied by one constant :math:`c` (:math:`m \to cm`,
   :math:`\sqrt v \to c \sqrt v`), so rescaling a unit, which is all AGC does, is undone unless the
   factor swings from step to step (:func:`adam_rescale_check`).

Statistics (:mod:`nfrepro.analysis.verdicts`): divergence is its own outcome, a rate with Wilson's
interval per threshold; accuracies are compared per seed over the runs that trained, so a diverged
seed is left out of a difference instead of turning it into a tie. A method's best threshold is the
one with the fewest diverged runs, then the highest mean top-1; one at the end of its grid is
reported as "at least" / "at most". Runs go through :mod:`nfrepro.experiments.sweep_plan`.
Departures: Fashion-MNIST, the small NF ResNet with the ImageNet stem, 2 epochs on 10,000 images
(notebook 02: 60,000), the warmup rule of notebook 02; the paper used ImageNet and NF-ResNet-50/200.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from nfrepro.analysis import verdicts
from nfrepro.data.datasets import load_dataset
from nfrepro.engine.checkpoint import load_checkpoint
from nfrepro.engine.sweep import apply_overrides
from nfrepro.experiments import agc_ablation, why_no_batchnorm
from nfrepro.experiments.sweep_plan import PLAN_COLUMNS, Scale, make_plan, per_run, run_overrides
from nfrepro.optim.agc import adaptive_grad_clip_

AGC_SGD, AGC_TENSOR = "NF + AGC (SGD)", "NF + layer-wise AGC (SGD)"
NORM_SGD, AGC_ADAMW, ADAMW = "NF + clip_grad_norm_ (SGD)", "NF + AGC (AdamW)", "NF (AdamW)"
SGD_METHODS = (AGC_SGD, AGC_TENSOR, NORM_SGD)
ADAMW_BASE_LR = 1e-3  # per 256 images (AdamW's usual 1e-3 at batch 256), scaled linearly like SGD's
METHODS: dict[str, dict[str, Any]] = {
    AGC_SGD: {"model": "nf_resnet_small"},
    AGC_TENSOR: {"model": "nf_resnet_small", "agc_granularity": "tensor"},
    NORM_SGD: {"model": "nf_resnet_small", "threshold_field": "clip_norm"},
    AGC_ADAMW: {"model": "nf_resnet_small", "optimizer": "adamw", "base_lr": ADAMW_BASE_LR},
    ADAMW: {"model": "nf_resnet_small", "optimizer": "adamw", "base_lr": ADAMW_BASE_LR},
}
LAMBDAS = {"smoke": (0.01, 0.16), "cpu": (0.01, 0.04, 0.16), "gpu": agc_ablation.PAPER_CLIPPINGS}
THRESHOLDS = {  # what each method sweeps, per profile (AGC: lambda; clip_grad_norm_: max norm)
    p: {AGC_SGD: lams, AGC_TENSOR: lams, NORM_SGD: norms, AGC_ADAMW: adam}
    for p, lams, norms, adam in (("smoke", LAMBDAS["smoke"], (0.25, 4.0), (0.001, 0.16)),
                                 ("cpu", LAMBDAS["cpu"], (0.25, 1.0, 4.0), (0.001, 0.01, 0.16)),
                                 ("gpu", LAMBDAS["gpu"], (0.1, 0.25, 1.0, 4.0, 16.0),
                                  (0.0005, 0.001, 0.01, 0.04, 0.16)))}
TOLERANCE = 1.0  # points of top-1: "no measurable effect" means the interval lies within +-1


def warmup_like_02(profile: str, epochs: int) -> float:
    """Notebook 02's warmup rule: the same share of the run (cpu: 0.5 of 2 epochs)."""
    theirs = agc_ablation.SCALES[profile]
    return epochs * theirs.warmup_epochs / theirs.epochs


SCALES: dict[str, Scale] = {
    "smoke": Scale(dataset="synthetic", widths=(4, 8, 16), depths=(1, 1, 1), epochs=1,
                   warmup_epochs=warmup_like_02("smoke", 1), batch_sizes=(16, 64), seeds=(0, 1),
                   train_subset=128, test_subset=128, ema_decay=None, threads=1),
    # 2-core CPU, about 4 minutes quiet: the small nets of notebooks 02 and 06 (one block per stage,
    # the ImageNet stem), 10,000 training images (two thirds of notebook 02's 15,000), half the test
    # set, 2 epochs, batch 128 and 1024 (156 and 18 steps), three seeds, two runs at a time
    "cpu": Scale(dataset="fashion_mnist", widths=(16, 16, 32), depths=(1, 1, 1), small_stem=False, epochs=2,
                 warmup_epochs=warmup_like_02("cpu", 2), batch_sizes=(128, 1024), seeds=(0, 1, 2),
                 train_subset=10_000, test_subset=5_000, ema_decay=None, workers=2),
    "gpu": Scale(dataset="cifar10", widths=(64, 128, 256), depths=(2, 2, 2), epochs=10,
                 warmup_epochs=warmup_like_02("gpu", 10), batch_sizes=(256, 2048), seeds=(0, 1, 2),
                 crop_padding=4, flip=True, ema_decay=None),
}
RUNS = "gradient_clipping"  # the sweep's folder: sweep_plan.runs_dir(RUNS, profile)


# ----------------------------------------------------------------------------- 2. and 3. the runs
def plan(scale: Scale, profile: str) -> pd.DataFrame:
    """The SGD methods over their thresholds at every batch size; AGC with AdamW over its lambdas and
    AdamW unclipped at the largest batch size. Every seed."""
    grid = THRESHOLDS[profile]
    rows = [{"variant": m, "layers": "", "batch_size": b, "clipping": c, "seed": s}
            for m in SGD_METHODS for b in scale.batch_sizes for c in grid[m] for s in scale.seeds]
    big = max(scale.batch_sizes)
    rows += [{"variant": AGC_ADAMW, "layers": "", "batch_size": big, "clipping": c, "seed": s}
             for c in grid[AGC_ADAMW] for s in scale.seeds]
    rows += [{"variant": ADAMW, "layers": "", "batch_size": big, "clipping": np.nan, "seed": s}
             for s in scale.seeds]
    return make_plan(rows)


def best_thresholds(runs: pd.DataFrame) -> pd.DataFrame:
    """Per method, batch size and threshold: mean top-1 of the runs that trained, their number,
    the divergence rate with Wilson's 95% interval; ``best`` marks each method's and batch size's
    best threshold (fewest diverged, then highest mean top-1, then the smaller), ``edge`` says
    "at least" / "at most" where that best is the grid's largest / smallest value."""
    keys = ["variant", "batch_size"]
    g = (runs.dropna(subset=["clipping"]).groupby([*keys, "clipping"])
         .agg(mean_top1=("top1", "mean"), trained=("top1", "count"), seeds=("seed", "nunique"),
              diverged=("diverged", "sum")).reset_index())
    rates = [verdicts.rate_ci(int(d), int(n)) for d, n in zip(g["diverged"], g["seeds"], strict=True)]
    g["divergence_rate"], g["divergence_ci_low"], g["divergence_ci_high"] = zip(*rates, strict=True)
    order = g.sort_values([*keys, "diverged", "mean_top1", "clipping"],
                          ascending=[True, True, True, False, True])
    g["best"] = g.index.isin(order.groupby(keys).head(1).index)
    lo, hi = (g.groupby(keys)["clipping"].transform(f) for f in ("min", "max"))
    g["edge"] = np.where(g["best"] & (lo < hi) & (g["clipping"] == hi), "at least",
                         np.where(g["best"] & (lo < hi) & (g["clipping"] == lo), "at most", ""))
    return g


def _best(best: pd.DataFrame, method: str, batch: int) -> pd.Series:
    return best[(best["variant"] == method) & (best["batch_size"] == batch) & best["best"]].iloc[0]


def _top1(runs: pd.DataFrame, method: str, batch: int, threshold: float | None = None) -> pd.Series:
    """Top-1 per seed (NaN: diverged) of ``method`` at ``batch`` and ``threshold`` (None: unclipped)."""
    sub = runs[(runs["variant"] == method) & (runs["batch_size"] == batch)]
    sub = sub[sub["clipping"].isna()] if threshold is None else sub[np.isclose(sub["clipping"], threshold)]
    return sub.set_index("seed")["top1"]


def paired(runs: pd.DataFrame, best: pd.DataFrame, a: str, b: str, batch: int) -> pd.Series:
    """Per seed, top-1 of ``a`` at its best threshold minus ``b`` at its best, over the seeds where
    both trained (their divergence rates are reported apart: :func:`best_thresholds`)."""
    return (_top1(runs, a, batch, _best(best, a, batch)["clipping"])
            - _top1(runs, b, batch, _best(best, b, batch)["clipping"])).dropna()


def transfer_loss(runs: pd.DataFrame, method: str, best: pd.DataFrame) -> pd.Series:
    """Per seed: the top-1 lost, averaged over the two batch sizes, when each batch size uses the
    threshold that was best at the *other* batch size (0 when the best threshold does not move);
    seeds with a diverged run at either threshold are left out (:func:`best_thresholds` counts them)."""
    batches = sorted(runs.loc[runs["variant"] == method, "batch_size"].unique())
    if len(batches) != 2:
        raise ValueError(f"transfer_loss needs two batch sizes, got {batches}")
    pick = {b: _best(best, method, b)["clipping"] for b in batches}
    losses = [_top1(runs, method, b, pick[b]) - _top1(runs, method, b, pick[o])
              for b, o in ((batches[0], batches[1]), (batches[1], batches[0]))]
    return ((losses[0] + losses[1]) / 2).dropna()


SHORT = {AGC_SGD: "unit-wise AGC", AGC_TENSOR: "layer-wise AGC", NORM_SGD: "clip_grad_norm_"}
COMPARISONS = ((AGC_SGD, AGC_TENSOR, "§4: unit-wise AGC beats layer-wise AGC"),
               (AGC_SGD, NORM_SGD, "AGC beats clip_grad_norm_"))  # (a, b, claim): a - b > 0


def _threshold(row: pd.Series) -> str:
    return f"{row['edge'] + ' ' if row['edge'] else ''}{row['clipping']:g}"


def _side(method: str, row: pd.Series) -> str:
    diverged = f"{int(row['diverged'])}/{int(row['seeds'])} diverged"
    return f"{SHORT[method]} (threshold {_threshold(row)}, {diverged})"


def _setting(base: Any, arms: list[tuple[str, int, float | None]], seeds: int) -> verdicts.Setting:
    """The setting of the compared runs: (method, batch size, threshold or None) each."""
    configs = [apply_overrides(base, run_overrides({"variant": m, "layers": "", "batch_size": b, "seed": 0,
                                                    "clipping": np.nan if t is None else t}, METHODS))
               for m, b, t in arms]
    return verdicts.setting_of(configs, seeds=seeds)


def claims(runs: pd.DataFrame, best: pd.DataFrame, scale: Scale) -> list[dict]:
    """The verdict rows of notebook 07 (rule: :mod:`nfrepro.analysis.verdicts`), each with the setting
    of its runs and a one-sentence reading written from the numbers."""
    base, batches, rows = scale.base_config(), sorted(runs["batch_size"].unique()), []

    def add(claim: str, diffs: pd.Series, arms: list, reading: Any, **kw: Any) -> None:
        setting = _setting(base, arms, len(diffs))
        est, low, high, n = verdicts.mean_ci(diffs)
        where = f"at {setting.describe()}"
        said = reading(where, est, f"[{low:.1f}, {high:.1f}]") if n else f"{where}, no seed trained on both"
        rows.append(verdicts.claim_row(claim, diffs, setting=setting, reading=said, **kw))

    for a, b, claim in COMPARISONS:
        for batch in batches:
            ra, rb = _best(best, a, batch), _best(best, b, batch)
            sides = (_side(a, ra), _side(b, rb))
            add(f"{claim} at batch {batch}, each at its best threshold ({SHORT[a]} - {SHORT[b]}, top-1)",
                paired(runs, best, a, b, batch), [(a, batch, ra["clipping"]), (b, batch, rb["clipping"])],
                lambda where, est, ci, x=sides: (f"{where}, {x[est < 0]} leads {x[est >= 0]} by "
                                                 f"{abs(est):.1f} points {ci}" if round(est, 1) else
                                                 f"{where}, {x[0]} and {x[1]} tie: {est:+.1f} points {ci}"))
    add("§4: clip_grad_norm_'s best threshold transfers worse across batch sizes than AGC's lambda (top-1 "
        "lost, clip_grad_norm_ minus AGC, per seed)",
        (transfer_loss(runs, NORM_SGD, best) - transfer_loss(runs, AGC_SGD, best)).dropna(),
        [(m, b, _best(best, m, b)["clipping"]) for m in (AGC_SGD, NORM_SGD) for b in batches],
        lambda where, est, ci: (f"{where}, using the other batch size's best threshold costs clip_grad_norm_ "
                                f"{est:+.1f} points {ci} more than it costs AGC"))
    big, plain = max(batches), _top1(runs, ADAMW, max(batches))
    lams = sorted(runs.loc[runs["variant"] == AGC_ADAMW, "clipping"].unique())
    if lams and len(plain):
        gaps = {lam: (_top1(runs, AGC_ADAMW, big, lam) - plain).dropna() for lam in lams}
        far = max(gaps, key=lambda k: abs(gaps[k].mean()))  # farthest from unclipped: the hard case
        add(f"AGC changes nothing measurable with AdamW at batch {big}: AGC + AdamW at the lambda farthest "
            f"from unclipped AdamW (λ={far:g}) minus AdamW, top-1 points (our claim, not the paper's)",
            gaps[far], [(AGC_ADAMW, big, far), (ADAMW, big, None)],
            lambda where, est, ci: (f"{where}, every AGC lambda with AdamW "
                                    f"({', '.join(f'{k:g}' for k in lams)}) lands within "
                                    f"{max(abs(g.mean()) for g in gaps.values()):.1f} points of "
                                    f"unclipped AdamW; the farthest, λ={far:g}, by {est:+.1f} {ci}"),
            kind="level", tolerance=TOLERANCE)
    return rows


def describe(best: pd.DataFrame) -> list[str]:
    """One line per method and batch size: the best threshold ("at least" / "at most" at a grid end)
    and the divergence rate at each threshold with its Wilson 95% interval."""
    lines = []
    for (variant, batch), g in best.groupby(["variant", "batch_size"], sort=False):
        pick = g[g["best"]].iloc[0]
        div = ", ".join(f"{r.clipping:g}: {int(r.diverged)}/{int(r.seeds)} [{r.divergence_ci_low:.0%}, "
                        f"{r.divergence_ci_high:.0%}]" for r in g.itertuples())
        lines.append(f"{variant}, batch {batch}: best threshold {_threshold(pick)} ({pick['mean_top1']:.1f}% "
                     f"mean top-1 of {int(pick['trained'])} trained runs); diverged (Wilson 95%): {div}")
    return lines


# ----------------------------------------------------------------------------- the measured reasons
def run_details(tidy: pd.DataFrame, runs: pd.DataFrame, runs_dir: str | Path) -> pd.DataFrame:
    """Per run: the mean fraction of units clipped per step (``frac_clipped``) and the mean |skip
    gain| of its final weights (``skip_gain``, read from the run folder's checkpoint; NaN when it
    diverged): how far the residual branches opened (SkipInit gains start at 0)."""
    frac = tidy[tidy["metric"] == "mean_frac_clipped"].drop_duplicates("run").set_index("run")["value"]
    gains = []
    for r in runs.itertuples():
        path = Path(runs_dir) / r.run / "checkpoint.pt"
        state = load_checkpoint(path)["model"] if path.exists() and not r.diverged else {}
        found = [v.abs().mean() for k, v in state.items() if k.endswith("skip_gain")]
        gains.append(float(torch.stack(found).mean()) if found else math.nan)
    return runs[[*PLAN_COLUMNS, "run", "diverged", "top1", "steps"]].assign(
        frac_clipped=runs["run"].map(frac).to_numpy(), skip_gain=gains)


def adam_rescale_check(steps: int = 20, seed: int = 0) -> dict[str, float]:
    """AdamW on a random gradient sequence of a 4 x 8 weight, and on the same sequence with every
    unit's gradient multiplied by a constant 1e-3 (``constant``) or clipped by AGC at lambda = 1e-3,
    which here clips every unit at every step to norm lambda ||W_i|| (``agc``: a factor that follows
    1 / ||G_i|| from step to step): the change in the final weights, relative to how far they moved.
    The theory (module docstring) predicts about 0 for ``constant``; ``agc`` only reweights steps."""
    grads = torch.randn(steps, 4, 8, generator=torch.Generator().manual_seed(seed))
    final = {}
    for name in ("none", "constant", "agc"):
        p = nn.Parameter(torch.ones(4, 8))
        opt = torch.optim.AdamW([p], lr=1e-2)
        for g in grads:
            p.grad = g * 1e-3 if name == "constant" else g.clone()
            if name == "agc":
                adaptive_grad_clip_([p], 1e-3)
            opt.step()
        final[name] = p.detach().clone()
    moved = float((final["none"] - 1).abs().max())
    return {k: float((final[k] - final["none"]).abs().max()) / moved for k in ("constant", "agc")}


def budget_table(profile: str) -> pd.DataFrame:
    """The budgets of notebooks 02, 06 and 07 at ``profile``, computed as the engine does (steps per
    epoch = images // batch; warmup = round(warmup epochs x steps per epoch)): why their numbers differ."""
    rows = []
    for name, s in (("02 (AGC vs batch size)", agc_ablation.SCALES[profile]),
                    ("06 (why no BatchNorm)", why_no_batchnorm.SCALES[profile]),
                    ("07 (this one)", SCALES[profile])):
        images = s.train_subset or verdicts.TRAIN_IMAGES.get(s.dataset) or len(load_dataset(s.dataset))
        per = [images // b for b in s.batch_sizes]
        rows.append({"notebook": name, "data": s.dataset, "train images": images,
                     "test images": s.test_subset or "all", "epochs": s.epochs,
                     "batch": " / ".join(map(str, s.batch_sizes)),
                     "steps": " / ".join(str(s.epochs * n) for n in per),
                     "warmup steps": " / ".join(str(round(s.warmup_epochs * n)) for n in per),
                     "peak lr (SGD)": " / ".join(f"{0.1 * b / 256:g}" for b in s.batch_sizes),
                     "seeds": len(s.seeds)})
    return pd.DataFrame(rows)


def notebook02_agc(results_csv: str | Path, batch: int) -> dict[str, float] | None:
    """Notebook 02's AGC at ``batch`` from its results (None when absent): the best mean top-1 over
    its lambdas, as published (``agc``) and with the skip gains unclipped (``free_gains``), and its steps."""
    runs = per_run(pd.read_csv(results_csv)) if Path(results_csv).exists() else pd.DataFrame()
    runs = runs[runs["batch_size"] == batch] if len(runs) else runs
    if runs.empty:
        return None
    means = runs.groupby(["variant", "clipping"])["top1"].mean()
    top = {k: float(means[v].max()) if v in means else math.nan
           for k, v in (("agc", agc_ablation.AGC), ("free_gains", agc_ablation.AGC_FREE_GAINS))}
    return {**top, "steps": int(runs["steps"].max())}


def findings(table: pd.DataFrame, details: pd.DataFrame, facts: dict[str, Any], adam: dict[str, float],
             best: pd.DataFrame, other: dict[str, float] | None = None) -> str:
    """'What we found', in Markdown, written from the verdicts, the runs (:func:`run_details`) and
    the census (:func:`~nfrepro.experiments.clipping_census.census_facts`); ``other``: notebook 02's
    AGC at the smaller batch size (:func:`notebook02_agc`)."""
    def said(prefix: str) -> str:
        return " ".join(f"Batch {r.batch_size}: **{r.verdict}**; {r.reading}." for r in table.itertuples()
                        if r.claim.startswith(prefix))

    small, f = int(min(best["batch_size"])), facts
    here = details[details["batch_size"] == small]

    def gain(method: str) -> float:
        d = here[here["variant"] == method]
        at = np.isclose(d["clipping"], _best(best, method, small)["clipping"])
        return float(d.loc[at, "skip_gain"].mean())

    out = [f"**Unit-wise against layer-wise AGC (§4).** {said(COMPARISONS[0][2])} What the census shows: "
           f"on weight matrices and filter banks the unit-wise rule clipped {f['weight_unit']:.0%} of the "
           f"units per step and the whole-tensor rule {f['weight_tensor']:.0%}; on biases, gains and skip "
           "gains (one unit each) the two are the same rule, so only the weight matrices tell them apart. "
           f"Both held the skip gains down alike (mean |skip gain| at batch {small}: {gain(AGC_SGD):.2g} "
           f"unit-wise, {gain(AGC_TENSOR):.2g} layer-wise), which at this budget weighs more than the "
           "weight matrices; more steps, or the gains left unclipped (notebook 02's departure), would let "
           "the weight matrices decide.",
           f"**AGC against clip_grad_norm_, each at its best.** {said(COMPARISONS[1][2])} Mean |skip gain| "
           f"after training at batch {small}, each at its best threshold: {gain(AGC_SGD):.3f} with AGC, "
           f"{gain(AGC_TENSOR):.3f} with layer-wise AGC, {gain(NORM_SGD):.3f} with clip_grad_norm_. "
           + ("AGC clips the SkipInit gains, which start at 0, against λ·eps (see the census below), so "
              "its residual branches stay nearly shut and the net trains almost as a shallow one; "
              "clip_grad_norm_ compares one global norm with a fixed number and lets them open."
              if gain(AGC_SGD) < gain(NORM_SGD) / 2 else "The skip gains opened alike under both rules.")]
    if other is not None:
        out[-1] += (f" Notebook 02 trains {other['steps']} steps at batch {small} (here "
                    f"{int(here['steps'].max())}): its AGC reached {other['agc']:.1f}% at its best λ (here "
                    f"{_best(best, AGC_SGD, small)['mean_top1']:.1f}%), and {other['free_gains']:.1f}% with "
                    "the skip gains left unclipped.")
    out += [f"**Does the best threshold transfer across batch sizes (§4)?** **{r.verdict}**; {r.reading}."
            for r in table.itertuples() if r.claim.startswith("§4: clip_grad_norm_'s best")]
    for r in table.itertuples():
        if r.claim.startswith("AGC changes nothing"):
            frac = details[details["variant"] == AGC_ADAMW].groupby("clipping")["frac_clipped"].mean()
            frac = details[details["variant"] == AGC_ADAMW].groupby("clipping")["frac_clipped"].mean()
            gains = details[details["batch_size"] == r.batch_size].groupby("variant")["skip_gain"].mean()
            moved = ("top-1 does not move" if r.verdict == verdicts.REPRODUCED else
                     "top-1 moves less than the seeds scatter (the interval is too wide to call it level)")
            out.append(f"**AdamW.** **{r.verdict}**; {r.reading}. AGC does clip there (at "
                       f"λ={frac.index[0]:g}, {frac.iloc[0]:.0%} of the units per step), and {moved}, as "
                       "Adam's per-coordinate normalisation predicts: multiplying a unit's gradients by a "
                       f"constant 1e-3 changed AdamW's weights by {adam['constant']:.0e} of their travel. "
                       "AGC's factor is not constant (it follows 1/‖G_i‖); on pure-noise gradients AGC "
                       f"changed them by {adam['agc']:.2f} of their travel: it reweights steps in time but "
                       "cannot shrink them. The skip gains show it: with AGC (mean over its λs) they "
                       f"reached {gains[AGC_ADAMW]:.2g} under AdamW ({gains[ADAMW]:.2g} unclipped) and "
                       f"{gains[AGC_SGD]:.2g} under SGD. AGC's "
                       "premise, a step of η G, is SGD's, not Adam's.")
    fire = (f"below λ until census step {f['global_first']}, then above it on {f['global_fired']} of the "
            f"{f['global_later']} census steps from there on" if f["global_first"] else
            f"above λ on {f['global_fired']} of {f['steps']} census steps")
    out.append(f"**The census (λ={f['clipping']:g}).** The global-norm rule takes one ratio for the whole "
               f"net, ‖G‖/‖W‖: {f['global_ratio_first']:.2g} at the first step, a median of "
               f"{f['global_ratio_median']:.2g} after; {fire}. When it fires it scales every gradient of "
               "the net by one factor, a smaller step for every layer alike: it clips all units or none, "
               "and cannot single out the layer whose step is too large. The scalar skip gains are "
               "clipped whenever |g| > λ·max(|w|, eps): their |w| stayed at most "
               f"{f['skip_w_max']:.1e} ({'below' if f['skip_w_max'] < f['eps'] else 'above'} eps = "
               f"{f['eps']:g}), so their threshold was at most {f['skip_threshold']:.0e}, while their "
               f"gradients were at least {f['skip_g_min']:.1e}: every step clips them, and each can move "
               "by at most about lr·λ·eps a step (momentum aside).")
    named = {v: "; ".join(re.split(r" \(|, each|: ", c.removeprefix("§4: "))[0]
                          for c in table.loc[table["verdict"] == v, "claim"]) or "none"
             for v in (verdicts.REPRODUCED, verdicts.CONTRADICTED, verdicts.NOT_RESOLVED)}
    return "\n\n".join([*out, "**In short**, at this budget (each row's setting is in the table): "
                         + ". ".join(f"*{v}*: {c}" for v, c in named.items()) + "."])
