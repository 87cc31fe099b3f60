"""Results tables and the JSON run record written beside each of them.

Every results CSV in ``results/`` has a sibling ``.json`` with the git commit, the parameters,
the torch version, the device and the wall time, so a reader can tell how a number was made.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Mapping

import torch

from nfrepro.engine.profiles import project_root


def git_commit() -> str:
    """The current commit of the repository (with ``-dirty`` if the tree has changes), or "unknown".

    ``$NFREPRO_COMMIT`` wins when set: a copy of the working tree without ``.git`` (the GPU machine
    of ``make gpu-check``) is told the commit it was copied from.
    """
    if os.environ.get("NFREPRO_COMMIT"):
        return os.environ["NFREPRO_COMMIT"]
    root = project_root()
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name(device: Any = None) -> str:
    """A human-readable device name: the GPU's name on CUDA, the CPU model otherwise."""
    dev = torch.device(device) if device is not None else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu ({cpu}, {torch.get_num_threads()} threads)"


def run_record(params: Mapping[str, Any], wall_time_s: float, device: Any = None,
               **extra: Any) -> dict[str, Any]:
    """The run record: what made a results file and where."""
    record = {
        "git_commit": git_commit(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "parameters": dict(params),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "device": device_name(device),
        "wall_time_s": round(float(wall_time_s), 3),
    }
    record.update(extra)
    return record


def save_results(df, path: str | Path, params: Mapping[str, Any], wall_time_s: float,
                 device: Any = None, **extra: Any) -> Path:
    """Write ``df`` to ``path`` (CSV) and its run record to ``path`` with a ``.json`` suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    record = run_record(params, wall_time_s, device=device, rows=int(len(df)), **extra)
    path.with_suffix(".json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    return path
