"""Training throughput of the small NF, BatchNorm and unnormalised nets (images / second).

The paper's speed claim (T3, T6: the "-NF, +BN" NFNets are 20-40% slower to train) is about
whole training steps. This benchmark times full steps, as :func:`nfrepro.engine.training.train` runs
them, of the three small 28 px nets on Fashion-MNIST batches held on the device: forward,
backward, AGC (lambda 0.01, NF net only: the paper's NF recipe clips, the baselines do not),
SGD. Each model runs twice: in fp32 with the NCHW layout (what every measurement before the bf16
default used) and with the training defaults (:mod:`nfrepro.engine.device`: bf16 autocast and
channels-last where the device computes bf16 natively, fp32 elsewhere), so the speed-up of the
default is a ratio within one run (where the default is that same fp32 NCHW step, on a CPU without
native bf16, it is timed once and the default's rows repeat its times). On the CPU it runs one
thread (the sweeps' workers do) and reports images per second per core.

Before and after: ``before=`` takes a factory of an outside stepper (one per batch size) that
joins the same round-robin as the in-process sides, so that ``speedup_vs_before`` is a ratio
within one run. ``tools/throughput_before.py`` (``make throughput-before``) passes one that steps
an earlier commit's own code in a worker process; the package itself never reads git history.

Protocol (benchmarks are not tests): the models are timed in alternating order within each repeat, each
repeat times ``steps`` consecutive steps after ``warmup`` untimed ones, and the table reports
medians and the ratio to ``bn_resnet_small`` measured in the same run. Not a test: run it on a
quiet machine (``python -m nfrepro bench --which throughput``).
"""
from __future__ import annotations

import functools
import statistics
import time
from typing import Any, Callable, Protocol, Sequence

import pandas as pd
import torch

from nfrepro.data.datasets import load_dataset
from nfrepro.data.loader import TensorLoader
from nfrepro.engine.device import (
    autocast,
    compute_dtype,
    memory_format,
    native_bf16,
    resolve_device,
    synchronize,
)
from nfrepro.engine.training import train_step
from nfrepro.models import create_model
from nfrepro.optim.recipe import make_optimizer

MODELS = ("nf_resnet_small", "bn_resnet_small", "plain_resnet_small")
BASELINE = "bn_resnet_small"
BATCH_SIZES = (64, 256, 1024)
# on a CPU a step at batch 1024 takes seconds (about 5 s for the small nets on one core): two batch
# sizes say how throughput grows with the batch there, in a tenth of the time
CPU_BATCH_SIZES = (32, 128)
NF_CLIPPING = 0.01
Precision = tuple[str, str, bool | None]  # (label, amp, channels_last)
# the fp32 NCHW step every earlier measurement used, and the training default (bf16 +
# channels_last where the device computes bf16 natively, else fp32 again)
FP32 = ("float32, NCHW", "off", False)
PRECISIONS = (FP32, ("default (amp auto)", "auto", None))


class OutsideStepper(Protocol):
    """A side timed outside this process (an earlier commit's code, in ``tools/throughput_before.py``)."""
    label: str   # its ``precision`` in the table
    model: str   # the model it steps: every row of that model gets ``speedup_vs_before``

    def time_steps(self, steps: int) -> float: ...  # seconds of ``steps`` consecutive steps

    def close(self) -> None: ...


class _Stepper:
    """One model's training step (:func:`nfrepro.engine.training.train_step`) on batches drawn
    from a device-resident data set."""

    def __init__(self, name: str, data, batch_size: int, device: torch.device, amp: str,
                 channels_last: bool | None, seed: int = 0):
        torch.manual_seed(seed)
        model = create_model(name, num_classes=data.num_classes, in_chans=data.images.shape[1])
        self.channels_last = memory_format(device, channels_last, model) == torch.channels_last
        self.model = model.to(device, memory_format=torch.channels_last if self.channels_last
                              else torch.contiguous_format).train()
        self.opt = make_optimizer(self.model, lr=0.01,
                                  clipping=NF_CLIPPING if name.startswith("nf_") else None)
        self.loader = TensorLoader(data, batch_size, shuffle=True, seed=seed, device=device,
                                   channels_last=self.channels_last)
        self.batches = iter(self.loader)
        self.autocast = functools.partial(autocast, device, amp)

    def step(self) -> None:
        try:
            x, y = next(self.batches)
        except StopIteration:
            self.batches = iter(self.loader)
            x, y = next(self.batches)
        train_step(self.model, self.opt, x, y, self.autocast)


