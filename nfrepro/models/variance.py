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

The one home of this recursion: the NF-ResNets' and NFNets' betas, every ResNet family's theory
line (``ResNet.expected_block_variances``) and the signal-propagation plots (``analysis.spp``).

:func:`propagated_variances` follows the variance a network *actually* carries when a shortcut
does not restart it at 1: an NFNet's ResNet-D transitions average 2 x 2 pixels before their 1x1
conv (NFNets §4.1, official ``nfnet.NFBlock``), which on spatially uncorrelated input keeps a
quarter of the variance, while its betas still follow :func:`expected_variances`.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence


def expected_variances(depths: Sequence[int], alpha: float, normalized: bool = True) -> list[float]:
    """Expected variance of each block's output, for ``depths`` blocks per stage.

    ``normalized=False``: the unnormalised ResNet's second moment, which He init keeps in each
    branch, so every block multiplies it by ``1 + alpha^2`` and no stage resets it.
    """
    if not normalized:
        return [(1.0 + alpha ** 2) ** (k + 1) for k in range(sum(depths))]
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


POOL_2X2 = 0.25  # a 2 x 2 average of uncorrelated pixels keeps 1/4 of their variance


def propagated_variances(shortcuts: Sequence[str], betas: Sequence[float], alpha: float,
                         act_variance: Callable[[float], float], branch_acts: int,
                         stem_var: float = 1.0, pool: float = POOL_2X2) -> tuple[list[float], list[float]]:
    r"""``(stream, residual)``: the predicted variance of each block's output and of its residual branch.

    Block ``i`` reads ``h`` (variance ``v``) and computes ``a = act(h) * beta_i``, of variance
    ``act_variance(v) * beta_i^2``. Its shortcut is ``shortcuts[i]``: ``"identity"`` (variance
    ``v``), ``"conv"`` (a Scaled-WS 1x1 conv of ``a``: its rows have zero mean and unit norm, so it
    removes the channels' common mean and keeps the variance of uncorrelated channels,
    ``act_variance(v) beta_i^2``) or ``"pool_conv"``
    (ResNet-D: the same after a 2 x 2 average pool, times ``pool``). The residual branch applies
    ``branch_acts - 1`` more activations, each after a variance-preserving WS conv, so its output
    has ``act_variance`` composed on ``a``'s variance; the block outputs
    ``shortcut + alpha^2 * residual``. Assumptions: channels and pixels uncorrelated (N(0, 1) input
    at initialisation), squeeze-excite gates ``2 sigmoid(.)`` close to 1, skip gains 1.
    With ReLU (homogeneous) and plain strided-conv shortcuts this reduces to
    :func:`expected_variances`.
    """
    if len(shortcuts) != len(betas):
        raise ValueError(f"{len(shortcuts)} shortcuts but {len(betas)} betas")
    v, stream, residual = stem_var, [], []
    for kind, beta in zip(shortcuts, betas, strict=True):
        a = act_variance(v) * beta ** 2                       # act(h) * beta
        r = a
        for _ in range(branch_acts - 1):                      # conv -> act, conv -> act, ...
            r = act_variance(r)
        short = {"identity": v, "conv": a, "pool_conv": pool * a}.get(kind)
        if short is None:
            raise ValueError(f"unknown shortcut {kind!r}: 'identity', 'conv' or 'pool_conv'")
        v = short + alpha ** 2 * r
        stream.append(v)
        residual.append(r)
    return stream, residual
