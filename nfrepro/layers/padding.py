"""TensorFlow "SAME" padding for convolutions and max-pooling (the official code is TF/JAX).

TF's "SAME" output has ``ceil(size / stride)`` pixels; the padding is ``total // 2`` before and the
rest after (stride-2 3x3 on an even input: 0 and 1, where PyTorch's ``padding=1`` shifts the grid
by a pixel). Official uses: ``base.WSConv2D`` and the NF-ResNet stem's ``hk.max_pool``.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) for one spatial dimension; ``size`` may be the 0-d
    tensor ``torch.jit.trace`` hands out for ``x.shape[i]``, so that a trace pads every input size."""
    total = (kernel - 1) * dilation + 1 - stride + (-size) % stride  # (ceil(size / s) - 1) s + k_eff - size
    total = total.clamp(min=0) if isinstance(total, torch.Tensor) else max(total, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
             dilation: tuple[int, int] = (1, 1), value: float = 0.0) -> torch.Tensor:
    """``x`` (``N x C x H x W``) padded for a TF "SAME" window. It reads the input's size in Python,
    which FX tracing cannot follow: ``torch.fx.wrap`` below makes it one leaf of a traced graph."""
    top, bottom = same_padding(x.shape[-2], kernel[0], stride[0], dilation[0])
    left, right = same_padding(x.shape[-1], kernel[1], stride[1], dilation[1])
    if not torch.jit.is_tracing() and not (top or bottom or left or right):  # traced: always pad
        return x  # e.g. a 1x1 stride-2 conv on an even input: F.pad would copy x for nothing
    return F.pad(x, (left, right, top, bottom), value=value)


torch.fx.wrap("pad_same")  # a leaf for FX tracers: see pad_same's docstring


class SamePadConv2d(nn.Conv2d):
    """``nn.Conv2d`` of ``input_scale * x``, with ``padding="same"`` meaning TensorFlow's at any stride.

    ``input_scale``, a constant known when the net is built (an NF block's ``gamma * beta``),
    multiplies the weight: ``conv(s x) = conv_{sW}(x)``, exact (zero padding commutes with it, the
    bias does not see it), a weight-sized multiply instead of an activation-sized one. "SAME" that
    is symmetric and size-independent (stride 1, odd kernel) is the conv's own padding.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int | str = "same", dilation: int = 1, groups: int = 1,
                 bias: bool = True, input_scale: float = 1.0):
        self.tf_same = padding == "same"
        static = 0
        if self.tf_same and stride == 1 and ((kernel_size - 1) * dilation) % 2 == 0:
            static, self.tf_same = (kernel_size - 1) * dilation // 2, False
        elif not self.tf_same:
            static = int(padding)
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=static,
                         dilation=dilation, groups=groups, bias=bias)
        self.input_scale = float(input_scale)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        return pad_same(x, self.kernel_size, self.stride, self.dilation) if self.tf_same else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight if self.input_scale == 1.0 else self.weight * self.input_scale
        return self._conv_forward(self._pad(x), weight, self.bias)

    def extra_repr(self) -> str:
        scale = "" if self.input_scale == 1.0 else f", input_scale={self.input_scale:.6g}"
        return super().extra_repr() + scale


class SamePadMaxPool2d(nn.Module):
    """Max-pool with TF "SAME" padding (official NF-ResNet stem), padded with -inf: padded cells never
    win the max (``nn.MaxPool2d(3, 2, 1)`` would shift the grid by a pixel)."""

    def __init__(self, kernel_size: int = 3, stride: int = 2):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = (self.kernel_size,) * 2, (self.stride,) * 2
        return F.max_pool2d(pad_same(x, k, s, value=float("-inf")), self.kernel_size, self.stride)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding=SAME"
