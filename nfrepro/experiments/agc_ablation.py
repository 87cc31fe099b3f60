r"""The AGC ablations of NFNets §4.1 (Fig. 2a, Fig. 2b, which layers to clip), at small scale.

What the paper did (arXiv:2102.06171, §4.1, Fig. 2): NF-ResNet-50 and -200 against their
BatchNorm twins on ImageNet, 90 epochs, batch 256 to 4096 with the learning rate scaled as
:math:`\eta = 0.1 \cdot B / 256` (warmup, cosine), AGC with
:math:`\lambda \in \{0.01, 0.02, 0.04, 0.08, 0.16\}`; every point is the mean of the best 4 of 5
runs. What it claims:

* Fig. 2a: without clipping the NF nets fall behind BN, or become unstable, at large batch; with
  AGC they keep up with BN up to batch 4096;
* Fig. 2b: the larger the batch, the smaller the best lambda;
* text: never clip the final linear layer; the first convolution can often be left unclipped;
  at batch 4096 every stage must be clipped.

Notebooks 02 and 03 share everything here: the scale of each profile (:data:`SCALES`, with the
lambda grids), the variants (literal tables) and the planned runs (``plan_*``), which
:func:`run_plan` runs in one resumable sweep folder through :mod:`nfrepro.experiments.sweep_plan`
(a run that already finished is read back, so 03 reuses the runs of 02). The numbers behind the
verdicts are computed in :mod:`nfrepro.experiments.agc_analysis`, the figures drawn by
:mod:`nfrepro.analysis.plotting`.

Departure, on purpose: with a few hundred steps, clipping the zero-initialised skip gains freezes
them (their norm is floored at ``eps``), so a small-lambda run trains as a shallow net
(measured on this project's runs, not in the paper). The labelled variant
``"NF + AGC, skip gains unclipped"`` clips everything the paper clips except the SkipInit gains
(``AGCSelection(exclude_skip_gains=True)``) to show what the frozen gains cost; both are reported, against the
same unclipped NF net. How far each verdict moves with the budget is measured, not assumed:
:func:`plan_length` trains the largest batch (and the largest at which NF trains unclipped) at
lengths spanning 8x in steps (four on the CPU: 1, 2, 4 and 8 epochs).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from nfrepro.engine.config import TrainConfig, agc_keys
from nfrepro.engine.sweep import apply_overrides
from nfrepro.engine.training import RunResult, train
from nfrepro.experiments import sweep_plan
from nfrepro.experiments.sweep_plan import PLAN_COLUMNS, Scale, make_plan
from nfrepro.optim.agc import PAPER_SELECTION, AGCSelection

# ----------------------------------------------------------------------------- the variants
BN, NF, AGC = "BN", "NF", "NF + AGC"
AGC_FREE_GAINS = "NF + AGC, skip gains unclipped"  # a departure, labelled (module docstring)
# label -> TrainConfig overrides ("model_kwargs.<name>" sets one model argument; "agc": what AGC clips)
METHODS: dict[str, dict[str, Any]] = {
    BN: {"model": "bn_resnet_small"},
    NF: {"model": "nf_resnet_small"},
    AGC: {"model": "nf_resnet_small"},
    AGC_FREE_GAINS: {"model": "nf_resnet_small", "agc": AGCSelection(exclude_skip_gains=True)},
}
UNCLIPPED = (BN, NF)
CLIPPED = (AGC, AGC_FREE_GAINS)  # swept over lambda
# figure styles (matplotlib keywords): colour = normaliser / clipping, dashes = the departure
STYLES: dict[str, dict[str, str]] = {
    BN: {"color": "tab:blue"}, NF: {"color": "tab:orange"}, AGC: {"color": "tab:green"},
    AGC_FREE_GAINS: {"color": "tab:green", "ls": "--"},
}

# §4.1: which parameters AGC clips, one arm per label (LAST_STAGE: the net's last stage). Each arm
# changes one thing against its base: an unclipped stage keeps its SkipInit gains clipped
# (exclude_stage_skip_gains=False), because freeing the gains is the other variant's change.
PAPER_LAYERS = "all but the classifier (paper)"
FIRST_CONV = "first conv unclipped"
LAST_STAGE = -1
LAYERS: dict[str, AGCSelection] = {
    PAPER_LAYERS: PAPER_SELECTION,
    "also the classifier": AGCSelection(clip_classifier=True),
    FIRST_CONV: AGCSelection(exclude_first_conv=True),
    "first stage unclipped": AGCSelection(exclude_stages=(0,), exclude_stage_skip_gains=False),
    "last stage unclipped": AGCSelection(exclude_stages=(LAST_STAGE,), exclude_stage_skip_gains=False),
}
# the arms run on each base: AGC as published, and the same arms on the skip-gains-unclipped base
# (the classifier arm does not touch the gains, so it runs on the paper's base only)
LAYER_ARMS: dict[str, tuple[str, ...]] = {
    AGC: tuple(LAYERS), AGC_FREE_GAINS: tuple(k for k in LAYERS if k != "also the classifier")}


# ----------------------------------------------------------------------------- the scale
@dataclass(frozen=True, kw_only=True)
class AgcScale(Scale):
    """A :class:`~nfrepro.experiments.sweep_plan.Scale` with the lambda grids of notebooks 02 / 03."""
    clippings: tuple[float, ...]          # notebook 03: the paper's grid (part of it at smoke scale)
    extra_clippings: tuple[float, ...]    # notebook 03: beyond the paper's grid
    batch_clippings: tuple[float, ...]    # notebook 02: the lambdas searched per batch size
    lengths: tuple[int, ...] = ()         # notebook 02: training lengths (epochs) of the length study
    length_seeds: tuple[int, ...] = ()    # ... its seeds at lengths other than ``epochs`` (all seeds there)
    long_clipping: float = 0.01           # ... AGC's lambda: the paper's for batch 1024-4096 (§5.1)


PAPER_CLIPPINGS = (0.01, 0.02, 0.04, 0.08, 0.16)  # §4.1, also in nfrepro/analysis/paper_reference.csv

SCALES: dict[str, AgcScale] = {
    # toy: a synthetic data set, two batch sizes, the ends of the lambda grid, one seed, one
    # thread (for nets this small two threads cost more than they save, far more on a busy CPU)
    "smoke": AgcScale(dataset="synthetic", widths=(4, 8, 16), depths=(1, 1, 1), epochs=2,
                   warmup_epochs=0.5, batch_sizes=(32, 128), clippings=(0.01, 0.16),
                   extra_clippings=(0.64,), batch_clippings=(0.01, 0.16), seeds=(0,),
                   lengths=(1, 2, 8), length_seeds=(0,), ema_decay=None, threads=1),
    # 2-core AVX2 CPU computing in fp32, notebooks 02 + 03 within 40 minutes. The cost is the images
    # processed, so the paper's 16x span of batch sizes, the learning rates 0.05-0.8 and the steps of a
    # 60k-image run at batch 128-2048 are kept on a quarter of Fashion-MNIST at batches four times
    # smaller: 15,000 images, batch 32-512, lr 0.4 B/256; two epochs are 936 / 234 / 58 steps. The
    # small nets with one block per stage and the ImageNet stem (28 px -> 7 px before the first
    # block, four stem channels), no EMA, five seeds (the paper's runs per point), two runs at a time.
    "cpu": AgcScale(dataset="fashion_mnist", train_subset=15_000, widths=(16, 16, 32), depths=(1, 1, 1),
                 small_stem=False, epochs=2, warmup_epochs=0.5, batch_sizes=(32, 128, 512),
                 clippings=PAPER_CLIPPINGS, extra_clippings=(), batch_clippings=PAPER_CLIPPINGS,
                 seeds=(0, 1, 2, 3, 4), lengths=(1, 2, 4, 8), length_seeds=(0, 1, 2), ema_decay=None,
                 workers=2, extra={"base_lr": 0.4}),
    # one GPU: CIFAR-10, the small nets four times wider, the paper's five batch sizes and grid
    "gpu": AgcScale(dataset="cifar10", widths=(64, 128, 256), depths=(2, 2, 2), epochs=15,
                 warmup_epochs=1.0, batch_sizes=(256, 512, 1024, 2048, 4096),
                 clippings=PAPER_CLIPPINGS, extra_clippings=(0.32, 0.64),
                 batch_clippings=PAPER_CLIPPINGS, seeds=(0, 1), lengths=(4, 8, 15, 30, 60),
                 length_seeds=(0, 1, 2), crop_padding=4, flip=True),
}


# ----------------------------------------------------------------------------- plans
def plan_batch_size(scale: AgcScale, variants: Iterable[str] = (*UNCLIPPED, *CLIPPED)) -> pd.DataFrame:
    """Fig. 2a: every variant at every batch size and seed; the clipped ones at each ``batch_clippings``."""
    return make_plan({"variant": v, "layers": PAPER_LAYERS if v in CLIPPED else "", "batch_size": b,
                  "clipping": c, "seed": s}
                 for v in variants for b in scale.batch_sizes
                 for c in (scale.batch_clippings if v in CLIPPED else [np.nan]) for s in scale.seeds)


def plan_clipping(scale: AgcScale, variants: Iterable[str] = CLIPPED) -> pd.DataFrame:
    """Fig. 2b: the clipped variants over the paper's grid and its extension, every batch size."""
    return make_plan({"variant": v, "layers": PAPER_LAYERS, "batch_size": b, "clipping": c, "seed": s}
                 for v in variants for b in scale.batch_sizes
                 for c in (*scale.clippings, *scale.extra_clippings) for s in scale.seeds)


