"""Whole-model latency: training steps and inference (NFNets Fig. 1, Tables 2, 3 and 6).

The paper's protocol (App. A.2): the median time of a training step (forward, backward, AGC, SGD
update) over many steps, data already on the device, 32 images per device, at each model's
*training* resolution, in bf16 on TPUv3 (fp16 on a V100). We follow it on CUDA (bf16 autocast,
channels_last) and scale it down on the CPU (fp32, a few images per step); every function takes
the batch, resolution and number of steps, and every result records them.

Two benchmarks (``python -m nfrepro bench --which train_step inference``), each a ratio
against timm's port (``dm_nfnet_f0``, random init) timed alternately in the same run:

* ``bench_train_step``: one NFNet-F0 training step, nfrepro vs timm, same batch, resolution,
  threads, optimizer and AGC parameter set (each side clips with its own library's AGC).
  Goal: nfrepro / timm <= 0.85.
* ``bench_inference``: NFNet-F0 inference at the test resolution, nfrepro with the weight
  standardization and the signal-propagation gains folded (``nfrepro.models.folding``) vs timm in eval
  mode, which standardizes its weights on every forward; the WS-only fold is timed beside them.
  Goal: nfrepro / timm <= 0.7.

:func:`compare_train_steps` times several models alternately (notebook 04, Table 2); the survey
of notebook 05 (Fig. 1) is :func:`nfrepro.experiments.speed_accuracy.train_step_latency`.
"""
from __future__ import annotations

from typing import Any, Mapping

import pandas as pd
import torch
import torch.nn as nn

from nfrepro.bench.harness import (
    NUM_CLASSES,
    compare,
    import_timm,
    inference_fn,
    make_batch,
    place,
    release,
    tidy_rows,
    train_step_flops,
    train_step_fn,
)
from nfrepro.engine.device import resolve_device
from nfrepro.models import create_model
from nfrepro.models.folding import fold_for_inference, fold_weight_standardization
from nfrepro.models.nfnet import VARIANTS

GOAL_TRAIN_STEP = 0.85  # nfrepro F0 training step / timm dm_nfnet_f0
GOAL_INFERENCE = 0.70   # folded nfrepro F0 inference / timm dm_nfnet_f0 (eval)


def compare_train_steps(models: Mapping[str, nn.Module], baseline: str, batch_size: int, px: int,
                        device: Any = None, repeats: int = 5, warmup: int = 2, clip: str | None = "nfrepro",
                        amp: str | bool | None = "auto", channels_last: bool | None = None) -> pd.DataFrame:
    """Training steps of several models timed alternately (round-robin) on the same batch.

    Tidy result: one row per model and metric, ``ratio_vs_baseline`` = median / median(baseline).
    """
    device = resolve_device(device)
    x, y = make_batch(batch_size, px, device, channels_last)
    steps = {label: train_step_fn(place(m, device, channels_last), x, y, clip=clip, amp=amp)
             for label, m in models.items()}
    df = compare(steps, baseline, repeats=repeats, warmup=warmup, device=device)
    out = pd.DataFrame(tidy_rows(df, batch_size, {"resolution": px, "batch_size": batch_size}))
    out["device"] = str(device)
    return out


# ---------------------------------------------------------------- training step and inference vs timm
def _default_batch(device: torch.device) -> int:
    # the paper's 32 per device; a few images on 2 CPU cores
    return 32 if torch.device(device).type == "cuda" else 4


def _with_ratio(df: pd.DataFrame, benchmark: str, scenario: str, model: str, batch_size: int, px: int,
                goal: float) -> pd.DataFrame:
    """Tidy rows; every side but timm gets ``ratio_vs_timm``, the headline side "nfrepro" the goal."""
    rows = [r for r in tidy_rows(df, batch_size) if r["metric"] != "ratio_vs_baseline"]
    rows += [{"side": side, "baseline": "timm", "metric": "ratio_vs_timm", "value": float(ratio)}
             for side, ratio in zip(df["side"], df["ratio_vs_baseline"], strict=True) if side != "timm"]
    rows.append({"side": "nfrepro", "baseline": "timm", "metric": "goal_ratio_vs_timm", "value": goal})
    out = pd.DataFrame(rows).drop(columns=["baseline"])
    for i, (k, v) in enumerate({"benchmark": benchmark, "scenario": scenario, "model": model}.items()):
        out.insert(i, k, v)
    out["batch_size"], out["resolution"], out["threads"] = batch_size, px, torch.get_num_threads()
    return out


def _f0_pair(timm_model: str, nfrepro_overrides: Mapping[str, Any] | None,
             timm_overrides: Mapping[str, Any] | None) -> tuple[nn.Module, nn.Module]:
    """nfrepro's NFNet-F0 and timm's port, both random init, with the same regularisers.

    timm's ``dm_nfnet_f0`` defaults to no dropout and no stochastic depth; we give it F0's
    (dropout 0.2, stochastic depth 0.25 at the last block) so that both do the same work.
    The overrides (e.g. smaller ``depths`` / ``channels`` for the tests) go to each constructor;
    timm lays its keywords over the model's ``NfCfg``.
    """
    timm = import_timm()
    ours = create_model("nfnet_f0", num_classes=NUM_CLASSES, **(nfrepro_overrides or {}))
    theirs = timm.create_model(timm_model, pretrained=False, num_classes=NUM_CLASSES,
                               drop_rate=VARIANTS["F0"].drop_rate, drop_path_rate=0.25,
                               **(timm_overrides or {}))
    return ours, theirs


