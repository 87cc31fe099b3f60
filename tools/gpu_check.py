"""The device check: one command that tests and measures nfrepro on a GPU (``make gpu-check``).

Development tooling, not part of the package: nfrepro never imports it. Run it from the repository
root with ``PYTHONPATH=. python tools/gpu_check.py`` (the Makefile does).

A GPU is lent to some sessions only, for minutes, so everything is prepared here and runs in one
go with the GPU machine's own python (torch, torchvision, timm, pandas, pytest; no install):

1. ``pytest -m cuda`` (``tests/test_cuda.py``): bf16 + channels_last against fp32 for every model
   family, AGC against the CPU reference, the WS backward's gradcheck, folding, NCCL/DDP, and a
   50-step bf16 run that resumes bit-identically;
2. NFNet-F0 training throughput against timm's ``dm_nfnet_f0`` (bf16 autocast, channels_last,
   AGC on both sides) at several batch sizes, eagerly and under ``torch.compile``, with the model
   FLOPs utilisation (MFU) against the GPU's dense bf16 peak;
3. AGC on F0's parameters against timm's ``adaptive_clip_grad`` (goal on a GPU: >= 5x faster);
4. folded F0 inference against timm;
5. notebook 05's survey at the paper's 32 images per device: NF vs BN-NFNet (T6) and F1 vs
   EfficientNet-B7 (T3), each ratio from the same run.

Every table goes to ``results/gpu/<part>.csv`` with its JSON run record (GPU name, driver, torch
version, commit), which notebook 05 reads
(:func:`nfrepro.experiments.speed_accuracy.committed_results`); a summary of the headline ratios is
printed at the end. ``--dry`` runs the same
script end to end on the CPU at toy sizes into a scratch folder, so the kit cannot rot between
the sessions that have a device (the tests run it). ``--budget-s`` stops starting new parts once
that much wall time has passed; a part that did not run is listed as skipped, never silently.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch

from nfrepro.bench.agc import bench_agc
from nfrepro.bench.models import bench_inference, bench_train_step
from nfrepro.engine.device import resolve_device
from nfrepro.engine.records import save_results
from nfrepro.experiments import speed_accuracy

ROOT = Path(__file__).resolve().parents[1]

PARTS = ("tests", "throughput", "agc", "inference", "survey")
# Dense bf16 tensor-core peaks (FLOP/s) from the vendors' data sheets, for the MFU. A GPU not listed
# gets no MFU rather than a guessed one.
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}
TINY_NFNET = {"depths": (1, 1, 1, 1), "channels": (32, 64, 96, 96), "group_size": 16}
TINY_TIMM = {**TINY_NFNET, "stem_chs": 16}


@dataclass(frozen=True)
class Plan:
    """The sizes of one device check (real on a GPU, toy for ``--dry`` on the CPU)."""
    batch_sizes: tuple[int, ...]
    px: int                              # training steps (F0's training resolution on a GPU)
    inference_px: int                    # folded inference (F0's test resolution on a GPU)
    compile_batch: int | None            # the batch at which both sides are also timed compiled
    repeats: int
    warmup: int
    agc_model: str
    survey: tuple[str, ...]
    survey_batch: int
    survey_res_scale: float
    nfrepro_overrides: dict[str, Any] = field(default_factory=dict)
    timm_overrides: dict[str, Any] = field(default_factory=dict)


REAL = Plan(batch_sizes=(32, 64, 128, 256), px=192, inference_px=256, compile_batch=128, repeats=10, warmup=3,
            agc_model="nfnet_f0", survey=("nfnet_f0", "nfnet_bn_f0", "nfnet_f1", "nfnet_bn_f1",
                                          "efficientnet_b7"),
            survey_batch=32, survey_res_scale=1.0)
DRY = Plan(batch_sizes=(2,), px=32, inference_px=32, compile_batch=None, repeats=1, warmup=0,
           agc_model="nf_resnet_small",
           survey=("nfnet_f0", "nfnet_bn_f0", "nfnet_f1", "efficientnet_b7"), survey_batch=2,
           survey_res_scale=0.05, nfrepro_overrides=TINY_NFNET, timm_overrides=TINY_TIMM)


def peak_flops(device: torch.device) -> float | None:
    """The GPU's dense bf16 peak from :data:`PEAK_BF16`, matched on its name; None elsewhere."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def driver_version() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_cuda_tests(out_dir: Path) -> pd.DataFrame:
    """``pytest -m cuda`` in a fresh process; one row per test with its outcome."""
    xml = out_dir / "cuda_tests.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-rs", "-p", "no:cacheprovider",
                    f"--junitxml={xml}", str(ROOT / "tests" / "test_cuda.py")],
                   cwd=ROOT, timeout=900)
    rows = []
    for case in ET.parse(xml).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome, message = ("failed" if tag == "failure" else tag), (node.get("message") or "")[:200]
        rows.append({"test": case.get("name"), "outcome": outcome, "seconds": float(case.get("time", 0)),
                     "message": message})
    xml.unlink()
    return pd.DataFrame(rows)


