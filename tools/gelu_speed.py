"""GELU speed on the CPU: our sigmoid-form tanh GELU against PyTorch's kernels, and NFNet-F0's
training step with it against timm's ``dm_nfnet_f0``.

Development tooling, not part of the package: ``python tools/gelu_speed.py`` (one thread by
default: ``--threads``). Every comparison alternates its sides round-robin and reports medians and
per-round ratios measured in the same run (style rule 9); nothing is compared across runs.

1. ``bench_gelu``: forward + backward of ``F.gelu`` tanh (baseline), ``F.gelu`` erf (timm's) and
   ours, on an F0 stage-0 map (``2 x 256 x 48 x 48``, float32).
2. ``bench_train_step``: the headline nfrepro-vs-timm F0 training step (each with its own AGC), at
   batch 2 and 192 px, fp32, NCHW.
3. ``gelu_train_steps``: the same step three ways, ours, ours with ``F.gelu`` tanh swapped in, and
   timm (all clipped by our AGC): how much of the step the GELU accounts for.

Tables go to ``results/bench_gelu.csv``, ``results/bench_train_step_1thread.csv`` and
``results/bench_gelu_train_steps.csv`` with their run records (``--out-dir`` to change the folder).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from nfrepro.bench.gelu import bench_gelu, gelu_train_steps
from nfrepro.bench.models import bench_train_step
from nfrepro.engine.records import save_results

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/gelu_speed.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (default: 1)")
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds per comparison (default: 10)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--px", type=int, default=192, help="training resolution (F0's: 192)")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "results")
    parser.add_argument("--only", choices=("gelu", "train_step", "gelu_train_steps"), nargs="+",
                        default=["gelu", "train_step", "gelu_train_steps"], help="run only these")
    parser.add_argument("--tiny", action="store_true", help="a tiny F0 at 32 px (a smoke run, not a result)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    tiny = {"depths": (1, 1, 1, 1), "channels": (32, 64, 96, 96), "group_size": 16} if args.tiny else None
    px = 32 if args.tiny else args.px
    step = dict(batch_size=args.batch_size, px=px, repeats=args.repeats, warmup=2, amp="off",
                channels_last=False)
    runs = {
        "gelu": lambda: bench_gelu("cpu", shape=(2, 32, 8, 8) if args.tiny else (2, 256, 48, 48),
                                   repeats=max(args.repeats, 20)),
        "train_step": lambda: bench_train_step(
            "cpu", nfrepro_overrides=tiny, timm_overrides={**tiny, "stem_chs": 16} if tiny else None, **step),
        "gelu_train_steps": lambda: gelu_train_steps("cpu", overrides=tiny, **step),
    }
    names = {"gelu": "bench_gelu", "train_step": "bench_train_step_1thread",
             "gelu_train_steps": "bench_gelu_train_steps"}
    for which in args.only:
        start = time.perf_counter()
        df = runs[which]()
        path = save_results(df, args.out_dir / f"{names[which]}.csv", device="cpu",
                            params={"threads": args.threads, "batch_size": args.batch_size, "px": px,
                                    "repeats": args.repeats, "dtype": "float32", "tiny": args.tiny},
                            wall_time_s=time.perf_counter() - start)
        ratios = df[df["metric"].isin(["median_ms", "ratio_median", "ratio_vs_timm", "ratio_vs_baseline",
                                       "ratio_ci_low", "ratio_ci_high"])]
        with pd.option_context("display.width", 160, "display.max_columns", 20):
            table = ratios.pivot_table(index="side", columns="metric", values="value")
            print(f"\n{which} ({path}):\n{table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
