"""nfrepro.engine.device: one home for the device, bf16 and memory-format defaults."""
import contextlib

import pytest
import torch

from nfrepro.engine.device import (
    autocast,
    memory_format,
    resolve_device,
    synchronize,
    use_bf16,
)


def test_auto_means_cpu_without_cuda_and_bf16_only_on_cuda():
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu") == resolve_device(None)
    assert resolve_device("cuda") == torch.device("cuda", 0)  # a bare "cuda" gets this rank's index
    assert not use_bf16("cpu") and use_bf16("cuda") and use_bf16("cpu", "bf16") and not use_bf16("cuda", "off")
    assert use_bf16("cpu", True) and not use_bf16("cuda", False)
    with pytest.raises(ValueError, match="amp must be one of auto, bf16, off"):
        use_bf16("cpu", "fp16")


def test_autocast_runs_matmuls_in_bf16_when_asked():
    x = torch.randn(4, 4)
    with autocast("cpu", "bf16"):
        assert (x @ x).dtype == torch.bfloat16
    assert isinstance(autocast("cpu"), contextlib.nullcontext)
    assert memory_format("cpu") == torch.contiguous_format
    assert memory_format("cuda") == memory_format("cpu", True) == torch.channels_last
    synchronize("cpu")  # a no-op, no error