def plan_layers(scale: AgcScale, clipping: Mapping[tuple[str, int], float]) -> pd.DataFrame:
    """§4.1 layer choice: at the largest batch size, every arm of :data:`LAYER_ARMS` on each base
    variant; at the next smaller batch (the control of the first conv's claim), the base and the
    first conv unclipped. ``clipping[(variant, batch)]``: the lambda of that base at that batch."""
    big = max(scale.batch_sizes)
    smaller = [b for b in scale.batch_sizes if b < big]
    only = {big: None, **({max(smaller): (PAPER_LAYERS, FIRST_CONV)} if smaller else {})}
    return make_plan({"variant": v, "layers": layer, "batch_size": b, "clipping": clipping[(v, b)], "seed": s}
                     for b, keep in only.items() for v, arms in LAYER_ARMS.items() if (v, b) in clipping
                     for layer in arms if keep is None or layer in keep for s in scale.seeds)


# ----------------------------------------------------------------------------- the training length
def length_variant(variant: str, epochs: int) -> str:
    """The label of ``variant`` trained ``epochs`` epochs (the length study)."""
    return f"{variant}, {epochs} epoch" + ("s" if epochs != 1 else "")


def split_length(label: str) -> tuple[str, int | None]:
    """``(variant, epochs)`` of a :func:`length_variant` label; ``(label, None)`` for any other."""
    head, _, tail = label.rpartition(", ")
    return (head, int(tail.split()[0])) if head and tail.endswith((" epoch", " epochs")) else (label, None)


