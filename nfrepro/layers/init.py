r"""Weight initialisers shared by every family (one home for fan-in scaling); meta tensors are skipped.

* :func:`fan_in_normal_`: :math:`W \sim N(0, 1 / (\text{fan\_in} \cdot E[a^2]))`, bias 0, for an input
  of second moment :math:`E[a^2]`: 1 is Haiku's ``VarianceScaling(1.0, "fan_in", "normal")`` (the
  official ``base.WSConv2D`` init), 1/2 (after a ReLU) He et al. (2015).
* :func:`init_linear_haiku_`: Haiku's default ``hk.Linear`` init (truncated normal, std
  :math:`1/\sqrt{\text{fan\_in}}`), used by the squeeze-excite linears.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

# Haiku divides the std by this std of a unit normal cut to [-2, 2]: the *cut* normal has the std asked
TRUNCATED_STD = 0.87962566103423978


def fan_in_normal_(module: nn.Module, input_second_moment: float = 1.0) -> nn.Module:
    r"""In place: ``module.weight`` ~ N(0, 1 / (fan_in E[a^2])), ``module.bias`` (if any) 0."""
    if module.weight.is_meta:
        return module
    fan_in = math.prod(module.weight.shape[1:])        # I x kh x kw (conv) or I (linear)
    std = 1.0 / math.sqrt(fan_in * input_second_moment)
    nn.init.normal_(module.weight, 0.0, std)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)
    return module


def trunc_normal_2std_(tensor: torch.Tensor, std: float) -> torch.Tensor:
    """In place: N(0, sigma^2) cut to [-2 sigma, 2 sigma], sigma = std / 0.8796, so the result has std
    ``std``; sampled by the inverse CDF in one pass (``nn.init.trunc_normal_`` resamples)."""
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
