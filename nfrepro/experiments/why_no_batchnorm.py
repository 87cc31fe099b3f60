r"""Notebook 06: why remove BatchNorm (NF-ResNet paper, arXiv:2101.08692, §1; NFNets §1-3, T6).

The NF-ResNet paper opens with the costs of batch normalization, which the NF nets avoid: batch
dependence (NF-ResNets "match BN ResNets at batch 1024, beat them at very small batches", NFNets
§3), two functions for training and test (batch statistics, running averages), examples that
depend on their batch-mates, and compute (T6: the BN NFNets are 20-40% slower to train; part 5 is
:mod:`nfrepro.experiments.batchnorm_cost`).

Batch dependence is read *within each family*: each net's top-1 at a very small batch against its
own best batch, and the difference between the two families' changes (a difference-in-differences,
paired by seed). Every batch trains on the same images with the linear rule ``lr = base B / 256``,
so a run's sum of step sizes, ``base x images processed / 256``, is the same at every batch; it
sets how far NF has trained (the gap ladder measures it). 0.4 on 15,000 images for 2 epochs gives
the sum of the paper's 0.1 on all 60,000 (a batch of 2 costs 15,000 steps instead of 60,000). The
absolute claims are judged on that budget, the moderate batch checking that NF reaches BN there
(:data:`ROLES`). Batches notebook 02 also trains run in its folders: an identical run is made once.

Departures: Fashion-MNIST at 28 px instead of ImageNet, a few thousand steps instead of 90 epochs,
base learning rate 0.4 (above); notebook 02's batch range, the paper's moved down three octaves
for the learning rate and steps (our 128 stands for 1024), while BatchNorm sees the actual batch.
"""
from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from nfrepro.analysis import verdicts
from nfrepro.data.datasets import load_dataset
from nfrepro.data.loader import TensorLoader
from nfrepro.engine.checkpoint import load_checkpoint
from nfrepro.engine.config import TrainConfig
from nfrepro.engine.sweep import apply_overrides
from nfrepro.experiments import agc_ablation
from nfrepro.experiments.agc_ablation import BN, METHODS, NF
from nfrepro.experiments.sweep_plan import (
    Scale,
    make_plan,
    per_run,
    run_overrides,
    run_plan,
    runs_dir,
    train_losses,
)
from nfrepro.models import create_model

FAMILIES = (BN, NF)
ARMS = {v: METHODS[v] for v in FAMILIES}  # the same nets as notebook 02's, unclipped
RUNS = "why_no_batchnorm"  # this notebook's run folders: sweep_plan.runs_dir(RUNS, profile)
TOLERANCE = 1.0  # points of top-1: "level" means the interval of the difference lies within +-1
SMALL = (2, 4)   # the very small batches of the within-family claim

SCALES: dict[str, Scale] = {
    # toy: a synthetic data set, four batch sizes, two seeds (an interval needs two)
    "smoke": Scale(dataset="synthetic", widths=(4, 8, 16), depths=(1, 1, 1), epochs=1, warmup_epochs=0.25,
                   batch_sizes=(2, 4, 16, 32), seeds=(0, 1), train_subset=64, test_subset=128, ema_decay=None,
                   threads=1),
    # 2-core CPU: 15,000 training images, 2 epochs at every batch (15,000 steps at batch 2, 58 at
    # 512), lr 0.4 B/256, warmup half an epoch; the small nets with one block per stage and the
    # ImageNet stem; five seeds, two runs at a time, no EMA (it never changes the scored weights)
    "cpu": Scale(dataset="fashion_mnist", train_subset=15_000, widths=(16, 16, 32), depths=(1, 1, 1),
                 small_stem=False, epochs=2, warmup_epochs=0.5, batch_sizes=(2, 4, 32, 128, 512),
                 seeds=(0, 1, 2, 3, 4), ema_decay=None, workers=2, extra={"base_lr": 0.4}),
    # one GPU: CIFAR-10 (10,000 images, 5 epochs), wider nets, from batch 2
    "gpu": Scale(dataset="cifar10", widths=(64, 128, 256), depths=(2, 2, 2), epochs=5, warmup_epochs=0.5,
                 batch_sizes=(2, 4, 32, 128, 512), seeds=(0, 1, 2, 3, 4), train_subset=10000, crop_padding=4,
                 flip=True, ema_decay=None, extra={"base_lr": 0.4}),
}


