"""Stochastic depth (Huang et al. 2016) as in the official code (``base.StochDepth``).

In training, each example's residual branch is kept with probability ``1 - drop_rate`` and
zeroed otherwise. Official, our default: kept branches are *not* rescaled by ``1 / keep_prob``
(``scale_by_keep=False``; timm and torchvision rescale).
"""
from __future__ import annotations

import torch
import torch.nn as nn


class StochasticDepth(nn.Module):
    def __init__(self, drop_rate: float = 0.0, scale_by_keep: bool = False):
        super().__init__()
        if not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate}")
        self.drop_rate = float(drop_rate)
        self.scale_by_keep = scale_by_keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_rate == 0.0:
            return x
        keep = 1.0 - self.drop_rate
        # one Bernoulli(keep) draw per example: floor(keep + U[0, 1))
        mask = torch.floor(keep + torch.rand((x.shape[0],) + (1,) * (x.ndim - 1),
                                             dtype=x.dtype, device=x.device))
        if self.scale_by_keep:
            x = x / keep
        return x * mask

    def extra_repr(self) -> str:
        return f"drop_rate={self.drop_rate}, scale_by_keep={self.scale_by_keep}"
