"""Benchmarks: every timing is a ratio against a baseline measured in the same run.

Rule (style.md, 9): sides are timed alternately, round-robin, and summarised by their medians,
so that a machine busy with other work slows every side alike. Absolute milliseconds are kept
in the results for context only.

``bench_agc`` — claim: the vectorised :func:`nfrepro.optim.agc.adaptive_grad_clip_` clips NFNet-F0's
71.5M parameters faster than timm's per-parameter loop (goal: >= 1.5x on the CPU), within 1.5x
of a read-only pass over weights and gradients (the memory-bound floor: AGC must read both),
and costs a small share of one training step. Evidence: ``results/bench_agc.csv`` and its JSON
run record (commit, device, threads, settings).

Add a benchmark by writing ``bench_<name>(device, ...) -> DataFrame`` (tidy: one row per side
and metric) and registering it in :data:`BENCHMARKS`; ``run_benchmarks`` saves it.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch
import torch.nn.functional as F

from nfrepro.optim import agc
from nfrepro.engine.profiles import output_dirs, resolve_profile
from nfrepro.engine.records import save_results


def _synchronizer(device: Any = None) -> Callable[[], None]:
    """Wait for queued GPU work before reading the clock (a no-op on the CPU)."""
    dev = torch.device(device) if device is not None else None
    if dev is not None and dev.type == "cuda":
        return lambda: torch.cuda.synchronize(dev)
    if dev is None and torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.synchronize
    return lambda: None


def compare(fns: dict[str, Callable[[], Any]], baseline: str, repeats: int = 20, warmup: int = 3,
            setup: Callable[[], Any] | None = None, device: Any = None) -> pd.DataFrame:
    """Time each side of ``fns`` round-robin; one row per side with medians and ratios.

    Every round runs each side once (warm-up rounds are not recorded), starting one side later
    than the round before so that no side always follows the same neighbour. ``setup`` runs,
    untimed, before every call (for example to restore gradients an in-place side modified).
    ``ratio_vs_baseline`` = median(side) / median(baseline): below 1 is faster.
    """
    if baseline not in fns:
        raise ValueError(f"baseline {baseline!r} is not one of the sides {list(fns)}")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    sync, names = _synchronizer(device), list(fns)
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
    base = statistics.median(times[baseline])
    rows = []
    for name in names:
        ms = [t * 1e3 for t in times[name]]
        q = statistics.quantiles(ms, n=4) if len(ms) > 1 else [ms[0]] * 3
        rows.append({"side": name, "median_ms": statistics.median(ms), "q25_ms": q[0],
                     "q75_ms": q[2], "min_ms": min(ms), "repeats": len(ms),
                     "baseline": baseline, "ratio_vs_baseline": statistics.median(times[name]) / base})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- AGC
def _set_grads(params: list[torch.Tensor], scenario: str, clipping: float, eps: float,
               seed: int = 0) -> None:
    """Gradients of the parameters' shapes: N(0, 1) (every unit clipped: a unit of fan-in n has
    ||G_i|| ~ sqrt(n) against lambda ||W_i|| ~ 0.01), or rescaled unit-wise to half the threshold
    (none clipped; on the CPU our AGC then skips the multiplication)."""
    gen = torch.Generator(device=params[0].device).manual_seed(seed)
    for p in params:
        grad = torch.randn(p.shape, generator=gen, device=p.device, dtype=p.dtype)
        if scenario == "none_clipped":
            shape = agc._row_shape(grad)
            target = 0.5 * clipping * agc.unitwise_norm(p.detach()).clamp_min(eps)
            grad *= (target / agc.unitwise_norm(grad)).view(shape)
        elif scenario != "all_clipped":
            raise ValueError(f"unknown scenario {scenario!r}")
        p.grad = grad


def count_ops(fn: Callable[[], Any]) -> int:
    """Top-level ATen ops one call of ``fn`` dispatches (views included): a proxy, measurable on
    the CPU, for the kernel launches it would cost on a GPU (where foreach ops fuse further)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(event.cpu_parent is None for event in prof.events())


