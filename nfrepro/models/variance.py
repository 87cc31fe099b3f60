r"""The expected variance of the residual stream, and the block inputs' beta (NF-ResNet paper §4).

An NF block computes :math:`h_{i+1} = h_i + \alpha f_i(h_i / \beta_i)`, :math:`\beta_i^2 =
\operatorname{Var}(h_i)` predicted at init: the stem output has variance 1, each block adds
:math:`\alpha^2`, each stage's first block restarts at 1 (its shortcut is a conv of the normalised
input); block ``j`` of a stage ends at :math:`1 + (j + 1) \alpha^2` (skip gains 1). The official
``expected_std`` loop as a variance; the code's ``beta`` is :math:`1 / \beta_i`. The one home of
this recursion: betas, ``ResNet.expected_block_variances``, the SPP theory line (``analysis.spp``).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence


def expected_variances(depths: Sequence[int], alpha: float, normalized: bool = True) -> list[float]:
    """Expected variance of each block's output, ``depths`` blocks per stage. ``normalized=False``:
    an unnormalised ResNet's second moment (He init keeps it in each branch: x (1 + alpha^2) per block)."""
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


def propagated_variances(shortcuts: Sequence[str], betas: Sequence[float], alpha: float,
                         act_variance: Callable[[float], float], branch_acts: int,
                         stem_var: float = 1.0, pool: float = 0.25) -> tuple[list[float], list[float]]:
    r"""``(stream, residual)``: the predicted variance of each block's output and residual branch,
    where a shortcut does not restart the stream at 1 (an NFNet's ResNet-D transition, NFNets §4.1).

    Block ``i`` reads ``h`` (variance ``v``); ``a = act(h) beta_i`` has variance ``act_variance(v)
    beta_i^2``. Shortcut ``shortcuts[i]``: ``"identity"`` (``v``), ``"conv"`` (a Scaled-WS 1x1 conv
    of ``a``: zero-mean unit-norm rows keep the variance of uncorrelated channels) or
    ``"pool_conv"`` (the same after a 2 x 2 average pool: times ``pool``, 1/4 for uncorrelated pixels).
    The branch applies ``branch_acts - 1`` more activations after variance-preserving convs; the block outputs
    ``shortcut + alpha^2 residual``. Assumes uncorrelated channels and pixels, SE gates near 1 and
    skip gains 1; with ReLU and "conv" shortcuts it reduces to :func:`expected_variances`.
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
