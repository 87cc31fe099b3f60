"""Grids of training runs in one tidy results CSV (the §4.1 ablations: model x batch size x
clipping lambda x seed; NFNets F2 and F7 are such grids).

``run_sweep(grid, base_config, results_csv)`` trains every combination of the grid's values;
each run gets a deterministic folder (:func:`nfrepro.engine.training.run_name`), so re-running a sweep
skips the runs that finished (completed or diverged: :func:`~nfrepro.engine.training.train` reads them
back) and resumes the ones that were cut off. After every run the CSV is rewritten with one row
per run and metric, plus its JSON run record (:func:`nfrepro.engine.records.save_results`); rows of
runs outside this grid that the CSV already held are kept. Usable from a notebook or papermill::

    df = run_sweep({"batch_size": [256, 1024], "clipping": [None, 0.01, 0.04], "seed": [0, 1]},
                   TrainConfig(model="nf_resnet_small", epochs=10), "results/agc_sweep.csv")
"""
from __future__ import annotations

import contextlib
import errno
import itertools
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from nfrepro.engine.distributed import is_main_process
from nfrepro.engine.faults import OutputLocationError, check_output_dir, exclusive_lock
from nfrepro.engine.profiles import project_root
from nfrepro.engine.progress import progress_bar
from nfrepro.engine.records import check_results_path, read_results, save_results
from nfrepro.engine.training import ConfigError, RunResult, TrainConfig, run_name, train

ID_COLUMNS = ["run", "model", "dataset", "batch_size", "clipping", "seed"]
# What a run's configuration (and the recorded environment) determines, and nothing else: the same
# plan run twice gives the same table. A run's wall time is in its folder (metrics.json), not here.
# Fields the sweep sets itself for every run: a grid that names them would be silently overridden.
SWEEP_CONTROLLED = ("run_dir",)
# A grid beyond this many runs is a warning before the first one trains (a typo'd range is likely).
LARGE_GRID = 2000

METRICS = ("final_test_top1", "final_test_top1_ema", "best_test_top1", "final_train_loss",
           "mean_frac_clipped", "epochs", "steps", "diverged")


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, in key order (the last key varies fastest)."""
    if not isinstance(grid, Mapping) or not grid:
        raise ConfigError(f"the grid must be a non-empty mapping of TrainConfig fields to lists of "
                          f"values, e.g. {{\"clipping\": [0.01, 0.04]}}; got {grid!r}")
    for key, values in grid.items():
        if key in SWEEP_CONTROLLED:
            raise ConfigError(f"grid key {key!r} is set by the sweep for every run (one folder each): "
                              f"choose where the run folders go with runs_dir= (--runs-dir) instead")
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ConfigError(f"grid[{key!r}] must be a non-empty list of values, got {values!r}")
        seen: list[Any] = []
        for value in values:
            if any(value == other and type(value) is type(other) for other in seen):
                raise ConfigError(f"grid[{key!r}] lists {value!r} twice: each run would be counted "
                                  f"twice in the table; list every value once")
            seen.append(value)
    sizes = [len(values) for values in grid.values()]
    if math.prod(sizes) > LARGE_GRID:
        warnings.warn(f"this grid has {math.prod(sizes):,} runs ({' x '.join(map(str, sizes))}): "
                      f"check its ranges before it starts", stacklevel=2)
    return [dict(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())]


def apply_overrides(base: TrainConfig, overrides: Mapping[str, Any],
                    runs_dir: str | os.PathLike | None = None) -> TrainConfig:
    """``base`` with ``overrides`` applied; ``"model_kwargs.alpha"`` sets one model argument.

    The run folder is ``runs_dir / run_name(config)`` (``base.run_dir`` is ignored: each run
    of a grid needs its own).
    """
    values = base.to_dict()
    values["model_kwargs"] = dict(values["model_kwargs"])
    for key, value in overrides.items():
        if key.startswith("model_kwargs."):
            values["model_kwargs"][key.split(".", 1)[1]] = value
        elif key in values:
            values[key] = value
        else:
            raise ConfigError(f"grid key {key!r} is not a TrainConfig field (nor model_kwargs.<name>)")
    values["run_dir"] = None
    config = TrainConfig.from_dict(values)
    config.validate()
    folder = Path(runs_dir) if runs_dir is not None else project_root() / "runs"
    config.run_dir = str(folder / run_name(config))
    return config


def tidy_rows(result: RunResult, overrides: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per metric of a finished run, keyed by the run's main settings and the grid keys."""
    m, c = result.metrics, result.config
    top1 = m["test_top1"].dropna()
    clipped = m["frac_clipped"].dropna()
    values = {
        "final_test_top1": result.final("test_top1"),
        "final_test_top1_ema": result.final("test_top1_ema"),
        "best_test_top1": float(top1.max()) if len(top1) else np.nan,
        "final_train_loss": result.final("train_loss"),
        "mean_frac_clipped": float(clipped.mean()) if len(clipped) else np.nan,
        "epochs": int(m["epoch"].iloc[-1]) if len(m) else 0,
        "steps": int(m["step"].iloc[-1]) if len(m) else 0,
        "diverged": float(result.status == "diverged"),
    }
    ids = {"run": Path(result.run_dir).name, "model": c.model, "dataset": c.dataset,
           "batch_size": c.batch_size, "clipping": c.clipping, "seed": c.seed}
    ids.update({k: v for k, v in overrides.items() if k not in ids})
    return [{**ids, "status": result.status, "metric": name, "value": value}
            for name, value in values.items()]


