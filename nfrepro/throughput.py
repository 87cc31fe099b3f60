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
quiet machine (``python -m nfrepro bench --which throughput``).
"""
from __future__ import annotations

import contextlib
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch

MODELS = ("nf_resnet_small", "bn_resnet_small", "plain_resnet_small")
BASELINE = "bn_resnet_small"
BATCH_SIZES = (64, 256, 1024)
NF_CLIPPING = 0.01


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Stepper:
    """One model's training step on batches drawn from a device-resident data set."""

    def __init__(self, name: str, data, batch_size: int, device: torch.device, amp: bool,
                 channels_last: bool, seed: int = 0):
        from nfrepro.data.loader import TensorLoader
        from nfrepro.optim.recipe import cross_entropy, make_optimizer
        from nfrepro.models.registry import create_model

        torch.manual_seed(seed)
        model = create_model(name, num_classes=data.num_classes, in_chans=data.images.shape[1])
        self.model = model.to(device, memory_format=torch.channels_last if channels_last
                              else torch.preserve_format).train()
        self.opt = make_optimizer(self.model, lr=0.01,
                                  clipping=NF_CLIPPING if name.startswith("nf_") else None)
        self.loader = TensorLoader(data, batch_size, shuffle=True, seed=seed, device=device,
                                   channels_last=channels_last)
        self.batches = iter(self.loader)
        self.loss = cross_entropy
        self.autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if amp \
            else contextlib.nullcontext

    def step(self) -> None:
        try:
            x, y = next(self.batches)
        except StopIteration:
            self.batches = iter(self.loader)
            x, y = next(self.batches)
        self.opt.zero_grad(set_to_none=True)
        with self.autocast():
            loss = self.loss(self.model(x), y)
        loss.backward()
        self.opt.step()


def measure_throughput(models: Sequence[str] = MODELS, batch_sizes: Sequence[int] = BATCH_SIZES,
                       device: Any = None, steps: int = 10, warmup: int = 2, repeats: int = 3,
                       dataset: str = "fashion_mnist", subset: int | None = None) -> pd.DataFrame:
    """Tidy table: one row per (model, batch size, metric) with the median over ``repeats``."""
    from nfrepro.data.datasets import load_dataset

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    amp = channels_last = device.type == "cuda"
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
                _sync(device)
                start = time.perf_counter()
                for _ in range(steps):
                    steppers[m].step()
                _sync(device)
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


def run_throughput(device: Any = None, out_dir: str | Path | None = None, profile: str = "cpu",
                   **kwargs: Any) -> Path:
    """Measure and save ``<out_dir>/bench_throughput.csv`` (+ JSON run record); return its path.

    ``out_dir`` defaults to the profile's results folder (scratch for the smoke profile).
    """
    from nfrepro.engine.profiles import output_dirs, resolve_profile
    from nfrepro.engine.records import save_results

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out = Path(out_dir) if out_dir is not None else output_dirs(resolve_profile(profile))[1]
    start = time.perf_counter()
    df = measure_throughput(device=device, **kwargs)
    params = {"device": str(device), "threads": torch.get_num_threads(),
              "nf_clipping": NF_CLIPPING, **kwargs}
    return save_results(df, out / "bench_throughput.csv", params=params,
                        wall_time_s=time.perf_counter() - start, device=device)