def length_methods(scale: AgcScale) -> dict[str, dict[str, Any]]:
    """Every variant at every length of ``scale.lengths``: its overrides with ``epochs`` (tested at
    the end only). At ``scale.epochs`` a run is the very run of the batch-size study (same folder)."""
    return {length_variant(v, e): {**METHODS[v], "epochs": e, "eval_every": e}
            for v in METHODS for e in scale.lengths}


def plan_length(scale: AgcScale, nf_batch: int | None = None) -> pd.DataFrame:
    """The training-length study (run with ``methods=length_methods(scale)``): at the largest batch,
    BN and both clipped variants at the paper's lambda for large batches (``long_clipping``); at
    ``nf_batch`` (the largest batch at which NF without clipping trained), NF and BN. Every length
    of ``scale.lengths``; all seeds at ``scale.epochs`` (the runs of Fig. 2a, read back), the
    ``length_seeds`` elsewhere."""
    big = max(scale.batch_sizes)
    series = [(BN, big), (AGC, big), (AGC_FREE_GAINS, big)]
    if nf_batch is not None:
        series += [(NF, nf_batch)] + ([(BN, nf_batch)] if nf_batch != big else [])
    return make_plan({"variant": length_variant(v, e), "layers": PAPER_LAYERS if v in CLIPPED else "",
                      "batch_size": b, "clipping": scale.long_clipping if v in CLIPPED else np.nan, "seed": s}
                     for v, b in series for e in scale.lengths
                     for s in (scale.seeds if e == scale.epochs else scale.length_seeds))


