"""The benchmark harness: every timing is a ratio against a baseline measured in the same run.

Rule (benchmarks are not tests): sides are timed alternately, round-robin, and summarised by their medians,
so that a machine busy with other work slows every side alike (:func:`compare`). Absolute
milliseconds are kept in the results for context only. The pieces every benchmark shares live
here: a batch already on the device (:func:`make_batch`, App. A.2: data on the device), the
training step the engine runs (:func:`train_step_fn`, built on :func:`nfrepro.engine.training.train_step`
with the paper's optimizer), an inference closure, and tidy result rows.
"""
from __future__ import annotations

import contextlib
import functools
import gc
import os
import random
import statistics
import sys
import time
import warnings
from typing import Any, Callable, Mapping

import pandas as pd
import torch
import torch.nn as nn
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from nfrepro.engine.device import autocast, memory_format, synchronize
from nfrepro.engine.training import train_step
from nfrepro.optim import agc
from nfrepro.optim.recipe import BASE_LR, cross_entropy, make_optimizer, scaled_lr

NUM_CLASSES = 1000  # ImageNet head: the classifier's size is part of the step


def step_times(fns: dict[str, Callable[[], Any]], repeats: int = 20, warmup: int = 3,
               setup: Callable[[], Any] | None = None, device: Any = None) -> dict[str, list[float]]:
    """Seconds of every timed call of each side of ``fns``, timed round-robin.

    Every round runs each side once (warm-up rounds are not recorded), starting one side later
    than the round before so that no side always follows the same neighbour; entry ``r`` of two
    sides' lists was therefore timed in the same round, seconds apart (:func:`paired_ratio`).
    ``setup`` runs, untimed, before every call (for example to restore gradients an in-place side
    modified).
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    names = list(fns)
    sync = (lambda: synchronize(device)) if device is not None else (lambda: None)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(warmup + repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            if setup is not None:
                setup()
            sync()
            start = time.perf_counter()
            fns[name]()
            sync()
            if r >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def compare(fns: dict[str, Callable[[], Any]], baseline: str, repeats: int = 20, warmup: int = 3,
            setup: Callable[[], Any] | None = None, device: Any = None) -> pd.DataFrame:
    """Time each side of ``fns`` round-robin (:func:`step_times`); one row per side with medians and ratios.

    ``ratio_vs_baseline`` = median(side) / median(baseline): below 1 is faster.
    """
    if baseline not in fns:
        raise ValueError(f"baseline {baseline!r} is not one of the sides {list(fns)}")
    times = step_times(fns, repeats=repeats, warmup=warmup, setup=setup, device=device)
    base = statistics.median(times[baseline])
    rows = []
    for name in fns:
        ms = [t * 1e3 for t in times[name]]
        q = statistics.quantiles(ms, n=4) if len(ms) > 1 else [ms[0]] * 3
        rows.append({"side": name, "median_ms": statistics.median(ms), "q25_ms": q[0],
                     "q75_ms": q[2], "min_ms": min(ms), "repeats": len(ms),
                     "baseline": baseline, "ratio_vs_baseline": statistics.median(times[name]) / base})
    return pd.DataFrame(rows)


RATIO_METRICS = ("ratio_median", "ratio_q25", "ratio_q75", "ratio_ci_low", "ratio_ci_high", "rounds")


def paired_ratio(numerator: list[float], denominator: list[float], n_boot: int = 2000,
                 seed: int = 0) -> dict[str, float]:
    """Summary of the per-round ratios ``numerator[r] / denominator[r]`` of two sides timed
    alternately in the same rounds (:func:`step_times`), so that a slow spell of a busy machine
    slows both terms of a ratio alike.

    ``ratio_median``: the median of the per-round ratios; ``ratio_q25`` / ``ratio_q75``: their
    interquartile range (how much one round's ratio varies); ``ratio_ci_low`` / ``ratio_ci_high``:
    a 95% percentile-bootstrap interval of that median (rounds resampled with replacement,
    ``n_boot`` times, fixed ``seed``), i.e. how stable the reported ratio is; ``rounds``.
    """
    if len(numerator) != len(denominator) or not numerator:
        raise ValueError(f"need two equally long, non-empty lists of times, got {len(numerator)} and "
                         f"{len(denominator)}")
    r = [n / d for n, d in zip(numerator, denominator, strict=True)]

    def pct(xs: list[float], cuts: int) -> list[float]:  # linear interpolation, as numpy's default
        return statistics.quantiles(xs, n=cuts, method="inclusive") if len(xs) > 1 else [xs[0]] * (cuts - 1)

    q25, med, q75 = pct(r, 4)
    rng = random.Random(seed)
    boot = [statistics.median(rng.choices(r, k=len(r))) for _ in range(n_boot)]
    cut = pct(boot, 40)                   # 2.5% steps: the first and last cut bound 95%
    low, high = cut[0], cut[-1]
    return dict(zip(RATIO_METRICS, map(float, (med, q25, q75, low, high, len(r))), strict=True))


@contextlib.contextmanager
def _native_output_silenced():
    """Point the process's stdout / stderr file descriptors at /dev/null for the block.

    torch's profiler (kineto) writes ``USDT ... profiler_start`` and, on a machine without a GPU,
    ``gpuGetDeviceCount failed`` from C++ straight to fds 1 and 2, past ``sys.stdout``; the
    benchmarks' tables must be the only thing printed. Python output is flushed first and kept.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


@contextlib.contextmanager
def quiet_profile(**kwargs: Any):
    """``torch.profiler.profile(**kwargs)`` (default: CPU activity) as a context manager whose
    native log lines at start and stop are silenced (:func:`_native_output_silenced`): in a
    notebook they would land in the cell's stderr."""
    kwargs.setdefault("activities", [ProfilerActivity.CPU])
    with _native_output_silenced():
        prof = profile(**kwargs)
        prof.__enter__()
    try:
        yield prof
    finally:
        with _native_output_silenced():
            prof.__exit__(None, None, None)


def count_ops(fn: Callable[[], Any]) -> int:
    """Top-level ATen ops one call of ``fn`` dispatches (views included): a proxy, measurable on
    the CPU, for the kernel launches it would cost on a GPU (where foreach ops fuse further).
    The profiler's native log lines are silenced (:func:`quiet_profile`)."""
    with quiet_profile() as prof:
        fn()
    with _native_output_silenced():
        events = prof.events()
    return sum(event.cpu_parent is None for event in events)


def import_timm():
    """``timm`` (the bench extra), imported without the one warning its import prints in Jupyter.

    timm imports huggingface_hub, which imports ``tqdm.auto``; in a Jupyter kernel without
    ipywidgets that import warns "TqdmWarning: IProgress not found" into the cell's stderr.
    nfrepro never downloads through the hub, so no hub progress bar is ever drawn: this one
    message is ignored, during this import only.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        import timm  # optional dependency (the bench extra)
    return timm


def place(model: nn.Module, device: Any, channels_last: bool | None = None) -> nn.Module:
    """Move ``model`` to ``device``; channels_last on CUDA by default (tensor-core friendly)."""
    return model.to(device=device, memory_format=memory_format(device, channels_last, model))


def make_batch(batch_size: int, px: int, device: Any, channels_last: bool | None = None,
               seed: int = 0, num_classes: int = NUM_CLASSES) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images ``batch_size x 3 x px x px`` and labels, already on ``device`` (App. A.2)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, 3, px, px, generator=gen)
    y = torch.randint(0, num_classes, (batch_size,), generator=gen)
    return x.to(device, memory_format=memory_format(device, channels_last)), y.to(device)


def train_step_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, clip: str | None = "nfrepro",
                  amp: str | bool | None = "auto") -> Callable[[], torch.Tensor]:
    """One training step of the paper's recipe as a closure (:func:`nfrepro.engine.training.train_step`).

    SGD with Nesterov momentum and weight decay on the weights only (App. A,
    :func:`nfrepro.optim.recipe.make_optimizer`). ``clip``: ``"nfrepro"`` (:class:`nfrepro.optim.AGC`),
    ``"timm"`` (``timm.utils.agc.adaptive_clip_grad`` on the same parameters: all but the classifier
    weight) or ``None``. ``amp="auto"``: bf16 autocast on CUDA only.
    """
    if clip not in ("nfrepro", "timm", None):
        raise ValueError(f"clip must be 'nfrepro', 'timm' or None, got {clip!r}")
    model.train()
    opt = make_optimizer(model, scaled_lr(BASE_LR, x.shape[0]),
                         clipping=agc.CLIPPING if clip == "nfrepro" else None, stats=False)
    before_step = None
    if clip == "timm":
        import_timm()
        from timm.utils.agc import (
            adaptive_clip_grad,  # optional dependency (the bench extra)
        )

        params = agc.clip_parameters(model)
        before_step = functools.partial(adaptive_clip_grad, params, clip_factor=agc.CLIPPING, eps=agc.EPS)
    context = functools.partial(autocast, x.device, amp)
    return functools.partial(train_step, model, opt, x, y, context, before_step=before_step)


def train_step_flops(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """FLOPs of one forward + backward of ``model`` on ``(x, y)`` (``torch.utils.flop_counter``: 2 per
    multiply-add of convolutions and matrix products; no elementwise work). Leaves no gradients."""
    counter = FlopCounterMode(display=False)
    was_training = model.training
    model.train()
    with counter:
        cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return counter.get_total_flops()


def inference_fn(model: nn.Module, x: torch.Tensor, amp: str | bool | None = "auto",
                 ) -> Callable[[], torch.Tensor]:
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
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


def tidy_rows(df: pd.DataFrame, batch_size: int, ids: Mapping[str, Any] | None = None,
              ) -> list[dict[str, Any]]:
    """:func:`compare`'s wide rows -> tidy rows (one per side and metric), with images per second."""
    rows = []
    for r in df.itertuples():
        metrics = {"median_ms": r.median_ms, "q25_ms": r.q25_ms, "q75_ms": r.q75_ms, "min_ms": r.min_ms,
                   "images_per_s": 1e3 * batch_size / r.median_ms, "ratio_vs_baseline": r.ratio_vs_baseline,
                   "repeats": r.repeats}
        rows += [{**(ids or {}), "side": r.side, "baseline": r.baseline, "metric": k, "value": float(v)}
                 for k, v in metrics.items()]
    return rows
