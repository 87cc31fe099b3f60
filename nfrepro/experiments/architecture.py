"""NFNet architecture at a glance: shapes, the size of F0..F7, and the Table 2 design steps.

* :func:`module_shapes`: the output shape and parameter count of each child of a module (the stem,
  a stage), read with forward hooks, for the step-by-step build of notebook 04.
* :func:`complexity_table`: parameters and multiply-adds of NFNet-F0..F7 (Table 3 / official code),
  counted on the meta device with :mod:`nfrepro.analysis.complexity`, so F7 costs no memory.
* :func:`scaling_table` and :func:`recipe_table`: the F0..F7 scaling rule (Table 1) and the
  training recipe (App. A), read from the code, with the paper's values beside them.
* :data:`TABLE2_STEPS`: the architecture rows of NFNets Table 2 as keyword overrides of
  ``nfnet_f0``: the baseline SE-ResNeXt-D NF (default ResNet widths, one grouped 3x3 conv), then
  the modified widths [256, 512, 1536, 1536] (§4.1), then the second grouped 3x3 conv (= F0); and
  the last row, default widths with the second conv. The augmentation rows of Table 2 (MixUp,
  RandAugment, CutMix) change training, not the network. :func:`table2_rounds` times their
  training steps in alternating rounds; :func:`table2_reading` says what each change did to the
  counts and to the measured step, in sentences written from those numbers.
"""
from __future__ import annotations

from typing import Any, Iterable

import pandas as pd
import torch
import torch.nn as nn

from nfrepro.analysis.complexity import count_macs, count_params
from nfrepro.analysis.reference import paper_value
from nfrepro.bench.harness import make_batch, place, train_step_fn
from nfrepro.data.augment import MIXUP_ALPHA
from nfrepro.engine.config import TrainConfig
from nfrepro.engine.device import resolve_device
from nfrepro.experiments.rounds import direction, iqrs_overlap, pair_ratio, round_summary, round_times
from nfrepro.models.factory import create_model
from nfrepro.models.nfnet import VARIANTS
from nfrepro.optim import agc, recipe

RESNET_WIDTHS = (256, 512, 1024, 2048)  # "default widths" of Table 2 (ResNet-50's stage outputs)

# label in nfrepro/analysis/paper_reference.csv (Table 2 rows)  ->  nfnet_f0 overrides
TABLE2_STEPS: dict[str, dict[str, Any]] = {
    "NFNet-F0 (baseline SE-ResNeXt-D NF)": {"channels": RESNET_WIDTHS, "extra_conv": False},
    "NFNet-F0 (+ modified width)": {"extra_conv": False},
    "NFNet-F0 (+ second conv)": {},
    # Table 2's last row: default widths with the second conv (and the augmentations, which do not
    # change the network): shows what the modified widths cost on a network that has the second conv.
    "NFNet-F0 (default width + augs)": {"channels": RESNET_WIDTHS},
}


def module_shapes(module: nn.Module, x: torch.Tensor) -> pd.DataFrame:
    """Run ``module(x)`` once (no grad) and list, for each direct child in call order, its name,
    type, output shape and number of parameters. A child called several times appears each time."""
    rows: list[dict[str, Any]] = []

    def hook(name: str):
        def record(child: nn.Module, _inputs, output):
            rows.append({"module": name, "type": type(child).__name__,
                         "output_shape": tuple(output.shape), "params": count_params(child)})
        return record

    handles = [child.register_forward_hook(hook(name)) for name, child in module.named_children()]
    try:
        with torch.no_grad():
            module(x)
    finally:
        for h in handles:
            h.remove()
    return pd.DataFrame(rows)


def model_size(name: str, px: int, **overrides: Any) -> dict[str, float]:
    """``{"params": ..., "macs": ...}`` of a registered model at ``px`` x ``px``, built on the meta device."""
    with torch.device("meta"):
        model = create_model(name, **overrides)
    return {"params": float(count_params(model)), "macs": float(count_macs(model, px))}


def complexity_table(variants: Iterable[str] = ("F0", "F1", "F2", "F3", "F4", "F5", "F6", "F7"),
                     ) -> pd.DataFrame:
    """Parameters and multiply-adds (at the test resolution, one image) of NFNet variants.

    Tidy: one row per variant and metric, ``label`` as in the paper reference table (``NFNet-F0``).
    """
    rows = []
    for v in variants:
        px = VARIANTS[v].test_px
        size = model_size(f"nfnet_{v.lower().replace('+', '_plus')}", px)
        rows += [{"label": f"NFNet-{v}", "resolution": px, "metric": k, "value": val}
                 for k, val in size.items()]
    return pd.DataFrame(rows)


def table2_models(**common: Any) -> dict[str, nn.Module]:
    """The three Table 2 architectures, built with ``common`` keyword arguments (e.g. ``num_classes``)."""
    return {label: create_model("nfnet_f0", **{**common, **overrides})
            for label, overrides in TABLE2_STEPS.items()}


