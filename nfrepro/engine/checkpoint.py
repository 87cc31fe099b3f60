"""Checkpoints that let a run resume exactly: atomic writes, RNG states, clear errors.

A checkpoint is one ``torch.save`` file holding everything the next step depends on: model,
EMA, optimizer, scheduler, the data loader's generator and the augmentation generator, and the
RNG states of torch (CPU and CUDA), numpy and Python (one set per process under DDP). It is
written with :func:`nfrepro.engine.faults.atomic_write` (a temporary file moved into place), so a
run killed while saving, or a full disk, leaves the previous checkpoint intact. Loading uses
``weights_only=True``: a checkpoint is plain tensors and containers, never arbitrary pickled code.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nfrepro.engine.faults import atomic_write, error_line

FORMAT = "nfrepro-checkpoint-v1"


class CheckpointError(RuntimeError):
    """A checkpoint is missing pieces, corrupt, or from another program."""


def rng_state() -> dict[str, Any]:
    """The global RNG states of this process, as plain tensors / lists (``weights_only``-safe)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [name, keys.tolist(), pos, has_gauss, cached],
        "python": [py_version, list(py_internal), py_gauss],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state`'s output; a damaged state is one :class:`CheckpointError`."""
    try:
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    except (TypeError, ValueError, RuntimeError, KeyError, IndexError, OverflowError) as err:
        raise CheckpointError(f"the checkpoint's RNG state is damaged ({error_line(err, 120)}): delete "
                              f"the checkpoint to restart that run from scratch") from None


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file + ``os.replace``)."""
    return atomic_write(path, lambda f: torch.save({"format": FORMAT, **state}, f))


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu",
                    required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; any problem is a :class:`CheckpointError`."""
    path = Path(path)
    hint = f"delete {path} to restart that run from scratch, or point to another run folder"
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types (RuntimeError, EOFError, UnpicklingError)
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable "
                              f"({error_line(err, 120)}): {hint}") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an nfrepro checkpoint ({FORMAT}): {hint}")
    missing = [key for key in required if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}: {hint}")
    return state


def checkpoint_epoch(path: str | os.PathLike) -> int | None:
    """The epoch a checkpoint was written after, read without loading its tensors (``mmap``);
    None when there is no readable nfrepro checkpoint at ``path``."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # missing, truncated, foreign: not a checkpoint this run can stand on
        return None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        return None
    return int(state.get("epoch", -1))