def _train_step_ms(model: torch.nn.Module, device: Any, batch: int, px: int, repeats: int,
                   warmup: int) -> float:
    """Median time of one forward + backward + SGD step (Nesterov momentum, the paper's optimizer)."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, nesterov=True)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, px, px, generator=gen).to(device)
    y = torch.randint(0, 1000, (batch,), generator=gen).to(device)
    model.train()

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    df = compare({"train_step": step}, "train_step", repeats=repeats, warmup=warmup, device=device)
    return float(df["median_ms"].iloc[0])


def bench_agc(device: Any = "cpu", model_name: str = "nfnet_f0", repeats: int = 20, warmup: int = 3,
              clipping: float = agc.CLIPPING, eps: float = agc.EPS, step_batch: int = 32,
              step_px: int = 192, step_repeats: int = 3, step_warmup: int = 1,
              scenarios=("all_clipped", "none_clipped")) -> pd.DataFrame:
    """AGC on ``model_name``'s clipped parameters (all but the classifier weight), four sides:

    ``timm`` (baseline: ``timm.utils.agc.adaptive_clip_grad``, a loop over parameters, given the
    same list), ``reference`` (our plain loop), ``nfrepro`` (vectorised) and ``read_only``
    (``torch._foreach_norm`` of every weight and gradient: a memory-bound floor no AGC can beat).
    Gradients are restored, untimed, before every call. ``share_of_train_step`` divides by the
    median of one training step (forward, backward, SGD) at ``step_batch`` images of ``step_px``
    pixels; the defaults are the paper's latency protocol (App. A.2: 32 images per device at F0's
    training resolution, 192 px). AGC's cost does not depend on the batch, so at a toy batch its
    share is much larger. Scenarios bound the work: ``all_clipped`` (every unit scaled) and
    ``none_clipped``.
    """
    from timm.utils.agc import adaptive_clip_grad  # timm: a dependency, imported only here

    from nfrepro.models.registry import create_model

    model = create_model(model_name).to(device)
    params = agc.clip_parameters(model)
    weights = [p.detach() for p in params]
    sides = {
        "timm": lambda: adaptive_clip_grad(params, clip_factor=clipping, eps=eps),
        "reference": lambda: agc.adaptive_grad_clip_reference_(params, clipping, eps),
        "nfrepro": lambda: agc.adaptive_grad_clip_(params, clipping, eps),
        "read_only": lambda: (torch._foreach_norm(weights), torch._foreach_norm([p.grad for p in params])),
    }
    rows = []
    for scenario in scenarios:
        _set_grads(params, scenario, clipping, eps)
        saved = [p.grad.clone() for p in params]
        grads = [p.grad for p in params]
        frac = float(agc.adaptive_grad_clip_(params, clipping, eps)["frac_units_clipped"])
        ops = {}
        for name, fn in sides.items():
            torch._foreach_copy_(grads, saved)
            ops[name] = count_ops(fn)
        df = compare(sides, "timm", repeats=repeats, warmup=warmup, device=device,
                     setup=lambda: torch._foreach_copy_(grads, saved))
        floor = float(df.loc[df["side"] == "read_only", "median_ms"].iloc[0])
        for r in df.itertuples():
            metrics = {"median_ms": r.median_ms, "q25_ms": r.q25_ms, "q75_ms": r.q75_ms,
                       "ratio_vs_timm": r.ratio_vs_baseline, "ratio_vs_read_only": r.median_ms / floor,
                       "aten_ops": ops[r.side]}
            rows += [{"scenario": scenario, "side": r.side, "metric": k, "value": v}
                     for k, v in metrics.items()]
        rows.append({"scenario": scenario, "side": "nfrepro", "metric": "frac_units_clipped",
                     "value": frac})
        del saved

    step_ms = _train_step_ms(model, device, step_batch, step_px, step_repeats, step_warmup)
    rows.append({"scenario": "train_step", "side": "train_step", "metric": "median_ms", "value": step_ms})
    out = pd.DataFrame(rows)
    agc_rows = out[(out["metric"] == "median_ms") & out["side"].isin(["nfrepro", "timm"])]
    out = pd.concat([out, agc_rows.assign(metric="share_of_train_step", value=agc_rows["value"] / step_ms)],
                    ignore_index=True)
    out.insert(0, "benchmark", "agc")
    out["model"] = model_name
    return out


# ---------------------------------------------------------------- whole models (nfrepro.bench_models)
def bench_train_step(device: Any = "cpu", **kwargs: Any) -> pd.DataFrame:
    """P1: NFNet-F0 training step, nfrepro vs timm; see :func:`nfrepro.bench_models.bench_train_step`."""
    from nfrepro.bench_models import bench_train_step as run  # imported here: bench_models imports compare

    return run(device=device, **kwargs)


def bench_inference(device: Any = "cpu", **kwargs: Any) -> pd.DataFrame:
    """P3: folded NFNet-F0 inference vs timm; see :func:`nfrepro.bench_models.bench_inference`."""
    from nfrepro.bench_models import bench_inference as run

    return run(device=device, **kwargs)


BENCHMARKS: dict[str, Callable[..., pd.DataFrame]] = {"agc": bench_agc, "train_step": bench_train_step,
                                                      "inference": bench_inference}


def run_benchmarks(which=("agc",), device: Any = None, out_dir: str | Path | None = None,
                   profile: str = "cpu", **kwargs: Any) -> dict[str, Path]:
    """Run the named benchmarks and save each as ``<out_dir>/bench_<name>.csv`` (+ JSON record).

    ``out_dir`` defaults to the profile's results folder (``.scratch/smoke/results`` under the
    smoke profile); ``kwargs`` go to every benchmark function (``repeats=3`` ...).
    """
    unknown = [name for name in which if name not in BENCHMARKS]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; choose from {sorted(BENCHMARKS)}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    out_dir = Path(out_dir) if out_dir is not None else output_dirs(resolve_profile(profile))[1]
    paths = {}
    for name in which:
        start = time.perf_counter()
        df = BENCHMARKS[name](device=device, **kwargs)
        params = {"device": str(device), "threads": torch.get_num_threads(), **kwargs}
        paths[name] = save_results(df, out_dir / f"bench_{name}.csv", params=params,
                                   wall_time_s=time.perf_counter() - start, device=device)
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--which", nargs="+", default=["agc"], choices=sorted(BENCHMARKS))
    parser.add_argument("--device", default=None)
    parser.add_argument("--out-dir", default=None)
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args(argv)
    paths = run_benchmarks(args.which, args.device, args.out_dir, args.profile,
                           repeats=args.repeats, warmup=args.warmup)
    for name, path in paths.items():
        df = pd.read_csv(path)
        print(f"== {name}: {path}")
        print(df.pivot_table(index=["scenario", "side"], columns="metric", values="value").round(3))


if __name__ == "__main__":
    main()
