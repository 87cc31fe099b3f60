r"""Notebook 08: strong augmentation without normalization (NFNets abstract, §4, Table 2).

The paper's claims: normalizer-free nets "are often unstable for large learning rates or strong
data augmentations", and AGC overcomes this (§4: without AGC, NF-ResNets fail to train with strong
augmentation such as RandAugment); with AGC, MixUp, RandAugment and CutMix each add top-1 to
NFNet-F0 (Table 2: +0.9, +1.0, +0.4, added one after the other; ``paper_reference.csv``, T2).

Here, at small scale: the small NF ResNet without clipping, the same net with AGC, and its
BatchNorm twin, each trained with no augmentation, MixUp, CutMix, RandAugment, and all three
(the paper's recipe: MixUp on half the batch, CutMix on the other half, then RandAugment;
:mod:`nfrepro.data.augment`), at two batch sizes with :math:`\eta = 0.1 \cdot B / 256`, five seeds.
The runs go through the sweep layer (:mod:`nfrepro.experiments.sweep_plan`); the augmentation is
the plan's ``layers`` column (renamed ``augmentation`` in every table here). The mechanism is
measured, not asserted: :func:`ratio_trace` steps the unclipped NF net by hand and records, per
step, the quantity AGC bounds, :math:`\max_i \|G_i\| / \|W_i\|` over the units AGC would clip, with
the loss and the input's standard deviation after augmentation.

Departures, each stated where it is used:

* Fashion-MNIST at 28 px, a few thousand training images and tens of epochs, instead of ImageNet
  for 360 epochs (the :data:`SCALES` say how many);
* RandAugment: the paper's 4 layers at F0's level 5 (of 10) with torchvision's ops, whose
  geometric magnitudes are fractions of the image size (:mod:`nfrepro.data.augment`); no crop
  or flip, so "none" really is no augmentation;
* AGC leaves the SkipInit gains unclipped (``clip_exclude_skip_gains``): clipped as published, the
  zero-initialised gains barely move in a few hundred steps and the net trains as a shallow one
  (notebook 02 measures it). Its lambda per batch size follows the paper's rule (the larger the
  batch, the smaller lambda; 0.01 at 1024-4096) within the range notebook 02 found best for the
  same nets at the same learning rates (AGC bounds a unit's relative step by about lr x lambda);
* Table 2 adds the augmentations one after the other (MixUp, then RandAugment, then CutMix); here
  each is compared alone with no augmentation, and all three together with none.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd
import torch

from nfrepro.analysis import verdicts
from nfrepro.analysis.reference import paper_value
from nfrepro.data.augment import Augment
from nfrepro.data.datasets import load_dataset
from nfrepro.engine.config import TrainConfig
from nfrepro.engine.sweep import apply_overrides
from nfrepro.engine.training import build_run, train_step
from nfrepro.experiments.sweep_plan import Scale, make_plan, per_run, run_overrides, train_losses
from nfrepro.optim.agc import EPS, AGCSelection, clip_parameters, unitwise_norm

NF, AGC, BN = "NF", "NF + AGC", "BN"
NETS: dict[str, dict[str, Any]] = {  # label -> TrainConfig overrides
    NF: {"model": "nf_resnet_small"},
    AGC: {"model": "nf_resnet_small", "clip_exclude_skip_gains": True},  # a departure: docstring
    BN: {"model": "bn_resnet_small"},
}
ARM_SELECTION = AGCSelection(exclude_skip_gains=True)  # what the NF + AGC arm clips
RA_LAYERS = 4                                                    # the paper's, every variant (T1)
RA_LEVEL = int(paper_value("randaugment_magnitude", "NFNet-F0"))  # F0's level 5: the smallest net's
NONE, MIXUP, CUTMIX, RANDAUGMENT, ALL = "none", "MixUp", "CutMix", "RandAugment", "all three"
AUGMENTATIONS: dict[str, dict[str, Any]] = {  # label -> TrainConfig overrides
    NONE: {},
    MIXUP: {"mix": "mixup"},
    CUTMIX: {"mix": "cutmix"},
    RANDAUGMENT: {"randaugment": [RA_LAYERS, RA_LEVEL]},
    ALL: {"mix": "mixup_cutmix", "randaugment": [RA_LAYERS, RA_LEVEL]},  # the paper's recipe
}
STRONG = (MIXUP, CUTMIX, RANDAUGMENT, ALL)
# Table 2 (F0): top-1 before and after each augmentation, added in this order
T2_ROWS = [("NFNet-F0 (+ second conv)", None), ("NFNet-F0 (+ MixUp)", MIXUP),
           ("NFNet-F0 (+ RandAugment)", RANDAUGMENT), ("NFNet-F0 (+ CutMix)", CUTMIX)]
RUNS = "strong_augmentation"  # the sweep's folder: sweep_plan.runs_dir(RUNS, profile)


@dataclass(frozen=True, kw_only=True)
class AugScale(Scale):
    """A :class:`~nfrepro.experiments.sweep_plan.Scale` with AGC's lambda for each batch size (in the
    order of ``batch_sizes``) and the length of the mechanism's traces."""
    clippings: tuple[float, ...]
    trace_steps: int = 40


