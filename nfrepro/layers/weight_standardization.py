r"""Scaled Weight Standardization (NF-ResNet paper §5, NFNets §3; official ``base.WSConv2D``).

Each output unit's weights are standardised over their fan-in before every use:

.. math::  \hat W_{i} = \text{gain}_i \, \frac{W_{i} - \mu_i}{\sqrt{\max(N \sigma_i^2,\ 10^{-4})}}

with :math:`\mu_i, \sigma_i^2` the mean and *population* variance of row ``i`` and
``N = k_h k_w C_in / groups`` the fan-in: unit-variance inputs give unit-variance outputs, and the
mean shift of ReLU-like activations is removed. The ``1e-4`` floor is the official code's (timm
adds ``eps = 1e-5`` to the variance). Training takes the fast path of :mod:`nfrepro.layers.ws_fast`.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from nfrepro.layers.init import fan_in_normal_
from nfrepro.layers.padding import SamePadConv2d
from nfrepro.layers.ws_fast import standardize_weight_fast

WS_EPS = 1e-4  # floor on N * var (official `base.WSConv2D.standardize_weight`)


def standardize_weight_reference(weight: torch.Tensor, gain: torch.Tensor | None = None,
                                 eps: float = WS_EPS) -> torch.Tensor:
    """Scaled WS in plain tensor ops, autograd's backward (no ``torch.var_mean``: some exporters lack it)."""
    dims = tuple(range(1, weight.ndim))
    fan_in = math.prod(weight.shape[1:])
    mean = weight.mean(dim=dims, keepdim=True)
    centred = weight - mean
    var = centred.square().mean(dim=dims, keepdim=True)  # population variance (ddof = 0)
    scale = torch.rsqrt(torch.clamp(var * fan_in, min=eps))
    if gain is not None:
        scale = scale * gain.view(-1, *([1] * (weight.ndim - 1)))
    return centred * scale


def standardize_weight(weight: torch.Tensor, gain: torch.Tensor | None = None,
                       eps: float = WS_EPS) -> torch.Tensor:
    """Scaled WS: the fused backward of :mod:`~nfrepro.layers.ws_fast` when a gradient is needed,
    the reference ops otherwise (no gain, meta tensors, no grad, tracing for export)."""
    if gain is None or weight.is_meta or not torch.is_grad_enabled() or torch.jit.is_tracing():
        return standardize_weight_reference(weight, gain, eps)
    return standardize_weight_fast(weight, gain, eps)


torch.fx.wrap("standardize_weight")  # one leaf node under FX tracing (its branches read tensor flags)


class WSConv2d(SamePadConv2d):
    """Conv2d of ``input_scale * x`` with Scaled WS, a per-channel gain (a 1-d vector as in the official
    code: one AGC unit) and a bias. Init: weights N(0, 1 / fan_in), gain 1, bias 0."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int | str = "same", dilation: int = 1, groups: int = 1,
                 bias: bool = True, eps: float = WS_EPS, gain_init: float = 1.0, input_scale: float = 1.0):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias, input_scale=input_scale)
        self.eps = eps
        self.gain = nn.Parameter(torch.full((out_channels,), float(gain_init)))

    def reset_parameters(self) -> None:  # the class docstring's init, not nn.Conv2d's
        fan_in_normal_(self)

    def standardized_weight(self) -> torch.Tensor:
        """``input_scale * gain * (W - mean) / sqrt(max(N var, eps))``."""
        gain = self.gain if self.input_scale == 1.0 else self.gain * self.input_scale
        return standardize_weight(self.weight, gain, self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self._pad(x), self.standardized_weight(), self.bias)