@dataclass(frozen=True)
class Roles:
    """Which batch of a sweep each absolute claim reads. ``moderate``: where NF should reach BN (the
    budget's own check, and the nets of parts 3-5); ``large``: the paper's "match BN at batch 1024";
    ``largest``: its "fall behind at 4096" without clipping (None: not run); ``rungs``: smaller
    training sets, trained at the moderate batch, how the NF - BN gap closes with the budget."""
    moderate: int
    large: int
    largest: int | None = None
    rungs: tuple[int, ...] = ()


ROLES: dict[str, Roles] = {
    "smoke": Roles(moderate=16, large=32, rungs=(32,)),
    # the rungs: 2,000 images at lr 0.4 hold the step-size sum of this notebook's earlier budget
    # (8,000 images for 2 epochs at 0.1); 6,000 lie between it and the sweep's 15,000
    "cpu": Roles(moderate=32, large=128, largest=512, rungs=(2000, 6000)),
    "gpu": Roles(moderate=32, large=128, largest=512, rungs=(2500, 5000)),
}


def plan(scale: Scale) -> pd.DataFrame:
    """BN and NF (unclipped) at every batch size and seed of ``scale``."""
    return _plan(scale.batch_sizes, scale.seeds)


def _plan(batch_sizes: Iterable[int], seeds: Iterable[int]) -> pd.DataFrame:
    """Smallest batch (the longest runs) first, NF (the slower step there) before BN, so that two
    workers finish together."""
    return make_plan({"variant": v, "layers": "", "batch_size": b, "clipping": np.nan, "seed": s}
                     for b in sorted(batch_sizes) for v in (NF, BN) for s in seeds)


def rung_scale(scale: Scale, images: int) -> Scale:
    """The sweep's recipe on ``images`` training images."""
    return dataclasses.replace(scale, train_subset=images)


def setting(scale: Scale, batch_sizes: Iterable[int], seeds: int) -> verdicts.Setting:
    """The setting of BN and NF runs on ``scale`` at ``batch_sizes`` (their TrainConfigs as
    :func:`run_plan` builds them)."""
    base, specs = scale.base_config(), _plan(sorted(set(batch_sizes)), [0]).to_dict("records")
    return verdicts.setting_of([apply_overrides(base, run_overrides(s, ARMS)) for s in specs], seeds=seeds)


def budget_table(scale: Scale, roles: Roles) -> pd.DataFrame:
    """Every planned run's budget, one row per (training set, batch): what the verdicts' settings
    are made of, for the notebook's set-up section."""
    parts = [(scale, b) for b in scale.batch_sizes]
    parts += [(rung_scale(scale, r), roles.moderate) for r in roles.rungs]
    return pd.DataFrame([{**setting(sc, [b], len(scale.seeds)).row(), "role": _role(roles, b, sc is scale)}
                         for sc, b in parts]).drop(columns="clipping")


def _role(roles: Roles, batch: int, full: bool) -> str:
    names = {roles.moderate: "moderate: NF should reach BN here", roles.large: "large (the paper's 1024)",
             roles.largest: "largest (the paper's 4096)", **{b: "very small" for b in SMALL}}
    return names.get(batch, "") if full else "smaller training set (how the gap closes)"