SCALES: dict[str, AugScale] = {
    # toy: synthetic images, one batch size, two seeds (an interval needs two), in-process
    "smoke": AugScale(dataset="synthetic", widths=(4, 8, 16), depths=(1, 1, 1), epochs=2, warmup_epochs=0.5,
                      batch_sizes=(32,), clippings=(0.16,), seeds=(0, 1), train_subset=128, test_subset=128,
                      ema_decay=None, threads=1, trace_steps=3),
    # 2-core CPU: 1,000 Fashion-MNIST images for 15 epochs (the regime in which a net overfits, so
    # that augmentation can pay), warmup 2 epochs, the small nets of notebooks 02 and 06 (one block
    # per stage, the ImageNet stem), batch 128 (the unclipped NF net trains) and 512 (4x the
    # learning rate; 2 steps an epoch), five seeds, 2,000 test images at the end, two runs at a
    # time: notebooks 08 + 09 within 20 minutes
    "cpu": AugScale(dataset="fashion_mnist", widths=(16, 16, 32), depths=(1, 1, 1), small_stem=False,
                    epochs=15, warmup_epochs=2.0, batch_sizes=(128, 512), clippings=(0.16, 0.04),
                    seeds=(0, 1, 2, 3, 4), train_subset=1000, test_subset=2000, ema_decay=None, workers=2,
                    trace_steps=40, extra={"eval_every": 15}),
    # one GPU: CIFAR-10, wider nets, the paper's batch 1024 and a quarter of it
    "gpu": AugScale(dataset="cifar10", widths=(64, 128, 256), depths=(2, 2, 2), epochs=60, warmup_epochs=5.0,
                    batch_sizes=(256, 1024), clippings=(0.04, 0.01), seeds=(0, 1, 2, 3, 4), crop_padding=4,
                    flip=True, ema_decay=None, trace_steps=100, extra={"eval_every": 10}),
}


def clipping_for(scale: AugScale, batch_size: int) -> float:
    return dict(zip(scale.batch_sizes, scale.clippings, strict=True))[batch_size]


def plan(scale: AugScale) -> pd.DataFrame:
    """Every net with every augmentation at every batch size and seed (AGC at its lambda)."""
    return make_plan({"variant": net, "layers": aug, "batch_size": b,
                      "clipping": clipping_for(scale, b) if net == AGC else np.nan, "seed": s}
                     for net in NETS for aug in AUGMENTATIONS for b in scale.batch_sizes for s in scale.seeds)


def configs(plan_: pd.DataFrame, scale: AugScale) -> dict[str, TrainConfig]:
    """The TrainConfig of every planned run by its folder name (the ``run`` column of the tables):
    what the verdicts' setting columns are read from."""
    out = {}
    for spec in plan_.to_dict("records"):
        config = apply_overrides(scale.base_config(), run_overrides(spec, NETS, AUGMENTATIONS))
        out[Path(config.run_dir).name] = config
    return out


def budget(scale: AugScale, cfgs: Mapping[str, TrainConfig]) -> pd.DataFrame:
    """What every run of each batch size is given (the verdicts' setting columns), and AGC's lambda."""
    rows = []
    for b in scale.batch_sizes:
        setting = verdicts.setting_of([c for c in cfgs.values() if c.batch_size == b], seeds=len(scale.seeds))
        agc = f"NF + AGC: λ={clipping_for(scale, b):g}, skip gains unclipped"
        rows.append({**setting.row(), "clipping": agc})
    return pd.DataFrame(rows)