def run_sweep(grid: Mapping[str, Sequence[Any]], base_config: TrainConfig | None = None,
              results_csv: str | os.PathLike = "results/sweep.csv",
              runs_dir: str | os.PathLike | None = None, progress: bool = True,
              train_fn: Callable[[TrainConfig], RunResult] = train) -> pd.DataFrame:
    """Train every combination of ``grid`` (see the module docstring); return the tidy table.

    Every grid point is validated (types, ranges, its model built on the meta device) and the
    output locations checked before the first run trains. An existing table is read with
    :func:`~nfrepro.engine.records.read_results`, so one cut short is an error, never trusted.
    The table is locked (``<results>.lock``) while the sweep runs: two sweeps into one table
    would each drop the other's rows.
    """
    base = base_config or TrainConfig()
    configs = [(o, apply_overrides(base, o, runs_dir)) for o in expand_grid(grid)]  # validate all first
    results_csv = Path(results_csv)
    if results_csv.is_dir():
        raise OutputLocationError(errno.EISDIR, f"results table {results_csv} is a folder: name a "
                                  f".csv file in it")
    check_results_path(results_csv)  # never clobber a file nfrepro did not write
    for folder in {results_csv.parent, *(Path(c.run_dir).parent for _, c in configs)}:
        check_output_dir(folder)
    main = is_main_process()
    with exclusive_lock(results_csv.with_name(results_csv.name + ".lock"),
                        f"results table {results_csv}") if main else contextlib.nullcontext():
        return _run_configs(configs, grid, base, results_csv, progress, main, train_fn)


def _run_configs(configs: list[tuple[dict[str, Any], TrainConfig]], grid: Mapping[str, Sequence[Any]],
                 base: TrainConfig, results_csv: Path, progress: bool, main: bool,
                 train_fn: Callable[[TrainConfig], RunResult]) -> pd.DataFrame:
    ours = {Path(config.run_dir).name for _, config in configs}
    kept = pd.DataFrame()
    if results_csv.exists():
        old, _ = read_results(results_csv)
        kept = old[~old["run"].isin(ours)] if "run" in old else pd.DataFrame()
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    df = kept
    for overrides, config in progress_bar(configs, desc="sweep", disable=not (progress and main)):
        if not progress:
            config.progress = False
        rows += tidy_rows(train_fn(config), overrides)
        df = pd.concat([kept, pd.DataFrame(rows)], ignore_index=True) if len(kept) else pd.DataFrame(rows)
        if main:  # rewrite after every run: a killed sweep keeps what finished
            save_results(df, results_csv, wall_time_s=time.perf_counter() - started,
                         params={"grid": {k: list(v) for k, v in grid.items()},
                                 "base_config": base.to_dict(), "runs": len(configs)})
    return df