# ----------------------------------------------------------------------------- running
def run_sweep(scale: Scale, roles: Roles, profile: str, progress: bool = True) -> pd.DataFrame:
    """The sweep and its rungs, one tidy table with ``train_images``, ``epochs`` and ``runs`` (the
    run folders' name) added. Batches that notebook 02's profile also trains run in its folders
    (:func:`agc_ablation.sweep_dir`): an identical run is trained once; the rest in this notebook's."""
    theirs = set(agc_ablation.SCALES[profile].batch_sizes)
    shared = [b for b in scale.batch_sizes if b in theirs]
    own = [b for b in scale.batch_sizes if b not in theirs]
    tables = [_run(tiny_batch_scale(scale), _plan(own, scale.seeds), RUNS, profile, progress),
              _run(scale, _plan(shared, scale.seeds), agc_ablation.sweep_dir(profile).parent.name, profile,
                   progress)]
    tables += [_run(rung_scale(scale, r), _plan([roles.moderate], scale.seeds), RUNS, profile, progress)
               for r in roles.rungs]
    return pd.concat([t for t in tables if len(t)], ignore_index=True)


def tiny_batch_scale(scale: Scale) -> Scale:
    """``scale`` with PyTorch's own CPU convolutions instead of oneDNN's (``TrainConfig.onednn``): for
    these small nets at batch 2 and 4 a training step then takes 0.6-0.75x the time (measured on the
    2-core CPU; oneDNN wins from batch 32), and these are the sweep's longest runs. The same
    function is computed; the floating-point sums differ in their last bits."""
    return dataclasses.replace(scale, extra={**scale.extra, "onednn": False})


def _run(scale: Scale, plan: pd.DataFrame, name: str, profile: str, progress: bool) -> pd.DataFrame:
    if plan.empty:
        return pd.DataFrame()
    tidy = run_plan(plan, scale, runs_dir(name, profile), ARMS, progress=progress, workers=scale.workers)
    images = scale.train_subset or verdicts.TRAIN_IMAGES.get(scale.dataset)
    return tidy.assign(train_images=images, epochs=scale.epochs, runs=name)


def runs_of(tidy: pd.DataFrame, train_images: int | None = None) -> pd.DataFrame:
    """:func:`per_run` of :func:`run_sweep`'s table with ``train_images``, ``epochs``, ``runs`` and the
    final training loss; only the runs on ``train_images`` images when given."""
    extra = tidy.drop_duplicates("run").set_index("run")[["train_images", "epochs", "runs"]]
    out = per_run(tidy).join(extra, on="run").join(train_losses(tidy), on="run")
    return out if train_images is None else out[out["train_images"] == train_images]


def full(tidy: pd.DataFrame, scale: Scale) -> pd.DataFrame:
    """The sweep's own rows of :func:`run_sweep`'s table (not the rungs')."""
    return tidy[tidy["train_images"] == (scale.train_subset or verdicts.TRAIN_IMAGES.get(scale.dataset))]


# ----------------------------------------------------------------------------- 1. batch dependence
def _scores(runs: pd.DataFrame, family: str, batch: int) -> pd.Series:
    return runs[(runs["variant"] == family) & (runs["batch_size"] == batch)].set_index("seed")["score"]


def batch_table(tidy: pd.DataFrame) -> pd.DataFrame:
    """Per batch size and family: mean final top-1 over seeds with its 95% interval, and NF - BN
    paired by seed with its interval."""
    runs = per_run(tidy)
    rows = []
    for batch in sorted(runs["batch_size"].unique()):
        by = {v: _scores(runs, v, batch) for v in FAMILIES}
        for line, values in ((BN, by[BN]), (NF, by[NF]), ("NF - BN", (by[NF] - by[BN]).dropna())):
            mean, low, high, n = verdicts.mean_ci(values)
            rows.append({"batch_size": batch, "line": line, "top1": mean, "ci_low": low, "ci_high": high,
                         "n": n})
    return pd.DataFrame(rows)


def best_batch(runs: pd.DataFrame, family: str) -> int:
    """The batch size with the family's highest mean top-1 over seeds. Chosen on the same runs, so a
    change against it leans negative by about the seeds' noise; for a net that hardly moves with the
    batch that lean is all there is, so the difference-in-differences errs low, not high."""
    g = runs[runs["variant"] == family]
    return int(g.groupby("batch_size")["score"].mean().idxmax())


