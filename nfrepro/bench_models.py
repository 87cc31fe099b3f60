"""Whole-model latency: training steps and inference (NFNets Fig. 1, Tables 2, 3 and 6).

The paper's protocol (App. A.2): the median time of a training step (forward, backward, AGC, SGD
update) over many steps, data already on the device, 32 images per device, at each model's
*training* resolution, in bf16 on TPUv3 (fp16 on a V100). We follow it on CUDA (bf16 autocast,
channels_last) and scale it down on the CPU (fp32, a few images per step); every function takes
the batch, resolution and number of steps, and every result records them.

Two benchmarks (``nfrepro.bench.run_benchmarks(which=("train_step", "inference"))``), each a ratio
against timm's port (``dm_nfnet_f0``, random init) timed alternately in the same run:

* ``bench_train_step`` (P1): one NFNet-F0 training step, nfrepro vs timm, same batch, resolution,
  threads, optimizer and AGC parameter set (each side clips with its own library's AGC).
  Goal: nfrepro / timm <= 0.85.
* ``bench_inference`` (P3): NFNet-F0 inference at the test resolution, nfrepro with the weight
  standardization and the signal-propagation gains folded (``nfrepro.models.folding``) vs timm in eval
  mode, which standardizes its weights on every forward; the WS-only fold is timed beside them.
  Goal: nfrepro / timm <= 0.7.

:func:`train_step_latency` measures a list of models one after the other (notebook 05, Fig. 1;
who is compared, at which resolution, and the paper's numbers: :mod:`nfrepro.speed_accuracy`);
:func:`compare_train_steps` times several models alternately (notebook 04, Table 2).
"""
from __future__ import annotations

import contextlib
import gc
from typing import Any, Callable, Mapping

import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from nfrepro.optim import agc
from nfrepro.optim.agc_optimizer import AGC
from nfrepro.bench import compare
from nfrepro.models.nfnet import VARIANTS
from nfrepro.models.registry import create_model, list_models
from nfrepro.speed_accuracy import CONTENDERS, Contender, contender, scaled_px

# Training recipe constants that set the work of an SGD step (App. A). The values do not change
# the step time; they are here so that the step is the paper's step.
LR, MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 2e-5
NUM_CLASSES = 1000  # ImageNet head: the classifier's size is part of the step

GOAL_TRAIN_STEP = 0.85  # P1: nfrepro F0 training step / timm dm_nfnet_f0
GOAL_INFERENCE = 0.70   # P3: folded nfrepro F0 inference / timm dm_nfnet_f0 (eval)


# ---------------------------------------------------------------- building blocks
def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def build_model(name: str, **overrides: Any) -> nn.Module:
    """A randomly initialised model: a contender from its library, else nfrepro's registry first,
    else timm (never downloads)."""
    library = CONTENDERS[name].library if name in CONTENDERS else None
    if library == "nfrepro" or (library is None and name in list_models()):
        return create_model(name, num_classes=NUM_CLASSES, **overrides)
    import timm  # the baselines come from timm, a dependency; imported only here

    return timm.create_model(name, pretrained=False, num_classes=NUM_CLASSES, **overrides)


def _cuda(device: torch.device) -> bool:
    return torch.device(device).type == "cuda"


