"""GELU benchmark: the sigmoid form of the tanh GELU (``nfrepro.models.gelu``) against PyTorch's kernels.

Claim, to be settled by this benchmark (no result is recorded yet): on the CPU, ``x * sigmoid(2u)``
in four elementwise passes, with a hand-written backward free of transcendentals, runs a forward +
backward faster than ``F.gelu(x, approximate="tanh")``, whose kernel evaluates ``tanh``; timm's
exact ``F.gelu(x)`` (erf) is timed beside them for reference.
All three sides run forward and backward on the same tensor (default: an NFNet-F0 stage-0 map at
batch 2 and 192 px, ``2 x 256 x 48 x 48``, float32), alternating (style rule 9). The values agree
(``tests/models/test_gelu.py``; checked again here before timing).

:func:`gelu_train_steps` times NFNet-F0's whole training step three ways, alternating: with our
GELU, with ``F.gelu`` tanh swapped in, and timm's ``dm_nfnet_f0``, all clipped by our AGC. The
lead's command is ``tools/gelu_speed.py`` (one thread, batch 2, 192 px, fp32).
"""
from __future__ import annotations

from typing import Any, Sequence

import pandas as pd
import torch
import torch.nn.functional as F

from nfrepro.bench.harness import import_timm, paired_ratio, step_times
from nfrepro.bench.models import compare_train_steps
from nfrepro.layers.gains import ScaledActivation
from nfrepro.models import create_model
from nfrepro.models.gelu import gelu_tanh, gelu_tanh_reference
from nfrepro.models.nfnet import VARIANTS

F0_MAP = (2, 256, 48, 48)  # NFNet-F0's stage-0 blocks at batch 2, 192 px (stride 4)
SIDES = {"tanh_native": gelu_tanh_reference, "erf_native": F.gelu, "nfrepro": gelu_tanh}


def bench_gelu(device: Any = "cpu", shape: Sequence[int] = F0_MAP, repeats: int = 20, warmup: int = 3,
               dtype: torch.dtype = torch.float32) -> pd.DataFrame:
    """Forward + backward of each GELU of :data:`SIDES` on one ``shape`` tensor, timed round-robin.

    Tidy rows per side: ``median_ms``, ``q25_ms``, ``q75_ms``; and against ``tanh_native`` the
    per-round ratio (:func:`~nfrepro.bench.harness.paired_ratio`: ``ratio_median``, its quartiles
    and 95% interval; below 1 is faster)."""
    gen = torch.Generator().manual_seed(0)
    x = (2.0 * torch.randn(tuple(shape), generator=gen, dtype=dtype)).to(device).requires_grad_()
    upstream = torch.randn(tuple(shape), generator=gen, dtype=dtype).to(device)
    with torch.no_grad():
        if not torch.allclose(gelu_tanh(x), gelu_tanh_reference(x), rtol=0, atol=1e-5):
            raise AssertionError("bench_gelu: nfrepro's GELU does not compute F.gelu(approximate='tanh')")

    def side(fn):
        def run():
            x.grad = None
            fn(x).backward(upstream)
        return run

    times = step_times({name: side(fn) for name, fn in SIDES.items()}, repeats=repeats, warmup=warmup,
                       device=device)
    rows = []
    for name, secs in times.items():
        ms = sorted(t * 1e3 for t in secs)
        q = pd.Series(ms).quantile([0.25, 0.5, 0.75]).tolist()
        metrics = {"median_ms": q[1], "q25_ms": q[0], "q75_ms": q[2]}
        if name != "tanh_native":
            metrics.update(paired_ratio(secs, times["tanh_native"]))
        rows += [{"benchmark": "gelu", "side": name, "baseline": "tanh_native", "metric": k,
                  "value": float(v), "shape": "x".join(map(str, shape)),
                  "dtype": str(dtype).removeprefix("torch."), "threads": torch.get_num_threads()}
                 for k, v in metrics.items()]
    return pd.DataFrame(rows)


def with_native_gelu(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` (in place) with every :func:`~nfrepro.models.gelu.gelu_tanh` replaced by ``F.gelu``
    tanh: the same function, PyTorch's kernel."""
    for module in model.modules():
        if isinstance(module, ScaledActivation) and module.fn is gelu_tanh:
            module.fn = gelu_tanh_reference
    return model


def gelu_train_steps(device: Any = "cpu", batch_size: int = 2, px: int | None = None, repeats: int = 10,
                     warmup: int = 2, amp: str | bool | None = "off", channels_last: bool | None = False,
                     overrides: dict[str, Any] | None = None) -> pd.DataFrame:
    """NFNet-F0 training steps, alternating: ``nfrepro`` (our GELU), ``nfrepro_native_gelu``
    (``F.gelu`` tanh) and ``timm`` (``dm_nfnet_f0``, erf GELU, same dropout and stochastic depth
    rate; baseline), each clipped by nfrepro's AGC (:func:`~nfrepro.bench.models.compare_train_steps`)."""
    timm, overrides = import_timm(), overrides or {}
    timm_overrides = {k: v for k, v in overrides.items() if k in ("depths", "channels", "group_size")}
    if timm_overrides:
        timm_overrides["stem_chs"] = 16
    torch.manual_seed(0)
    models = {"nfrepro": create_model("nfnet_f0", **overrides),
              "nfrepro_native_gelu": with_native_gelu(create_model("nfnet_f0", **overrides)),
              "timm": timm.create_model("dm_nfnet_f0", pretrained=False, drop_rate=VARIANTS["F0"].drop_rate,
                                        drop_path_rate=0.25, **timm_overrides)}
    px = px or VARIANTS["F0"].train_px
    return compare_train_steps(models, "timm", batch_size, px, device=device, repeats=repeats, warmup=warmup,
                               amp=amp, channels_last=channels_last)