def within_family(tidy: pd.DataFrame, small: Iterable[int] = SMALL) -> dict[int, dict[str, Any]]:
    """For each very small batch ``b``: each family's best batch and per-seed change
    ``top1(b) - top1(best)``, and the difference-in-differences ``change_NF - change_BN`` per seed."""
    runs = per_run(tidy)
    best = {v: best_batch(runs, v) for v in FAMILIES}
    out = {}
    for b in small:
        change = {v: (_scores(runs, v, b) - _scores(runs, v, best[v])).dropna() for v in FAMILIES}
        out[b] = {"best": best, "change": change, "did": (change[NF] - change[BN]).dropna()}
    return out


def within_table(within: dict[int, dict[str, Any]]) -> pd.DataFrame:
    """:func:`within_family` as a table: each family's change and their difference, with intervals."""
    rows = []
    for b, w in within.items():
        for line, values, best in ((BN, w["change"][BN], w["best"][BN]), (NF, w["change"][NF], w["best"][NF]),
                                   ("NF change - BN change", w["did"], np.nan)):
            mean, low, high, n = verdicts.mean_ci(values)
            rows.append({"small_batch": b, "line": line, "best_batch": best, "change": mean, "ci_low": low,
                         "ci_high": high, "n": n})
    return pd.DataFrame(rows)


def _ci(values: pd.Series) -> str:
    _, low, high, _ = verdicts.mean_ci(values)
    return f"[{low:.1f}, {high:.1f}]"


def within_claims(within: dict[int, dict[str, Any]], scale: Scale,
                  tolerance: float = TOLERANCE) -> list[dict]:
    """Per very small batch ``b``: BN loses top-1 against its own best batch; NF keeps its own
    (level); BN's loss exceeds NF's (difference-in-differences > 0). Each with its runs' setting."""
    rows = []
    for b, w in within.items():
        bb, nb, did = w["best"][BN], w["best"][NF], w["did"]
        loss, keep = -w["change"][BN], w["change"][NF]
        claims = (
            (f"BN loses top-1 at batch {b} against its own best batch {bb} (points)", loss, "greater",
             [b, bb], f"BN scores {loss.mean():.1f} points {_ci(loss)} less at batch {b} than at {bb}"),
            (f"NF keeps its top-1 at batch {b} against its own best batch {nb} (level)", keep, "level",
             [b, nb], f"NF changes by {keep.mean():+.1f} points {_ci(keep)} from batch {nb} to batch {b}"),
            (f"BN's loss at batch {b} exceeds NF's (difference-in-differences, points)", did, "greater",
             [b, bb, nb], f"going to batch {b} costs BN {did.mean():.1f} points {_ci(did)} more than it "
                          f"costs NF, each against its own best batch"))
        for claim, values, kind, batches, text in claims:
            where = setting(scale, batches, len(values))
            if len(set(batches)) == 1:  # the small batch is the family's own best: no change by construction
                text += f" (batch {b} is its own best batch)"
            rows.append(verdicts.claim_row(claim, values, kind, tolerance=tolerance, setting=where,
                                           reading=f"at {where.describe()} ({where.epochs} epochs), {text}"))
    return rows


# ----------------------------------------------------------------------------- 2. absolute claims
def gap_ladder(tidy: pd.DataFrame, batch: int) -> pd.DataFrame:
    """NF - BN (paired by seed), each family's mean top-1 and final training loss at ``batch`` for
    every training-set size in :func:`run_sweep`'s table: one row per size."""
    runs = runs_of(tidy)
    runs = runs[runs["batch_size"] == batch]
    rows = []
    for size, g in runs.groupby("train_images"):
        by = {v: _scores(g, v, batch) for v in FAMILIES}
        mean, low, high, n = verdicts.mean_ci((by[NF] - by[BN]).dropna())
        loss = g.groupby("variant")["train_loss"].mean()
        rows.append({"train_images": int(size), "epochs": int(g["epochs"].iloc[0]), "batch_size": batch,
                     "BN": by[BN].mean(), "NF": by[NF].mean(), "NF - BN": mean, "ci_low": low,
                     "ci_high": high, "n": n, "BN train loss": loss.get(BN), "NF train loss": loss.get(NF)})
    return pd.DataFrame(rows)


