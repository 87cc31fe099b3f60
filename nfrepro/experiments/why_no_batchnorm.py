r"""Notebook 06: why remove BatchNorm (NF-ResNet paper, arXiv:2101.08692, §1; NFNets §1-2).

The NF-ResNet paper opens with the costs of batch normalization, which the NF nets avoid:

1. **batch dependence**: BN computes its statistics over the batch, so its results depend on the
   batch size; NF-ResNets "match BN ResNets at batch 1024, beat them at very small batches"
   (NFNets §3, paper-facts);
2. **train/test mismatch**: BN normalises with batch statistics in training and with running
   averages at test time, two different functions;
3. **broken independence**: in training mode one example's output depends on its batch-mates;
4. **compute and memory**: every BN layer makes extra passes over an activation-sized tensor,
   forward (statistics, normalisation) and backward (two reductions and the input gradient).

Each is measured here on the project's small NF and BN ResNets (identical shapes, ``nf_resnet_small``
/ ``bn_resnet_small``), and each verdict follows :mod:`nfrepro.analysis.verdicts`. The training
runs go through the sweep layer (:func:`nfrepro.experiments.sweep_plan.run_plan`: one
resumable folder per run, two single-thread runs at a time on a 2-core CPU).

Departures: Fashion-MNIST at 28 px instead of ImageNet, 2 epochs on 8,000 training images (the cpu
profile) instead of 90 on 1.28M; the learning rate follows the paper's linear rule
``0.1 x B / 256`` at every batch size, so the smallest batches also take the smallest steps.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from nfrepro.analysis import verdicts
from nfrepro.bench.harness import make_batch, quiet_profile, train_step_fn
from nfrepro.data.datasets import load_dataset
from nfrepro.data.loader import TensorLoader
from nfrepro.engine.checkpoint import load_checkpoint
from nfrepro.engine.config import TrainConfig
from nfrepro.experiments.agc_ablation import BN, METHODS, NF
from nfrepro.experiments.sweep_plan import Scale, make_plan, per_run
from nfrepro.models import create_model

FAMILIES = (BN, NF)
ARMS = {v: METHODS[v] for v in FAMILIES}  # the same nets as notebook 02's, unclipped
RUNS = "why_no_batchnorm"  # the sweep's folder: sweep_plan.runs_dir(RUNS, profile)
TOLERANCE = 1.0  # points of top-1: "level" means the interval of the difference lies within +-1

SCALES: dict[str, Scale] = {
    # toy: a synthetic data set, two batch sizes, two seeds (an interval needs two)
    "smoke": Scale(dataset="synthetic", widths=(4, 8, 16), depths=(1, 1, 1), epochs=1, warmup_epochs=0.25,
                   batch_sizes=(4, 32), seeds=(0, 1), train_subset=128, test_subset=128, ema_decay=None,
                   threads=1),
    # 2-core CPU, a few minutes: Fashion-MNIST (8,000 training images, the full test set), the small
    # nets with the ImageNet stem, 2 epochs at batch 4 to 256, three seeds, two runs at a time
    "cpu": Scale(dataset="fashion_mnist", widths=(16, 32, 64), depths=(2, 2, 2), small_stem=False, epochs=2,
                 warmup_epochs=0.25, batch_sizes=(4, 16, 64, 256), seeds=(0, 1, 2), train_subset=8000,
                 ema_decay=None, workers=2),
    # one GPU: CIFAR-10, wider nets, five batch sizes from 2
    "gpu": Scale(dataset="cifar10", widths=(64, 128, 256), depths=(2, 2, 2), epochs=5, warmup_epochs=0.5,
                 batch_sizes=(2, 4, 16, 64, 256), seeds=(0, 1, 2), crop_padding=4, flip=True,
                 ema_decay=None),
}


def plan(scale: Scale) -> pd.DataFrame:
    """BN and NF (unclipped) at every batch size and seed."""
    return make_plan({"variant": v, "layers": "", "batch_size": b, "clipping": np.nan, "seed": s}
                     for v in FAMILIES for b in scale.batch_sizes for s in scale.seeds)


# ----------------------------------------------------------------------------- 1. batch dependence
def batch_table(tidy: pd.DataFrame) -> pd.DataFrame:
    """Per batch size and family: mean final top-1 over seeds with its 95% interval, and NF - BN
    paired by seed with its interval."""
    runs = per_run(tidy)
    rows = []
    for batch, g in runs.groupby("batch_size"):
        by = {v: g[g["variant"] == v].set_index("seed")["score"] for v in FAMILIES}
        for v in FAMILIES:
            mean, low, high, n = verdicts.mean_ci(by[v])
            rows.append({"batch_size": batch, "line": v, "top1": mean, "ci_low": low, "ci_high": high,
                         "n": n})
        diff = (by[NF] - by[BN]).dropna()
        mean, low, high, n = verdicts.mean_ci(diff)
        rows.append({"batch_size": batch, "line": "NF - BN", "top1": mean, "ci_low": low, "ci_high": high,
                     "n": n})
    return pd.DataFrame(rows)


def batch_claims(tidy: pd.DataFrame, tolerance: float = TOLERANCE) -> list[dict]:
    """The batch-size claim at the smallest batch (NF ahead) and at the largest (level)."""
    runs = per_run(tidy)
    small, large = runs["batch_size"].min(), runs["batch_size"].max()

    def diff(batch: int) -> pd.Series:
        g = runs[runs["batch_size"] == batch]
        nf, bn = (g[g["variant"] == v].set_index("seed")["score"] for v in (NF, BN))
        return (nf - bn).dropna()

    return [verdicts.claim_row(f"NF ahead of BN at batch {small} (top-1 points, NF - BN)", diff(small),
                               "greater"),
            verdicts.claim_row(f"NF level with BN at batch {large} (top-1 points, NF - BN)", diff(large),
                               "level",
                               tolerance=tolerance)]


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


# ----------------------------------------------------------------------------- 2. train/test mismatch
def mode_table(models: dict[tuple[str, int], tuple[nn.Module, TrainConfig]], batch_sizes=(256, 1),
               limit: int | None = 2000) -> pd.DataFrame:
    """Top-1 of each trained model with running averages and with batch statistics at each test batch
    size. ``models[(family, seed)] = (model, config)``."""
    rows = []
    for (family, seed), (model, config) in models.items():
        for b in batch_sizes:
            batches = test_batches(config, b, limit)
            for stats in (False, True):
                rows.append({"family": family, "seed": seed, "test_batch": b,
                             "statistics": "batch (train mode)" if stats else "running (eval mode)",
                             "top1": top1(model, batches, stats)})
    return pd.DataFrame(rows)


def mode_claims(table: pd.DataFrame, tolerance: float = TOLERANCE) -> list[dict]:
    """BN loses accuracy with batch statistics at test batch 1; NF gives the same accuracy either way."""
    rows = []
    for family, kind in ((BN, "greater"), (NF, "level")):
        g = table[(table["family"] == family) & (table["test_batch"] == table["test_batch"].min())]
        wide = g.pivot_table(index="seed", columns="statistics", values="top1")
        d = wide["running (eval mode)"] - wide["batch (train mode)"]
        smallest = int(g["test_batch"].min())
        claim = (f"{family}: eval-mode top-1 minus train-mode top-1 at test batch {smallest} "
                 f"({'> 0' if kind == 'greater' else 'level'})")
        rows.append(verdicts.claim_row(claim, d, kind, tolerance=tolerance))
    return rows


# ----------------------------------------------------------------------------- 3. independence
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


def independence_claims(effects: dict[str, pd.DataFrame]) -> list[dict]:
    """BN (training mode): x0's logits move with its batch-mates (relative change > 1e-3); NF: they
    do not (relative change within 1e-5, float rounding)."""
    bn = effects[BN].query("mode == 'train'")["relative_change"]
    nf = effects[NF].query("mode == 'train'")["relative_change"]
    return [verdicts.claim_row("BN (training mode): relative change of x0's logits when its batch-mates "
                               "change (> 1e-3)", bn, "greater", margin=1e-3),
            verdicts.claim_row("NF (training mode): the same change (level within 1e-5)", nf, "level",
                               tolerance=1e-5)]


# ----------------------------------------------------------------------------- 4. compute
def batchnorm_share(model: nn.Module, batch_size: int = 256, px: int = 28, in_chans: int = 1,
                    steps: int = 3, repeats: int = 5, device: Any = "cpu") -> pd.DataFrame:
    """The share of a training step's operator time spent in BatchNorm (forward and backward).

    ``torch.profiler`` over ``steps`` training steps (the engine's step, :func:`train_step_fn`,
    SGD without clipping), ``repeats`` times after one untimed step; self time of every operator
    whose name contains ``batch_norm``, over the self time of all operators. A profiler adds its
    own overhead to each op, so the share is an estimate; the repeats give its spread.
    """
    x, y = make_batch(batch_size, px, device, num_classes=model.get_classifier().out_features)
    x = x[:, :in_chans].contiguous()
    model = copy.deepcopy(model).to(device)
    step = train_step_fn(model, x, y, clip=None, amp="off")
    step()
    rows = []
    for r in range(repeats):
        with quiet_profile() as prof:  # no profiler log lines in the notebook
            for _ in range(steps):
                step()
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events)
        bn = sum(e.self_cpu_time_total for e in events if "batch_norm" in e.key)
        rows.append({"repeat": r, "bn_us": bn / steps, "total_us": total / steps, "share": bn / total})
    return pd.DataFrame(rows)


def batchnorm_traffic(model: nn.Module, x: torch.Tensor) -> pd.DataFrame:
    """Each BatchNorm layer's input size for one batch, and the activation-sized passes it makes per
    training step: forward 3 (read for the statistics, read and write to normalise), backward 5
    (read the input and the output gradient for two reductions, read both again and write the input
    gradient). A lower bound: a fused kernel may merge some reads, an unfused one adds passes."""
    sizes = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: sizes.append(inp[0].numel()))
             for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(x)  # eval: the running averages are not touched
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    elements = int(np.sum(sizes))
    return pd.DataFrame([{"bn_layers": len(sizes), "elements_per_batch": elements,
                          "passes_per_step": 8, "bytes_per_step_fp32": elements * 8 * 4}])


def compute_claim(shares: pd.DataFrame, margin: float = 0.01) -> dict:
    return verdicts.claim_row(f"BatchNorm's share of a training step's operator time (> {margin:g})",
                              shares["share"], "greater", margin=margin)
