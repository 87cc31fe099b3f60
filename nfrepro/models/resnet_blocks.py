r"""Pre-activation residual blocks: Normalizer-Free, BatchNorm and unnormalised; the one conv factory.

The pre-activation block (He et al. 2016b) of the NF-ResNet paper (arXiv:2101.08692, §2, Fig. 4):

.. math::

    h = \text{pre}(x)\,\beta, \qquad
    \text{shortcut} = \begin{cases} \text{conv}_{1\times1}(h) & \text{stride} > 1
                      \text{ or channels change} \\ x & \text{otherwise} \end{cases}, \qquad
    x_{+} = \text{shortcut} + \alpha \cdot s \cdot \text{stochdepth}(f(h))

with :math:`f` = conv1x1 -> act -> conv3x3 (stride) -> act -> conv1x1 (bottleneck, ratio 0.25) or
conv3x3 (stride) -> act -> conv3x3 (basic, the small nets), then optional SE.

=============  ======================  ==========================  ===============  ============
family         ``pre`` and ``act``     convolutions                beta             skip gain s
=============  ======================  ==========================  ===============  ============
NF (official)  gamma * g (scaled)      Scaled WS (+ gain, bias)    1/expected std   learnable, 0
BatchNorm      BN -> g  or  g -> BN    plain, no bias, He init     1                none
unnormalised   g (unscaled)            plain, bias, He init        1                none
=============  ======================  ==========================  ===============  ============

NF constants (as in the NFNet block): ``pre`` and ``act`` compute the bare ``g``; the constant on a
conv's input (``gamma * beta`` after ``pre``, ``gamma`` after ``act``) is its ``input_scale``: the
same function, one activation-sized pass less each. ``block.residual_out`` sees the branch after
SE, before stochastic depth, skip gain and alpha (official ``res_avg_var`` point).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import torch
import torch.nn as nn

from nfrepro.layers.gains import GAMMAS, Activation, activation_second_moment, check_activation
from nfrepro.layers.init import fan_in_normal_
from nfrepro.layers.padding import SamePadConv2d
from nfrepro.layers.squeeze_excite import SqueezeExcite
from nfrepro.layers.stochastic_depth import StochasticDepth
from nfrepro.layers.weight_standardization import WSConv2d

BN_ORDERS = ("bn_relu_conv", "relu_bn_conv")  # the NF-ResNet paper's §2 SPPs compare the two


class ConvBN(nn.Sequential):
    """Bias-free conv followed by BatchNorm2d: the "+BN" stand-in for a WS conv (NFNets Table 6)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1,
                 input_scale: float = 1.0):
        conv = make_conv(in_ch, out_ch, kernel, stride, groups, kind="plain", bias=False,
                         input_scale=input_scale)
        super().__init__(OrderedDict(conv=conv, bn=nn.BatchNorm2d(out_ch)))


def make_conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, *,
              kind: str = "ws", input_scale: float = 1.0, bias: bool = True,
              input_second_moment: float = 1.0) -> nn.Module:
    """Every family's TF-"SAME" conv of ``input_scale * x``. ``kind``: ``"ws"`` Scaled WS (always a
    bias: the official ``WSConv2D`` ignores ``with_bias=False``), ``"plain"`` initialised
    N(0, 1 / (fan_in E[a^2])) for an input of second moment ``E[a^2]`` (He et al. 2015; an NF net's
    gamma cancels out in it, NF-ResNet paper §4) or ``"bn"`` (:class:`ConvBN`)."""
    if kind == "ws":
        return WSConv2d(in_ch, out_ch, kernel, stride, groups=groups, input_scale=input_scale)
    if kind == "bn":
        return ConvBN(in_ch, out_ch, kernel, stride, groups, input_scale)
    conv = SamePadConv2d(in_ch, out_ch, kernel, stride, groups=groups, bias=bias, input_scale=input_scale)
    return fan_in_normal_(conv, input_second_moment)


def branch_shapes(in_ch: int, out_ch: int, stride: int, bottleneck: bool = True,
                  bottleneck_ratio: float = 0.25) -> list[tuple[int, int, int, int]]:
    """``(in, out, kernel, stride)`` of each branch conv: bottleneck (official ``NFResBlock``, width
    ``int(out_ch * ratio)``, stride on the 3x3) or basic (He et al. 2016a §4.2, stride on the first)."""
    if bottleneck:
        mid = int(out_ch * bottleneck_ratio)
        return [(in_ch, mid, 1, 1), (mid, mid, 3, stride), (mid, out_ch, 1, 1)]
    return [(in_ch, out_ch, 3, stride), (out_ch, out_ch, 3, 1)]