def table2_complexity(px: int | None = None) -> pd.DataFrame:
    """Parameters and multiply-adds of the Table 2 steps at F0's test resolution (tidy)."""
    px = px or VARIANTS["F0"].test_px
    rows = []
    for label, overrides in TABLE2_STEPS.items():
        size = model_size("nfnet_f0", px, **overrides)
        rows += [{"label": label, "resolution": px, "metric": k, "value": val} for k, val in size.items()]
    return pd.DataFrame(rows)


# (from, to, the change in words): each architecture change of Table 2 as a pair of its rows
_BASE, _WIDTH, _F0, _DEFAULT = TABLE2_STEPS
TABLE2_CHANGES = ((_BASE, _WIDTH, "the modified widths"), (_WIDTH, _F0, "the second conv"),
                  (_DEFAULT, _F0, "the modified widths, on the net with the second conv"),
                  (_BASE, _F0, "all changes together (F0 against the baseline)"))


def table2_rounds(batch_size: int, px: int, device: Any = None, rounds: int = 20, warmup: int = 2,
                  **overrides: Any) -> pd.DataFrame:
    """The training steps (forward, backward, AGC, SGD with Nesterov momentum) of the four Table 2
    networks on one batch, timed in alternating rounds (:func:`nfrepro.experiments.rounds.round_times`):
    tidy ``side``, ``round``, ``step_ms``, with ``batch_size``, ``resolution`` and ``device``."""
    device = resolve_device(device)
    x, y = make_batch(batch_size, px, device)
    steps = {label: train_step_fn(place(m, device), x, y, clip="nfrepro")
             for label, m in table2_models(**overrides).items()}
    return round_times(steps, rounds, warmup, device).assign(batch_size=batch_size, resolution=px,
                                                             device=str(device))


def table2_reading(sizes: pd.DataFrame, times: pd.DataFrame) -> list[str]:
    """One sentence group per change of :data:`TABLE2_CHANGES`, written from the numbers: what the
    change did to the parameter and multiply-add counts (``sizes``: index label, columns ``params``,
    ``macs``), to the measured step (the per-round ratio of :func:`table2_rounds`' rounds, its IQR and
    95% interval, and whether the two steps' time IQRs overlap) and to the paper's TPUv3 step. Where
    the step moved against both counts, it says so and that this run does not measure why."""
    summary = round_summary(times, _BASE).set_index("side")
    rounds = int(times["round"].nunique())
    out = []
    for a, b, what in TABLE2_CHANGES:
        r = pair_ratio(times, b, a)
        counts = {k: 100 * (sizes.loc[b, k] / sizes.loc[a, k] - 1) for k in ("params", "macs")}
        paper = 100 * (paper_value("train_step_tpuv3", b) / paper_value("train_step_tpuv3", a) - 1)
        word = direction(r, "slower", "faster", "no clear difference")
        overlap = "overlap" if iqrs_overlap(summary.loc[a], summary.loc[b]) else "do not overlap"
        short_a, short_b = (label.removeprefix("NFNet-F0 ").strip("()") for label in (a, b))
        ratio = (f"{r['ratio_median']:.3f}x the {short_a} step's time (per-round ratio: IQR "
                 f"{r['ratio_q25']:.3f}-{r['ratio_q75']:.3f}, 95% interval of the median "
                 f"{r['ratio_ci_low']:.3f}-{r['ratio_ci_high']:.3f}, {rounds} rounds)")
        iqr = lambda side: f"{summary.loc[side, 'q25_ms']:.0f}-{summary.loc[side, 'q75_ms']:.0f} ms"  # noqa: E731
        text = (f"**{what[0].upper() + what[1:]}** ({short_a} to {short_b}): {counts['params']:+.1f}% "
                f"parameters, {counts['macs']:+.1f}% multiply-adds. The {short_b} step took {ratio}: {word}. "
                f"The two steps' times have IQRs {iqr(a)} and {iqr(b)}, which {overlap}. "
                f"The paper's TPUv3 step: {paper:+.1f}%.")
        grew = counts["params"] > 0 and counts["macs"] > 0
        shrank = counts["params"] < 0 and counts["macs"] < 0
        if (grew and word == "faster") or (shrank and word == "slower"):
            text += (" The step moved against both counts, so neither predicts the step time here; this run "
                     "does not measure why.")
        out.append(text)
    return out


def findings(table3: pd.DataFrame, table1_disagreements: int, readings: list[str], setting: str) -> str:
    """Notebook 04's "What we found" in Markdown, from the numbers: how far our parameter and FLOP
    counts are from Table 3's (``table3``: columns ``params (M), ours`` / ``paper`` and ``FLOPs (B MACs),
    ours`` / ``paper``), how many Table 1 rows disagree, then :func:`table2_reading`'s sentences."""
    dp = (table3["params (M), ours"] - table3["params (M), paper"]).abs().max()
    df = (table3["FLOPs (B MACs), ours"] - table3["FLOPs (B MACs), paper"]).abs().max()
    return "\n".join([
        f"* **Table 1 and Table 3.** {table1_disagreements} of the variant table's rows differ from the "
        f"paper's; our parameter and multiply-add counts of {', '.join(table3.index)} are at most "
        f"{dp:.3f}M and {df:.3f}B away from Table 3's two-decimal numbers.",
        f"* **Table 2, measured** ({setting}):",
        *[f"  * {r}" for r in readings],
        "* The paper's step times are TPUv3 with 32 images per device in bf16, so only the direction of "
        "each change can be set beside ours, not its size.",
    ])


