r"""The expected variance of the residual stream, and the block inputs' beta (NF-ResNet paper §4).

An NF residual block computes :math:`h_{i+1} = h_i + \alpha f_i(h_i / \beta_i)` with
:math:`\beta_i = \sqrt{\operatorname{Var}(h_i)}` predicted analytically at initialisation: the stem
output has variance 1, each block adds :math:`\alpha^2` (its branch is variance preserving), and
the first block of every stage restarts at 1 because its shortcut is a convolution of the
normalised input. So the block at position ``j`` (0-based) of its stage ends at
:math:`1 + (j + 1) \alpha^2`. This is the official ``expected_std`` loop of ``nf_resnet.NF_ResNet``
and ``nfnet.NFNet``, kept as a variance here; it holds with skip gains 1 (with SkipInit gains 0
every block starts as the identity). In the code ``beta`` is the factor the activated input is
multiplied by, :math:`1 / \sqrt{\operatorname{Var}(h_i)}`.

One recursion serves the NF-ResNets and NFNets (their betas), the BatchNorm twins (their theory
line) and the signal-propagation plots (``nfrepro.analysis.spp``).
"""
from __future__ import annotations

import math
from typing import Sequence


def expected_variances(depths: Sequence[int], alpha: float) -> list[float]:
    """Expected variance of each block's output, for ``depths`` blocks per stage."""
    out = []
    for depth in depths:
        var = 1.0                      # the stage's first block restarts the stream at 1
        for _ in range(depth):
            var += alpha ** 2          # a unit-variance branch times alpha
            out.append(var)
    return out


def expected_betas(depths: Sequence[int], alpha: float) -> list[float]:
    """The official input multipliers ``beta = 1 / expected_std`` of each block's input."""
    inputs = [1.0] + expected_variances(depths, alpha)[:-1]   # block i reads block i - 1's output
    return [1.0 / math.sqrt(v) for v in inputs]


def depths_of(stages: Sequence[int]) -> list[int]:
    """Blocks per stage from each block's (non-decreasing) stage index: ``[0, 0, 1] -> [2, 1]``."""
    depths: list[int] = []
    for i, stage in enumerate(stages):
        if i == 0 or stage != stages[i - 1]:
            depths.append(0)
        depths[-1] += 1
    return depths
