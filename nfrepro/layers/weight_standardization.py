r"""Scaled Weight Standardization (NF-ResNet paper §5, NFNets §3; official ``base.WSConv2D``).

Each output unit's weights are standardised over their fan-in before every use:

.. math::  \hat W_{i} = \text{gain}_i \, \frac{W_{i} - \mu_i}{\sqrt{\max(N \sigma_i^2,\ 10^{-4})}}

with :math:`\mu_i, \sigma_i^2` the mean and *population* variance of row ``i`` and
``N = k_h k_w C_in / groups`` the fan-in. Scaling by :math:`1/\sqrt N` gives each output unit
variance 1 for unit-variance inputs, and removing the mean removes the mean shift of ReLU-like
activations. The ``max(., 1e-4)`` floor is the official code's; timm adds ``eps = 1e-5`` to the
variance instead, which we do not follow.

Padding: the official convolutions use TensorFlow "SAME" padding; ``padding="same"`` (the default)
reproduces it (:mod:`nfrepro.layers.padding`); pass an int for PyTorch's symmetric padding.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from nfrepro.layers.init import fan_in_normal_
from nfrepro.layers.padding import SamePadConv2d

WS_EPS = 1e-4  # floor on N * var (official `base.WSConv2D.standardize_weight`)


def standardize_weight_reference(weight: torch.Tensor, gain: torch.Tensor | None = None,
                                 eps: float = WS_EPS) -> torch.Tensor:
    """Scaled WS written as plain tensor ops (autograd derives the backward): the readable reference.

    Mean and variance are computed without ``torch.var_mean`` (that op broke ONNX/XLA export
    in some releases) and with the population variance, as in the official code.
    """
    dims = tuple(range(1, weight.ndim))
    fan_in = math.prod(weight.shape[1:])
    mean = weight.mean(dim=dims, keepdim=True)
    centred = weight - mean
    var = centred.square().mean(dim=dims, keepdim=True)  # population variance (ddof = 0)
    scale = torch.rsqrt(torch.clamp(var * fan_in, min=eps))
    if gain is not None:
        scale = scale * gain.view(-1, *([1] * (weight.ndim - 1)))
    return centred * scale


class _StandardizeWeight(torch.autograd.Function):
    r"""Scaled WS with a hand-written backward (same values as the reference, fewer passes).

    Per output row ``w`` of fan-in ``N``: ``c = w - mean(w)``, ``s = max(|c|^2, eps)^{-1/2}``
    (``|c|^2 = N var``), ``u = c s`` and ``out = g u``. With ``k = <dout, u>``:

    .. math::  \frac{\partial L}{\partial g} = k, \qquad
               \frac{\partial L}{\partial w} = g s \left(d_{out} - \overline{d_{out}} - u\,k\right)

    where the ``u k`` term vanishes on rows whose floor is active (``s`` is then a constant).
    The backward below makes five weight-sized passes (one per line that touches ``d`` or ``unit``).
    Measured over NFNet-F0's 57 WS weights (46.5M elements), forward + backward, on this project's
    2-core CPU: 0.70x, 0.76x and 0.72x (three runs; the last with the functorch-ready, out-of-place
    backward) the time of autograd's derivation of the reference, and
    229 ATen ops against 1,255 (``python -m nfrepro bench --which weight_standardization``,
    ``results/bench_weight_standardization.csv``).
    """

    # forward / setup_context split and an auto-generated vmap rule: torch.func.grad, vmap
    # (per-sample gradients) and torch.compile see through the Function.
    generate_vmap_rule = True

    @staticmethod
    def forward(weight: torch.Tensor, gain: torch.Tensor, eps: float):
        cl = _channels_last(weight)
        rows = _rows(weight, cl)                                         # O x N
        centred = rows - rows.mean(dim=1, keepdim=True)
        sq_norm = centred.square().sum(dim=1, keepdim=True)              # N var, O x 1
        scale = torch.rsqrt(torch.clamp(sq_norm, min=eps))
        unit = centred * scale                                           # u: rows of unit norm
        return _unrows(unit * gain.view(-1, 1), weight, cl), unit, scale, sq_norm >= eps

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        weight, gain, _ = inputs
        _, unit, scale, active = output
        ctx.mark_non_differentiable(unit, scale, active)
        ctx.save_for_backward(unit, scale, gain, active)
        ctx.channels_last = _channels_last(weight)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor, *_unused):
        unit, scale, gain, active = ctx.saved_tensors
        d = _rows(grad_out, ctx.channels_last)
        k = (d * unit).sum(dim=1, keepdim=True)                          # <dout, u>, O x 1
        gs = gain.view(-1, 1) * scale
        # g s (d - mean(d) - u k), with k dropped where the floor holds s constant
        grad_w = (d - d.mean(dim=1, keepdim=True) - unit * (k * active)) * gs
        return _unrows(grad_w, grad_out, ctx.channels_last), k.view_as(gain), None


# Channels-last conv weights (a model moved with ``memory_format=torch.channels_last``) are
# standardised in their own memory order, ``O x (kh kw C_in)``, and handed back with the
# parameter's strides. The row statistics do not depend on the order of a row's elements; the
# layout does matter to the convolution: an NCHW weight among channels-last maps makes the
# convolution pick its output layout from the weight whenever the input's is ambiguous (a
# 1-channel image), and the whole network then ran NCHW.
def _channels_last(weight: torch.Tensor) -> bool:
    """Whether a 4-d weight has exactly the channels-last strides (and they are not the NCHW ones)."""
    if weight.ndim != 4:
        return False
    o, i, h, w = weight.shape
    return weight.stride() == (h * w * i, 1, w * i, i) != (i * h * w, h * w, w, 1)


def _rows(t: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``t`` as ``O x N`` rows, in channels-last order (a view) or NCHW order."""
    if channels_last:
        t = t.permute(0, 2, 3, 1)
    return t.reshape(t.shape[0], -1)


