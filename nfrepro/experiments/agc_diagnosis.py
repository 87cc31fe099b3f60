r"""Why NF nets diverge at large batch without clipping, and why leaving the first convolution
unclipped diverges there too (NFNets §4.1), from the first updates stepped by hand.

The paper says the first convolution "can often be left unclipped". At the cpu scale of notebook
03 every run with it unclipped diverged at batch 2048. This module steps the first updates of
such a run by hand (:func:`nfrepro.engine.training.build_run`: the same model, data order,
optimizer, schedule and precision as the sweep's run) and records, before AGC clips, the
unit-wise ratio :math:`\|G_i\| / \max(\|W_i\|, \epsilon)` that AGC compares with
:math:`\lambda` (§4.1, Eq. 3), for the first convolution and for every other clipped layer, with
the loss: where the ratio of the first convolution stands against the rest, and what happens to
the loss once it is left free, is the diagnosis notebook 03 shows. The same trace of a run without
clipping (``max_ratio``: the largest ratio over every weight AGC would clip) beside a clipped run is
the mechanism of the naive NF net's failure that notebook 02 shows (:func:`blowup`).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd
import torch

from nfrepro.engine.config import TrainConfig
from nfrepro.engine.training import build_run, train_step
from nfrepro.models.utils import first_conv
from nfrepro.optim.agc import EPS, AGCSelection, clip_parameters, unitwise_norm


def _ratio(p: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Per unit, ||G_i|| / max(||W_i||, eps): what AGC compares with lambda."""
    return unitwise_norm(p.grad.float()) / unitwise_norm(p.detach().float()).clamp_min(eps)


def trace_first_steps(config: TrainConfig, steps: int = 30) -> pd.DataFrame:
    """The first ``steps`` updates of ``config``: one row per step with the loss, the learning
    rate, the first conv's largest unit ratio (``first_conv_ratio``, before clipping) and norm of
    its weight (``first_conv_weight_norm``), the largest ratio over every other weight AGC clips
    (``others_ratio``), the larger of the two (``max_ratio``) and the share of the first conv's units
    above lambda (``first_conv_above``). Stops early (and says so in ``status``) once the loss is not
    finite or exceeds ``config.max_loss``, where the engine would stop the run as diverged."""
    parts = build_run(config)  # seeded from config.seed, as train() builds it
    model = parts.model
    conv = first_conv(model)
    weight = conv.weight
    others = [p for p in clip_parameters(model, AGCSelection(exclude_first_conv=True)) if p.ndim > 1]
    lam = config.clipping if config.clipping is not None else float("inf")
    rows: list[dict[str, Any]] = []
    seen: dict[str, float] = {}

    def before_step() -> None:  # gradients complete, AGC not applied yet
        r = _ratio(weight, config.agc.eps)
        seen.update(first_conv_ratio=float(r.max()), first_conv_above=float((r > lam).float().mean()),
                    others_ratio=max(float(_ratio(p, config.agc.eps).max())
                                     for p in others if p.grad is not None))

    model.train()
    for step, (x, y) in enumerate(parts.train_loader):
        if step == steps:
            break
        lr = parts.opt.param_groups[0]["lr"]
        loss = float(train_step(parts.net, parts.opt, x, y, parts.autocast, config.label_smoothing,
                                before_step=before_step))
        parts.sched.step()
        rows.append({"step": step + 1, "loss": loss, "lr": lr, **seen,
                     "max_ratio": max(seen["first_conv_ratio"], seen["others_ratio"]),
                     "first_conv_weight_norm": float(unitwise_norm(weight.detach()).norm())})
        if not math.isfinite(loss) or loss > config.max_loss:
            break
    df = pd.DataFrame(rows)
    last = df["loss"].iloc[-1] if len(df) else 0.0
    df["status"] = "finite" if math.isfinite(last) and last <= config.max_loss else "diverged"
    return df