def run_throughput(plan: Plan, device: torch.device) -> pd.DataFrame:
    frames, peak = [], peak_flops(device)
    settings = [(b, False) for b in plan.batch_sizes]
    if plan.compile_batch is not None:
        settings.append((plan.compile_batch, True))
    for batch, compiled in settings:
        frames.append(bench_train_step(device, batch_size=batch, px=plan.px, repeats=plan.repeats,
                                       warmup=plan.warmup + (2 if compiled else 0), compile=compiled,
                                       peak_flops=peak, nfrepro_overrides=plan.nfrepro_overrides,
                                       timm_overrides=plan.timm_overrides))
    return pd.concat(frames, ignore_index=True)


def run_survey(plan: Plan, device: torch.device) -> pd.DataFrame:
    """Notebook 05's measurement at the paper's 32 images per device; ratios from the same run."""
    overrides = {m: plan.nfrepro_overrides for m in plan.survey if m.startswith("nfnet")}
    latency = speed_accuracy.train_step_latency(list(plan.survey), device=device,
                                                batch_size=plan.survey_batch,
                                                res_scale=plan.survey_res_scale, repeats=plan.repeats,
                                                warmup=plan.warmup, overrides=overrides, progress=None)
    ratios = speed_accuracy.speed_ratios(speed_accuracy.speed_accuracy_table(latency))
    tidy = ratios.melt(id_vars=["fast", "slow"], var_name="metric")
    return pd.concat([latency.assign(table="latency"), tidy.assign(table="ratios")], ignore_index=True)


def summary(tables: dict[str, pd.DataFrame]) -> list[str]:
    """The headline numbers, one line each."""
    lines = []
    if "tests" in tables:
        counts = tables["tests"]["outcome"].value_counts().to_dict()
        lines.append(f"cuda tests: {counts}")
    if "throughput" in tables:
        t = tables["throughput"]
        for (scenario, batch), g in t.groupby(["scenario", "batch_size"]):
            ours = g[g["side"] == "nfrepro"].drop_duplicates("metric").set_index("metric")["value"]
            mfu = f", MFU {float(ours['mfu']):.1%}" if "mfu" in ours.index else ""
            lines.append(f"F0 {scenario} batch {batch}: {float(ours['images_per_s']):.0f} img/s, step time "
                         f"vs timm {float(ours['ratio_vs_timm']):.2f}" + mfu)
    if "agc" in tables:
        a = tables["agc"]
        for scenario, g in a[(a["side"] == "nfrepro") & (a["metric"] == "ratio_vs_timm")].groupby("scenario"):
            lines.append(f"AGC {scenario}: nfrepro / timm time {float(g['value'].iloc[0]):.3f} "
                         f"({1 / float(g['value'].iloc[0]):.1f}x faster)")
    if "inference" in tables:
        i = tables["inference"]
        r = i.loc[(i["side"] == "nfrepro") & (i["metric"] == "ratio_vs_timm"), "value"]
        lines.append(f"folded F0 inference vs timm: {float(r.iloc[0]):.2f}")
    if "survey" in tables:
        r = tables["survey"]
        for row in r[(r["table"] == "ratios") & (r["metric"] == "measured")].itertuples():
            lines.append(f"{row.slow} / {row.fast} step time: {float(row.value):.2f}")
    return lines


