"""Squeeze-and-excite with the NFNet x2 gain (official ``base.SqueezeExcite`` and ``nfnet.NFBlock``).

``out = x * gain * sigmoid(fc1(relu(fc0(mean_hw(x)))))`` with ``gain = 2``: a sigmoid gate at
initialisation is about 0.5, so the factor 2 keeps the signal's scale (NFNets §4.1/App. C).

Departure from the paper *text*, following the code: the paper says the SE uses GELU; the
official code uses an unscaled ReLU inside the SE, and so do we.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn


# Haiku's TruncatedNormal divides the std by the std of a unit normal truncated to [-2, 2]
# (0.8796...), so that the *truncated* distribution has the requested std.
TRUNCATED_STD = 0.87962566103423978


def trunc_normal_2std_(tensor: torch.Tensor, std: float) -> torch.Tensor:
    """In place: N(0, sigma^2) cut to [-2 sigma, 2 sigma], sigma = std / 0.8796: the result has std ``std``.

    Inverse-CDF sampling (one pass); ``nn.init.trunc_normal_`` in recent torch resamples the whole
    tensor until no value falls outside, which takes seconds for the SE layers of an F0.
    """
    if tensor.is_meta:  # no values to set
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


class SqueezeExcite(nn.Module):
    """SE block: global mean pool, linear to ``hidden``, ReLU, linear, sigmoid, times ``gain``.

    ``hidden = max(1, int(in_channels * se_ratio))`` (official rule; 0.5 in NFNets, 0.25 in NF-ResNets).
    """

    def __init__(self, in_channels: int, out_channels: int | None = None, se_ratio: float = 0.5,
                 hidden_channels: int | None = None, gain: float = 2.0):
        super().__init__()
        out_channels = out_channels or in_channels
        hidden = hidden_channels or max(1, int(in_channels * se_ratio))
        self.fc0 = init_linear_haiku_(nn.Linear(in_channels, hidden))
        self.fc1 = init_linear_haiku_(nn.Linear(hidden, out_channels))
        self.gain = gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3))                       # N x C
        s = self.fc1(torch.relu(self.fc0(s)))        # N x C_out
        return x * (self.gain * torch.sigmoid(s))[:, :, None, None]