def runs_table(tidy: pd.DataFrame) -> pd.DataFrame:
    """One row per run (:func:`~nfrepro.experiments.sweep_plan.per_run`), the augmentation named, with
    its final training loss (``train_loss``: on the augmented, mixed targets where it mixes)."""
    return (per_run(tidy).join(train_losses(tidy), on="run")
            .rename(columns={"layers": "augmentation", "variant": "net"}))


def summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Per batch size, net and augmentation: mean top-1 of the completed seeds, the mean score (a
    diverged seed at chance) and the divergence count with Wilson's interval of its rate."""
    g = (runs.groupby(["batch_size", "net", "augmentation"], sort=False)
         .agg(top1=("top1", "mean"), score=("score", "mean"), seeds=("seed", "nunique"),
              diverged=("diverged", "sum")).reset_index())
    rates = [verdicts.rate_ci(int(d), int(n)) for d, n in zip(g["diverged"], g["seeds"], strict=True)]
    g["diverged_ci_low"], g["diverged_ci_high"] = [r[1] for r in rates], [r[2] for r in rates]
    return g


def curves(tidy: pd.DataFrame, runs_dir: str | Path) -> pd.DataFrame:
    """Test top-1 at every evaluated epoch of every run (its folder's ``metrics.csv``): one row per
    run and evaluation, with the run's net, augmentation, batch size and seed."""
    frames = []
    for r in runs_table(tidy).itertuples():
        m = pd.read_csv(Path(runs_dir) / r.run / "metrics.csv")[["epoch", "test_top1"]].dropna()
        frames.append(m.assign(net=r.net, augmentation=r.augmentation, batch_size=r.batch_size, seed=r.seed))
    return pd.concat(frames, ignore_index=True)


