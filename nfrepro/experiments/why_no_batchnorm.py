r"""Notebook 06: why remove BatchNorm (NF-ResNet paper, arXiv:2101.08692, §1; NFNets §1-3, T6).

The NF-ResNet paper opens with the costs of batch normalization, which the NF nets avoid: batch
dependence (NF-ResNets "match BN ResNets at batch 1024, beat them at very small batches", NFNets
§3), two functions for training and test (batch statistics, running averages), examples that
depend on their batch-mates, and compute (T6: the BN NFNets are 20-40% slower to train; part 5 is
:mod:`nfrepro.experiments.batchnorm_cost`).

Batch dependence is read *within each family*: each net's top-1 at a very small batch against its
own best batch, and the difference between the two families' changes (a difference-in-differences,
paired by seed). A fixed budget of training images at every batch size with the paper's linear rule
``lr = 0.1 B / 256`` keeps the sum of the step sizes the same at every batch. That sweep
(:data:`SCALES`) is small, because a batch of 2 costs a step per 2 images; the absolute claims
need a budget where NF trains, so they are judged on :data:`BUDGETS` (cpu: notebook 02's data
budget, whose run folders they share, and a smaller rung that shows how the NF - BN gap closes
with the budget). Every other setting is notebook 02's recipe (a test holds the sweep to it).

Departures: Fashion-MNIST at 28 px instead of ImageNet, a few thousand steps instead of 90 epochs;
notebook 02's batch range is the paper's moved down one octave (its 512 stands for 1024).
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
from nfrepro.experiments.sweep_plan import Scale, make_plan, per_run, run_overrides, run_plan, runs_dir
from nfrepro.models import create_model

FAMILIES = (BN, NF)
ARMS = {v: METHODS[v] for v in FAMILIES}  # the same nets as notebook 02's, unclipped
RUNS = "why_no_batchnorm"  # this notebook's run folders: sweep_plan.runs_dir(RUNS, profile)
AGC_RUNS = "agc_sweep"     # notebook 02's (agc_ablation.sweep_dir)
TOLERANCE = 1.0  # points of top-1: "level" means the interval of the difference lies within +-1
SMALL = (2, 4)   # the very small batches of the within-family claim

SCALES: dict[str, Scale] = {
    # toy: a synthetic data set, three batch sizes, two seeds (an interval needs two)
    "smoke": Scale(dataset="synthetic", widths=(4, 8, 16), depths=(1, 1, 1), epochs=1, warmup_epochs=0.25,
                   batch_sizes=(2, 4, 16), seeds=(0, 1), train_subset=64, test_subset=128, ema_decay=None,
                   threads=1),
    # 2-core CPU: notebook 02's recipe (nets, 2 epochs, warmup 0.5 epoch) on 6,000 training images,
    # so 12,000 images per run at every batch (6,000 steps at batch 2); five seeds, two runs at a
    # time. EMA off: it never changes the trained weights that are scored, and costs a pass over
    # them every step.
    "cpu": Scale(dataset="fashion_mnist", widths=(16, 32, 64), depths=(2, 2, 2), small_stem=False, epochs=2,
                 warmup_epochs=0.5, batch_sizes=(2, 4, 16, 128), seeds=(0, 1, 2, 3, 4), train_subset=6000,
                 ema_decay=None, workers=2),
    # one GPU: CIFAR-10 (10,000 images, 5 epochs), wider nets, from batch 2
    "gpu": Scale(dataset="cifar10", widths=(64, 128, 256), depths=(2, 2, 2), epochs=5, warmup_epochs=0.5,
                 batch_sizes=(2, 4, 16, 64, 256), seeds=(0, 1, 2, 3, 4), train_subset=10000, crop_padding=4,
                 flip=True, ema_decay=None),
}


@dataclass(frozen=True)
class Budget:
    """The runs of the absolute claims: a ``scale`` on which NF trains, at a ``moderate`` and a
    ``large`` batch (and a very ``small`` one where affordable), ``seeds``; ``rungs``: smaller
    training sets at the moderate batch (same recipe), how the NF - BN gap closes with the budget.
    ``shared``: the run folders of that scale (notebook 02's), so runs already made are read back."""
    scale: Scale
    shared: str
    moderate: int
    large: int
    seeds: tuple[int, ...]
    small: int | None = None
    rungs: tuple[int, ...] = ()
    rung_seeds: tuple[int, ...] = ()


BUDGETS: dict[str, Budget] = {
    "smoke": Budget(dataclasses.replace(SCALES["smoke"], train_subset=256), shared=RUNS, moderate=16,
                    large=64, seeds=(0, 1), small=4, rungs=(128,), rung_seeds=(0, 1)),
    # notebook 02's runs at batch 128 and 512 (60,000 images, 2 epochs; read back when 02 ran first);
    # batch 4 on half of it (30,000 images) costs 15,000 steps a run, so three seeds there
    "cpu": Budget(agc_ablation.SCALES["cpu"], shared=AGC_RUNS, moderate=128, large=512,
                  seeds=(0, 1, 2, 3, 4), small=4, rungs=(30000,), rung_seeds=(0, 1, 2)),
    "gpu": Budget(agc_ablation.SCALES["gpu"], shared=AGC_RUNS, moderate=256, large=1024, seeds=(0, 1, 2),
                  small=4, rungs=(25000,), rung_seeds=(0, 1, 2)),
}


def rung_scale(budget: Budget, images: int) -> Scale:
    """The budget's recipe on ``images`` training images, no EMA (it never changes the scored weights)."""
    return dataclasses.replace(budget.scale, train_subset=images, ema_decay=None)


def plan(scale: Scale) -> pd.DataFrame:
    """BN and NF (unclipped) at every batch size and seed of ``scale``."""
    return _plan(scale.batch_sizes, scale.seeds)


def _plan(batch_sizes: Iterable[int], seeds: Iterable[int]) -> pd.DataFrame:
    """Smallest batch (the longest runs) first, NF (the slower step there) before BN, so that two
    workers finish together."""
    return make_plan({"variant": v, "layers": "", "batch_size": b, "clipping": np.nan, "seed": s}
                     for b in sorted(batch_sizes) for v in (NF, BN) for s in seeds)


def setting(scale: Scale, batch_sizes: Iterable[int], seeds: int) -> verdicts.Setting:
    """The setting of BN and NF runs on ``scale`` at ``batch_sizes`` (their TrainConfigs as
    :func:`run_plan` builds them)."""
    base, specs = scale.base_config(), _plan(sorted(set(batch_sizes)), [0]).to_dict("records")
    return verdicts.setting_of([apply_overrides(base, run_overrides(s, ARMS)) for s in specs], seeds=seeds)


def budget_table(scale: Scale, budget: Budget) -> pd.DataFrame:
    """Every planned run's budget, one row per (part, training set, batch): what the verdicts'
    settings are made of, for the notebook's set-up section."""
    rung_batches = sorted({budget.moderate, *([budget.small] if budget.small else [])})
    parts = [("1. within-family sweep", scale, scale.batch_sizes, scale.seeds, RUNS)]
    parts += [("2. rung", rung_scale(budget, r), rung_batches, budget.rung_seeds, RUNS) for r in budget.rungs]
    parts += [("2. where NF trains", budget.scale, (budget.moderate, budget.large), budget.seeds,
               budget.shared)]
    rows = []
    for part, sc, batches, seeds, folder in parts:
        for b in batches:
            row = setting(sc, [b], len(seeds)).row()
            rows.append({"part": part, **row, "run folders": f"runs/{folder}"})
    return pd.DataFrame(rows).drop(columns="clipping")


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


# ----------------------------------------------------------------------------- 2. a budget where NF trains
def run_budget(budget: Budget, profile: str, progress: bool = True) -> pd.DataFrame:
    """The absolute comparison's runs (:class:`Budget`): its moderate, large and small batch on the
    budget's scale (in the shared run folders), then each rung's training set at the moderate batch
    (in this notebook's). One tidy table with ``train_images`` and ``epochs`` added."""
    batches = [budget.moderate, budget.large]
    tables = [_run(budget.scale, _plan(batches, budget.seeds), runs_dir(budget.shared, profile), progress)]
    rung_batches = [budget.moderate, *([budget.small] if budget.small else [])]
    for images in budget.rungs:
        rung = rung_scale(budget, images)
        tables.append(_run(rung, _plan(rung_batches, budget.rung_seeds), runs_dir(RUNS, profile), progress))
    return pd.concat(tables, ignore_index=True)


def run_sweep(scale: Scale, profile: str, progress: bool = True) -> pd.DataFrame:
    """The within-family sweep (:func:`plan`) in this notebook's run folders, as :func:`_run` tables."""
    return _run(scale, plan(scale), runs_dir(RUNS, profile), progress)


def _run(scale: Scale, plan: pd.DataFrame, folder: Path, progress: bool) -> pd.DataFrame:
    tidy = run_plan(plan, scale, folder, ARMS, progress=progress, workers=scale.workers)
    images = scale.train_subset or verdicts.TRAIN_IMAGES.get(scale.dataset)
    return tidy.assign(train_images=images, epochs=scale.epochs)


def budget_runs(tidy: pd.DataFrame) -> pd.DataFrame:
    """:func:`per_run` of :func:`run_budget`'s table, with each run's ``train_images`` and ``epochs``."""
    extra = tidy.drop_duplicates("run").set_index("run")[["train_images", "epochs"]]
    return per_run(tidy).join(extra, on="run")


def gap_ladder(tidy: pd.DataFrame, batch: int) -> pd.DataFrame:
    """NF - BN (paired by seed) and each family's mean top-1 at ``batch`` for every training-set size
    in ``tidy`` (tables of :func:`run_sweep` / :func:`run_budget`, concatenated): one row per size."""
    runs = budget_runs(tidy)
    runs = runs[runs["batch_size"] == batch]
    rows = []
    for size, g in runs.groupby("train_images"):
        by = {v: _scores(g, v, batch) for v in FAMILIES}
        mean, low, high, n = verdicts.mean_ci((by[NF] - by[BN]).dropna())
        rows.append({"train_images": int(size), "epochs": int(g["epochs"].iloc[0]), "batch_size": batch,
                     "BN": by[BN].mean(), "NF": by[NF].mean(), "NF - BN": mean, "ci_low": low,
                     "ci_high": high, "n": n})
    return pd.DataFrame(rows)


def absolute_claims(budget_tidy: pd.DataFrame, budget: Budget, tolerance: float = TOLERANCE) -> list[dict]:
    """The papers' absolute claims where NF trains: NF level with BN at the budget's moderate batch
    (the budget's own test) and at its large batch; on the largest rung, NF ahead of BN at the very
    small batch, beside NF level with BN at the moderate batch on that rung (a very small batch on
    the full budget costs too many steps for the cpu profile)."""
    runs = budget_runs(budget_tidy)
    full = budget.scale.train_subset or verdicts.TRAIN_IMAGES[budget.scale.dataset]
    checks = [(full, budget.moderate, "level", "NF level with BN at a moderate", budget.seeds),
              (full, budget.large, "level", "NF level with BN at a large", budget.seeds)]
    if budget.small and budget.rungs:
        rung, seeds = max(budget.rungs), budget.rung_seeds
        checks += [(rung, budget.small, "greater", "NF ahead of BN at a very small", seeds),
                   (rung, budget.moderate, "level", "NF level with BN at a moderate", seeds)]
    rows = []
    for images, batch, kind, what, seeds in checks:
        g = runs[runs["train_images"] == images]
        d = (_scores(g, NF, batch) - _scores(g, BN, batch)).dropna()
        sc = budget.scale if images == full else rung_scale(budget, images)
        where = setting(sc, [batch], len(seeds))
        side = "ahead of" if d.mean() > 0 else "behind"
        rows.append(verdicts.claim_row(
            f"{what} batch ({batch}) on {images:,} training images (top-1 points, NF - BN)", d, kind,
            tolerance=tolerance, setting=where,
            reading=f"at {where.describe()} ({where.epochs} epochs), NF is {abs(d.mean()):.1f} points "
                    f"{_ci(d)} {side} BN"))
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


def load_budget_models(budget_tidy: pd.DataFrame, budget: Budget, profile: str,
                       seeds: int = 3) -> dict[tuple[str, int], tuple[nn.Module, TrainConfig]]:
    """``{(family, seed): (model, config)}``: the nets trained at the budget's moderate batch on its
    full training set, the first ``seeds`` seeds."""
    runs = budget_runs(budget_tidy)
    full = budget.scale.train_subset or verdicts.TRAIN_IMAGES.get(budget.scale.dataset)
    chosen = runs[(runs["batch_size"] == budget.moderate) & (runs["train_images"] == full)
                  & runs["seed"].isin(sorted(budget.seeds)[:seeds]) & ~runs["diverged"]]
    folder = runs_dir(budget.shared, profile)
    return {(r.variant, r.seed): load_run(folder / r.run) for r in chosen.itertuples()}


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
               limit: int | None = 1000) -> pd.DataFrame:
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
         ("The absolute claims, where NF trains", ("NF level with BN", "NF ahead of BN")),
         ("Train and test", ("BN: eval", "NF: eval")), ("Independence", ("BN (training", "NF (training")),
         ("Compute", ("BatchNorm's share", "NF's training step")))


