"""AGC benchmark: the vectorised clip against timm's per-parameter loop and a memory-bound floor.

Claim: :func:`nfrepro.optim.agc.adaptive_grad_clip_` clips NFNet-F0's 71.5M parameters faster than
timm's loop (goal: >= 1.5x on the CPU, >= 5x on a GPU), within 1.5x of a read-only pass over weights
and gradients (AGC must read both), and costs a small share of one training step. Evidence:
``results/bench_agc.csv`` and its JSON run record (``python -m nfrepro bench --which agc``).
"""
from __future__ import annotations

from typing import Any

import pandas as pd
import torch

from nfrepro.bench.harness import compare, count_ops, import_timm, make_batch, train_step_fn
from nfrepro.models import create_model
from nfrepro.optim import agc


def _set_grads(params: list[torch.Tensor], scenario: str, clipping: float, eps: float,
               seed: int = 0) -> None:
    """Gradients of the parameters' shapes: N(0, 1) (every unit clipped: a unit of fan-in n has
    ||G_i|| ~ sqrt(n) against lambda ||W_i|| ~ 0.01), or rescaled unit-wise to half the threshold
    (none clipped; on the CPU our AGC then skips the multiplication)."""
    gen = torch.Generator(device=params[0].device).manual_seed(seed)
    for p in params:
        grad = torch.randn(p.shape, generator=gen, device=p.device, dtype=p.dtype)
        if scenario == "none_clipped":
            shape = agc._row_shape(grad)
            target = 0.5 * clipping * agc.unitwise_norm(p.detach()).clamp_min(eps)
            grad *= (target / agc.unitwise_norm(grad)).view(shape)
        elif scenario != "all_clipped":
            raise ValueError(f"unknown scenario {scenario!r}")
        p.grad = grad


def _train_step_ms(model: torch.nn.Module, device: Any, batch: int, px: int, repeats: int,
                   warmup: int) -> float:
    """Median time of one training step (forward, backward, SGD with Nesterov momentum, no clipping)."""
    x, y = make_batch(batch, px, device, num_classes=model.get_classifier().out_features)
    df = compare({"train_step": train_step_fn(model, x, y, clip=None)}, "train_step", repeats=repeats,
                 warmup=warmup, device=device)
    return float(df["median_ms"].iloc[0])


def bench_agc(device: Any = "cpu", model_name: str = "nfnet_f0", repeats: int = 20, warmup: int = 3,
              clipping: float = agc.CLIPPING, eps: float = agc.EPS, step_batch: int = 32,
              step_px: int = 192, step_repeats: int = 2, step_warmup: int = 1,
              scenarios=("all_clipped", "none_clipped")) -> pd.DataFrame:
    """AGC on ``model_name``'s clipped parameters (all but the classifier weight), four sides:

    ``timm`` (baseline: ``timm.utils.agc.adaptive_clip_grad``, a loop over parameters, given the
    same list), ``reference`` (our plain loop), ``nfrepro`` (vectorised) and ``read_only``
    (``torch._foreach_norm`` of every weight and gradient: a memory-bound floor no AGC can beat).
    Gradients are restored, untimed, before every call. ``share_of_train_step`` divides by the
    median of one training step (forward, backward, SGD) at ``step_batch`` images of ``step_px``
    pixels; the defaults are the paper's latency protocol (App. A.2: 32 images per device at F0's
    training resolution, 192 px). AGC's cost does not depend on the batch, so at a toy batch its
    share is much larger. Scenarios bound the work: ``all_clipped`` (every unit scaled) and
    ``none_clipped``.
    """
    import_timm()
    from timm.utils.agc import (
        adaptive_clip_grad,  # optional dependency (the bench extra)
    )

    model = create_model(model_name).to(device)
    params = agc.clip_parameters(model)
    weights = [p.detach() for p in params]
    sides = {
        "timm": lambda: adaptive_clip_grad(params, clip_factor=clipping, eps=eps),
        "reference": lambda: agc.adaptive_grad_clip_reference_(params, clipping, eps=eps),
        "nfrepro": lambda: agc.adaptive_grad_clip_(params, clipping, eps=eps),
        "read_only": lambda: (torch._foreach_norm(weights), torch._foreach_norm([p.grad for p in params])),
    }
    rows = []
    for scenario in scenarios:
        _set_grads(params, scenario, clipping, eps)
        saved = [p.grad.clone() for p in params]
        grads = [p.grad for p in params]
        frac = float(agc.adaptive_grad_clip_(params, clipping, eps=eps)["frac_units_clipped"])
        ops = {}
        for name, fn in sides.items():
            torch._foreach_copy_(grads, saved)
            ops[name] = count_ops(fn)
        df = compare(sides, "timm", repeats=repeats, warmup=warmup, device=device,
                     setup=lambda grads=grads, saved=saved: torch._foreach_copy_(grads, saved))
        floor = float(df.loc[df["side"] == "read_only", "median_ms"].iloc[0])
        for r in df.itertuples():
            metrics = {"median_ms": r.median_ms, "q25_ms": r.q25_ms, "q75_ms": r.q75_ms,
                       "ratio_vs_timm": r.ratio_vs_baseline, "ratio_vs_read_only": r.median_ms / floor,
                       "aten_ops": ops[r.side]}
            rows += [{"scenario": scenario, "side": r.side, "metric": k, "value": v}
                     for k, v in metrics.items()]
        rows.append({"scenario": scenario, "side": "nfrepro", "metric": "frac_units_clipped",
                     "value": frac})

    step_ms = _train_step_ms(model, device, step_batch, step_px, step_repeats, step_warmup)
    rows.append({"scenario": "train_step", "side": "train_step", "metric": "median_ms", "value": step_ms})
    out = pd.DataFrame(rows)
    agc_rows = out[(out["metric"] == "median_ms") & out["side"].isin(["nfrepro", "timm"])]
    out = pd.concat([out, agc_rows.assign(metric="share_of_train_step", value=agc_rows["value"] / step_ms)],
                    ignore_index=True)
    out.insert(0, "benchmark", "agc")
    out["model"] = model_name
    return out
