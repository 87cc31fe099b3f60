"""NFNet architecture at a glance: shapes, the size of F0..F7, and the Table 2 design steps.

* :func:`module_shapes`: the output shape and parameter count of each child of a module (the stem,
  a stage), read with forward hooks, for the step-by-step build of notebook 04.
* :func:`complexity_table`: parameters and multiply-adds of NFNet-F0..F7 (Table 3 / official code),
  counted on the meta device with :mod:`nfrepro.analysis.complexity`, so F7 costs no memory.
* :data:`TABLE2_STEPS`: the architecture rows of NFNets Table 2 as keyword overrides of
  ``nfnet_f0``: the baseline SE-ResNeXt-D NF (default ResNet widths, one grouped 3x3 conv), then
  the modified widths [256, 512, 1536, 1536] (§4.1), then the second grouped 3x3 conv (= F0); and
  the last row, default widths with the second conv. The augmentation rows of Table 2 (MixUp,
  RandAugment, CutMix) change training, not the network.
"""
from __future__ import annotations

from typing import Any, Iterable

import pandas as pd
import torch
import torch.nn as nn

from nfrepro.analysis.complexity import count_macs, count_params
from nfrepro.models.factory import create_model
from nfrepro.models.nfnet import VARIANTS

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


def complexity_table(variants: Iterable[str] = ("F0", "F1", "F2", "F3", "F4", "F5", "F6", "F7")) -> pd.DataFrame:
    """Parameters and multiply-adds (at the test resolution, one image) of NFNet variants.

    Tidy: one row per variant and metric, ``label`` as in the paper reference table (``NFNet-F0``).
    """
    rows = []
    for v in variants:
        px = VARIANTS[v].test_px
        size = model_size(f"nfnet_{v.lower().replace('+', '_plus')}", px)
        rows += [{"label": f"NFNet-{v}", "resolution": px, "metric": k, "value": val} for k, val in size.items()]
    return pd.DataFrame(rows)


def table2_models(**common: Any) -> dict[str, nn.Module]:
    """The three Table 2 architectures, built with ``common`` keyword arguments (e.g. ``num_classes``)."""
    return {label: create_model("nfnet_f0", **{**common, **overrides}) for label, overrides in TABLE2_STEPS.items()}


def table2_complexity(px: int | None = None) -> pd.DataFrame:
    """Parameters and multiply-adds of the Table 2 steps at F0's test resolution (tidy)."""
    px = px or VARIANTS["F0"].test_px
    rows = []
    for label, overrides in TABLE2_STEPS.items():
        size = model_size("nfnet_f0", px, **overrides)
        rows += [{"label": label, "resolution": px, "metric": k, "value": val} for k, val in size.items()]
    return pd.DataFrame(rows)
