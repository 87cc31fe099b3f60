"""Run benchmarks by name and save each as a results CSV with its JSON run record.

``python -m nfrepro bench --which agc train_step inference throughput``. Add a benchmark by writing
``bench_<name>(device, ...) -> DataFrame`` (tidy: one row per side and metric) and registering it
in :data:`BENCHMARKS`.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch

from nfrepro.bench.agc import bench_agc
from nfrepro.bench.gelu import bench_gelu
from nfrepro.bench.models import bench_inference, bench_train_step
from nfrepro.bench.throughput import measure_throughput
from nfrepro.bench.weight_standardization import bench_weight_standardization
from nfrepro.engine.device import resolve_device
from nfrepro.engine.profiles import output_dirs, resolve_profile
from nfrepro.engine.records import save_results

BENCHMARKS: dict[str, Callable[..., pd.DataFrame]] = {"agc": bench_agc, "train_step": bench_train_step,
                                                      "inference": bench_inference,
                                                      "throughput": measure_throughput,
                                                      "weight_standardization": bench_weight_standardization,
                                                      "gelu": bench_gelu}


def run_benchmarks(which=("agc",), device: Any = None, out_dir: str | Path | None = None,
                   profile: str = "cpu", **kwargs: Any) -> dict[str, Path]:
    """Run the named benchmarks and save each as ``<out_dir>/bench_<name>.csv`` (+ JSON record).

    ``out_dir`` defaults to the profile's results folder (``.scratch/smoke/results`` under the
    smoke profile); ``kwargs`` go to every benchmark function (``repeats=3`` ...). A benchmark that
    runs other threads or dtypes than the process default says so in ``df.attrs``
    (``threads_per_worker``, ``dtype``), and the run record stores that.
    """
    unknown = [name for name in which if name not in BENCHMARKS]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; choose from {sorted(BENCHMARKS)}")
    device = resolve_device(device)
    out_dir = Path(out_dir) if out_dir is not None else output_dirs(resolve_profile(profile))[1]
    paths = {}
    for name in which:
        start = time.perf_counter()
        df = BENCHMARKS[name](device=device, **kwargs)
        params = {"device": str(device), "threads": torch.get_num_threads(), **kwargs}
        pinned = {k: df.attrs[k] for k in ("threads_per_worker", "dtype") if k in df.attrs}
        paths[name] = save_results(df, out_dir / f"bench_{name}.csv", params=params,
                                   wall_time_s=time.perf_counter() - start, device=device, **pinned)
    return paths
