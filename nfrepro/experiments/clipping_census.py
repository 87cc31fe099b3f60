r"""Notebook 07, part 1: which units each clipping rule would clip (NFNets, arXiv:2102.06171, §4).

On the real gradients of the first epoch of an AGC run (:func:`track_clipping`), before AGC clips them,
:func:`census` counts the units that three rules would clip at the same lambda: AGC's unit-wise ratio
:math:`\|G_i\| / \max(\|W_i\|, \epsilon)`, the same ratio over each whole tensor (layer-wise, the
LARS ratio) and one global ratio :math:`\|G\| / \|W\|` over every clipped parameter (a
threshold proportional to the weights' norm, applied as ordinary clipping applies its one). The
unit-wise and whole-tensor rules coincide on tensors of <= 1 dim (biases, gains, skip gains):
one unit each. :func:`census_facts` holds the numbers the notebook reads the census with.
"""
from __future__ import annotations

import math
from typing import Any

import pandas as pd
import torch
import torch.nn as nn

from nfrepro.engine.training import build_run, train_step
from nfrepro.experiments.sweep_plan import Scale
from nfrepro.optim.agc import EPS, clip_parameters, unitwise_norm


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
    * ``global``: one ratio for the whole model, ``global_ratio`` :math:`= \\|G\\| / \\|W\\|` over every
      clipped parameter. ``w_norm``, ``g_norm``: the tensor's own norms.
    """
    named = {id(p): n for n, p in model.named_parameters()}
    params = [p for p in clip_parameters(model) if p.grad is not None]
    g_all = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
    w_all = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p) for p in params]))
    ratio = float(g_all / w_all.clamp_min(eps))
    rows = []
    for p in params:
        units = unitwise_norm(p.grad) / unitwise_norm(p).clamp_min(eps)
        w, g = float(torch.linalg.vector_norm(p)), float(torch.linalg.vector_norm(p.grad))
        n = units.numel()
        rows.append({"parameter": named[id(p)], "kind": _kind(named[id(p)], p), "units": n,
                     "unit": int((units > clipping).sum()), "tensor": n * int(g / max(w, eps) > clipping),
                     "global": n * int(ratio > clipping), "median_unit_ratio": float(units.median()),
                     "w_norm": w, "g_norm": g, "global_ratio": ratio})
    return pd.DataFrame(rows)


def track_clipping(scale: Scale, batch_size: int, clipping: float = 0.01, every: int = 2, seed: int = 0,
                   max_steps: int | None = None) -> pd.DataFrame:
    """The first epoch (or ``max_steps``) of the scale's AGC run (SGD, the recipe's warmup and
    schedule, :func:`nfrepro.engine.training.build_run`), with a :func:`census` of the raw gradients
    every ``every`` steps, before AGC clips them: one row per census step and parameter."""
    config = scale.base_config(batch_size=batch_size, clipping=clipping, seed=seed, progress=False)
    parts = build_run(config)
    frames: list[pd.DataFrame] = []
    limit = len(parts.train_loader) if max_steps is None else max_steps
    parts.model.train()
    for step, (x, y) in enumerate(parts.train_loader):
        if step >= limit:
            break

        def record(s: int = step) -> None:  # the gradients of step s, before the optimizer's step
            frames.append(census(parts.model, clipping, config.agc.eps).assign(step=s))

        train_step(parts.net, parts.opt, x, y, parts.autocast, config.label_smoothing,
                   before_step=record if step % every == 0 else None)
        parts.sched.step()
    return pd.concat(frames, ignore_index=True)


def census_fractions(raw: pd.DataFrame) -> pd.DataFrame:
    """Tidy: one row per step, parameter kind and rule; ``fraction`` = units that rule would clip."""
    long = raw.melt(id_vars=["step", "kind", "parameter", "units"], value_vars=["unit", "tensor", "global"],
                    var_name="rule", value_name="clipped")
    out = long.groupby(["step", "kind", "rule"], as_index=False)[["clipped", "units"]].sum()
    return out.assign(fraction=out["clipped"] / out["units"])


def census_facts(raw: pd.DataFrame, clipping: float, eps: float = EPS) -> dict[str, Any]:
    """The numbers the census is read with: the global ratio, how often it exceeds lambda and from
    which step (``global_first``; ``global_later`` census steps from there on); the
    skip gains' largest |w| and smallest |g| (their threshold is lambda max(|w|, eps)); the share of
    weight units each rule clips."""
    ratio = raw.groupby("step")["global_ratio"].first()
    skip = raw[raw["kind"] == "skip gain"]
    frac = census_fractions(raw).groupby(["kind", "rule"])["fraction"].mean()
    w_max = float(skip["w_norm"].max()) if len(skip) else math.nan
    weight = "weight (conv / linear)"
    fired = ratio[ratio > clipping]
    first = int(fired.index[0]) if len(fired) else None  # the first census step the global rule fires
    return {"steps": len(ratio), "global_fired": len(fired), "clipping": clipping, "eps": eps,
            "global_first": first, "global_later": int((ratio.index >= first).sum()) if len(fired) else 0,
            "global_ratio_first": float(ratio.iloc[0]), "global_ratio_median": float(ratio.iloc[1:].median()),
            "skip_w_max": w_max, "skip_g_min": float(skip["g_norm"].min()) if len(skip) else math.nan,
            "skip_threshold": clipping * max(w_max, eps),
            "weight_unit": float(frac.get((weight, "unit"), math.nan)),
            "weight_tensor": float(frac.get((weight, "tensor"), math.nan))}