def examples(scale: AugScale, n: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """The first ``n`` training images after each augmentation (one draw each; MixUp and CutMix mix
    every image with its neighbour in the batch), as ``N x H x W`` (or ``N x H x W x 3``) uint8."""
    data = load_dataset(scale.dataset, True, subset=n)
    out = {}
    for label, overrides in AUGMENTATIONS.items():
        ra = overrides.get("randaugment")
        augment = Augment(data.num_classes, mix=overrides.get("mix"), randaugment=tuple(ra) if ra else None,
                          seed=seed)
        x = augment(data.images.float(), data.labels)[0].clamp(0, 255).round().to(torch.uint8)
        out[label] = x.permute(0, 2, 3, 1).squeeze(-1).numpy()
    return out


# ----------------------------------------------------------------------------- verdicts
def _scores(runs: pd.DataFrame, batch: int, net: str, aug: str) -> pd.Series:
    g = runs[(runs["batch_size"] == batch) & (runs["net"] == net) & (runs["augmentation"] == aug)]
    return g.set_index("seed")["score"]


def _setting(cfgs: Mapping[str, TrainConfig], runs: pd.DataFrame, batch: int, nets: Iterable[str],
             augs: Iterable[str]) -> verdicts.Setting:
    keep = (runs["net"].isin(list(nets)) & runs["augmentation"].isin(list(augs))
            & (runs["batch_size"] == batch))
    chosen = [cfgs[run] for run in runs.loc[keep, "run"]]
    return verdicts.setting_of(chosen, seeds=int(runs.loc[keep, "seed"].nunique()))


def rate_row(claim: str, events: int, n: int, setting: verdicts.Setting, reading: str) -> dict:
    """A verdict row for a divergence rate (:func:`~nfrepro.analysis.verdicts.rate_claim_row`: Wilson's
    95% interval): reproduced when it excludes 0; contradicted when none of the runs diverged and the
    interval lies below 1/2 (most runs do not)."""
    return verdicts.rate_claim_row(claim, [True] * events + [False] * (n - events), setting, reading,
                                   contradicted_below=0.5)


def paper_gain(aug: str) -> float:
    """Table 2's top-1 gain of ``aug`` at F0 (the row minus the row before; all three: the sum)."""
    values = [paper_value("imagenet_top1", row) for row, _ in T2_ROWS]
    gains = {name: b - a for (_, name), a, b in zip(T2_ROWS[1:], values[:-1], values[1:], strict=True)}
    return sum(gains.values()) if aug == ALL else gains[aug]


def claims(runs: pd.DataFrame, cfgs: Mapping[str, TrainConfig]) -> list[dict]:
    """The verdict rows of notebook 08 (rule: :mod:`nfrepro.analysis.verdicts`); ``cfgs``: the runs'
    configurations by folder name (:func:`configs`)."""
    rows = []
    for b in sorted(runs["batch_size"].unique()):
        b = int(b)
        lr = f"batch {b}, peak lr {0.1 * b / 256:g}"
        n_none = _scores(runs, b, NF, NONE)
        nf_div = runs[(runs["batch_size"] == b) & (runs["net"] == NF)].groupby("augmentation")["diverged"]
        div = nf_div.sum().to_dict()
        seeds = int(nf_div.count().iloc[0])
        s = _setting(cfgs, runs, b, [NF], [ALL])
        rows.append(rate_row(
            f"{lr}: NF without AGC diverges with all three augmentations (rate of diverged runs)",
            int(div[ALL]), seeds, s,
            f"at {s.describe()}, {int(div[ALL])} of {seeds} unclipped NF runs diverged with all three "
            f"augmentations, against {int(div[NONE])} of {seeds} without augmentation."))
        for aug in STRONG:
            a_x, a_0 = _scores(runs, b, AGC, aug), _scores(runs, b, AGC, NONE)
            n_x = _scores(runs, b, NF, aug)
            did = ((a_x - n_x) - (a_0 - n_none)).dropna()
            s = _setting(cfgs, runs, b, [NF, AGC], [NONE, aug])
            est = did.mean()
            rows.append(verdicts.claim_row(
                f"{lr}: {aug} costs NF without AGC more than NF + AGC (AGC's lead over NF with {aug} minus "
                f"its lead without augmentation, top-1 points)", did, "greater", setting=s,
                reading=f"at {s.describe()}, {aug} {'widened' if est > 0 else 'narrowed'} NF + AGC's lead "
                        f"over the unclipped NF net by {abs(est):.1f} points on average (NF: "
                        f"{n_none.mean():.1f} -> {n_x.mean():.1f}; NF + AGC: {a_0.mean():.1f} -> "
                        f"{a_x.mean():.1f}; diverged seeds scored at chance)."))
        for net in (AGC, BN):
            for aug in STRONG:
                gain = (_scores(runs, b, net, aug) - _scores(runs, b, net, NONE)).dropna()
                s = _setting(cfgs, runs, b, [net], [NONE, aug])
                paper = paper_gain(aug)
                est = gain.mean()
                rows.append(verdicts.claim_row(
                    f"{lr}: {aug} adds top-1 to {net} (with {aug} minus without, points; paper T2, F0 with "
                    f"AGC: {paper:+.1f})", gain, "greater", setting=s,
                    reading=f"at {s.describe()}, {aug} {'added' if est > 0 else 'cost'} {net} {abs(est):.1f} "
                            f"points of top-1 on average, where Table 2 credits it with {paper:+.1f} at "
                            f"ImageNet scale."))
    return rows


def table2(runs: pd.DataFrame) -> pd.DataFrame:
    """Table 2 beside ours: per batch size and augmentation, NF + AGC's mean gain over no
    augmentation with its 95% interval, and the paper's gain at F0."""
    rows = []
    for b in sorted(runs["batch_size"].unique()):
        base = _scores(runs, b, AGC, NONE)
        for aug in STRONG:
            est, low, high, n = verdicts.mean_ci((_scores(runs, b, AGC, aug) - base).dropna())
            rows.append({"batch_size": int(b), "augmentation": aug, "ours": est, "ci_low": low,
                         "ci_high": high, "n": n, "paper_T2_F0": paper_gain(aug)})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the mechanism
@torch.no_grad()
def unit_ratios(model: torch.nn.Module, selection: AGCSelection = ARM_SELECTION,
                eps: float = EPS) -> torch.Tensor:
    r"""Every filter's :math:`\|G_i\| / \max(\|W_i\|, \epsilon)`, from the gradients now in ``.grad``:
    the quantity AGC bounds by lambda, for every conv and linear weight the NF + AGC arm clips (all
    but the classifier's). For SGD it is the relative size of the filter's next step over the
    learning rate. Biases and gains are left out: zero-initialised, their norm is floored at
    ``eps`` and their ratio measures the floor, not a step relative to a weight."""
    ratios = [(unitwise_norm(p.grad) / unitwise_norm(p).clamp_min(eps)).flatten()
              for p in clip_parameters(model, selection) if p.grad is not None and p.ndim > 1]
    return torch.cat(ratios)


def ratio_trace(scale: AugScale, batch_size: int, augmentation: str, seed: int, net: str = NF,
                steps: int | None = None) -> pd.DataFrame:
    """Step the run (``net``, ``augmentation``, ``batch_size``, ``seed``) by hand, exactly as the engine
    builds it, for ``steps`` updates (default ``scale.trace_steps``); per step the loss, the learning
    rate, the input batch's standard deviation after augmentation and normalisation, and the
    largest, 99th-percentile and median filter ratio :func:`unit_ratios` before the update. Stops at
    a non-finite loss."""
    spec = {"variant": net, "layers": augmentation, "batch_size": batch_size, "seed": seed,
            "clipping": clipping_for(scale, batch_size) if net == AGC else np.nan}
    config = apply_overrides(scale.base_config(), run_overrides(spec, NETS, AUGMENTATIONS))
    parts = build_run(config)
    rows: list[dict[str, Any]] = []
    steps = steps or scale.trace_steps
    while len(rows) < steps:
        for x, y in parts.train_loader:
            if len(rows) >= steps:
                break
            record: dict[str, Any] = {"step": len(rows), "lr": parts.opt.param_groups[0]["lr"],
                                      "input_std": float(x.float().std())}

            def measure(r: dict = record) -> None:
                u = unit_ratios(parts.model)
                r.update(max_ratio=float(u.max()), p99_ratio=float(torch.quantile(u, 0.99)),
                         median_ratio=float(u.median()))

            loss = float(train_step(parts.net, parts.opt, x, y, parts.autocast, config.label_smoothing,
                                    before_step=measure))
            parts.sched.step()
            rows.append({**record, "loss": loss})
            if not np.isfinite(loss) or loss > config.max_loss:
                return pd.DataFrame(rows).assign(net=net, augmentation=augmentation, batch_size=batch_size,
                                                 seed=seed)
    return pd.DataFrame(rows).assign(net=net, augmentation=augmentation, batch_size=batch_size, seed=seed)


def traces(scale: AugScale, augmentations: Iterable[str] = (NONE, ALL), net: str = NF) -> pd.DataFrame:
    """:func:`ratio_trace` at the larger batch size for each augmentation and seed (same seed: same
    initial weights and batches, so each comparison is paired)."""
    big = max(scale.batch_sizes)
    return pd.concat([ratio_trace(scale, big, aug, s, net) for aug in augmentations for s in scale.seeds],
                     ignore_index=True)


def mechanism_claims(trace: pd.DataFrame, cfgs: Mapping[str, TrainConfig], runs: pd.DataFrame) -> list[dict]:
    """Per seed, the mean over the traced steps of log10 of the largest filter ratio and of the input's
    standard deviation, with all three augmentations minus without (the runs' own setting)."""
    big = int(trace["batch_size"].max())
    steps = int(trace["step"].max()) + 1
    s = _setting(cfgs, runs, big, [NF], [NONE, ALL])
    s = dataclasses.replace(s, steps=steps, epochs=round(s.epochs * steps / s.steps, 2))  # the traced steps
    rows = []
    for column, what in (("max_ratio", "the largest filter ratio ||G_i|| / ||W_i|| (what AGC bounds)"),
                         ("input_std", "the input batch's standard deviation after augmentation")):
        per = trace.assign(v=np.log10(trace[column])).groupby(["augmentation", "seed"])["v"].mean().unstack(0)
        d = (per[ALL] - per[NONE]).dropna()
        est = float(d.mean())
        rows.append(verdicts.claim_row(
            f"batch {big}, first {steps} steps: all three augmentations raise {what} of the unclipped NF net "
            f"(log10, with minus without)", d, "greater", setting=s,
            reading=f"over the first {steps} steps at batch {big}, all three augmentations multiplied {what} "
                    f"by {10 ** est:.2f} on average (paired seeds: same weights, same images before "
                    f"augmentation)."))
    return rows


# ----------------------------------------------------------------------------- in words
def _row(table: pd.DataFrame, text: str) -> pd.Series:
    """The verdict row whose claim contains ``text`` (the first)."""
    return table[table["claim"].str.contains(text, regex=False)].iloc[0]


def _said(row: pd.Series, digits: int = 1) -> str:
    return (f"{row['estimate']:+.{digits}f} (95% interval {row['ci_low']:+.{digits}f} to "
            f"{row['ci_high']:+.{digits}f}): **{row['verdict']}**")


def _lr(b: int) -> str:
    return f"batch {b}, peak lr {0.1 * b / 256:g}"


def findings(table: pd.DataFrame, summary: pd.DataFrame, t2: pd.DataFrame, curves: pd.DataFrame,
             runs: pd.DataFrame) -> str:
    """The numbers behind "What we found", in sentences: per batch size the scores and the
    instability verdicts, then Table 2 at this budget, how far the nets fitted their training images
    (``runs``: :func:`runs_table`), whether the runs were still climbing, and the mechanism."""
    out = []
    for b in sorted(summary["batch_size"].unique()):
        s = summary[summary["batch_size"] == b].set_index(["net", "augmentation"])

        def cell(net: str, aug: str, s: pd.DataFrame = s) -> str:
            r = s.loc[(net, aug)]
            return f"{r['score']:.1f}% ({int(r['diverged'])}/{int(r['seeds'])} diverged)"

        rate = _row(table, f"{_lr(b)}: NF without AGC diverges")
        did = {aug: _row(table, f"{_lr(b)}: {aug} costs NF") for aug in STRONG}
        worse = [a for a, r in did.items() if r["verdict"] == verdicts.REPRODUCED]
        better = [a for a, r in did.items() if r["verdict"] == verdicts.CONTRADICTED]
        wilson = f"{rate['ci_low']:.2f} to {rate['ci_high']:.2f}"
        out.append(
            f"**{_lr(b).capitalize()}, {rate['steps']} steps.** Without augmentation: NF {cell(NF, NONE)}, "
            f"NF + AGC {cell(AGC, NONE)}, BN {cell(BN, NONE)}. With all three: NF {cell(NF, ALL)}, "
            f"NF + AGC {cell(AGC, ALL)}, BN {cell(BN, ALL)} (mean score, a diverged seed at chance). "
            f"NF's divergence rate with all three {rate['estimate']:.2f} (Wilson {wilson}): "
            f"**{rate['verdict']}**. Augmentations that cost the unclipped NF net more than NF + AGC: "
            f"{', '.join(worse) or 'none'}; less: {', '.join(better) or 'none'} "
            f"(all three: {_said(did[ALL])}).")
    gains = []
    for r in t2.itertuples():
        row = _row(table, f"{_lr(r.batch_size)}: {r.augmentation} adds top-1 to {AGC}")
        paper = f"paper {r.paper_T2_F0:+.1f}"
        gains.append(f"{r.augmentation} at batch {r.batch_size} {_said(row)} ({paper})")
    out.append("**Table 2 at this budget**, NF + AGC with minus without, top-1 points: "
               + "; ".join(gains) + ".")
    plain = runs[runs["augmentation"] == NONE].groupby(["batch_size", "net"])["train_loss"].mean()
    fit = "; ".join(f"batch {b}: " + ", ".join(f"{n} {plain[(b, n)]:.2f}" for n in (NF, AGC, BN))
                    for b in sorted(runs["batch_size"].unique()))
    out.append(f"**Why they cost here.** Without augmentation the nets end with a training loss of {fit} "
               f"(cross-entropy, mean over seeds; {math.log(10):.2f} at chance): none has fitted its "
               "training images, so there is no overfitting for an augmentation to cure, and each one "
               "makes the same few steps' training task harder. Table 2's gains come from 360-epoch "
               "ImageNet runs in which the nets fit their data; a budget this short can show the costs "
               "of strong augmentation, not its benefit.")
    epochs = sorted(curves["epoch"].unique())
    if len(epochs) > 1:
        mean = curves.groupby(["augmentation", "epoch"])["test_top1"].mean()
        climb = {a: mean[(a, epochs[-1])] - mean[(a, epochs[-2])] for a in (NONE, ALL)}
        out.append(f"**Still climbing?** From epoch {epochs[-2]} to {epochs[-1]} the runs with all "
                   f"three augmentations gained {climb[ALL]:+.1f} points of test top-1 (mean over nets, "
                   f"batch sizes and seeds), those without {climb[NONE]:+.1f}.")
    ratio, std = _row(table, "raise the largest filter ratio"), _row(table, "raise the input batch")
    out.append(f"**Mechanism.** All three augmentations multiplied the unclipped NF net's largest filter "
               f"ratio ‖G_i‖/‖W_i‖ by {10 ** ratio['estimate']:.2f} (log10 {_said(ratio, 2)}) and the "
               f"input's standard deviation by {10 ** std['estimate']:.2f} (log10 {_said(std, 2)}).")
    return "\n\n".join(out)
