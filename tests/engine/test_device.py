"""nfrepro.engine.device: one home for the device, bf16 and memory-format defaults."""
import contextlib

import pytest
import torch

from nfrepro.engine.device import (
    autocast,
    compute_dtype,
    memory_format,
    native_bf16,
    resolve_device,
    synchronize,
    use_bf16,
)


def test_auto_means_cpu_without_cuda_and_bf16_where_native():
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu") == resolve_device(None)
    assert resolve_device("cuda") == torch.device("cuda", 0)  # a bare "cuda" gets this rank's index
    assert use_bf16("cuda") and use_bf16("cpu", "bf16") and not use_bf16("cuda", "off")
    assert use_bf16("cpu") == native_bf16("cpu") == torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert compute_dtype("cpu") == ("bfloat16" if native_bf16("cpu") else "float32")
    assert compute_dtype("cpu", "off") == "float32" and compute_dtype("cpu", "bf16") == "bfloat16"
    # channels_last goes with the bf16 default
    assert (memory_format("cpu") == torch.channels_last) == native_bf16("cpu")
    assert use_bf16("cpu", True) and not use_bf16("cuda", False)
    with pytest.raises(ValueError, match="amp must be one of auto, bf16, off"):
        use_bf16("cpu", "fp16")


def test_autocast_runs_matmuls_in_bf16_when_asked():
    x = torch.randn(4, 4)
    with autocast("cpu", "bf16"):
        assert (x @ x).dtype == torch.bfloat16
    assert isinstance(autocast("cpu", "off"), contextlib.nullcontext)
    assert isinstance(autocast("cpu"), contextlib.nullcontext) != native_bf16("cpu")
    assert memory_format("cpu", False) == torch.contiguous_format
    assert memory_format("cuda") == memory_format("cpu", True) == torch.channels_last
    synchronize("cpu")  # a no-op, no error


def test_cpu_channels_last_default_skips_nets_with_narrow_convolutions():
    """The CPU's channels-last default (where bf16 is native) keeps a net NCHW when a conv has a
    channel count that is not a multiple of 16 (heap corruption measured with 4 and 8 channels);
    the small nets (16/32/64) keep the default; an explicit choice is honoured."""
    from nfrepro.engine.device import cpu_channels_last_safe, memory_format, native_bf16
    from nfrepro.models import create_model

    narrow = create_model("nf_resnet_small", in_chans=1, widths=(8, 16, 32))
    small = create_model("nf_resnet_small", in_chans=1)
    assert not cpu_channels_last_safe(narrow) and cpu_channels_last_safe(small)
    default = torch.channels_last if native_bf16("cpu") else torch.contiguous_format
    assert memory_format("cpu", None, small) == default == memory_format("cpu")
    assert memory_format("cpu", None, narrow) == torch.contiguous_format
    assert memory_format("cpu", True, narrow) == torch.channels_last