class NoDeviceError(RuntimeError):
    """The real check was asked for on a machine without CUDA."""


def run(out_dir: str | Path | None = None, dry: bool = False, budget_s: float = 420.0,
        parts: tuple[str, ...] = PARTS, log: Callable[[str], None] = print) -> dict[str, pd.DataFrame]:
    """Run ``parts`` in order, each saved to ``out_dir/<part>.csv`` as soon as it ends."""
    device = resolve_device("cpu" if dry else "auto")
    if not dry and device.type != "cuda":
        raise NoDeviceError("found no CUDA device: run it on a GPU machine, or pass --dry "
                            "(make gpu-check DRY=1) for the toy run on the CPU")
    plan = DRY if dry else REAL
    out = Path(out_dir) if out_dir is not None else (
        ROOT / (".scratch/gpu-dry" if dry else "results/gpu"))
    out.mkdir(parents=True, exist_ok=True)
    runners = {"tests": lambda: run_cuda_tests(out), "throughput": lambda: run_throughput(plan, device),
               "agc": lambda: bench_agc(device, model_name=plan.agc_model, repeats=plan.repeats,
                                        warmup=plan.warmup, step_batch=plan.survey_batch,
                                        step_px=plan.px),
               "inference": lambda: bench_inference(device, batch_size=plan.batch_sizes[0],
                                                    px=plan.inference_px,
                                                    repeats=plan.repeats, warmup=plan.warmup,
                                                    nfrepro_overrides=plan.nfrepro_overrides,
                                                    timm_overrides=plan.timm_overrides),
               "survey": lambda: run_survey(plan, device)}
    unknown = [p for p in parts if p not in runners]
    if unknown:
        raise ValueError(f"unknown part(s) {unknown}: choose from {', '.join(PARTS)}")
    started, tables, skipped = time.perf_counter(), {}, []
    record = {"gpu_driver": driver_version() if device.type == "cuda" else "none",
              "torch_cuda": torch.version.cuda or "none", "dry": dry}
    for part in parts:
        if time.perf_counter() - started > budget_s:
            skipped.append(part)
            log(f"== {part}: skipped, the {budget_s:.0f} s budget is spent")
            continue
        log(f"== {part}")
        t0 = time.perf_counter()
        tables[part] = runners[part]()
        save_results(tables[part], out / f"{part}.csv", params={"plan": plan.__dict__, "part": part},
                     wall_time_s=time.perf_counter() - t0, device=device, **record)
    log(f"== summary ({time.perf_counter() - started:.0f} s, {out}):")
    for line in summary(tables) + [f"skipped: {', '.join(skipped)}"] * bool(skipped):
        log("   " + line)
    return tables


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/gpu_check.py",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--dry", action="store_true", help="toy sizes on the CPU, into .scratch/gpu-dry")
    parser.add_argument("--out-dir", default=None,
                        help="default: results/gpu (or .scratch/gpu-dry with --dry)")
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="start no new part after this many seconds (default 420: 7 of the 8 minutes)")
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS,
                        help="what to run, in order")
    args = parser.parse_args(argv)
    try:
        run(args.out_dir, args.dry, args.budget_s, tuple(args.parts))
    except NoDeviceError as err:  # one line, not a traceback
        print(f"gpu-check: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
