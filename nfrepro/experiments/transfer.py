r"""Notebook 09: pre-train, then fine-tune: NF against BN (NFNets abstract, §6, Table 4).

The paper's claim: normalizer-free models "attain significantly better performance than their
batch-normalized counterparts when fine-tuning on ImageNet after large-scale pre-training"
(Table 4: NF-ResNets beat BN-ResNets by 0.6 to 1.4 points of top-1 from ResNet-50 to -200, after
10 epochs on JFT-300M; ``paper_reference.csv``, T4).

Our analogue splits one data set into a source and a target task: the NF and BN twins
(``nf_resnet_small`` / ``bn_resnet_small``, identical shapes) are pre-trained on the 6 source
classes of Fashion-MNIST with all their training images (:data:`SOURCE`), then fine-tuned on the
4 other classes (:data:`TARGET`) with 25, 100 or 400 labelled images per class. Each fine-tuning
seed starts from one of the pre-training seeds (:func:`pretrain_seed`), so every comparison is
paired by seed. Arms (the plan's ``layers`` column, named ``arm`` in every table here):

* **fine-tune**: every weight trains, the paper's fine-tuning recipe where it fits: no weight
  decay, no dropout, an EMA of the weights, linear warmup then cosine, learning rate 0.1 not
  scaled with the batch (the paper's 0.1 at its large batch; here at batch 32, a far larger step
  per image). At that learning rate the unclipped NF net diverges in some runs (measured: the
  verdicts count them), so the NF net is fine-tuned twice: as it is, and with AGC (the NF recipe,
  :data:`FINETUNE_CLIPPING`: the paper's bound on a filter's relative step, lr x lambda, carried
  over), from the same pre-trained weights (:data:`FINE_TUNED`);
* **linear probe**: the backbone frozen and in eval mode, only a new classifier trains
  (:mod:`nfrepro.engine.finetune`); BN then normalises with the *source* task's running statistics;
* **linear probe, BN statistics re-estimated**: the same, after re-estimating BN's running
  statistics on the target's training images (BN only: an NF net has none);
* **from scratch**: the same fine-tuning run from random weights: what pre-training is worth here.

During full fine-tuning BN runs in train mode, normalising every batch with its own statistics;
its running averages (used at test time) move to the target with momentum 0.1, so after k steps
the source's share is 0.9^k. :func:`bn_statistics_check` measures whether re-estimating them
after fine-tuning changes the top-1.

What this cannot say about JFT-300M: the source here is 36,000 images of 6 classes of one data
set, not 300 million images of 18,000 classes; the nets have ~0.1M parameters, not 25-65M; the
target shares the source's image statistics (same camera, same grey 28 px pictures), which favours
BN's source statistics more than ImageNet after JFT would. The notebook states these again beside
the numbers.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch

from nfrepro.analysis import verdicts
from nfrepro.analysis.reference import paper_value
from nfrepro.data.datasets import load_dataset
from nfrepro.data.loader import TensorLoader
from nfrepro.engine import finetune
from nfrepro.engine.checkpoint import load_checkpoint
from nfrepro.engine.config import TrainConfig
from nfrepro.engine.faults import atomic_write
from nfrepro.engine.sweep import apply_overrides
from nfrepro.engine.training import evaluate
from nfrepro.experiments.sweep_plan import Scale, make_plan, per_run, run_overrides
from nfrepro.models import create_model

SOURCE = (0, 1, 2, 3, 4, 5)  # T-shirt/top, trouser, pullover, dress, coat, sandal
TARGET = (6, 7, 8, 9)        # shirt, sneaker, bag, ankle boot
NF, AGC, BN = "NF", "NF + AGC", "BN"
FAMILIES = {NF: "nf_resnet_small", BN: "bn_resnet_small"}  # the pre-trained twins
FINE_TUNE, PROBE, SCRATCH = "fine-tune", "linear probe", "from scratch"
PROBE_BN = "linear probe, BN statistics re-estimated"
ARMS: dict[str, dict[str, Any]] = {  # label -> TrainConfig overrides (besides the weights to start from)
    FINE_TUNE: {}, PROBE: {"freeze_backbone": True},
    PROBE_BN: {"freeze_backbone": True, "bn_reestimate": True}, SCRATCH: {},
}
PAPER_LR = 0.1  # fine-tuning learning rate, not scaled with the batch
# AGC's lambda when fine-tuning NF at lr 0.1: the bound on a filter's relative step per update,
# lr x lambda = 0.016, is the paper's at its batch 4096 (lr 1.6, lambda 0.01, §5.1)
FINETUNE_CLIPPING = 0.016 / PAPER_LR
# fine-tuned family -> (the pre-trained family whose weights it starts from, TrainConfig overrides,
# its arms); NF + AGC: the same NF weights, fine-tuned with AGC (skip gains unclipped, as in notebook 08)
FINE_TUNED: dict[str, tuple[str, dict[str, Any], tuple[str, ...]]] = {
    NF: (NF, {"model": FAMILIES[NF]}, (FINE_TUNE, PROBE, SCRATCH)),
    AGC: (NF, {"model": FAMILIES[NF], "clip_exclude_skip_gains": True}, (FINE_TUNE, SCRATCH)),
    BN: (BN, {"model": FAMILIES[BN]}, (FINE_TUNE, PROBE, PROBE_BN, SCRATCH)),
}
TOLERANCE = 1.0  # points of top-1: "level"
RUNS = "transfer"  # the sweep's folder: sweep_plan.runs_dir(RUNS, profile)
# Table 4 (224 px): ResNet depth -> (BN, NF) top-1 after JFT-300M pre-training
T4_DEPTHS = (50, 101, 152, 200)


@dataclass(frozen=True, kw_only=True)
class TransferScale(Scale):
    """Pre-training is a :class:`~nfrepro.experiments.sweep_plan.Scale` (``seeds``: the
    pre-training seeds; ``batch_sizes[0]``: its batch); fine-tuning adds its own sizes."""
    per_class: tuple[int, ...]          # target images per class, one fine-tuning set each
    finetune_seeds: tuple[int, ...]
    finetune_steps: int
    finetune_batch: int
    finetune_warmup_steps: int
    finetune_ema: float = 0.999
    finetune_test_subset: int | None = None


SCALES: dict[str, TransferScale] = {
    # toy: synthetic images, one target size, two seeds (an interval needs two), in-process
    "smoke": TransferScale(dataset="synthetic", widths=(4, 8, 16), depths=(1, 1, 1), epochs=1,
                           warmup_epochs=0.25, batch_sizes=(16,), seeds=(0, 1), train_subset=256,
                           test_subset=128, threads=1, per_class=(8,), finetune_seeds=(0, 1),
                           finetune_steps=6, finetune_batch=8, finetune_warmup_steps=2),
    # 2-core CPU: the small nets of notebooks 02 and 06 (one block per stage, the ImageNet stem),
    # pre-trained on all 36,000 source images for 3 epochs at batch 128 (843 steps), fine-tuned for
    # 150 steps at batch 32 on 100, 400 or 1,600 target images, 5 seeds (3 from pre-training seed 0,
    # 2 from seed 1), two runs at a time: notebooks 08 + 09 within 20 minutes
    "cpu": TransferScale(dataset="fashion_mnist", widths=(16, 16, 32), depths=(1, 1, 1), small_stem=False,
                         epochs=3, warmup_epochs=0.5, batch_sizes=(128,), seeds=(0, 1), workers=2,
                         per_class=(25, 100, 400), finetune_seeds=tuple(range(5)), finetune_steps=150,
                         finetune_batch=32, finetune_warmup_steps=15),
    "gpu": TransferScale(dataset="cifar10", widths=(64, 128, 256), depths=(2, 2, 2), epochs=30,
                         warmup_epochs=1.0, batch_sizes=(256,), seeds=(0, 1), crop_padding=4, flip=True,
                         per_class=(25, 100, 400), finetune_seeds=tuple(range(10)), finetune_steps=1000,
                         finetune_batch=64, finetune_warmup_steps=100),
}


def pretrain_seed(scale: TransferScale, seed: int) -> int:
    """The pre-training seed fine-tuning seed ``seed`` starts from (round robin)."""
    return scale.seeds[seed % len(scale.seeds)]


# ----------------------------------------------------------------------------- pre-training
def pretrain_arms() -> dict[str, dict[str, Any]]:
    return {family: {"model": model, "classes": list(SOURCE)} for family, model in FAMILIES.items()}


def pretrain_plan(scale: TransferScale) -> pd.DataFrame:
    return make_plan({"variant": f, "layers": "", "batch_size": scale.batch_sizes[0], "clipping": np.nan,
                      "seed": s} for f in FAMILIES for s in scale.seeds)


def pretrain_configs(scale: TransferScale, runs_dir: str | Path) -> dict[tuple[str, int], TrainConfig]:
    """``{(family, seed): config}`` of the pre-training runs, with their run folders."""
    return {(spec["variant"], int(spec["seed"])): apply_overrides(
        scale.base_config(), run_overrides(spec, pretrain_arms()), runs_dir)
        for spec in pretrain_plan(scale).to_dict("records")}


def export_weights(config: TrainConfig, runs_dir: str | Path) -> Path:
    """The weights a finished pre-training run ends with (its EMA when it keeps one: the weights
    the recipe evaluates), as a plain state dict in ``runs_dir/weights/<run>.pt``; written once."""
    run_dir = Path(config.run_dir)
    path = Path(runs_dir) / "weights" / f"{run_dir.name}.pt"
    if not path.exists():
        ck = load_checkpoint(run_dir / "checkpoint.pt", required=("model",))
        state = ck["ema"] if ck.get("ema") is not None else ck["model"]
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: torch.save(state, f))
    return path


# ----------------------------------------------------------------------------- fine-tuning
def _label(arm: str, per_class: int) -> str:
    return f"{arm}, {per_class} per class"


def finetune_overrides(scale: TransferScale) -> dict[str, Any]:
    """What every fine-tuning run sets beside the pre-training scale: the target classes, the
    recipe (no weight decay, EMA, lr 0.1 at any batch), its length in steps."""
    return {"classes": list(TARGET), "weight_decay": 0.0, "ema_decay": scale.finetune_ema,
            "base_lr": PAPER_LR * 256 / scale.finetune_batch, "steps": scale.finetune_steps,
            "test_subset": scale.finetune_test_subset, "eval_every": 1_000_000}


def finetune_layers(scale: TransferScale) -> dict[str, dict[str, Any]]:
    """Arm x target size -> overrides; the warmup is ``finetune_warmup_steps`` steps at every size
    (the engine counts warmup in epochs: ``steps / (images // batch)``)."""
    out = {}
    for k in scale.per_class:
        per_epoch = len(TARGET) * k // scale.finetune_batch
        for arm, overrides in ARMS.items():
            out[_label(arm, k)] = {**overrides, "per_class": k,
                                   "warmup_epochs": scale.finetune_warmup_steps / per_epoch}
    return out


def finetune_arms(scale: TransferScale, weights: dict[tuple[str, int], Path]) -> dict[str, dict[str, Any]]:
    """Variant -> overrides: each fine-tuned family from each pre-training seed's weights, and from
    scratch (:data:`FINE_TUNED`)."""
    arms = {f"{f} from pre-training seed {p}": {**overrides, "pretrained": str(weights[(source, p)])}
            for f, (source, overrides, _) in FINE_TUNED.items() for p in scale.seeds}
    arms.update({f"{f} {SCRATCH}": overrides for f, (_, overrides, _) in FINE_TUNED.items()})
    return arms


def finetune_plan(scale: TransferScale) -> pd.DataFrame:
    rows = []
    for f, (_, _, arms) in FINE_TUNED.items():
        for k in scale.per_class:
            for arm in arms:
                for s in scale.finetune_seeds:
                    variant = (f"{f} {SCRATCH}" if arm == SCRATCH
                               else f"{f} from pre-training seed {pretrain_seed(scale, s)}")
                    rows.append({"variant": variant, "layers": _label(arm, k), "seed": s,
                                 "batch_size": scale.finetune_batch,
                                 "clipping": FINETUNE_CLIPPING if f == AGC else np.nan})
    return make_plan(rows)


def finetune_scale(scale: TransferScale) -> TransferScale:
    """The scale the fine-tuning runs start from: the pre-training one with :func:`finetune_overrides`."""
    return dataclasses.replace(scale, extra={**scale.extra, **finetune_overrides(scale)})


def finetune_configs(plan: pd.DataFrame, scale: TransferScale,
                     arms: dict[str, dict[str, Any]]) -> dict[str, TrainConfig]:
    """The TrainConfig of every planned fine-tuning run by its folder name (the tables' ``run``)."""
    base, layers = finetune_scale(scale).base_config(), finetune_layers(scale)
    out = {}
    for spec in plan.to_dict("records"):
        config = apply_overrides(base, run_overrides(spec, arms, layers))
        out[Path(config.run_dir).name] = config
    return out


def runs_table(tidy: pd.DataFrame, scale: TransferScale) -> pd.DataFrame:
    """One row per fine-tuning run: ``family``, ``arm``, ``per_class``, ``pretrain_seed`` beside
    :func:`~nfrepro.experiments.sweep_plan.per_run`'s columns; top-1 of the EMA weights."""
    runs = per_run(tidy, metric="final_test_top1_ema")
    labels = {_label(a, k): (a, k) for a in ARMS for k in scale.per_class}
    runs["arm"] = [labels[v][0] for v in runs["layers"]]
    runs["per_class"] = [labels[v][1] for v in runs["layers"]]
    runs["family"] = runs["variant"].str.split(" from ").str[0]
    runs["pretrain_seed"] = [np.nan if SCRATCH in v else pretrain_seed(scale, int(s))
                             for v, s in zip(runs["variant"], runs["seed"], strict=True)]
    return runs


def summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean top-1 (EMA) with its 95% interval per family, arm and target size."""
    rows = []
    for (arm, k, family), g in runs.groupby(["arm", "per_class", "family"], sort=False):
        mean, low, high, n = verdicts.mean_ci(g["score"])
        rows.append({"arm": arm, "per_class": k, "family": family, "top1": mean, "ci_low": low,
                     "ci_high": high, "n": n, "diverged": int(g["diverged"].sum())})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- verdicts
def paper_gaps() -> pd.DataFrame:
    """Table 4: NF minus BN after JFT-300M, per ResNet depth (224 px)."""
    return pd.DataFrame([{"depth": d, "BN": paper_value("imagenet_top1_after_jft", f"BN-ResNet-{d}"),
                          "NF": paper_value("imagenet_top1_after_jft", f"NF-ResNet-{d}")} for d in T4_DEPTHS]
                        ).assign(gap=lambda t: t["NF"] - t["BN"])


def _scores(runs: pd.DataFrame, family: str, arm: str, k: int) -> pd.Series:
    g = runs[(runs["family"] == family) & (runs["arm"] == arm) & (runs["per_class"] == k)]
    return g.set_index("seed")["score"]


def _setting(runs: pd.DataFrame, cfgs: Mapping[str, TrainConfig], mask: pd.Series) -> verdicts.Setting:
    chosen = [cfgs[run] for run in runs.loc[mask, "run"]]
    images = sorted({len(TARGET) * c.per_class for c in chosen})
    return verdicts.setting_of(chosen, seeds=int(runs.loc[mask, "seed"].nunique()),
                               train_images=images[0] if len(images) == 1 else None)


def _row(runs: pd.DataFrame, cfgs: Mapping[str, TrainConfig], k: int, claim: str, d: pd.Series,
         mask: pd.Series, reading: str) -> dict:
    """A "greater than 0" verdict at ``k`` images per class, its setting read from the runs in ``mask``."""
    s = _setting(runs, cfgs, mask & (runs["per_class"] == k))
    return verdicts.claim_row(f"{k} per class: {claim}", d, "greater", setting=s,
                              reading=f"at {s.describe()} ({k} target images per class), {reading}")


def claims(runs: pd.DataFrame, cfgs: Mapping[str, TrainConfig]) -> list[dict]:
    """The verdict rows of notebook 09; ``cfgs``: the runs' configurations by folder name. Fine-tuned,
    the NF net is compared with AGC (the NF recipe at the paper's learning rate) and without; the
    probes train the classifier only, which AGC does not clip, so they use the NF net without."""
    gaps = paper_gaps()["gap"]
    paper = f"paper T4: {gaps.min():+.1f} to {gaps.max():+.1f}"
    arm, family = runs["arm"], runs["family"]
    rows = []
    for k in sorted(int(k) for k in runs["per_class"].unique()):
        def minus_bn(nf: str, arm_nf: str, arm_bn: str, k: int = k) -> pd.Series:
            return (_scores(runs, nf, arm_nf, k) - _scores(runs, BN, arm_bn, k)).dropna()

        ft, ft_nf = minus_bn(AGC, FINE_TUNE, FINE_TUNE), minus_bn(NF, FINE_TUNE, FINE_TUNE)
        probe, probe_bn = minus_bn(NF, PROBE, PROBE), minus_bn(NF, PROBE, PROBE_BN)
        gap = (probe - ft).dropna()
        reest = (_scores(runs, BN, PROBE_BN, k) - _scores(runs, BN, PROBE, k)).dropna()
        nf_ft = runs[(family == NF) & (arm == FINE_TUNE) & (runs["per_class"] == k)]
        s = _setting(runs, cfgs, (family == NF) & (arm == FINE_TUNE) & (runs["per_class"] == k))
        rows += [
            _row(runs, cfgs, k, f"NF + AGC fine-tunes better than BN (NF + AGC - BN, top-1 points; {paper})",
                 ft, (arm == FINE_TUNE) & family.isin([AGC, BN]),
                 f"fine-tuned with AGC, NF scored {ft.mean():+.2f} points against BN ({paper})."),
            verdicts.rate_claim_row(
                f"{k} per class: NF without AGC diverges when fine-tuned at the paper's lr 0.1 (rate)",
                nf_ft["diverged"].astype(bool), s,
                f"at {s.describe()} ({k} target images per class), {int(nf_ft['diverged'].sum())} of "
                f"{len(nf_ft)} unclipped NF fine-tuning runs diverged.", contradicted_below=0.5),
            _row(runs, cfgs, k, "NF without AGC fine-tunes better than BN (NF - BN, top-1 points, a diverged "
                 "run at chance)", ft_nf, (arm == FINE_TUNE) & family.isin([NF, BN]),
                 f"fine-tuned without clipping, NF scored {ft_nf.mean():+.2f} points against BN."),
            _row(runs, cfgs, k, "NF's linear probe beats BN's, BN on its source statistics (NF - BN, "
                 "top-1 points)", probe, arm == PROBE, f"with the backbone frozen NF scored "
                 f"{probe.mean():+.2f} points against BN normalising with its source-task statistics."),
            _row(runs, cfgs, k, "NF's linear probe beats BN's, BN statistics re-estimated on the target "
                 "(NF - BN, top-1 points)", probe_bn, arm.isin([PROBE, PROBE_BN]),
                 f"with the backbone frozen NF scored {probe_bn.mean():+.2f} points against BN with "
                 "statistics re-estimated on the target images."),
            _row(runs, cfgs, k, "NF's lead over BN is larger with the backbone frozen than fine-tuned "
                 "((NF - BN) probe minus (NF + AGC - BN) fine-tuned, points)", gap,
                 (arm == PROBE) | ((arm == FINE_TUNE) & family.isin([AGC, BN])),
                 f"NF's lead over BN was {gap.mean():+.2f} points larger frozen than fine-tuned."),
            _row(runs, cfgs, k, "re-estimating BN's statistics on the target helps BN's linear probe "
                 "(top-1 points)", reest, arm.isin([PROBE, PROBE_BN]) & (family == BN),
                 f"re-estimating BN's running statistics on the target images moved its probe's top-1 by "
                 f"{reest.mean():+.2f} points."),
        ]
        for f in (AGC, BN):
            pre = (_scores(runs, f, FINE_TUNE, k) - _scores(runs, f, SCRATCH, k)).dropna()
            rows.append(_row(runs, cfgs, k, f"pre-training helps {f} (fine-tuned minus from scratch, top-1 "
                             "points)", pre, arm.isin([FINE_TUNE, SCRATCH]) & (family == f),
                             f"starting from the source-task weights gave {f} {pre.mean():+.2f} points "
                             "over random weights."))
    return rows


# ----------------------------------------------------------------------------- BN during fine-tuning
@torch.no_grad()
def bn_statistics_check(runs: pd.DataFrame, cfgs: Mapping[str, TrainConfig],
                        runs_dir: str | Path) -> pd.DataFrame:
    """For each fine-tuned BN run: test top-1 of its EMA weights with the running statistics that
    fine-tuning left, and after re-estimating them on the run's target training images (one
    pass, :func:`nfrepro.engine.finetune.reestimate_bn_statistics`)."""
    rows = []
    pick = (runs["family"] == BN) & (runs["arm"] == FINE_TUNE) & ~runs["diverged"]
    for _, run in runs[pick].iterrows():
        config = cfgs[run["run"]]
        test = load_dataset(config.dataset, False, config.data_root, subset=config.test_subset
                            ).select_classes(config.classes)
        train = load_dataset(config.dataset, True, config.data_root, subset=config.train_subset
                             ).select_classes(config.classes, config.per_class)
        model = create_model(config.model, num_classes=len(config.classes), in_chans=test.images.shape[1],
                             **config.model_kwargs)
        ck = load_checkpoint(Path(runs_dir) / run["run"] / "checkpoint.pt", required=("model",))
        model.load_state_dict(ck["ema"] if ck.get("ema") is not None else ck["model"])
        before = evaluate(model, TensorLoader(test, config.eval_batch_size))
        finetune.reestimate_bn_statistics(model, TensorLoader(train, config.eval_batch_size))
        after = evaluate(model, TensorLoader(test, config.eval_batch_size))
        rows.append({"per_class": int(run["per_class"]), "seed": int(run["seed"]),
                     "left_by_fine_tuning": before, "re_estimated": after})
    return pd.DataFrame(rows)


def bn_check_claims(check: pd.DataFrame, runs: pd.DataFrame, cfgs: Mapping[str, TrainConfig]) -> list[dict]:
    rows = []
    for k, g in check.groupby("per_class"):
        d = g["re_estimated"] - g["left_by_fine_tuning"]
        mask = (runs["family"] == BN) & (runs["arm"] == FINE_TUNE) & (runs["per_class"] == k)
        s = _setting(runs, cfgs, mask)
        rows.append(verdicts.claim_row(
            f"{int(k)} per class: fine-tuned BN, re-estimating its running statistics after fine-tuning "
            f"makes no difference (re-estimated minus as left, level within ±{TOLERANCE:g})", d, "level",
            tolerance=TOLERANCE, setting=s,
            reading=f"at {s.describe()}, re-estimating the fine-tuned BN net's statistics on its "
                    f"{len(TARGET) * int(k)} target images moved its top-1 by {d.mean():+.2f} points on "
                    "average."))
    return rows


def source_accuracy(pretrain_dirs: dict[tuple[str, int], TrainConfig]) -> pd.DataFrame:
    """Top-1 of each pre-training run on the source classes' test images (its record)."""
    rows = []
    for (family, seed), config in pretrain_dirs.items():
        metrics = pd.read_csv(Path(config.run_dir) / "metrics.csv")
        record = json.loads((Path(config.run_dir) / "metrics.json").read_text())
        rows.append({"family": family, "seed": seed, "top1": float(metrics["test_top1"].iloc[-1]),
                     "top1_ema": float(metrics["test_top1_ema"].iloc[-1]), "status": record.get("status")})
    return pd.DataFrame(rows)


def budget(scale: TransferScale, pretrain: Mapping[tuple[str, int], TrainConfig]) -> pd.DataFrame:
    """What each stage is given (the verdicts' setting columns): pre-training, and fine-tuning at
    each target size (every arm of a size shares it)."""
    images = None if scale.dataset == "synthetic" else 6000 * len(SOURCE)
    rows = [{"stage": "pre-training (source)", **verdicts.setting_of(
        list(pretrain.values()), seeds=len(scale.seeds), train_images=images).row()}]
    base, layers = finetune_scale(scale).base_config(), finetune_layers(scale)
    for k in scale.per_class:
        config = apply_overrides(base, {"model": FAMILIES[NF], "batch_size": scale.finetune_batch,
                                        **layers[_label(SCRATCH, k)]})
        rows.append({"stage": f"fine-tuning, {k} per class", **verdicts.setting_of(
            [config], seeds=len(scale.finetune_seeds), train_images=len(TARGET) * k).row()})
    return pd.DataFrame(rows).drop(columns="clipping")


def _said(row: pd.Series) -> str:
    return (f"{row['estimate']:+.2f} points (95% interval {row['ci_low']:+.2f} to {row['ci_high']:+.2f}, "
            f"n = {row['n']}): **{row['verdict']}**")


def findings(table: pd.DataFrame, summary: pd.DataFrame, source: pd.DataFrame, bn_check: pd.DataFrame,
             steps: int) -> str:
    """The numbers behind "What we found", in sentences."""
    def hit(k: int, text: str) -> pd.Series:
        return table[table["claim"].str.startswith(f"{k} per class: {text}")].iloc[0]

    def row(k: int, text: str) -> str:
        return _said(hit(k, text))

    src = source.groupby("family")["top1_ema"].mean()
    gaps = paper_gaps()["gap"]
    out = [f"**Source task.** After pre-training, NF scored {src[NF]:.1f}% and BN {src[BN]:.1f}% on the "
           "source classes' test images (EMA weights, mean of the pre-training seeds)."]
    sizes = sorted(int(k) for k in summary["per_class"].unique())
    probe = "NF's linear probe beats BN's, BN"
    lines = []
    for k in sizes:
        div = hit(k, "NF without AGC diverges")
        lines.append(f"* {k} per class: fine-tuned with AGC {row(k, 'NF + AGC fine-tunes')}; without AGC "
                     f"{row(k, 'NF without AGC fine-tunes')}, {int(round(div['estimate'] * div['n']))} of "
                     f"{div['n']} runs diverged; linear probe, BN on its source statistics "
                     f"{row(k, probe + ' on')}; linear probe, BN re-estimated {row(k, probe + ' stat')}")
    out.append(f"**NF minus BN on the target** (Table 4: NF ahead by {gaps.min():.1f} to {gaps.max():.1f}):"
               "\n\n" + "\n".join(lines))
    moved = (bn_check["re_estimated"] - bn_check["left_by_fine_tuning"]).groupby(bn_check["per_class"])
    moved = moved.mean()
    out.append("**BatchNorm's statistics.** Re-estimated on the target before a linear probe, BN's top-1 "
               "moved " + "; ".join(f"{row(k, 're-estimating BN')} at {k} per class" for k in sizes)
               + f". After full fine-tuning ({steps} steps: the source keeps a share 0.9^{steps} = "
               f"{0.9 ** steps:.1e} of the running averages) re-estimating them moved the top-1 by "
               + ", ".join(f"{v:+.2f}" for v in moved) + " points on average.")
    pre = [f"{f} at {k} per class {row(k, f'pre-training helps {f}')}" for k in sizes for f in (AGC, BN)]
    out.append("**What pre-training is worth here** (fine-tuned minus from scratch): " + "; ".join(pre) + ".")
    return "\n\n".join(out)
