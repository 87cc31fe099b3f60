"""Squeeze-and-excite with the NFNet x2 gain (official ``base.SqueezeExcite`` and ``nfnet.NFBlock``).

``out = x * gain * sigmoid(fc1(relu(fc0(mean_hw(x)))))``, ``gain = 2``: the gate starts near 0.5, so
the 2 keeps the signal's scale (NFNets §4.1). The paper says GELU inside; we follow the code's ReLU.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from nfrepro.layers.init import init_linear_haiku_


class SqueezeExcite(nn.Module):
    """Global mean pool, linear to ``max(1, int(in_channels * se_ratio))`` (official rule; 0.5 in NFNets,
    0.25 in NF-ResNets), ReLU, linear, sigmoid, times ``gain``."""

    def __init__(self, in_channels: int, out_channels: int | None = None, se_ratio: float = 0.5,
                 gain: float = 2.0):
        super().__init__()
        out_channels = out_channels or in_channels
        hidden = max(1, int(in_channels * se_ratio))
        self.fc0 = init_linear_haiku_(nn.Linear(in_channels, hidden))
        self.fc1 = init_linear_haiku_(nn.Linear(hidden, out_channels))
        self.gain = gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3))                       # N x C
        s = self.fc1(torch.relu(self.fc0(s)))        # N x C_out
        return x * (self.gain * torch.sigmoid(s))[:, :, None, None]
