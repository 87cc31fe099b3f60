r"""Notebook 07: why clip unit-wise (NFNets, arXiv:2102.06171, §4).

AGC's premise: :math:`\|\Delta W\| / \|W\|` is the relative change one step makes to a layer, and
for SGD :math:`\Delta W = -\eta G`, so bounding :math:`\|G_i\| / \|W_i\|` per unit bounds how far one
step can move each unit, whatever the layer's scale (LARS, You et al. 2017, sets the step size from
the same ratio per layer; AGC clips the gradient with it, per unit, instead). Three measurements:

1. :func:`census` / :func:`track_clipping`: on real gradients of a small NF net during training,
   which units a unit-wise, a whole-tensor and a global-norm rule would clip at the same lambda;
2. ordinary gradient-norm clipping (``clip_grad_norm_``, :class:`~nfrepro.optim.norm_clipping.GradNormClip`)
   against AGC over thresholds and two batch sizes: NFNets §4 says the best threshold of ordinary
   clipping depends on the batch size (and depth, learning rate), AGC's much less;
3. AGC with AdamW against SGD: which lambda keeps AdamW stable, and how far below SGD's it sits
   (Adam's update is normalised per coordinate, so its step is not :math:`\eta G`: the ratio AGC
   bounds no longer is the relative size of the step).

Runs go through the sweep layer (:mod:`nfrepro.experiments.sweep_plan`: one resumable folder per
run, single-thread workers).
Departures: Fashion-MNIST, the small NF ResNet with the ImageNet stem, 2 epochs on 20,000 images;
the paper's ablations are on ImageNet with NF-ResNet-50/200.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from nfrepro.analysis import verdicts
from nfrepro.data.datasets import load_dataset
from nfrepro.data.loader import TensorLoader
from nfrepro.engine.training import train_step
from nfrepro.experiments.sweep_plan import Scale, make_plan
from nfrepro.models import create_model
from nfrepro.optim.agc import EPS, clip_parameters, unitwise_norm
from nfrepro.optim.recipe import make_optimizer, scaled_lr

AGC_SGD, NORM_SGD = "NF + AGC (SGD)", "NF + clip_grad_norm_ (SGD)"
AGC_ADAMW, ADAMW = "NF + AGC (AdamW)", "NF (AdamW)"
ADAMW_BASE_LR = 1e-3  # per 256 images (AdamW's usual 1e-3 at batch 256), scaled linearly like SGD's
METHODS: dict[str, dict[str, Any]] = {
    AGC_SGD: {"model": "nf_resnet_small"},
    NORM_SGD: {"model": "nf_resnet_small", "threshold_field": "clip_norm"},
    AGC_ADAMW: {"model": "nf_resnet_small", "optimizer": "adamw", "base_lr": ADAMW_BASE_LR},
    ADAMW: {"model": "nf_resnet_small", "optimizer": "adamw", "base_lr": ADAMW_BASE_LR},
}
THRESHOLDS = {  # what each method sweeps, per profile
    "smoke": {AGC_SGD: (0.01, 0.16), NORM_SGD: (0.25, 4.0), AGC_ADAMW: (0.001, 0.01)},
    "cpu": {AGC_SGD: (0.01, 0.04, 0.16), NORM_SGD: (0.25, 1.0, 4.0),
            AGC_ADAMW: (0.001, 0.004, 0.01, 0.04, 0.16)},
    "gpu": {AGC_SGD: (0.01, 0.02, 0.04, 0.08, 0.16), NORM_SGD: (0.1, 0.25, 1.0, 4.0, 16.0),
            AGC_ADAMW: (0.0005, 0.001, 0.004, 0.01, 0.04, 0.16)},
}
SCALES: dict[str, Scale] = {
    "smoke": Scale(dataset="synthetic", widths=(4, 8, 16), depths=(1, 1, 1), epochs=1, warmup_epochs=0.25,
                   batch_sizes=(16, 64), seeds=(0, 1), train_subset=128, test_subset=128, ema_decay=None,
                   threads=1),
    "cpu": Scale(dataset="fashion_mnist", widths=(16, 32, 64), depths=(2, 2, 2), small_stem=False, epochs=2,
                 warmup_epochs=0.25, batch_sizes=(128, 1024), seeds=(0, 1, 2), train_subset=20000,
                 ema_decay=None, workers=2),
    "gpu": Scale(dataset="cifar10", widths=(64, 128, 256), depths=(2, 2, 2), epochs=10, warmup_epochs=1.0,
                 batch_sizes=(256, 2048), seeds=(0, 1, 2), crop_padding=4, flip=True, ema_decay=None),
}
RUNS = "gradient_clipping"  # the sweep's folder: sweep_plan.runs_dir(RUNS, profile)


# ----------------------------------------------------------------------------- 1. which units get clipped
def _kind(name: str, p: torch.Tensor) -> str:
    leaf = name.rsplit(".", 1)[-1]
    if "skip_gain" in leaf:
        return "skip gain"
    if "gain" in leaf:
        return "WS gain"
    if "bias" in leaf:
        return "bias"
    return "weight (conv / linear)" if p.ndim > 1 else "other"


@torch.no_grad()
def census(model: nn.Module, clipping: float = 0.01, eps: float = EPS) -> pd.DataFrame:
    """For every clipped parameter (all but the classifier weight) with a gradient: its units and how
    many of them each rule would clip at ``clipping``:

    * ``unit``: AGC, :math:`\\|G_i\\| / \\max(\\|W_i\\|, \\epsilon) > \\lambda` per output unit;
    * ``tensor``: the same ratio for the whole tensor, which clips all its units or none;
    * ``global``: one ratio for the whole model, :math:`\\|G\\| / \\|W\\|` over every clipped parameter.
    """
    named = {id(p): n for n, p in model.named_parameters()}
    params = [p for p in clip_parameters(model) if p.grad is not None]
    g_all = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
    w_all = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p) for p in params]))
    global_clipped = bool(g_all / w_all.clamp_min(eps) > clipping)
    rows = []
    for p in params:
        units = unitwise_norm(p.grad) / unitwise_norm(p).clamp_min(eps)
        tensor = float(torch.linalg.vector_norm(p.grad) / torch.linalg.vector_norm(p).clamp_min(eps))
        n = units.numel()
        rows.append({"parameter": named[id(p)], "kind": _kind(named[id(p)], p), "units": n,
                     "unit": int((units > clipping).sum()), "tensor": n * int(tensor > clipping),
                     "global": n * int(global_clipped), "median_unit_ratio": float(units.median())})
    return pd.DataFrame(rows)


def track_clipping(scale: Scale, batch_size: int, clipping: float = 0.01, every: int = 5, seed: int = 0,
                   max_steps: int | None = None) -> pd.DataFrame:
    """Train the small NF net with AGC (SGD, the paper's recipe) for one epoch and take a
    :func:`census` of the raw gradients every ``every`` steps, before AGC clips them. Tidy: one row
    per step, parameter kind and rule, ``fraction`` = units that rule would clip."""
    torch.manual_seed(seed)
    data = load_dataset(scale.dataset, train=True, subset=scale.train_subset)
    model = create_model("nf_resnet_small", num_classes=data.num_classes, in_chans=data.images.shape[1],
                         widths=scale.widths, depths=scale.depths, small_stem=scale.small_stem)
    opt = make_optimizer(model, scaled_lr(0.1, batch_size), clipping=clipping)
    loader = TensorLoader(data, batch_size, shuffle=True, seed=seed)
    frames = []
    for step, (x, y) in enumerate(loader):
        if max_steps is not None and step >= max_steps:
            break
        def record(s: int = step) -> None:  # the gradients of step s, before the optimizer's step
            frames.append(census(model, clipping).assign(step=s))

        train_step(model, opt, x, y, before_step=record if step % every == 0 else None)
    df = pd.concat(frames, ignore_index=True)
    long = df.melt(id_vars=["step", "kind", "parameter", "units"], value_vars=["unit", "tensor", "global"],
                   var_name="rule", value_name="clipped")
    out = long.groupby(["step", "kind", "rule"], as_index=False)[["clipped", "units"]].sum()
    return out.assign(fraction=out["clipped"] / out["units"])


# ----------------------------------------------------------------------------- 2. and 3. the runs
def plan(scale: Scale, profile: str) -> pd.DataFrame:
    """Part 2: AGC and clip_grad_norm_ (SGD) over their thresholds at both batch sizes; part 3: AGC
    with AdamW over its lambdas and AdamW unclipped, at the larger batch size. Every seed."""
    grid = THRESHOLDS[profile]
    rows = [{"variant": m, "layers": "", "batch_size": b, "clipping": c, "seed": s}
            for m in (AGC_SGD, NORM_SGD) for b in scale.batch_sizes for c in grid[m] for s in scale.seeds]
    big = max(scale.batch_sizes)
    rows += [{"variant": AGC_ADAMW, "layers": "", "batch_size": big, "clipping": c, "seed": s}
             for c in grid[AGC_ADAMW] for s in scale.seeds]
    rows += [{"variant": ADAMW, "layers": "", "batch_size": big, "clipping": np.nan, "seed": s}
             for s in scale.seeds]
    return make_plan(rows)


def best_thresholds(runs: pd.DataFrame) -> pd.DataFrame:
    """Per method and batch size: the threshold with the highest mean score over seeds (ties: the
    smaller), the mean score at each threshold and the divergence rate with Wilson's interval."""
    g = (runs.dropna(subset=["clipping"]).groupby(["variant", "batch_size", "clipping"])
         .agg(mean_top1=("score", "mean"), seeds=("seed", "nunique"), diverged=("diverged", "sum"))
         .reset_index())
    rates = [verdicts.rate_ci(int(d), int(n)) for d, n in zip(g["diverged"], g["seeds"], strict=True)]
    g["divergence_ci_low"], g["divergence_ci_high"] = [r[1] for r in rates], [r[2] for r in rates]
    best = g.groupby(["variant", "batch_size"])["mean_top1"].transform("max")
    g["best"] = g["mean_top1"] == best
    first = g[g["best"]].groupby(["variant", "batch_size"])["clipping"].transform("min")
    g.loc[g["best"], "best"] = g.loc[g["best"], "clipping"] == first
    return g


def transfer_loss(runs: pd.DataFrame, method: str, best: pd.DataFrame) -> pd.Series:
    """Per seed: the top-1 lost, averaged over the two batch sizes, when each batch size uses the
    threshold that was best at the *other* batch size (0 when the best threshold does not move)."""
    sub = runs[runs["variant"] == method]
    batches = sorted(sub["batch_size"].unique())
    if len(batches) != 2:
        raise ValueError(f"transfer_loss needs two batch sizes, got {batches}")
    pick = best[(best["variant"] == method) & best["best"]].set_index("batch_size")["clipping"]
    losses = []
    for b, other in ((batches[0], batches[1]), (batches[1], batches[0])):
        at = sub[sub["batch_size"] == b].pivot_table(index="seed", columns="clipping", values="score")
        losses.append(at[pick[b]] - at[pick[other]])
    return (losses[0] + losses[1]) / 2


def claims(runs: pd.DataFrame, best: pd.DataFrame) -> list[dict]:
    """The verdict rows of notebook 07 (rule: :mod:`nfrepro.analysis.verdicts`)."""
    rows = [verdicts.claim_row("clip_grad_norm_'s best threshold transfers worse across batch sizes than "
                               "AGC's lambda (top-1 lost, clip_grad_norm_ minus AGC, per seed)",
                               (transfer_loss(runs, NORM_SGD, best)
                                - transfer_loss(runs, AGC_SGD, best)).dropna(),
                               "greater")]
    big = runs["batch_size"].max()

    def best_per_seed(method: str) -> pd.Series:
        at = runs[(runs["variant"] == method) & (runs["batch_size"] == big)].pivot_table(
            index="seed", columns="clipping", values="score")
        return at.idxmax(axis=1)  # ties: the first column, the smaller lambda

    sgd, adam = best_per_seed(AGC_SGD), best_per_seed(AGC_ADAMW)
    if len(sgd) and len(adam):
        rows.append(verdicts.claim_row(f"AdamW's best AGC lambda sits below SGD's at batch {big} "
                                       "(log2 of SGD's best over AdamW's best, per seed)",
                                       np.log2(sgd / adam).dropna(), "greater"))
    return rows


def describe(best: pd.DataFrame) -> list[str]:
    """One line per method and batch size: the best threshold and the divergence at each."""
    lines = []
    for (variant, batch), g in best.groupby(["variant", "batch_size"], sort=False):
        pick = g[g["best"]].iloc[0]
        div = ", ".join(f"{c:g}: {int(d)}/{int(n)}"
                        for c, d, n in zip(g["clipping"], g["diverged"], g["seeds"], strict=True))
        lines.append(f"{variant}, batch {batch}: best threshold {pick['clipping']:g} "
                     f"({pick['mean_top1']:.1f}% mean top-1); diverged runs per threshold: {div}")
    return lines