def absolute_claims(tidy: pd.DataFrame, scale: Scale, roles: Roles,
                    tolerance: float = TOLERANCE) -> list[dict]:
    """The papers' absolute claims on the sweep's budget (NF - BN paired by seed): level at the
    moderate batch (the budget's own check) and at the large one, NF ahead at each very small
    batch, and NF behind at the largest (unclipped; a diverged run scores chance)."""
    runs = per_run(full(tidy, scale))
    checks = [(roles.moderate, "level", "NF level with BN at a moderate"),
              (roles.large, "level", "NF level with BN at a large"),
              *((b, "greater", "NF ahead of BN at a very small") for b in SMALL)]
    if roles.largest:
        checks.append((roles.largest, "behind", "NF behind BN, unclipped, at the largest"))
    rows = []
    for batch, kind, what in checks:
        d = (_scores(runs, NF, batch) - _scores(runs, BN, batch)).dropna()
        where = setting(scale, [batch], len(d))
        g = runs[(runs["batch_size"] == batch) & (runs["variant"] == NF)]
        side = "ahead of" if d.mean() > 0 else "behind"
        diverged = f"; {int(g['diverged'].sum())} of {len(g)} NF runs diverged" if g["diverged"].any() else ""
        rows.append(verdicts.claim_row(
            f"{what} batch ({batch}) (top-1 points, {'BN - NF' if kind == 'behind' else 'NF - BN'})",
            -d if kind == "behind" else d, "greater" if kind == "behind" else kind, tolerance=tolerance,
            setting=where, reading=f"at {where.describe()} ({where.epochs} epochs), NF is "
                                   f"{abs(d.mean()):.1f} points {_ci(d)} {side} BN{diverged}"))
    return rows


# ----------------------------------------------------------------------------- trained models
def load_run(run_dir: str | Path) -> tuple[nn.Module, TrainConfig]:
    """The final model of a finished run folder (``config.json`` + ``checkpoint.pt``), in eval mode."""
    run_dir = Path(run_dir)
    config = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    data = load_dataset(config.dataset, train=False, root=config.data_root, subset=8)
    model = create_model(config.model, num_classes=data.num_classes, in_chans=data.images.shape[1],
                         **config.model_kwargs)
    model.load_state_dict(load_checkpoint(run_dir / "checkpoint.pt", required=("model",))["model"])
    return model.eval(), config


def load_models(tidy: pd.DataFrame, scale: Scale, batch: int, profile: str,
                seeds: int = 3) -> dict[tuple[str, int], tuple[nn.Module, TrainConfig]]:
    """``{(family, seed): (model, config)}``: the sweep's nets trained at ``batch``, first ``seeds`` seeds."""
    runs = runs_of(full(tidy, scale))
    chosen = runs[(runs["batch_size"] == batch) & runs["seed"].isin(sorted(scale.seeds)[:seeds])
                  & ~runs["diverged"]]
    return {(r.variant, r.seed): load_run(runs_dir(r.runs, profile) / r.run) for r in chosen.itertuples()}


def test_batches(config: TrainConfig, batch_size: int, limit: int | None = None) -> TensorLoader:
    """The run's test split (first ``limit`` images), normalised as in training, in fixed order."""
    data = load_dataset(config.dataset, train=False, root=config.data_root, subset=limit)
    return TensorLoader(data, batch_size, shuffle=False)


