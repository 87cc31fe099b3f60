"""Where a run computes and in what precision: device choice, bf16 autocast, memory format, sync.

One home for the device-dependent defaults that training, evaluation and the benchmarks share:

* ``"auto"`` device: this process's GPU when CUDA is available, else the CPU;
* ``amp="auto"``: bf16 autocast where the hardware computes in bf16 natively (the paper trains
  with bf16 activations, fp32 weights): CUDA GPUs that support it, and CPUs whose oneDNN has
  native bf16 kernels (AVX512-BF16 or AMX; :func:`native_bf16`). Elsewhere fp32: emulated bf16 is
  slower than fp32. Which one ran is recorded (:func:`compute_dtype`, in every run record);
* ``channels_last=None``: on wherever bf16 autocast is (tensor-core convolutions on CUDA; on an
  AVX512-BF16 CPU measured 0.46x the fp32 NCHW step time of ``nf_resnet_small`` at batch 256 with
  bf16 + channels_last, against 0.59x with bf16 alone, one thread), off otherwise; on the CPU only
  for nets whose convolutions have multiples of 16 channels (:func:`cpu_channels_last_safe`);
* :func:`synchronize` before reading a clock (a no-op on the CPU).
"""
from __future__ import annotations

import contextlib
import functools
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


def native_bf16(device: Any = "auto") -> bool:
    """Whether ``device`` computes bf16 natively: a CUDA GPU that supports bf16, or a CPU whose
    oneDNN reports bf16 support (AVX512-BF16 / AMX instructions). Asked once per device: the
    training step's autocast reads it at every step."""
    return _native_bf16(resolve_device(device))


@functools.lru_cache(maxsize=None)
def _native_bf16(dev: torch.device) -> bool:
    try:
        if dev.type == "cuda":  # asked without a GPU here (tests, planning): assume a bf16 GPU
            return not torch.cuda.is_available() or bool(torch.cuda.is_bf16_supported())
        if dev.type == "cpu":
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN / CUDA
        return False
    return False


def use_bf16(device: Any, amp: str | bool | None = "auto") -> bool:
    """Whether to autocast to bf16: ``"auto"``/None where :func:`native_bf16`, ``"bf16"``/True,
    ``"off"``/False."""
    if amp is None or amp == "auto":
        return native_bf16(device)
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


def compute_dtype(device: Any = "auto", amp: str | bool | None = "auto") -> str:
    """The activations' dtype a run with these settings computes in: "bfloat16" or "float32"
    (what run records store, since the two give different rounding and so different runs)."""
    return "bfloat16" if use_bf16(device, amp) else "float32"


def memory_format(device: Any, channels_last: bool | None = None,
                  model: torch.nn.Module | None = None) -> torch.memory_format:
    """channels_last by default wherever bf16 autocast runs by default (:func:`native_bf16`), the
    contiguous (NCHW) layout elsewhere. Given the ``model``, the CPU default is also NCHW when one
    of its convolutions has a channel count :func:`cpu_channels_last_safe` rejects."""
    if channels_last is None:
        channels_last = native_bf16(device) and (
            model is None or resolve_device(device).type != "cpu" or cpu_channels_last_safe(model))
    return torch.channels_last if channels_last else torch.contiguous_format


CPU_CHANNELS_LAST_MULTIPLE = 16


def cpu_channels_last_safe(model: torch.nn.Module) -> bool:
    """Whether every convolution's input and output channel counts are multiples of 16 (or at most
    3: the image). Measured with torch 2.14.1 on this project's CPU (AVX512-BF16): training a
    channels-last net in bf16 whose convolutions have 4 or 8 channels corrupted the heap (crashes
    in 2-4 of 16 and 16 of 16 runs of one test; 0 of 16 with 16 and 32 channels, 0 of 16 in NCHW),
    so the default keeps such nets NCHW. An explicit ``channels_last=True`` is honoured."""
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            for c in (m.in_channels, m.out_channels):
                if c > 3 and c % CPU_CHANNELS_LAST_MULTIPLE:
                    return False
    return True


def synchronize(device: Any) -> None:
    """Wait for queued GPU work (before reading a clock); nothing to wait for on the CPU."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