def _same_step(device: torch.device, p: Precision, q: Precision) -> bool:
    """Whether precisions ``p`` and ``q`` run the same step on ``device`` for every model: the same
    compute dtype and the same layout (a layout left to the default is NCHW wherever bf16 is not
    native, whatever the model, :func:`nfrepro.engine.device.memory_format`)."""
    def layout(channels_last: bool | None) -> bool | None:
        return channels_last if channels_last is not None or native_bf16(device) else False
    return (compute_dtype(device, p[1]) == compute_dtype(device, q[1])
            and layout(p[2]) == layout(q[2]) is not None)


def measure_throughput(models: Sequence[str] = MODELS, batch_sizes: Sequence[int] | None = None,
                       device: Any = None, steps: int = 8, warmup: int = 2, repeats: int = 3,
                       dataset: str = "fashion_mnist", subset: int | None = 8192,
                       precisions: Sequence[Precision] = PRECISIONS,
                       threads: int | None = 1,
                       before: Callable[[int], OutsideStepper | None] | None = None) -> pd.DataFrame:
    """Tidy table: one row per (model, batch size, precision, metric), medians over ``repeats``.

    Each precision is ``(label, amp, channels_last)``; every (model, precision) pair is timed in
    alternating order within each repeat. ``threads`` (default 1: the sweeps' one thread per
    worker) gives ``images_per_s_per_core``; ``speedup_vs_fp32`` is the first precision's step
    time over this one's, same model and batch, same run. Each row names the dtype that ran.
    ``before(batch_size)``: an :class:`OutsideStepper` (or None) that joins the round-robin (see
    the module docstring); its rows have its ``label`` as ``precision``, and every row of its
    model gets ``speedup_vs_before``. ``batch_sizes`` defaults to :data:`BATCH_SIZES` on an
    accelerator and :data:`CPU_BATCH_SIZES` on the CPU.
    """
    device = resolve_device(device)
    if batch_sizes is None:
        batch_sizes = CPU_BATCH_SIZES if device.type == "cpu" else BATCH_SIZES
    data = load_dataset(dataset, train=True, subset=subset)
    saved_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    cores = torch.get_num_threads() if device.type == "cpu" else None
    rows = []
    try:
        for batch_size in batch_sizes:
            # a precision that runs the first one's very step (the default on a CPU without native
            # bf16: fp32, NCHW) is not timed twice: its rows repeat the first one's times
            same = {p: precisions[0] for p in precisions[1:] if _same_step(device, p, precisions[0])}
            keys = [(m, p) for p in precisions if p not in same for m in models]
            steppers = {(m, p): _Stepper(m, data, batch_size, device, p[1], p[2]) for m, p in keys}
            for stepper in steppers.values():
                for _ in range(warmup):
                    stepper.step()
            old = before(batch_size) if before is not None else None
            old_key = (old.model, (old.label, "off", False)) if old is not None else None
            if old is not None:
                old.time_steps(warmup)
                keys.append(old_key)
            times: dict[Any, list[float]] = {k: [] for k in keys}
            try:
                for r in range(repeats):
                    for k in keys[r % len(keys):] + keys[:r % len(keys)]:  # alternate the order
                        if k == old_key:
                            times[k].append(old.time_steps(steps) / steps)
                            continue
                        synchronize(device)
                        start = time.perf_counter()
                        for _ in range(steps):
                            steppers[k].step()
                        synchronize(device)
                        times[k].append((time.perf_counter() - start) / steps)
            finally:
                if old is not None:
                    old.close()
            times.update({(m, p): times[(m, q)] for p, q in same.items() for m in models})
            keys += [(m, p) for p in same for m in models]
            for m, p in keys:
                t = statistics.median(times[(m, p)])
                timed = steppers.get((m, same.get(p, p)))
                row = {"model": m, "batch_size": batch_size, "precision": p[0],
                       "dtype": compute_dtype(device, p[1]),
                       "channels_last": timed is not None and timed.channels_last}
                values = {"ms_per_step": 1e3 * t, "images_per_s": batch_size / t}
                if cores:
                    values["images_per_s_per_core"] = batch_size / t / cores
                if (BASELINE, p) in times:
                    values[f"step_time_ratio_vs_{BASELINE}"] = t / statistics.median(times[(BASELINE, p)])
                values["speedup_vs_fp32"] = statistics.median(times[(m, precisions[0])]) / t
                if old_key in times and m == old_key[0]:
                    values["speedup_vs_before"] = statistics.median(times[old_key]) / t
                rows += [{**row, "metric": k, "value": v} for k, v in values.items()]
            del steppers
    finally:
        torch.set_num_threads(saved_threads)
    df = pd.DataFrame(rows)
    # what the run record pins (nfrepro.bench.runner reads these)
    df.attrs.update(threads_per_worker=threads or saved_threads, dtype="per row (dtype column)")
    return df