@torch.no_grad()
def top1(model: nn.Module, batches, batch_statistics: bool) -> float:
    """Top-1 (%) with BatchNorm on its running averages (eval mode) or on each test batch's own
    statistics (train mode, as during training). Runs on a copy: running averages stay as they are."""
    model = copy.deepcopy(model)
    model.eval()
    if batch_statistics:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.train()
    correct = total = 0
    for x, y in batches:
        correct += int((model(x).argmax(1) == y).sum())
        total += int(y.numel())
    return 100.0 * correct / max(total, 1)


# ----------------------------------------------------------------------------- 3. train/test mismatch
def mode_table(models: dict[tuple[str, int], tuple[nn.Module, TrainConfig]], batch_sizes=(1, 128),
               limit: int | None = 500) -> pd.DataFrame:
    """Top-1 of each trained model with running averages and with batch statistics at each test batch
    size (the first ``limit`` test images). ``models[(family, seed)] = (model, config)``."""
    rows, threads = [], torch.get_num_threads()
    torch.set_num_threads(1)  # batches of 1 to 128 of these small nets: no thread waits on another
    try:
        for (family, seed), (model, config) in models.items():
            for b in batch_sizes:
                batches = test_batches(config, b, limit)
                rows += [{"family": family, "seed": seed, "test_batch": b, "top1": top1(model, batches, s),
                          "statistics": "batch (train mode)" if s else "running (eval mode)"}
                         for s in (False, True)]
    finally:
        torch.set_num_threads(threads)
    return pd.DataFrame(rows)


def mode_claims(table: pd.DataFrame, where: verdicts.Setting, tolerance: float = TOLERANCE) -> list[dict]:
    """Eval-mode minus train-mode top-1: BN loses with batch statistics at test batch 1 and agrees at
    the training batch; NF gives the same accuracy either way (``where``: the nets' training)."""
    single, train_batch = int(table["test_batch"].min()), int(table["test_batch"].max())
    rows = []
    for family, b, kind in ((BN, single, "greater"), (BN, train_batch, "level"), (NF, single, "level")):
        g = table[(table["family"] == family) & (table["test_batch"] == b)]
        wide = g.pivot_table(index="seed", columns="statistics", values="top1")
        d = wide["running (eval mode)"] - wide["batch (train mode)"]
        claim = (f"{family}: eval-mode minus train-mode top-1 at test batch {b} "
                 f"({'> 0' if kind == 'greater' else 'level'})")
        reading = (f"nets trained at {where.describe()}: at test batch {b} {family} scores {d.mean():.1f} "
                   f"points {_ci(d)} higher on running averages than on the test batch's own statistics")
        rows.append(verdicts.claim_row(claim, d, kind, tolerance=tolerance, setting=where, reading=reading))
    return rows


# ----------------------------------------------------------------------------- 4. independence
@torch.no_grad()
def batch_mate_effect(model: nn.Module, images: torch.Tensor, batch: int = 8, draws: int = 20,
                      seed: int = 0) -> pd.DataFrame:
    """How much example ``x0``'s logits change when its ``batch - 1`` batch-mates are replaced.

    ``draws`` times: pick ``x0`` and two disjoint sets of batch-mates from ``images``; run
    ``[x0, A]`` and ``[x0, B]`` in training mode (BatchNorm on batch statistics; dropout and
    stochastic depth are off in these nets) and in eval mode; record the largest change of x0's
    logits, relative to their largest magnitude. On a copy: running averages stay as they are.
    """
    model = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for draw in range(draws):
        idx = torch.randperm(len(images), generator=gen)[: 2 * batch - 1]
        x0, a, b = images[idx[:1]], images[idx[1:batch]], images[idx[batch:]]
        for mode in ("train", "eval"):
            model.train(mode == "train")
            out_a, out_b = model(torch.cat([x0, a]))[0], model(torch.cat([x0, b]))[0]
            rows.append({"draw": draw, "mode": mode, "max_change": float((out_a - out_b).abs().max()),
                         "relative_change": float((out_a - out_b).abs().max() / out_a.abs().max()),
                         "same_prediction": bool(out_a.argmax() == out_b.argmax())})
    return pd.DataFrame(rows)


