"""Per-step metrics of a run: a callback, a CSV every N steps, TensorBoard scalars.

The engine syncs the GPU only every ``check_every`` steps; per-step logging would add a sync per
step, so it is opt-in: ``TrainConfig.log_every = N`` reads the loss every N updates and appends
``step, epoch, loss, lr, frac_clipped`` to ``RUN/steps.csv``, and ``TrainConfig.tensorboard``
writes the same scalars to ``RUN/tensorboard`` (needs the ``tensorboard`` package:
``pip install nfrepro[tensorboard]``). ``train(config, on_step=fn)`` calls
``fn(step, metrics)`` after every update with the metrics still on the device (the caller chooses
when to read them).

A run resumed from a checkpoint logs the steps after it again: :meth:`StepLogger.resume_at`
first drops the rows (and TensorBoard events, via ``purge_step``) past the checkpoint's step, so
``steps.csv`` holds each step once after any number of kills.
"""
from __future__ import annotations

import csv
import importlib
import math
import time
from pathlib import Path
from typing import Any

from nfrepro.engine.faults import atomic_write

STEP_COLUMNS = ("step", "epoch", "loss", "lr", "frac_clipped")


def tensorboard_writer(log_dir: str | Path, purge_step: int | None = None):
    """A TensorBoard ``SummaryWriter`` for ``log_dir``, or one clear error if the package is missing.

    ``purge_step``: events at or after this step, left by a run that was killed, are dropped.
    """
    try:
        import tensorboard  # noqa: F401  (the optional package behind torch's writer)
    except ImportError as err:
        raise ImportError("--tensorboard needs the tensorboard package: pip install tensorboard "
                          "(or nfrepro[tensorboard])") from err
    # torch's bridge to it, loaded only now (importing it without tensorboard fails)
    writer = importlib.import_module("torch.utils.tensorboard").SummaryWriter
    _open_after_earlier_files(Path(log_dir))
    return writer(str(log_dir), purge_step=purge_step)


def _open_after_earlier_files(log_dir: Path) -> None:
    """TensorBoard reads a folder's event files in name order, and a name begins with the second its
    writer opened (``events.out.tfevents.<seconds>.<host>.<pid>...``). A resume opened in the same
    second as the killed run's writer could sort before it by pid, and that file's purge would then
    drop the resumed steps; so wait (under a second) until the clock has passed the newest file's second."""
    seconds = [int(p.name.split(".")[3]) for p in log_dir.glob("events.out.tfevents.*")
               if p.name.split(".")[3].isdigit()]
    if seconds:
        delay = max(seconds) + 1 - time.time()
        if delay > 0:
            time.sleep(min(delay, 1.0))


class StepLogger:
    """Every ``every`` steps: one CSV row (``csv_path``) and TensorBoard scalars (``writer``)."""

    def __init__(self, every: int, csv_path: Path | None = None, writer: Any = None):
        if every < 1:
            raise ValueError(f"log_every must be >= 1 step, got {every}")
        self.every, self.csv_path, self.writer = every, csv_path, writer
        if csv_path is not None and not csv_path.exists():
            csv_path.parent.mkdir(parents=True, exist_ok=True)
            csv_path.write_text(",".join(STEP_COLUMNS) + "\n")

    def resume_at(self, step: int) -> None:
        """Keep only the rows of steps ``<= step`` (the checkpoint's): the rest are logged again."""
        if self.csv_path is None or not self.csv_path.exists():
            return
        with open(self.csv_path, newline="") as f:
            rows = list(csv.reader(f))
        kept = [row for row in rows[1:] if row and int(float(row[0])) <= step]
        if len(kept) < len(rows) - 1:
            lines = [",".join(STEP_COLUMNS)] + [",".join(row) for row in kept]
            atomic_write(self.csv_path, "\n".join(lines) + "\n")

    def __call__(self, step: int, metrics: dict[str, Any]) -> None:
        if step % self.every:
            return
        row = {k: float(metrics.get(k, math.nan)) for k in STEP_COLUMNS}  # the sync, every N steps
        row["step"], row["epoch"] = step, int(metrics.get("epoch", 0))
        if self.csv_path is not None:
            with open(self.csv_path, "a", newline="") as f:
                csv.writer(f).writerow([row[k] for k in STEP_COLUMNS])
        if self.writer is not None:
            for key in ("loss", "lr", "frac_clipped"):
                if not math.isnan(row[key]):
                    self.writer.add_scalar(f"train/{key}", row[key], step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
