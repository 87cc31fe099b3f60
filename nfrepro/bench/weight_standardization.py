"""Scaled WS benchmark: the hand-written backward against autograd's derivation of the reference.

Claim (``nfrepro.layers.ws_fast._StandardizeWeight``): the fused backward needs fewer
weight-sized passes than autograd's chain through the reference ops, so standardizing every WS conv
of NFNet-F0 forward and backward (what each training step does) is faster with it. Both sides
standardize the same weights with the same gains and back-propagate the same upstream gradient;
the values agree (tests/layers/test_weight_standardization.py). Evidence:
``python -m nfrepro bench --which weight_standardization``, ``results/bench_weight_standardization.csv``.
"""
from __future__ import annotations

from typing import Any

import pandas as pd
import torch

from nfrepro.bench.harness import compare, count_ops
from nfrepro.layers.weight_standardization import WSConv2d, standardize_weight_reference
from nfrepro.layers.ws_fast import _StandardizeWeight
from nfrepro.models import create_model


def bench_weight_standardization(device: Any = "cpu", model_name: str = "nfnet_f0", repeats: int = 10,
                                 warmup: int = 2) -> pd.DataFrame:
    """Forward + backward of Scaled WS over every ``WSConv2d`` weight of ``model_name``: two sides,
    ``reference`` (baseline: plain ops, autograd's backward) and ``fused`` (the hand-written backward)."""
    convs = [m for m in create_model(model_name).to(device).modules() if isinstance(m, WSConv2d)]
    weights = [c.weight for c in convs]
    gains = [c.gain for c in convs]
    gen = torch.Generator().manual_seed(0)
    upstream = [torch.randn(w.shape, generator=gen).to(device) for w in weights]

    def side(fn):
        def run():
            for w, g in zip(weights, gains, strict=True):
                w.grad, g.grad = None, None
            outs = [fn(w, g) for w, g in zip(weights, gains, strict=True)]
            torch.autograd.backward(outs, upstream)
        return run

    sides = {"reference": side(lambda w, g: standardize_weight_reference(w, g)),
             "fused": side(lambda w, g: _StandardizeWeight.apply(w, g, convs[0].eps)[0])}
    df = compare(sides, "reference", repeats=repeats, warmup=warmup, device=device)
    ops = {name: count_ops(fn) for name, fn in sides.items()}
    rows = []
    for r in df.itertuples():
        metrics = {"median_ms": r.median_ms, "q25_ms": r.q25_ms, "q75_ms": r.q75_ms,
                   "ratio_vs_reference": r.ratio_vs_baseline, "aten_ops": ops[r.side]}
        rows += [{"benchmark": "weight_standardization", "model": model_name, "side": r.side,
                  "metric": k, "value": float(v), "tensors": len(weights),
                  "elements": sum(w.numel() for w in weights)} for k, v in metrics.items()]
    return pd.DataFrame(rows)
