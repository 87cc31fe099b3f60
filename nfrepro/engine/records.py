"""Results tables and the JSON run record written beside each of them, and figures that name
the commit that drew them.

Every results CSV in ``results/`` has a sibling ``.json`` with the git commit, the parameters,
the torch version, the device, the wall time and the number of rows, so a reader can tell how a
number was made, and :func:`read_results` can tell a whole table from one cut short. The record
holds the table's SHA-256 and is renamed into place last, after a copy of it (``<name>.json.next``)
that :func:`read_results` promotes when a kill fell between the two renames: any kill leaves the
old pair or the new pair readable. Every PNG in
``figures/`` is written by :func:`save_figure`, which stores the same commit in the file's text
chunks (``FIGURE_COMMIT_KEY``).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import io
import json
import os
import platform
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import torch

from nfrepro.engine.device import compute_dtype
from nfrepro.engine.faults import atomic_write_all
from nfrepro.engine.profiles import project_root

# The PNG text key under which :func:`save_figure` stores :func:`git_commit`.
FIGURE_COMMIT_KEY = "nfrepro commit"


# how to rebuild a table that cannot be trusted without losing any of its rows
REBUILD = ("move the table and its record aside, then rerun every sweep that wrote into it (finished "
           "runs are read back from their run folders, not retrained)")


class ResultsError(ValueError):
    """A results table disagrees with its run record (cut short, emptied, or edited by hand)."""


def git_commit() -> str:
    """The current commit of the repository (with ``-dirty`` if the tree has changes), or "unknown".

    ``$NFREPRO_COMMIT`` wins when set: a copy of the working tree without ``.git`` (the GPU machine
    of ``make gpu-check``) is told the commit it was copied from. Otherwise git is asked in the
    checkout that holds the running nfrepro code first (the code's commit, wherever the outputs
    go), then in :func:`~nfrepro.engine.profiles.project_root`.
    """
    if os.environ.get("NFREPRO_COMMIT"):
        return os.environ["NFREPRO_COMMIT"]
    for root in dict.fromkeys((Path(__file__).resolve().parents[2], project_root())):
        try:
            sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                 text=True, check=True, timeout=10).stdout.strip()
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                   capture_output=True, text=True, check=True, timeout=10).stdout.strip()
            return sha + ("-dirty" if dirty else "")
        except (OSError, subprocess.SubprocessError):
            continue
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
               threads_per_worker: int | None = None, dtype: str | None = None,
               **extra: Any) -> dict[str, Any]:
    """The run record: what made a results file and where.

    Besides the commit and the parameters it pins what floating-point results depend on (a
    rounding-sized difference can flip a large-batch run): the torch version, the CPU's vector
    instruction set as torch sees it (``cpu_capability``), the intra-op threads of each process
    that computed the numbers (``threads_per_worker``: a sweep's worker processes run one thread
    each; default: this process's threads) and the dtype the activations were computed in
    (``dtype``; default: what ``amp="auto"`` picks on ``device``,
    :func:`nfrepro.engine.device.compute_dtype`). ``threads`` is the writing process's own.
    """
    record = {
        "git_commit": git_commit(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "parameters": dict(params),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "device": device_name(device),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        # oneDNN's kernels follow this cap (unset: the CPU's best); with cpu_capability it names the
        # instruction set the numbers were computed with (an AVX2 and an AVX-512 machine differ)
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "native"),
        "threads_per_worker": int(threads_per_worker or torch.get_num_threads()),
        "dtype": dtype or compute_dtype(device if device is not None else "auto"),
        "wall_time_s": round(float(wall_time_s), 3),
    }
    record.update(extra)
    return record


def _record(path: Path) -> dict[str, Any] | None:
    """The run record of ours that ``path`` holds (a JSON object with our keys), else None."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    ours = isinstance(record, dict) and {"git_commit", "rows", "parameters"} <= record.keys()
    return record if ours else None


def check_results_path(path: str | Path) -> Path:
    """Refuse a results path whose table or record would clobber a file nfrepro did not write.

    A table is a ``.csv`` whose record is the same name with ``.json``; an existing table is
    replaced only when its record is ours, and an existing ``.json`` only when it is a record.
    """
    path = Path(path)
    if path.suffix.lower() != ".csv":
        raise ValueError(f"results table {path}: name a .csv file (its run record is written beside "
                         f"it with the suffix .json)")
    record = path.with_suffix(".json")
    if record.exists() and _record(record) is None:
        raise ValueError(f"{record} exists and is not an nfrepro run record: the table {path.name} "
                         f"would overwrite it; choose another name or move it aside")
    if path.exists() and not record.exists():
        raise ValueError(f"{path} exists without an nfrepro run record beside it ({record.name}), so "
                         f"nfrepro did not write it: choose another name or move it aside")
    return path


def save_results(df, path: str | Path, params: Mapping[str, Any], wall_time_s: float,
                 device: Any = None, **extra: Any) -> Path:
    """Write ``df`` to ``path`` (CSV) and its run record to ``path`` with a ``.json`` suffix.

    Paths are checked first (:func:`check_results_path`). Every file is written in full before the
    first rename (:func:`nfrepro.engine.faults.atomic_write_all`); then the record's copy
    ``.json.next``, the table and the record are renamed in that order, so a kill or a full disk
    leaves the old pair or the new one, and :func:`read_results` reads whichever it is.
    """
    path = check_results_path(path)
    table = df.to_csv(index=False)
    record = run_record(params, wall_time_s, device=device, rows=int(len(df)),
                        table_sha256=hashlib.sha256(table.encode()).hexdigest(), **extra)
    text = json.dumps(record, indent=2, default=str) + "\n"
    pending = _pending(path)
    atomic_write_all([(pending, text), (path, table), (path.with_suffix(".json"), text)])
    with contextlib.suppress(OSError):
        pending.unlink()
    return path


def _pending(path: Path) -> Path:
    return path.with_name(path.with_suffix("").name + ".json.next")


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def read_results(path: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``(table, record)`` of a results CSV written by :func:`save_results`, checked to agree.

    A table that cannot be parsed (0 bytes: "No columns to parse"), or whose row count is not the
    one its record states, raises :class:`ResultsError` rather than being trusted.
    """
    path = Path(path)
    where, pending = path.with_suffix(".json"), _pending(path)
    if pending.exists():  # a save was cut short: the pair that agrees wins, the other record goes
        sha = (_record(pending) or {}).get("table_sha256")
        promote = sha is not None and sha == _sha256(path)
        with contextlib.suppress(OSError):
            os.replace(pending, where) if promote else pending.unlink()
    try:
        record = json.loads(where.read_text())
        rows = int(record["rows"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ResultsError(f"{path} has no readable run record {where.name} ({type(err).__name__}); "
                           f"it was not written by nfrepro or was cut short: move both aside") from err
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as err:  # EmptyDataError and ParserError are ValueErrors
        df = None
        found = f"cannot be read ({type(err).__name__})"
    else:
        found = f"has {len(df)} rows"
    if df is None or len(df) != rows:
        raise ResultsError(f"{path} {found} but its record {where.name} says {rows}: the table was "
                           f"cut short: {REBUILD}")
    if "table_sha256" in record and record["table_sha256"] != _sha256(path):
        raise ResultsError(f"{path} does not match its record {where.name} (edited by hand or cut "
                           f"short): {REBUILD}")
    return df, record


def save_figure(fig, path: str | Path, **savefig_kwargs: Any) -> None:
    """Save the matplotlib figure ``fig`` as the PNG ``path``, with its provenance in the file.

    The PNG's text chunks name the commit that drew it (``FIGURE_COMMIT_KEY``: :func:`git_commit`,
    ``$NFREPRO_COMMIT`` under ``make reproduce``) and the software (nfrepro and matplotlib
    versions), so a figure can be checked against the run records of the tables it was drawn
    from. The file is replaced atomically (:func:`nfrepro.engine.faults.atomic_write_all`).
    ``savefig_kwargs`` go to ``fig.savefig`` (``dpi``, ``bbox_inches``). Returns nothing, like
    ``savefig``: a notebook cell that ends with it shows no path.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"save_figure writes PNG files (their text chunks hold the commit); got {path.name}")
    matplotlib = sys.modules.get("matplotlib")
    software = f"nfrepro {_package_version()}" + (
        f", matplotlib {matplotlib.__version__}" if matplotlib is not None else "")
    metadata = {"Software": software, FIGURE_COMMIT_KEY: git_commit(),
                **savefig_kwargs.pop("metadata", {})}
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata=metadata, **savefig_kwargs)
    atomic_write_all([(path, buffer.getvalue())])


def _package_version() -> str:
    try:
        return version("nfrepro")
    except PackageNotFoundError:
        return "(not installed)"