def place(model: nn.Module, device: Any, channels_last: bool | None = None) -> nn.Module:
    """Move ``model`` to ``device``; channels_last on CUDA by default (tensor-core friendly)."""
    channels_last = _cuda(device) if channels_last is None else channels_last
    return model.to(device=device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def make_batch(batch_size: int, px: int, device: Any, channels_last: bool | None = None,
               seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images ``batch_size x 3 x px x px`` and labels, already on ``device`` (App. A.2)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, 3, px, px, generator=gen)
    y = torch.randint(0, NUM_CLASSES, (batch_size,), generator=gen)
    channels_last = _cuda(device) if channels_last is None else channels_last
    x = x.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    return x, y.to(device)


def autocast(device: Any, amp: bool | None = None) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA by default (the paper's bf16 activations); fp32 on the CPU."""
    amp = _cuda(device) if amp is None else amp
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def train_step_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, clip: str | None = "nfrepro",
                  amp: bool | None = None) -> Callable[[], None]:
    """One training step as a closure: zero grads, forward, cross-entropy, backward, AGC, SGD.

    ``clip``: ``"nfrepro"`` (:class:`nfrepro.optim.agc.AGC`), ``"timm"`` (``timm.utils.agc``, on the same
    parameters: all but the classifier weight) or ``None`` (no clipping). SGD with Nesterov
    momentum and weight decay as in App. A. ``amp=None``: bf16 autocast on CUDA only.
    """
    model.train()
    opt: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM,
                                                 nesterov=True, weight_decay=WEIGHT_DECAY)
    clip_fn: Callable[[], Any] = lambda: None  # noqa: E731
    if clip == "nfrepro":
        opt = AGC(opt, agc.clip_parameters(model), stats=False)
    elif clip == "timm":
        from timm.utils.agc import adaptive_clip_grad

        params = agc.clip_parameters(model)
        clip_fn = lambda: adaptive_clip_grad(params, clip_factor=agc.CLIPPING, eps=agc.EPS)  # noqa: E731
    elif clip is not None:
        raise ValueError(f"clip must be 'nfrepro', 'timm' or None, got {clip!r}")
    device = x.device

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast(device, amp):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        clip_fn()
        opt.step()

    return step


def inference_fn(model: nn.Module, x: torch.Tensor, amp: bool | None = None) -> Callable[[], torch.Tensor]:
    """One eval-mode forward pass without autograd, as a closure."""
    model.eval()

    @torch.inference_mode()
    def forward() -> torch.Tensor:
        with autocast(x.device, amp):
            return model(x)

    return forward


def release(device: Any) -> None:
    """Free what the previous model left behind before the next one is built."""
    gc.collect()
    if _cuda(device):
        torch.cuda.empty_cache()


