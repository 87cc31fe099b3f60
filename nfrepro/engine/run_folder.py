"""What a run folder holds besides its checkpoint: the per-epoch metrics and their record, how a
finished run is recognised and read back, and which files a fresh run may replace.

``metrics.csv`` has one row per epoch (:data:`METRIC_COLUMNS`, test accuracies in percent) and
``metrics.json`` is its run record (:func:`nfrepro.engine.records.save_results`: commit, device,
status). :mod:`nfrepro.engine.training` writes them after every epoch.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.nn as nn

from nfrepro.engine.checkpoint import checkpoint_epoch
from nfrepro.engine.config import ConfigError, TrainConfig, check_same_config
from nfrepro.engine.device import compute_dtype
from nfrepro.engine.records import save_results

METRIC_COLUMNS = ["epoch", "step", "train_loss", "test_top1", "test_top1_ema", "lr",
                  "frac_clipped", "wall_time_s", "status"]
FINISHED = ("completed", "diverged")


@dataclass
class RunResult:
    run_dir: Path
    status: str                       # "completed" or "diverged"
    config: TrainConfig
    metrics: pd.DataFrame             # the rows of metrics.csv
    wall_time_s: float
    model: nn.Module | None = None    # trained model (None when read back from a finished run)
    ema_model: nn.Module | None = None

    def final(self, column: str) -> float:
        values = self.metrics[column].dropna()
        return float(values.iloc[-1]) if len(values) else float("nan")


def finished_run(run_dir: Path, config: TrainConfig) -> RunResult | None:
    """The result of a run that already completed or diverged in ``run_dir``, else None.

    Finished means the record says so *and* the metrics CSV agrees with it (the rows it counts,
    the same last epoch and status) *and* the checkpoint does (written after the last epoch of a
    completed run; a diverged run keeps its last good one, of an earlier epoch, or none): the CSV
    is written first, so a kill between the two writes, a truncated CSV or a stale checkpoint
    reads as unfinished and the run resumes from its checkpoint, whose progress rewrites both files.
    """
    try:
        record = json.loads((run_dir / "metrics.json").read_text())
        metrics = pd.read_csv(run_dir / "metrics.csv")
    except (OSError, ValueError):
        return None
    if record.get("status") not in FINISHED:
        return None
    if (len(metrics) != record.get("rows") or list(metrics.columns) != METRIC_COLUMNS
            or metrics["status"].iloc[-1] != record["status"]
            or int(metrics["epoch"].iloc[-1]) != record.get("epoch", len(metrics))):
        return None
    saved = checkpoint_epoch(run_dir / "checkpoint.pt")
    last = int(metrics["epoch"].iloc[-1])
    if (saved != last) if record["status"] == "completed" else (saved is not None and saved > last):
        return None
    check_same_config(record.get("parameters", {}), config, run_dir)
    return RunResult(run_dir, record["status"], config, metrics, record.get("wall_time_s", 0.0))


# what a run writes in its folder; a fresh run refuses a folder where any of them is not its own
RUN_FILES = ("config.json", "metrics.csv", "metrics.json", "steps.csv", "tensorboard")


def refuse_foreign_files(run_dir: Path, config: TrainConfig) -> None:
    """Before a fresh run writes: the files it would replace must be this run's (a run killed
    before its first checkpoint), never another tool's or another run's."""
    present = [name for name in RUN_FILES if (run_dir / name).exists()]
    if not present:
        return
    try:
        stored = json.loads((run_dir / "config.json").read_text())
        ours = isinstance(stored, dict) and "model" in stored
    except (OSError, ValueError):
        ours = False
    if not ours:
        raise ConfigError(f"run folder {run_dir} holds {', '.join(present)} that nfrepro did not "
                          f"write for this run: choose an empty --run-dir, or move those files away")
    check_same_config(stored, config, run_dir)


def write_metrics(run_dir: Path, rows: list[dict], config: TrainConfig, wall: float,
                   status: str, device: torch.device, world_size: int) -> None:
    """metrics.csv, then its record metrics.json (atomically, in that order: see :func:`finished_run`)."""
    df = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    save_results(df, run_dir / "metrics.csv", params=config.to_dict(), wall_time_s=wall,
                 device=device, status=status, world_size=world_size,
                 threads_per_worker=torch.get_num_threads(), dtype=compute_dtype(device, config.amp),
                 epoch=int(df["epoch"].iloc[-1]) if len(df) else 0)
