r"""Weight initialisers shared by every family (one home for fan-in scaling).

* :func:`fan_in_normal_`: :math:`W \sim N(0, 1 / (\text{fan\_in} \cdot m_2))` and bias 0, where
  :math:`m_2 = E[a^2]` is the second moment of the layer's input. ``m_2 = 1`` is Haiku's
  ``VarianceScaling(1.0, "fan_in", "normal")``, the official init of ``base.WSConv2D`` (Scaled WS
  re-standardises the weights anyway) and of the NFNet's plain convs; ``m_2 = 1/2`` (after a ReLU) is
  He et al. (2015), :math:`\sqrt{2 / \text{fan\_in}}`.
* :func:`trunc_normal_2std_` and :func:`init_linear_haiku_`: Haiku's default ``hk.Linear`` init
  (truncated normal, std :math:`1/\sqrt{\text{fan\_in}}`), used by the squeeze-excite linears.

Every function skips meta tensors: they hold no values, and sampling on meta costs time for nothing.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

# Haiku's TruncatedNormal divides the std by the std of a unit normal truncated to [-2, 2]
# (0.8796...), so that the *truncated* distribution has the requested std.
TRUNCATED_STD = 0.87962566103423978


def fan_in(weight: torch.Tensor) -> int:
    """Inputs per output unit: ``I x kh x kw`` (conv) or ``I`` (linear)."""
    return math.prod(weight.shape[1:])


def fan_in_normal_(module: nn.Module, input_second_moment: float = 1.0) -> nn.Module:
    r"""In place: ``module.weight`` ~ N(0, 1 / (fan_in E[a^2])), ``module.bias`` (if any) 0."""
    if module.weight.is_meta:
        return module
    std = 1.0 / math.sqrt(fan_in(module.weight) * input_second_moment)
    nn.init.normal_(module.weight, 0.0, std)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)
    return module


def trunc_normal_2std_(tensor: torch.Tensor, std: float) -> torch.Tensor:
    """In place: N(0, sigma^2) cut to [-2 sigma, 2 sigma], sigma = std / 0.8796: the result has std ``std``.

    Inverse-CDF sampling (one pass); ``nn.init.trunc_normal_`` in recent torch resamples the whole
    tensor until no value falls outside, which takes seconds for the SE layers of an F0.
    """
    if tensor.is_meta:
        return tensor
    sigma = std / TRUNCATED_STD
    edge = math.erf(2.0 / math.sqrt(2.0))  # Phi(2) - Phi(-2)
    with torch.no_grad():
        # x = sqrt(2) erfinv(u) is N(0, 1) for u ~ U(-1, 1); u ~ U(-edge, edge) truncates it to [-2, 2]
        tensor.uniform_(-edge, edge).erfinv_().mul_(math.sqrt(2.0) * sigma).clamp_(-2 * sigma, 2 * sigma)
    return tensor


def init_linear_haiku_(linear: nn.Linear) -> nn.Linear:
    """Haiku's default ``hk.Linear`` init: truncated normal, std 1/sqrt(fan_in) (cut at 2 std), bias 0."""
    trunc_normal_2std_(linear.weight, 1.0 / math.sqrt(linear.in_features))
    if linear.bias is not None and not linear.bias.is_meta:
        nn.init.zeros_(linear.bias)
    return linear