def trace_arms(arms: Mapping[str, Iterable[TrainConfig]], steps: int, by: str = "arm") -> pd.DataFrame:
    """:func:`trace_first_steps` of every config of every arm, in one table with the arm's label
    (column ``by``) and each config's ``seed``. One thread, as the sweep's runs train: the trace
    repeats bit for bit, and steps the very updates of the run it retraces."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return pd.concat([trace_first_steps(c, steps).assign(**{by: name}, seed=c.seed)
                          for name, configs in arms.items() for c in configs], ignore_index=True)
    finally:
        torch.set_num_threads(threads)


def logged_gap(trace: pd.DataFrame, steps_csv: str | Path) -> float:
    """The largest relative difference between a trace's losses and those its run logged
    (``RUN/steps.csv``) at the steps both hold with a finite loss: 0 when the trace steps the very
    updates of the run (the same data, order, weights and precision)."""
    both = pd.read_csv(steps_csv).merge(trace, on="step", suffixes=("_logged", ""))
    both = both[np.isfinite(both["loss_logged"]) & np.isfinite(both["loss"])]
    return float((both["loss"] - both["loss_logged"]).abs().div(both["loss_logged"].abs()).max())


def first_conv_facts(config: TrainConfig) -> dict[str, Any]:
    """What sets the first conv apart in ``config``'s model: its shape and fan-in against the
    other convolutions', and the input's channels."""
    parts = build_run(config)
    conv = first_conv(parts.model)
    fan_ins = [m.weight[0].numel() for m in parts.model.modules()
               if isinstance(m, torch.nn.Conv2d) and m is not conv]
    return {"first conv weight": tuple(conv.weight.shape), "first conv fan-in": conv.weight[0].numel(),
            "other convs' fan-in (min-max)": f"{min(fan_ins)}-{max(fan_ins)}",
            "input channels": conv.weight.shape[1], "stride": conv.stride[0]}


BLOW_UP = 10.0  # a loss above this many times its first value counts as blown up


def summarize(traces: pd.DataFrame, clipping: float) -> pd.DataFrame:
    """Per layer setting, over seeds (``traces`` from :func:`trace_first_steps`, with ``layers``
    and ``seed`` columns): runs, how many blew up (loss above :data:`BLOW_UP` times its first
    value, or not finite) and the median step it happened, and up to that step (the whole trace
    otherwise) the largest unit ratio of the first conv and of every other clipped weight, in
    units of lambda (medians over seeds), and how much the first conv's weight norm grew."""
    rows = []
    for (layers, seed), t in traces.groupby(["layers", "seed"], sort=False):
        t = t.sort_values("step")
        bad = ~np.isfinite(t["loss"]) | (t["loss"] > BLOW_UP * t["loss"].iloc[0])
        stop = int(t.loc[bad, "step"].iloc[0]) if bad.any() else None
        upto = t[t["step"] <= stop] if stop else t
        rows.append({"layers": layers, "seed": seed, "blew_up": stop is not None, "step": stop,
                     "first_conv_ratio": upto["first_conv_ratio"].max() / clipping,
                     "others_ratio": upto["others_ratio"].max() / clipping,
                     "weight_growth": float(upto["first_conv_weight_norm"].iloc[-1]
                                            / t["first_conv_weight_norm"].iloc[0])})
    df = pd.DataFrame(rows)
    return (df.groupby("layers", sort=False)
            .agg(runs=("seed", "nunique"), blew_up=("blew_up", "sum"), median_step=("step", "median"),
                 first_conv_ratio_over_lambda=("first_conv_ratio", "median"),
                 others_ratio_over_lambda=("others_ratio", "median"),
                 first_conv_weight_growth=("weight_growth", "median"))
            .reset_index())