def _tidy(df: pd.DataFrame, batch_size: int, ids: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """``compare``'s wide rows -> tidy rows (one per side and metric), with images per second."""
    rows = []
    for r in df.itertuples():
        metrics = {"median_ms": r.median_ms, "q25_ms": r.q25_ms, "q75_ms": r.q75_ms, "min_ms": r.min_ms,
                   "images_per_s": 1e3 * batch_size / r.median_ms, "ratio_vs_baseline": r.ratio_vs_baseline,
                   "repeats": r.repeats}
        rows += [{**(ids or {}), "side": r.side, "baseline": r.baseline, "metric": k, "value": float(v)}
                 for k, v in metrics.items()]
    return rows


# ---------------------------------------------------------------- surveys (notebooks 04 and 05)
def train_step_latency(names: list[str], device: Any = None, batch_size: int = 32, res_scale: float = 1.0,
                       repeats: int = 5, warmup: int = 2, amp: bool | None = None,
                       channels_last: bool | None = None, progress: Callable[[str], None] | None = print,
                       overrides: Mapping[str, Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """Median training-step time of each model at its training resolution (times ``res_scale``).

    Models are built, warmed up and timed one after the other (one model in memory at a time, so
    that EfficientNet-B7 at 600 px fits beside nothing else); compare ratios of rows measured in
    the same run only. Tidy result: one row per model and metric (``median_ms``, ``q25_ms``,
    ``q75_ms``, ``min_ms``, ``images_per_s``, ``repeats``), with the model's paper label, family,
    resolution and batch size. ``overrides[name]``: keyword arguments for that model's constructor
    (the smoke profile shrinks the NFNets with them; they are recorded in an ``overrides`` column).
    A model that runs out of GPU memory gets NaN values and ``note = "out of memory"``.
    """
    device = torch.device(device) if device is not None else default_device()
    rows = []
    for name in names:
        c = contender(name)
        px = scaled_px(c.train_px, res_scale)
        if progress:
            progress(f"{name}: {batch_size} x {px} px, {warmup} warm-up + {repeats} timed steps")
        kwargs = dict((overrides or {}).get(name, {}))
        ids = {"model": name, "label": c.label, "family": c.family, "library": c.library, "agc": c.agc,
               "resolution": px, "batch_size": batch_size, "overrides": str(kwargs) if kwargs else "", "note": ""}
        try:
            rows += _time_one(name, c, kwargs, ids, device, batch_size, px, repeats, warmup, amp, channels_last)
        except torch.cuda.OutOfMemoryError:  # e.g. EfficientNet-B7 at 600 px, 32 images: record it, go on
            release(device)
            if progress:
                progress(f"{name}: out of GPU memory at {batch_size} x {px} px; recorded as NaN")
            rows += [{**ids, "metric": m, "value": float("nan"), "note": "out of memory"} for m in _METRICS]
        release(device)
    out = pd.DataFrame(rows)
    out["device"] = str(device)
    return out


_METRICS = ("median_ms", "q25_ms", "q75_ms", "min_ms", "images_per_s", "repeats")


def _time_one(name: str, c: Contender, kwargs: dict[str, Any], ids: dict[str, Any], device: torch.device,
              batch_size: int, px: int, repeats: int, warmup: int, amp: bool | None,
              channels_last: bool | None) -> list[dict[str, Any]]:
    model = place(build_model(name, **kwargs), device, channels_last)
    x, y = make_batch(batch_size, px, device, channels_last)
    step = train_step_fn(model, x, y, clip="nfrepro" if c.agc else None, amp=amp)
    df = compare({name: step}, name, repeats=repeats, warmup=warmup, device=device)
    return [{k: v for k, v in r.items() if k not in ("side", "baseline")}
            for r in _tidy(df, batch_size, ids) if r["metric"] in _METRICS]


def compare_train_steps(models: Mapping[str, nn.Module], baseline: str, batch_size: int, px: int,
                        device: Any = None, repeats: int = 5, warmup: int = 2, clip: str | None = "nfrepro",
                        amp: bool | None = None, channels_last: bool | None = None) -> pd.DataFrame:
    """Training steps of several models timed alternately (round-robin) on the same batch.

    Tidy result: one row per model and metric, ``ratio_vs_baseline`` = median / median(baseline).
    """
    device = torch.device(device) if device is not None else default_device()
    x, y = make_batch(batch_size, px, device, channels_last)
    steps = {label: train_step_fn(place(m, device, channels_last), x, y, clip=clip, amp=amp)
             for label, m in models.items()}
    df = compare(steps, baseline, repeats=repeats, warmup=warmup, device=device)
    out = pd.DataFrame(_tidy(df, batch_size, {"resolution": px, "batch_size": batch_size}))
    out["device"] = str(device)
    return out


# ---------------------------------------------------------------- benchmarks P1 and P3
def _default_batch(device: torch.device) -> int:
    return 32 if _cuda(device) else 4  # the paper's 32 per device; a few images on 2 CPU cores


def _with_ratio(df: pd.DataFrame, benchmark: str, scenario: str, model: str, batch_size: int, px: int,
                goal: float) -> pd.DataFrame:
    """Tidy rows; every side but timm gets ``ratio_vs_timm``, the headline side "nfrepro" the goal."""
    rows = [r for r in _tidy(df, batch_size) if r["metric"] != "ratio_vs_baseline"]
    rows += [{"side": side, "baseline": "timm", "metric": "ratio_vs_timm", "value": float(ratio)}
             for side, ratio in zip(df["side"], df["ratio_vs_baseline"]) if side != "timm"]
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
    import timm

    ours = create_model("nfnet_f0", num_classes=NUM_CLASSES, **(nfrepro_overrides or {}))
    theirs = timm.create_model(timm_model, pretrained=False, num_classes=NUM_CLASSES,
                               drop_rate=VARIANTS["F0"].drop_rate, drop_path_rate=0.25, **(timm_overrides or {}))
    return ours, theirs


def bench_train_step(device: Any = "cpu", batch_size: int | None = None, px: int | None = None,
                     repeats: int = 10, warmup: int = 2, timm_model: str = "dm_nfnet_f0",
                     amp: bool | None = None, channels_last: bool | None = None,
                     nfrepro_overrides: Mapping[str, Any] | None = None,
                     timm_overrides: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """P1: an NFNet-F0 training step, nfrepro vs timm, alternating sides (goal ratio <= 0.85).

    Same images (``batch_size`` x ``px``; default 32 x 192 on CUDA, 4 x 192 on the CPU), SGD with
    Nesterov momentum, AGC on every parameter but the classifier weight (nfrepro's ``AGC`` on our
    side, ``timm.utils.agc.adaptive_clip_grad`` on timm's), bf16 autocast and channels_last on
    CUDA. Rows: per side ``median_ms, q25_ms, q75_ms, min_ms, images_per_s, repeats``; then
    ``ratio_vs_timm`` (nfrepro median / timm median) and ``goal_ratio_vs_timm``.
    """
    device = torch.device(device)
    batch_size = batch_size or _default_batch(device)
    px = px or VARIANTS["F0"].train_px
    ours, theirs = _f0_pair(timm_model, nfrepro_overrides, timm_overrides)
    x, y = make_batch(batch_size, px, device, channels_last)
    sides = {"nfrepro": train_step_fn(place(ours, device, channels_last), x, y, clip="nfrepro", amp=amp),
             "timm": train_step_fn(place(theirs, device, channels_last), x, y, clip="timm", amp=amp)}
    df = compare(sides, "timm", repeats=repeats, warmup=warmup, device=device)
    out = _with_ratio(df, "train_step", "train_step", "nfnet_f0", batch_size, px, GOAL_TRAIN_STEP)
    del sides, ours, theirs
    release(device)
    return out


def bench_inference(device: Any = "cpu", batch_size: int | None = None, px: int | None = None,
                    repeats: int = 10, warmup: int = 2, timm_model: str = "dm_nfnet_f0",
                    amp: bool | None = None, channels_last: bool | None = None,
                    nfrepro_overrides: Mapping[str, Any] | None = None,
                    timm_overrides: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """P3: NFNet-F0 inference, folded nfrepro vs timm eval mode (goal ratio <= 0.7).

    Three sides, timed alternately: ``nfrepro`` (the headline: :func:`~nfrepro.models.folding.fold_for_inference`,
    WS and every gain folded), ``nfrepro_ws_folded`` (:func:`~nfrepro.models.folding.fold_weight_standardization`
    only, the module-for-module counterpart of timm) and ``timm`` (standardizes its weights on every
    forward). Default ``px``: F0's test resolution (256); batch as in :func:`bench_train_step`. All
    run under ``torch.inference_mode``. Same rows as :func:`bench_train_step`, with a
    ``ratio_vs_timm`` for both nfrepro sides; each folded model is checked to give the unfolded
    model's logits first (a fast wrong model is no result).
    """
    from nfrepro.models.folding import fold_for_inference, fold_weight_standardization

    device = torch.device(device)
    batch_size = batch_size or _default_batch(device)
    px = px or VARIANTS["F0"].test_px
    ours, theirs = _f0_pair(timm_model, nfrepro_overrides, timm_overrides)
    with torch.no_grad():  # random-init skip gains are 0: the folded gate gain would be 0 too
        for block in ours.blocks:
            block.skip_gain.fill_(1.0)
    ours, theirs = place(ours.eval(), device, channels_last), place(theirs.eval(), device, channels_last)
    folded = {"nfrepro": fold_for_inference(ours), "nfrepro_ws_folded": fold_weight_standardization(ours).eval()}
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


def profile_train_step(model: nn.Module, batch_size: int = 2, px: int = 64, device: Any = "cpu",
                       clip: str | None = "nfrepro", steps: int = 2, row_limit: int = 25,
                       sort_by: str | None = None) -> str:
    """``torch.profiler`` table of a few training steps (after one untimed warm-up step).

    A diagnostic for the report, not a benchmark: the profiler's own overhead distorts small ops.
    """
    from torch.profiler import ProfilerActivity, profile

    device = torch.device(device)
    model = place(model, device)
    x, y = make_batch(batch_size, px, device)
    step = train_step_fn(model, x, y, clip=clip)
    step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if _cuda(device) else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        if _cuda(device):
            torch.cuda.synchronize(device)
    sort_by = sort_by or ("cuda_time_total" if _cuda(device) else "self_cpu_time_total")
    return prof.key_averages().table(sort_by=sort_by, row_limit=row_limit)
