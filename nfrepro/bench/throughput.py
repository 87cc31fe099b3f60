"""Training throughput of the small NF, BatchNorm and unnormalised nets (images / second).

The paper's speed claim (T3, T6: the "-NF, +BN" NFNets are 20-40% slower to train) is about
whole training steps. This benchmark times full steps, as :func:`nfrepro.engine.training.train` runs
them, of the three small 28 px nets on Fashion-MNIST batches held on the device: forward,
backward, AGC (lambda 0.01, NF net only: the paper's NF recipe clips, the baselines do not),
SGD. Mixed precision and channels-last follow the training defaults (bf16 and channels-last on
CUDA, neither on the CPU).

Protocol (``style.md`` §9): the models are timed in alternating order within each repeat, each
repeat times ``steps`` consecutive steps after ``warmup`` untimed ones, and the table reports
medians and the ratio to ``bn_resnet_small`` measured in the same run. Not a test: run it on a
quiet machine (``python -m nfrepro bench --which throughput``); ``amp`` and ``channels_last`` follow
the training defaults (:mod:`nfrepro.engine.device`).
"""
from __future__ import annotations

import functools
import statistics
import time
from typing import Any, Sequence

import pandas as pd
import torch

from nfrepro.data.datasets import load_dataset
from nfrepro.data.loader import TensorLoader
from nfrepro.engine.device import autocast, memory_format, resolve_device, synchronize
from nfrepro.engine.training import train_step
from nfrepro.models import create_model
from nfrepro.optim.recipe import make_optimizer

MODELS = ("nf_resnet_small", "bn_resnet_small", "plain_resnet_small")
BASELINE = "bn_resnet_small"
BATCH_SIZES = (64, 256, 1024)
NF_CLIPPING = 0.01


class _Stepper:
    """One model's training step (:func:`nfrepro.engine.training.train_step`) on batches drawn
    from a device-resident data set."""

    def __init__(self, name: str, data, batch_size: int, device: torch.device, amp: str,
                 channels_last: bool | None, seed: int = 0):
        torch.manual_seed(seed)
        model = create_model(name, num_classes=data.num_classes, in_chans=data.images.shape[1])
        self.model = model.to(device, memory_format=memory_format(device, channels_last)).train()
        self.opt = make_optimizer(self.model, lr=0.01,
                                  clipping=NF_CLIPPING if name.startswith("nf_") else None)
        self.loader = TensorLoader(data, batch_size, shuffle=True, seed=seed, device=device,
                                   channels_last=memory_format(device, channels_last) == torch.channels_last)
        self.batches = iter(self.loader)
        self.autocast = functools.partial(autocast, device, amp)

    def step(self) -> None:
        try:
            x, y = next(self.batches)
        except StopIteration:
            self.batches = iter(self.loader)
            x, y = next(self.batches)
        train_step(self.model, self.opt, x, y, self.autocast)


def measure_throughput(models: Sequence[str] = MODELS, batch_sizes: Sequence[int] = BATCH_SIZES,
                       device: Any = None, steps: int = 10, warmup: int = 2, repeats: int = 3,
                       dataset: str = "fashion_mnist", subset: int | None = None, amp: str = "auto",
                       channels_last: bool | None = None) -> pd.DataFrame:
    """Tidy table: one row per (model, batch size, metric) with the median over ``repeats``."""
    device = resolve_device(device)
    data = load_dataset(dataset, train=True, subset=subset)
    rows = []
    for batch_size in batch_sizes:
        steppers = {m: _Stepper(m, data, batch_size, device, amp, channels_last) for m in models}
        for stepper in steppers.values():
            for _ in range(warmup):
                stepper.step()
        times: dict[str, list[float]] = {m: [] for m in models}
        for r in range(repeats):
            order = list(models[r % len(models):]) + list(models[:r % len(models)])  # alternate
            for m in order:
                synchronize(device)
                start = time.perf_counter()
                for _ in range(steps):
                    steppers[m].step()
                synchronize(device)
                times[m].append((time.perf_counter() - start) / steps)
        base = statistics.median(times[BASELINE]) if BASELINE in times else None
        for m in models:
            t = statistics.median(times[m])
            rows += [{"model": m, "batch_size": batch_size, "metric": "ms_per_step", "value": 1e3 * t},
                     {"model": m, "batch_size": batch_size, "metric": "images_per_s",
                      "value": batch_size / t}]
            if base is not None:
                rows.append({"model": m, "batch_size": batch_size,
                             "metric": f"step_time_ratio_vs_{BASELINE}", "value": t / base})
        del steppers
    return pd.DataFrame(rows)