def all_methods(scale: AgcScale) -> dict[str, dict[str, Any]]:
    """Every variant label of notebooks 02 / 03 at ``scale``: :data:`METHODS`, the lengths, the fp32 twins."""
    return {**METHODS, **length_methods(scale), **fp32_methods()}


def run_config(spec: Mapping[str, Any], scale: Scale, methods: Mapping[str, Mapping[str, Any]] = METHODS,
               runs_dir: str | Path | None = None) -> TrainConfig:
    """The TrainConfig of one planned run (a row of a plan, or of a run table)."""
    return apply_overrides(scale.base_config(), run_overrides(spec, scale, methods), runs_dir)


def arm_configs(scale: AgcScale, variant: str, batch_size: int, clipping: float | None = None,
                layers: str | None = None, runs_dir: str | Path | None = None) -> list[TrainConfig]:
    """The TrainConfigs of ``variant`` at ``batch_size`` (and ``clipping``, ``layers``: the paper's
    for a clipped variant by default), one per seed of ``scale``: the sweep's runs, for diagnostics
    that step them again by hand (:mod:`nfrepro.experiments.agc_diagnosis`)."""
    layers = layers if layers is not None else PAPER_LAYERS if variant in CLIPPED else ""
    spec = {"variant": variant, "layers": layers, "batch_size": batch_size,
            "clipping": np.nan if clipping is None else clipping}
    return [run_config({**spec, "seed": s}, scale, runs_dir=runs_dir) for s in scale.seeds]


FP32_SUFFIX = ", fp32"


def fp32_methods(methods: Mapping[str, Mapping[str, Any]] = METHODS) -> dict[str, dict[str, Any]]:
    """Each variant again in fp32 with the NCHW layout (the paired check that the bf16 default
    does not change the conclusions), named ``"<variant>, fp32"``."""
    return {f"{v}{FP32_SUFFIX}": {**o, "amp": "off", "channels_last": False} for v, o in methods.items()}


def plan_fp32(points: pd.DataFrame) -> pd.DataFrame:
    """The runs of ``points`` (a plan, or :func:`~nfrepro.experiments.agc_analysis.fig2a_points`)
    again in fp32: same batch sizes, lambdas and seeds; run with ``methods=fp32_methods()``."""
    return make_plan({**{c: r[c] for c in PLAN_COLUMNS}, "variant": f"{r['variant']}{FP32_SUFFIX}"}
                 for r in points.to_dict("records"))


def layer_overrides(scale: Scale) -> dict[str, dict[str, Any]]:
    """:data:`LAYERS` as TrainConfig overrides for this scale (:func:`_selection_keys`)."""
    return {label: _selection_keys(selection, scale) for label, selection in LAYERS.items()}


def run_overrides(spec: Mapping[str, Any], scale: Scale,
                  methods: Mapping[str, Mapping[str, Any]] = METHODS) -> dict[str, Any]:
    """The TrainConfig overrides of one planned run (a row of a plan): its variant's, its layer
    choice's and the row's batch size, seed and lambda (:func:`sweep_plan.run_overrides`)."""
    return sweep_plan.run_overrides(spec, _flat_arms(methods, scale), layer_overrides(scale))


def _flat_arms(methods: Mapping[str, Mapping[str, Any]], scale: Scale) -> dict[str, dict[str, Any]]:
    """The arms as TrainConfig overrides: an arm's ``"agc"`` selection as config.json's flat keys."""
    return {name: _flat(arm, scale) for name, arm in methods.items()}


def _flat(arm: Mapping[str, Any], scale: Scale) -> dict[str, Any]:
    """An arm with its ``"agc"`` selection (if any) as config.json's flat keys."""
    arm = dict(arm)
    selection = arm.pop("agc", PAPER_SELECTION)
    return {**arm, **_selection_keys(selection, scale)}


