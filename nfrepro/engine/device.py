"""Where a run computes and in what precision: device choice, bf16 autocast, memory format, sync.

One home for the device-dependent defaults that training, evaluation and the benchmarks share:

* ``"auto"`` device: this process's GPU when CUDA is available, else the CPU;
* ``amp="auto"``: bf16 autocast on CUDA (the paper trains with bf16 activations, fp32 weights),
  off on the CPU, where bf16 kernels are not always faster;
* ``channels_last=None``: on for CUDA (tensor-core convolutions), off on the CPU;
* :func:`synchronize` before reading a clock (a no-op on the CPU).
"""
from __future__ import annotations

import contextlib
from typing import Any

import torch

AMP_MODES = ("auto", "bf16", "off")


def resolve_device(device: Any = "auto", local_rank: int = 0) -> torch.device:
    """``"auto"`` (or None): this process's GPU when CUDA is available, else the CPU."""
    if device is None or device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank)
    return dev


def check_device(device: Any = "auto") -> torch.device:
    """:func:`resolve_device`, refusing a device this machine does not have (``ValueError``).

    Called before any work, so that ``--device tpu`` or ``cuda`` on a machine without CUDA is
    one line up front rather than a traceback from the first tensor moved there.
    """
    hint = "use auto, cpu, cuda or cuda:N"
    try:
        dev = resolve_device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device {device!r} is not a device name: {hint}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: CUDA is not available on this machine; use cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} "
                             f"CUDA device(s), numbered from 0")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device {device!r}: MPS is not available on this machine; use cpu or auto")
    elif dev.type != "cpu":
        raise ValueError(f"device {device!r}: nfrepro trains on cpu, cuda or mps; {hint}")
    return dev


def use_bf16(device: Any, amp: str | bool | None = "auto") -> bool:
    """Whether to autocast to bf16: ``"auto"``/None on CUDA only, ``"bf16"``/True, ``"off"``/False."""
    if amp is None or amp == "auto":
        return resolve_device(device).type == "cuda"
    if amp is True or amp == "bf16":
        return True
    if amp is False or amp == "off":
        return False
    raise ValueError(f"amp must be one of {', '.join(AMP_MODES)}, got {amp!r}")


def autocast(device: Any, amp: str | bool | None = "auto") -> contextlib.AbstractContextManager:
    """bf16 autocast when :func:`use_bf16` says so, else a context that does nothing."""
    if not use_bf16(device, amp):
        return contextlib.nullcontext()
    return torch.autocast(resolve_device(device).type, dtype=torch.bfloat16)


def memory_format(device: Any, channels_last: bool | None = None) -> torch.memory_format:
    """channels_last on CUDA by default, the contiguous (NCHW) layout elsewhere."""
    if channels_last is None:
        channels_last = resolve_device(device).type == "cuda"
    return torch.channels_last if channels_last else torch.contiguous_format


def synchronize(device: Any) -> None:
    """Wait for queued GPU work (before reading a clock); nothing to wait for on the CPU."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