# ----------------------------------------------------------------------------- the F0..F7 family
def scaling_table(variants: Iterable[str] = ("F0", "F1", "F2", "F3", "F4", "F5", "F6", "F7")) -> pd.DataFrame:
    """The scaling rule of the family (Table 1), read from :data:`~nfrepro.models.nfnet.VARIANTS`,
    with the paper's values beside ours (NaN where Table 1 gives none, e.g. F7, which is code only).

    The rule: NFNet-Fn has ``n + 1`` times F0's blocks per stage (1, 2, 6, 3), trains and tests at a
    resolution that grows with n, and raises dropout and the RandAugment magnitude with its size.
    """
    f0 = VARIANTS["F0"].depths
    rows = []
    for v in variants:
        row = VARIANTS[v]
        ours = {"depth_multiplier": row.depths[0] / f0[0],
                **{f"depth_stage{i + 1}": d for i, d in enumerate(row.depths)},
                "train_resolution": row.train_px, "test_resolution": row.test_px, "dropout": row.drop_rate,
                "randaugment_layers": row.randaugment[0], "randaugment_magnitude": row.randaugment[1]}
        for quantity, value in ours.items():
            paper = paper_value(quantity, f"NFNet-{v}", missing=float("nan")) \
                if quantity != "depth_multiplier" else float("nan")
            rows.append({"variant": v, "quantity": quantity, "ours": float(value), "paper (T1)": paper})
    out = pd.DataFrame(rows)
    out["agree"] = [None if p != p else o == p for o, p in zip(out["ours"], out["paper (T1)"], strict=True)]
    return out


# what the recipe of Appendix A sets, the constant that holds it here, and why a small run differs
RECIPE = [
    # (quantity in the reference table, label, nfrepro's constant, TrainConfig's default, why they differ)
    ("recipe_base_lr_per_256", "learning rate per 256 images", recipe.BASE_LR, TrainConfig().base_lr, ""),
    ("recipe_momentum_nesterov", "Nesterov momentum", recipe.MOMENTUM, TrainConfig().momentum, ""),
    ("recipe_weight_decay", "weight decay (not on gains, biases, skip gains)", recipe.WEIGHT_DECAY,
     TrainConfig().weight_decay, ""),
    ("recipe_label_smoothing", "label smoothing", recipe.LABEL_SMOOTHING, TrainConfig().label_smoothing, ""),
    ("recipe_warmup_epochs", "linear warmup (epochs), then cosine to 0", recipe.WARMUP_EPOCHS,
     TrainConfig().warmup_epochs, "a 10-epoch default run warms up for 1 epoch, not 5 of 10"),
    ("recipe_ema_decay_max", "EMA decay, min(d, (1+t)/(10+t))", recipe.EMA_DECAY, TrainConfig().ema_decay,
     "0.99999 averages over ~100k steps; a run of a few thousand steps needs ~0.999"),
    ("recipe_batch_size", "batch size", float("nan"), TrainConfig().batch_size,
     "4096 needs an accelerator pod; the lr follows the batch by the linear rule"),
    ("recipe_epochs", "epochs", float("nan"), TrainConfig().epochs,
     "360 ImageNet epochs are out of reach here"),
    ("recipe_mixup_alpha", "MixUp alpha (half the batch; CutMix the other half)", MIXUP_ALPHA,
     TrainConfig().mixup_alpha, "augmentation is off by default in TrainConfig (mix=None): the small "
     "studies compare normalisers and clipping, which augmentation would blur"),
    ("recipe_sam_ascent_batch_fraction", "SAM ascent on a fraction of the batch (F5, F6)",
     recipe.SAM_FRACTION,
     TrainConfig().sam_fraction, "SAM is off unless sam_rho is set"),
]


def recipe_table() -> pd.DataFrame:
    """Appendix A's training recipe: the paper's value, nfrepro's constant (``nfrepro.optim.recipe``,
    ``nfrepro.data.augment``) and :class:`~nfrepro.engine.config.TrainConfig`'s default, with the
    reason wherever a default departs from the paper; AGC's lambda from §5.1."""
    rows = [{"setting": label, "paper (App. A)": paper_value(q, "NFNet", missing=float("nan")),
             "nfrepro constant": const, "TrainConfig default": default, "why the default differs": why}
            for q, label, const, default, why in RECIPE]
    rows.append({"setting": "AGC lambda (batch 1024-4096)",
                 "paper (App. A)": paper_value("agc_clipping", "NFNet batch 1024-4096"),
                 "nfrepro constant": agc.CLIPPING, "TrainConfig default": TrainConfig().clipping,
                 "why the default differs": "the baselines train unclipped: clipping is opt-in (--clipping)"})
    return pd.DataFrame(rows)