def findings(table: pd.DataFrame, ladder: pd.DataFrame, budget_tidy: pd.DataFrame, budget: Budget,
             notes: dict[str, list[str]] | None = None) -> str:
    """The closing section in words (Markdown), from the verdict table, the gap ladder
    (:func:`gap_ladder`) and the budget's runs; ``notes[title]``: more lines under a part."""
    runs = budget_runs(budget_tidy)
    big = runs[(runs["batch_size"] == budget.large) & (runs["train_images"] == runs["train_images"].max())]
    spread = {v: big.loc[big["variant"] == v, "score"] for v in FAMILIES}
    gaps = ", ".join(f"{g['NF - BN']:+.1f} on {int(g.train_images):,}" for _, g in ladder.iterrows())
    absolute = [f"- NF - BN at batch {budget.moderate} by training images: {gaps}. The gap in part 1's "
                "absolute numbers moves with the budget, so there it measures how far NF has trained, not "
                "what BatchNorm does; the within-family change does not need NF to have caught up.",
                f"- At batch {budget.large} ({int(big['steps'].max())} steps) NF's seeds span "
                f"{spread[NF].min():.1f} to {spread[NF].max():.1f} and BN's {spread[BN].min():.1f} to "
                f"{spread[BN].max():.1f}; notebook 02 shows AGC steadying NF at large batches."]
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
