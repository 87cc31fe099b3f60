"""Per-step metrics of a run: a callback, a CSV every N steps, TensorBoard scalars.

The engine syncs the GPU only every ``check_every`` steps; per-step logging would add a sync per
step, so it is opt-in: ``TrainConfig.log_every = N`` reads the loss every N updates and appends
``step, epoch, loss, lr, frac_clipped`` to ``RUN/steps.csv``, and ``TrainConfig.tensorboard``
writes the same scalars to ``RUN/tensorboard`` (needs the ``tensorboard`` package:
``pip install nfrepro[tensorboard]``). ``train(config, on_step=fn)`` calls
``fn(step, metrics)`` after every update with the metrics still on the device (the caller chooses
when to read them).
"""
from __future__ import annotations

import csv
import importlib
import math
from pathlib import Path
from typing import Any

STEP_COLUMNS = ("step", "epoch", "loss", "lr", "frac_clipped")


def tensorboard_writer(log_dir: str | Path):
    """A TensorBoard ``SummaryWriter`` for ``log_dir``, or one clear error if the package is missing."""
    try:
        import tensorboard  # noqa: F401  (the optional package behind torch's writer)
    except ImportError as err:
        raise ImportError("--tensorboard needs the tensorboard package: pip install tensorboard "
                          "(or nfrepro[tensorboard])") from err
    # torch's bridge to it, loaded only now (importing it without tensorboard fails)
    return importlib.import_module("torch.utils.tensorboard").SummaryWriter(str(log_dir))


class StepLogger:
    """Every ``every`` steps: one CSV row (``csv_path``) and TensorBoard scalars (``writer``)."""

    def __init__(self, every: int, csv_path: Path | None = None, writer: Any = None):
        if every < 1:
            raise ValueError(f"log_every must be >= 1 step, got {every}")
        self.every, self.csv_path, self.writer = every, csv_path, writer
        if csv_path is not None and not csv_path.exists():
            csv_path.parent.mkdir(parents=True, exist_ok=True)
            csv_path.write_text(",".join(STEP_COLUMNS) + "\n")

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