def first_conv_clause(summary: pd.DataFrame, layers: str = "first conv unclipped") -> str:
    """A clause for a verdict's reading: how far the first conv's ratio ran before the loss blew up,
    read from :func:`summarize`'s row of ``layers`` ("" when it did not blow up)."""
    r = summary.set_index("layers").loc[layers]
    if not r["blew_up"]:
        return ""
    return (f"; stepped by hand, its largest unit ratio reached {r['first_conv_ratio_over_lambda']:.0f} λ "
            f"(the other layers' {r['others_ratio_over_lambda']:.1f} λ) before the loss blew up at step "
            f"{r['median_step']:g} (medians)")


def describe(summary: pd.DataFrame, clipping: float) -> str:
    """:func:`summarize`'s table in words (for a Markdown cell); every number read from it."""
    parts = []
    for r in summary.itertuples():
        when = (f"{int(r.blew_up)} of {r.runs} blew up (loss above {BLOW_UP:g}x its first value), "
                f"at step {r.median_step:g} (median)" if r.blew_up else f"none of {r.runs} blew up")
        parts.append(f"**{r.layers}**: {when}; up to then, the first conv's largest unit ratio reached "
                     f"{r.first_conv_ratio_over_lambda:.1f} λ and the largest of every other clipped weight "
                     f"{r.others_ratio_over_lambda:.1f} λ (medians over seeds); the first conv's weight norm "
                     f"grew {r.first_conv_weight_growth:.2f}-fold.")
    return " ".join(parts) + (f" λ = {clipping:g}. A weight-standardized convolution's output does not "
                              f"depend "
                              f"on its weight's norm, but its step does: an unclipped step of ratio r moves "
                              f"each unit by about lr·r of its norm.")


def blowup(traces: pd.DataFrame, by: str = "arm") -> pd.DataFrame:
    """Per ``by`` group (over seeds) of :func:`trace_first_steps` traces: runs, how many blew up (loss
    above :data:`BLOW_UP` times its first value, or not finite) and the median step, and the median
    over seeds of the largest unit ratio at the first step and at its peak before the blow-up (the
    whole trace otherwise), with how many times it grew in between."""
    rows = []
    for (group, seed), t in traces.groupby([by, "seed"], sort=False):
        t = t.sort_values("step")
        bad = ~np.isfinite(t["loss"]) | (t["loss"] > BLOW_UP * t["loss"].iloc[0])
        stop = int(t.loc[bad, "step"].iloc[0]) if bad.any() else None
        upto = t[t["step"] <= stop] if stop else t
        rows.append({by: group, "seed": seed, "blew_up": stop is not None, "step": stop,
                     "first": float(t["max_ratio"].iloc[0]), "peak": float(upto["max_ratio"].max())})
    df = pd.DataFrame(rows).assign(growth=lambda d: d["peak"] / d["first"])
    return (df.groupby(by, sort=False)
            .agg(runs=("seed", "nunique"), blew_up=("blew_up", "sum"), median_step=("step", "median"),
                 max_ratio_first_step=("first", "median"), max_ratio_peak=("peak", "median"),
                 growth=("growth", "median"))
            .reset_index())


def describe_blowup(summary: pd.DataFrame, clipping: float, by: str = "arm") -> str:
    """A clause for a verdict's reading (and the text under the mechanism figure), every number read
    from :func:`blowup`'s table: how the largest unit ratio grew before the loss blew up."""
    parts = []
    for r in summary.to_dict("records"):
        runs = f"{r['runs']} run" + ("s" if r["runs"] != 1 else "")
        when = (f"blew up in {int(r['blew_up'])} of {runs} (median step {r['median_step']:g})"
                if r["blew_up"] else f"did not blow up in {runs}")
        first, peak, growth = r["max_ratio_first_step"], r["max_ratio_peak"], r["growth"]
        parts.append(f"{r[by]} {when}, its largest unit ratio ‖G_i‖/‖W_i‖ going from {first:.3g} at the "
                     f"first step to {peak:.3g} ({growth:.0f}x; {peak / clipping:.0f} λ at λ = {clipping:g})")
    return "; ".join(parts)
