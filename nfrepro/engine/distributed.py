"""Data-parallel training across processes (``torchrun --nproc_per_node=N -m nfrepro train ...``).

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`setup` reads them, starts
the process group (NCCL on CUDA, Gloo on the CPU) and picks this process's device. The batch
size everywhere in nfrepro is the *global* batch: each of the N processes computes 1/N of it,
DDP averages the gradients, so N processes make the same update as one process would with the
whole batch (AGC then clips the averaged gradient, as the official code clips after ``psum``).
Only rank 0 writes files and shows progress bars.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.distributed as dist

from nfrepro.engine.device import resolve_device


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _env_int(env: Mapping[str, str], name: str, default: int, low: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if value < low:
        raise ValueError(f"{name}={text!r} in the environment is not a whole number >= {low}: "
                         f"unset it, or launch with torchrun, which sets it")
    return value


def ranks_from_env(env: Mapping[str, str] | None = None) -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's variables, checked against each other.

    A stale ``RANK`` left in a shell (``RANK=1`` with no ``WORLD_SIZE``) would make a process
    that is alone believe it is not the writer, train to the end and save nothing: any rank
    outside ``0 .. WORLD_SIZE - 1`` is an error before any work.
    """
    env = os.environ if env is None else env
    world = _env_int(env, "WORLD_SIZE", 1, 1)
    rank = _env_int(env, "RANK", 0, 0)
    local_rank = _env_int(env, "LOCAL_RANK", 0, 0)
    if rank >= world:
        raise ValueError(f"RANK={rank} but WORLD_SIZE={world} in the environment: a rank must be below "
                         f"the world size. Unset RANK (and LOCAL_RANK) for a single process, or "
                         f"launch with torchrun, which sets all three")
    if world > 1 and "RANK" not in env:
        raise ValueError(f"WORLD_SIZE={world} but no RANK in the environment: launch with torchrun "
                         f"(it sets both), or unset WORLD_SIZE for a single process")
    return rank, world, local_rank


def world_size_from_env() -> int:
    """The number of processes torchrun started (1 without torchrun)."""
    return ranks_from_env()[1]


def is_main_process() -> bool:
    """True in the process that writes files: rank 0, or the only process."""
    return ranks_from_env()[0] == 0


def setup(device: str = "auto") -> DistInfo:
    """Join the process group described by torchrun's environment (no-op for one process)."""
    rank, world, local_rank = ranks_from_env()
    dev = resolve_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank, world, local_rank, dev)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce (``"sum"`` or ``"max"``); the identity for one process."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return tensor


def all_gather_object(obj: Any) -> list[Any]:
    if dist.is_available() and dist.is_initialized():
        out: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(out, obj)
        return out
    return [obj]


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