def bench_train_step(device: Any = "cpu", batch_size: int | None = None, px: int | None = None,
                     repeats: int = 6, warmup: int = 2, timm_model: str = "dm_nfnet_f0",
                     amp: str | bool | None = "auto", channels_last: bool | None = None,
                     nfrepro_overrides: Mapping[str, Any] | None = None,
                     timm_overrides: Mapping[str, Any] | None = None, compile: bool = False,
                     peak_flops: float | None = None) -> pd.DataFrame:
    """An NFNet-F0 training step, nfrepro vs timm, alternating sides (goal ratio <= 0.85).

    Same images (``batch_size`` x ``px``; default 32 x 192 on CUDA, 4 x 192 on the CPU), SGD with
    Nesterov momentum, AGC on every parameter but the classifier weight (nfrepro's ``AGC`` on our
    side, ``timm.utils.agc.adaptive_clip_grad`` on timm's), bf16 autocast and channels_last on
    CUDA. Rows: per side ``median_ms, q25_ms, q75_ms, min_ms, images_per_s, repeats``; then
    ``ratio_vs_timm`` (nfrepro median / timm median) and ``goal_ratio_vs_timm``.

    ``compile=True`` times both models under ``torch.compile`` (compiled before the warm-up steps,
    which absorb the compilation). Each side also gets ``model_flops_per_step`` (forward + backward
    multiply-adds x 2, ``torch.utils.flop_counter``, counted eagerly) and, when ``peak_flops`` (the
    device's dense peak in FLOP/s for the step's dtype) is given, ``mfu``: model FLOPs utilisation.
    """
    device = torch.device(device)
    batch_size = batch_size or _default_batch(device)
    px = px or VARIANTS["F0"].train_px
    ours, theirs = _f0_pair(timm_model, nfrepro_overrides, timm_overrides)
    x, y = make_batch(batch_size, px, device, channels_last)
    models = {"nfrepro": place(ours, device, channels_last), "timm": place(theirs, device, channels_last)}
    flops = {side: train_step_flops(m, x, y) for side, m in models.items()}
    if compile:
        models = {side: torch.compile(m) for side, m in models.items()}
    sides = {"nfrepro": train_step_fn(models["nfrepro"], x, y, clip="nfrepro", amp=amp),
             "timm": train_step_fn(models["timm"], x, y, clip="timm", amp=amp)}
    df = compare(sides, "timm", repeats=repeats, warmup=warmup, device=device)
    out = _with_ratio(df, "train_step", "train_step_compiled" if compile else "train_step", "nfnet_f0",
                      batch_size, px, GOAL_TRAIN_STEP)
    extra = []
    for side, f in flops.items():
        extra.append({"side": side, "metric": "model_flops_per_step", "value": float(f)})
        if peak_flops:
            ms = float(df.loc[df["side"] == side, "median_ms"].iloc[0])
            extra.append({"side": side, "metric": "mfu", "value": f / (ms / 1e3) / peak_flops})
    fixed = out.iloc[0][["benchmark", "scenario", "model", "batch_size", "resolution", "threads"]].to_dict()
    out = pd.concat([out, pd.DataFrame([{**fixed, **r} for r in extra])],
                    ignore_index=True)[list(out.columns)]
    del sides, models, ours, theirs
    release(device)
    return out


def bench_inference(device: Any = "cpu", batch_size: int | None = None, px: int | None = None,
                    repeats: int = 6, warmup: int = 2, timm_model: str = "dm_nfnet_f0",
                    amp: str | bool | None = "auto", channels_last: bool | None = None,
                    nfrepro_overrides: Mapping[str, Any] | None = None,
                    timm_overrides: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """NFNet-F0 inference, folded nfrepro vs timm eval mode (goal ratio <= 0.7).

    Three sides, timed alternately: ``nfrepro`` (the headline:
    :func:`~nfrepro.models.folding.fold_for_inference`, WS and every gain folded),
    ``nfrepro_ws_folded`` (:func:`~nfrepro.models.folding.fold_weight_standardization` only, the
    module-for-module counterpart of timm) and ``timm`` (standardizes its weights on every forward).
    Default ``px``: F0's test resolution (256); batch as in :func:`bench_train_step`. All run
    under ``torch.inference_mode``. Same rows as :func:`bench_train_step`, with a ``ratio_vs_timm``
    for both nfrepro sides; each folded model is checked to give the unfolded model's logits first
    (a fast wrong model is no result).
    """
    device = torch.device(device)
    batch_size = batch_size or _default_batch(device)
    px = px or VARIANTS["F0"].test_px
    ours, theirs = _f0_pair(timm_model, nfrepro_overrides, timm_overrides)
    with torch.no_grad():  # random-init skip gains are 0: the folded gate gain would be 0 too
        for block in ours.blocks:
            block.skip_gain.fill_(1.0)
    ours, theirs = place(ours.eval(), device, channels_last), place(theirs.eval(), device, channels_last)
    folded = {"nfrepro": fold_for_inference(ours),
              "nfrepro_ws_folded": fold_weight_standardization(ours).eval()}
    x, _ = make_batch(batch_size, px, device, channels_last)
    with torch.inference_mode():
        ref = ours(x[:1]).float()
        for side, model in folded.items():
            got = model(x[:1]).float()
            if not torch.allclose(got, ref, rtol=1e-3, atol=1e-3 * float(ref.abs().max())):
                raise AssertionError(f"bench_inference: {side} does not reproduce the unfolded NFNet-F0")
    del ours
    sides = {**{side: inference_fn(model, x, amp) for side, model in folded.items()},
             "timm": inference_fn(theirs, x, amp)}
    df = compare(sides, "timm", repeats=repeats, warmup=warmup, device=device)
    out = _with_ratio(df, "inference", "inference_folded", "nfnet_f0", batch_size, px, GOAL_INFERENCE)
    del sides, folded, theirs
    release(device)
    return out