def norm_act(channels: int, activation: str, order: str) -> nn.Sequential:
    """``BN -> g`` (``"bn_relu_conv"``, He et al. 2016b) or ``g -> BN`` (``"relu_bn_conv"``)."""
    bn, act = nn.BatchNorm2d(channels), Activation(activation)
    return nn.Sequential(bn, act) if order == "bn_relu_conv" else nn.Sequential(act, bn)


class PreActBlock(nn.Module):
    """The pre-activation block of every ResNet family (module docstring). ``pre(channels)`` builds
    an activation (``g``, or BN and ``g``), ``conv(in, out, kernel, stride, input_scale)`` a conv;
    ``gamma`` is the activations' gain (1 for the BN and unnormalised families)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, *, pre: Callable[[int], nn.Module],
                 conv: Callable[..., nn.Module], gamma: float, stage: int, alpha: float, beta: float,
                 bottleneck: bool, bottleneck_ratio: float, skip_gain_init: float | None,
                 stochdepth_rate: float, se_ratio: float, se_gain: float):
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_ch, out_ch, stride
        self.stage = int(stage)            # 0-based; model contract (DESIGN.md)
        self.alpha, self.beta, self.gamma = float(alpha), float(beta), float(gamma)
        shapes = branch_shapes(in_ch, out_ch, stride, bottleneck, bottleneck_ratio)
        head = self.gamma * self.beta      # h = gamma g(x) beta: the input scale of what reads h
        self.pre = pre(in_ch)
        use_projection = stride > 1 or in_ch != out_ch  # official `use_projection`
        self.shortcut = conv(in_ch, out_ch, 1, stride, head) if use_projection else None
        self.convs = nn.ModuleList([conv(*s, head if i == 0 else self.gamma) for i, s in enumerate(shapes)])
        self.acts = nn.ModuleList([pre(s[0]) for s in shapes[1:]])
        self.se = SqueezeExcite(out_ch, out_ch, se_ratio, gain=se_gain) if se_ratio > 0 else nn.Identity()
        self.residual_out = nn.Identity()  # hook point for the residual-branch statistics
        self.stoch_depth = StochasticDepth(stochdepth_rate)
        self.skip_gain = (None if skip_gain_init is None
                          else nn.Parameter(torch.tensor(float(skip_gain_init))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pre(x)                  # g(x); gamma * beta is in the convs that read it
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.convs[0](out)
        for act, conv in zip(self.acts, self.convs[1:], strict=True):
            out = conv(act(out))
        out = self.stoch_depth(self.residual_out(self.se(out)))
        if self.skip_gain is not None:     # SkipInit (De & Smith 2020): shortcut + alpha s out, one op
            return torch.addcmul(shortcut, out, self.skip_gain, value=self.alpha)
        return torch.add(shortcut, out, alpha=self.alpha)

    def extra_repr(self) -> str:
        return (f"{self.in_channels} -> {self.out_channels}, stride={self.stride}, "
                f"stage={self.stage}, alpha={self.alpha}, beta={self.beta:.6f}")


def preact_block(family: str, in_ch: int, out_ch: int, stride: int = 1, *, activation: str = "relu",
                 use_ws: bool = True, order: str | None = None, **kwargs) -> PreActBlock:
    """A block of ``family``: ``"nf"`` (official ``nf_resnet.NFResBlock``: gamma, Scaled WS or plain
    He-init convs, SE gain 2), ``"bn"`` (bias-free convs, He init for the conv's input: after
    BN -> ReLU or ReLU -> BN) or ``"plain"`` (unscaled g, He init: each block about doubles the
    second moment, the §2 SPPs' exploding curve). ``kwargs``: the rest of :class:`PreActBlock`'s."""
    check_activation(activation)
    if family == "nf":
        gamma, se_gain = GAMMAS[activation], 2.0
        m2, kind, bias = activation_second_moment(activation, gamma), "ws" if use_ws else "plain", True
    else:
        gamma, se_gain, kind, bias = 1.0, 1.0, "plain", family != "bn"
        m2 = 1.0 if order == "relu_bn_conv" else activation_second_moment(activation)

    def conv(i: int, o: int, k: int, s: int, scale: float) -> nn.Module:
        return make_conv(i, o, k, s, kind=kind, input_scale=scale, bias=bias, input_second_moment=m2)

    def pre(channels: int) -> nn.Module:
        return norm_act(channels, activation, order) if family == "bn" else Activation(activation)

    return PreActBlock(in_ch, out_ch, stride, pre=pre, conv=conv, gamma=gamma, se_gain=se_gain, **kwargs)