def _unrows(rows: torch.Tensor, like: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """Inverse of :func:`_rows`: the rows back in ``like``'s shape, channels-last strides if asked."""
    if channels_last:
        o, i, h, w = like.shape
        return rows.view(o, h, w, i).permute(0, 3, 1, 2)
    return rows.view(like.shape)


def standardize_weight(weight: torch.Tensor, gain: torch.Tensor | None = None,
                       eps: float = WS_EPS) -> torch.Tensor:
    """Scaled WS of a conv weight ``O x I x kh x kw``: ``gain * (W - mean) / sqrt(max(N var, eps))``.

    Uses the fused backward of :class:`_StandardizeWeight` when a gradient is needed and the
    plain ops of :func:`standardize_weight_reference` otherwise (meta tensors, tracing for export).
    """
    if gain is None or weight.is_meta or not torch.is_grad_enabled() or torch.jit.is_tracing():
        return standardize_weight_reference(weight, gain, eps)
    return _StandardizeWeight.apply(weight, gain, eps)[0]


torch.fx.wrap("standardize_weight")  # one leaf node under FX tracing (its branches read tensor flags)


class WSConv2d(SamePadConv2d):
    """Conv2d with Scaled Weight Standardization, a learnable per-channel gain and a bias.

    The gain is a 1-d ``(out_channels,)`` vector as in the official code, so AGC treats it as
    one unit (a ``(O, 1, 1, 1)`` layout would make every element its own unit).
    Weights start as ``N(0, 1 / fan_in)`` (Haiku ``VarianceScaling(1.0, "fan_in", "normal")``),
    gain 1 and bias 0.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int | str = "same", dilation: int = 1, groups: int = 1,
                 bias: bool = True, eps: float = WS_EPS, gain_init: float = 1.0):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias)  # calls reset_parameters
        self.eps = eps
        self.gain = nn.Parameter(torch.full((out_channels,), float(gain_init)))

    def reset_parameters(self) -> None:
        """Weights N(0, 1/fan_in), bias 0 (replaces nn.Conv2d's kaiming-uniform: one init, not two)."""
        fan_in_normal_(self)

    def standardized_weight(self, input_scale: float = 1.0) -> torch.Tensor:
        """``W_hat = gain * (W - mean) / sqrt(max(N var, eps))``, times ``input_scale`` if given
        (folded into the gain: an ``O``-sized multiply)."""
        gain = self.gain if input_scale == 1.0 else self.gain * input_scale
        return standardize_weight(self.weight, gain, self.eps)

    def forward(self, x: torch.Tensor, input_scale: float = 1.0) -> torch.Tensor:
        """``conv(input_scale * x)`` with the standardized weight; the scale goes into the weight
        (see :meth:`SamePadConv2d.forward`)."""
        return self._conv_forward(self._pad(x), self.standardized_weight(input_scale), self.bias)