def independence_claims(effects: dict[str, pd.DataFrame], where: verdicts.Setting) -> list[dict]:
    """BN (training mode): x0's logits move with its batch-mates (relative change > 1e-3); NF: they
    do not (relative change within 1e-5, float rounding)."""
    bn = effects[BN].query("mode == 'train'")["relative_change"]
    nf = effects[NF].query("mode == 'train'")["relative_change"]
    flips = int((~effects[BN].query("mode == 'train'")["same_prediction"]).sum())
    return [verdicts.claim_row("BN (training mode): relative change of x0's logits when its batch-mates "
                               "change (> 1e-3)", bn, "greater", margin=1e-3, setting=where,
                               reading=f"over {len(bn)} draws, x0's logits move by {bn.mean():.2f} of their "
                                       f"largest value (median {bn.median():.2f}); {flips} predictions flip"),
            verdicts.claim_row("NF (training mode): the same change (level within 1e-5)", nf, "level",
                               tolerance=1e-5, setting=where,
                               reading=f"over {len(nf)} draws, the largest relative change of x0's logits is "
                                       f"{nf.max():.1g}")]


# ----------------------------------------------------------------------------- what we found
PARTS = (("Batch dependence, within each family", ("BN loses", "NF keeps", "BN's loss")),
         ("The absolute claims, where NF trains", ("NF level with BN", "NF ahead of BN", "NF behind BN")),
         ("Train and test", ("BN: eval", "NF: eval")), ("Independence", ("BN (training", "NF (training")),
         ("Compute", ("BatchNorm's share", "NF's training step")))


def findings(table: pd.DataFrame, ladder: pd.DataFrame, tidy: pd.DataFrame, scale: Scale, roles: Roles,
             notes: dict[str, list[str]] | None = None) -> str:
    """The closing section in words (Markdown), from the verdict table, the gap ladder
    (:func:`gap_ladder`) and the sweep's runs; ``notes[title]``: more lines under a part."""
    runs = runs_of(full(tidy, scale))
    gaps = ", ".join(f"{g['NF - BN']:+.1f} on {int(g.train_images):,}" for _, g in ladder.iterrows())
    absolute = [f"- NF - BN at batch {roles.moderate} by training images ({scale.epochs} epochs): {gaps}. "
                "Where the gap moves with the budget, an absolute comparison measures how far NF trained, "
                "not what BatchNorm does; the within-family change needs no such parity."]
    for b in (roles.large, roles.largest):
        g = runs[runs["batch_size"] == b].groupby("variant")
        if b is None or g.ngroups < 2:
            continue
        loss, diverged = g["train_loss"].mean(), g["diverged"].sum()
        fit = ("NF fits the training set less far than BN in these steps, so the gap is one of optimisation"
               if loss[NF] > loss[BN] + 0.02 else "NF fits the training set as far as BN")
        out = (f"{int(diverged[NF])} of {int(g.size()[NF])} NF runs diverged" if diverged[NF] else
               f"final training loss NF {loss[NF]:.3f}, BN {loss[BN]:.3f}: {fit}")
        absolute.append(f"- At batch {b}: {out}.")
    notes = {PARTS[1][0]: absolute, **(notes or {})}
    out = []
    for title, prefixes in PARTS:
        rows = table[table["claim"].str.startswith(prefixes)]
        out += [f"**{title}.**", *(f"- {r.reading[0].upper()}{r.reading[1:]}: *{r.claim}* is "
                                   f"**{r.verdict}**." for r in rows.itertuples()), *notes.get(title, [])]
    missing = table[table["verdict"] != verdicts.REPRODUCED]
    listed = "; ".join(f"*{c}* ({v})" for c, v in zip(missing["claim"], missing["verdict"], strict=True))
    out.append(f"**Not reproduced here:** {listed or 'none'}. The numbers beside each explain it.")
    return "\n".join(out)