def _selection_keys(selection: AGCSelection, scale: Scale) -> dict[str, Any]:
    """``selection`` as TrainConfig overrides, :data:`LAST_STAGE` as the net's last stage (so run
    folders are named by the stage's number)."""
    stages = tuple(scale.num_stages + s if s < 0 else s for s in selection.exclude_stages)
    return agc_keys(dataclasses.replace(selection, exclude_stages=stages))


def sweep_dir(profile: str) -> Path:
    """The run folders notebooks 02 and 03 share: ``runs/agc_sweep/<profile>`` (git-ignored)."""
    return sweep_plan.runs_dir("agc_sweep", profile)


def run_plan(plan: pd.DataFrame, scale: Scale, runs_dir: str | Path, progress: bool = True,
             workers: int = 1, train_fn: Callable[[TrainConfig], RunResult] = train,
             methods: Mapping[str, Mapping[str, Any]] = METHODS) -> pd.DataFrame:
    """:func:`nfrepro.experiments.sweep_plan.run_plan` with this module's variants and layer
    choices: run (or read back) every planned run; the tidy table, one row per run and metric."""
    return sweep_plan.run_plan(plan, scale, runs_dir, _flat_arms(methods, scale), layer_overrides(scale),
                               progress=progress, workers=workers, train_fn=train_fn)


# the paper's side of the comparison (§4.1, Fig. 2; App. A), quoted, never measured
PAPER_SETUP = {
    "data set": "ImageNet (1.28M training images)",
    "networks": "NF-ResNet-50 / -200 and their BatchNorm twins",
    "training": "90 epochs, lr 0.1 B/256 with linear warmup, then cosine decay",
    "batch sizes": "256, 512, 1024, 2048, 4096",
    "clipping λ": "0.01, 0.02, 0.04, 0.08, 0.16",
    "runs per point": "5 seeds, mean of the best 4",
    "skip gains": "SkipInit gains (init 0), clipped like every other parameter",
}


def _join(values: Iterable[float]) -> str:
    return ", ".join(f"{v:g}" for v in values)


def departures(scale: AgcScale) -> pd.DataFrame:
    """The paper's setup (:data:`PAPER_SETUP`) beside this profile's, row by row."""
    data = "Fashion-MNIST (60k, 28 px)" if scale.dataset == "fashion_mnist" else \
        "CIFAR-10 (50k, 32 px)" if scale.dataset == "cifar10" else f"{scale.dataset} (toy)"
    if scale.train_subset:
        data += f", the first {scale.train_subset:,} training images"
    stem = "3x3 stride-1 stem" if scale.small_stem else "ImageNet stem (7x7/2 conv, 3x3/2 max-pool)"
    aug = "crop + flip" if scale.crop_padding or scale.flip else "no augmentation"
    base_lr = scale.base_config().base_lr
    ema = "no EMA" if scale.ema_decay is None else f"EMA {scale.ema_decay:g}"
    lengths = "" if not scale.lengths else (
        f"; the largest batch again at {_join(scale.lengths)} epochs ({len(scale.length_seeds)} seeds "
        f"beside the {scale.epochs}-epoch runs)")
    here = {
        "data set": data,
        "networks": f"small NF / BN ResNets: widths {scale.widths}, blocks per stage "
                    f"{scale.depths}, basic blocks, {stem}",
        "training": f"{scale.epochs} epochs, lr {base_lr:g} B/256 with linear warmup "
                    f"({scale.warmup_epochs:g} epoch), then cosine decay; {aug}; {ema}{lengths}",
        "batch sizes": ", ".join(map(str, scale.batch_sizes)),
        "clipping λ": f"notebook 02: {_join(scale.batch_clippings)}; notebook 03: "
                      f"{_join(scale.clippings)}" + (f", and beyond: {_join(scale.extra_clippings)}"
                                                     if scale.extra_clippings else ""),
        "runs per point": f"{len(scale.seeds)} seed(s): accuracy compared over the seeds where both "
                          f"sides trained (95% t interval), divergence counted apart (Wilson interval); "
                          f"the best 4 of 5 reported beside (a diverged run scores chance, 10%)",
        "skip gains": "clipped as in the paper, and a labelled variant that leaves them unclipped",
    }
    return pd.DataFrame({"paper (§4.1)": PAPER_SETUP, "here": here})
