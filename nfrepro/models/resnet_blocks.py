r"""Pre-activation residual blocks: Normalizer-Free, BatchNorm and unnormalised.

All three follow the pre-activation ResNet of He et al. (2016b, "Identity mappings"), the
block the NF-ResNet paper (Brock, De & Smith 2021, arXiv:2101.08692, §2 and Fig. 4) analyses:

.. math::

    h = \text{pre}(x)\,\beta, \qquad
    \text{shortcut} = \begin{cases} \text{conv}_{1\times1}(h) & \text{stride} > 1
                      \text{ or channels change} \\ x & \text{otherwise} \end{cases}

    x_{+} = \text{shortcut} + \alpha \cdot s \cdot \text{stochdepth}(f(h))

with the residual branch :math:`f` = conv1x1 -> act -> conv3x3 (stride) -> act -> conv1x1
(bottleneck, width ratio 0.25) or conv3x3 (stride) -> act -> conv3x3 (basic block, for the
small nets), then optional squeeze-excite. :class:`PreActBlock` holds that forward pass once;
the three subclasses differ only in what they build:

=============  ======================  ==========================  ===============  ============
family         ``pre`` and ``act``     convolutions                beta             skip gain s
=============  ======================  ==========================  ===============  ============
NF (official)  gamma * g (scaled)      Scaled WS (+ gain, bias)    1/expected std   learnable, 0
BatchNorm      BN -> g  or  g -> BN    plain, no bias, He init     1                none
unnormalised   g (unscaled)            plain, bias, He init        1                none
=============  ======================  ==========================  ===============  ============

``block.residual_out`` (an ``nn.Identity``) sees the branch output after SE and before
stochastic depth, the skip gain and alpha: the official ``res_avg_var`` point (``NFResBlock``).

Implementation, not a departure from the method: the NF block's constant factors are not
applied to the activation maps. Each scaled activation's gamma (times beta at the block's head)
goes into the weights of the convs that read its output (``conv(s h) = conv_{sW}(h)``, exact in
real arithmetic: the zero "SAME" padding commutes with the scaling and the bias does not see
it), and ``shortcut + alpha * s * f`` is one ``addcmul``. That saves one pass over an
activation-sized tensor per activation, forward and backward: a bf16 training step of
``nf_resnet_small`` at batch 256 took 0.93x and (under the profiler) 0.87x the time of the
unfolded block, one thread on this project's CPU. The rounding differs from multiplying the
maps. ``pre`` and ``acts`` stay the modules the paper names, and calling one alone
(``block.acts[0](h)``) still returns ``gamma * g(h)``.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn as nn

from nfrepro.layers.gains import (
    GAMMAS,
    Activation,
    ScaledActivation,
    activation_second_moment,
    check_activation,
)
from nfrepro.layers.init import fan_in_normal_
from nfrepro.layers.padding import SamePadConv2d
from nfrepro.layers.squeeze_excite import SqueezeExcite
from nfrepro.layers.stochastic_depth import StochasticDepth
from nfrepro.layers.weight_standardization import WSConv2d

BN_ORDERS = ("bn_relu_conv", "relu_bn_conv")  # the NF-ResNet paper's §2 SPPs compare the two


def make_conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, *, use_ws: bool = False,
              bias: bool = True, input_second_moment: float = 1.0) -> nn.Conv2d:
    """A TF-"SAME"-padded conv: Scaled WS (always with bias, as the official ``WSConv2D``
    ignores ``with_bias=False``) or a plain conv with He et al.'s (2015) init: N(0, 1 / (fan_in E[a^2]))
    with ``E[a^2]`` the second moment of the conv's input when the pre-activation is N(0, 1) (1/2
    after a ReLU, 1 after a BatchNorm or for the image). For the NF net without WS the scaled
    activation's gamma cancels out (``std = sqrt(2 / fan_in) / gamma`` for ReLU), so the network
    computes the same function as an unscaled-ReLU net with He init (NF-ResNet paper §4)."""
    if use_ws:
        return WSConv2d(in_ch, out_ch, kernel, stride)
    return fan_in_normal_(SamePadConv2d(in_ch, out_ch, kernel, stride, bias=bias), input_second_moment)


def branch_shapes(in_ch: int, out_ch: int, stride: int, bottleneck: bool = True,
                  bottleneck_ratio: float = 0.25) -> list[tuple[int, int, int, int]]:
    """``(in, out, kernel, stride)`` of each residual-branch conv.

    Bottleneck (official ``NFResBlock``): width ``int(out_ch * ratio)``, stride on the 3x3.
    Basic (He et al. 2016a §4.2, the CIFAR ResNets): two 3x3 convs, stride on the first.
    """
    if bottleneck:
        mid = int(out_ch * bottleneck_ratio)
        return [(in_ch, mid, 1, 1), (mid, mid, 3, stride), (mid, out_ch, 1, 1)]
    return [(in_ch, out_ch, 3, stride), (out_ch, out_ch, 3, 1)]


class PreActBlock(nn.Module):
    """The pre-activation residual block's forward pass, shared by the three families.

    Subclasses build ``pre`` (the activation applied to the block input), ``shortcut`` (a
    projection conv or ``None``), ``convs`` and ``acts`` (one activation between each pair of
    convs) and hand them here.
    """

    def __init__(self, *, pre: nn.Module, shortcut: nn.Module | None, convs: list[nn.Module],
                 acts: list[nn.Module], se: nn.Module | None, in_ch: int, out_ch: int,
                 stride: int, stage: int, alpha: float, beta: float,
                 skip_gain_init: float | None, stochdepth_rate: float):
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_ch, out_ch, stride
        self.stage = int(stage)            # 0-based; model contract (DESIGN.md)
        self.alpha, self.beta = float(alpha), float(beta)
        self.expected_var = 1.0            # theory at init with skip gain 1; the model sets it
        self.pre = pre
        self.shortcut = shortcut
        self.convs = nn.ModuleList(convs)
        self.acts = nn.ModuleList(acts)
        self.se = se if se is not None else nn.Identity()
        self.residual_out = nn.Identity()  # hook point for the residual-branch statistics
        self.stoch_depth = StochasticDepth(stochdepth_rate)
        self.skip_gain = (None if skip_gain_init is None
                          else nn.Parameter(torch.tensor(float(skip_gain_init))))

    @property
    def expected_std(self) -> float:
        return math.sqrt(self.expected_var)

    @staticmethod
    def _activate(act: nn.Module, x: torch.Tensor, scale: float = 1.0) -> tuple[torch.Tensor, float]:
        """``act(x) * scale`` as ``(map, factor)``: a scaled activation returns the bare ``g(x)``
        and hands back ``gamma * scale``, which the convolutions that read the map fold into their
        weights (``conv(s h) = conv_{sW}(h)``). Same function, one activation-sized multiply less
        forward and backward per activation; the rounding differs from multiplying the map."""
        if isinstance(act, ScaledActivation):
            return act.fn(x), act.gamma * scale
        return act(x), scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, scale = self._activate(self.pre, x, self.beta)  # beta = 1 / sqrt(Var(x)) at init
        shortcut = x if self.shortcut is None else self.shortcut(out, input_scale=scale)
        out = self.convs[0](out, input_scale=scale)
        for act, conv in zip(self.acts, self.convs[1:]):
            out, scale = self._activate(act, out)
            out = conv(out, input_scale=scale)
        out = self.residual_out(self.se(out))
        out = self.stoch_depth(out)
        if self.skip_gain is not None:     # SkipInit (De & Smith 2020): shortcut + alpha g out, one op
            return torch.addcmul(shortcut, out, self.skip_gain, value=self.alpha)
        return torch.add(shortcut, out, alpha=self.alpha)

    def extra_repr(self) -> str:
        return (f"{self.in_channels} -> {self.out_channels}, stride={self.stride}, "
                f"stage={self.stage}, alpha={self.alpha}, beta={self.beta:.6f}")


def _needs_projection(in_ch: int, out_ch: int, stride: int) -> bool:
    return stride > 1 or in_ch != out_ch  # official `use_projection`


class NFResBlock(PreActBlock):
    """Official ``nf_resnet.NFResBlock``: scaled activations, Scaled WS convs, beta, alpha,
    a scalar skip gain initialised to ``skip_gain_init`` (official ``skipinit_gain=jnp.zeros``)
    and optional SE with the x2 gain (official ``use_se``, ratio 0.25; here ``se_ratio > 0``).

    ``use_ws=False`` swaps every WS conv for a plain conv with He init and zero bias (the
    NF-ResNet paper's §4 network without Scaled WS, whose channel means drift with depth).
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, *, stage: int = 0,
                 beta: float = 1.0, alpha: float = 0.2, activation: str = "relu",
                 use_ws: bool = True, bottleneck: bool = True, bottleneck_ratio: float = 0.25,
                 skip_gain_init: float | None = 0.0, stochdepth_rate: float = 0.0,
                 se_ratio: float = 0.0):
        m2 = activation_second_moment(activation, GAMMAS[check_activation(activation)])
        conv = functools.partial(make_conv, use_ws=use_ws, input_second_moment=m2)
        shapes = branch_shapes(in_ch, out_ch, stride, bottleneck, bottleneck_ratio)
        super().__init__(
            pre=ScaledActivation(activation),
            shortcut=conv(in_ch, out_ch, 1, stride) if _needs_projection(in_ch, out_ch, stride) else None,
            convs=[conv(*s) for s in shapes],
            acts=[ScaledActivation(activation) for _ in shapes[1:]],
            se=SqueezeExcite(out_ch, out_ch, se_ratio, gain=2.0) if se_ratio > 0 else None,
            in_ch=in_ch, out_ch=out_ch, stride=stride, stage=stage, alpha=alpha, beta=beta,
            skip_gain_init=skip_gain_init, stochdepth_rate=stochdepth_rate)


def norm_act(channels: int, activation: str, order: str) -> nn.Sequential:
    """``BN -> g`` (``"bn_relu_conv"``, He et al. 2016b) or ``g -> BN`` (``"relu_bn_conv"``)."""
    if order not in BN_ORDERS:
        raise ValueError(f"order={order!r}: choose one of {', '.join(BN_ORDERS)}")
    bn, act = nn.BatchNorm2d(channels), Activation(activation)
    return nn.Sequential(bn, act) if order == "bn_relu_conv" else nn.Sequential(act, bn)


class BNBlock(PreActBlock):
    """Pre-activation BatchNorm bottleneck (He et al. 2016b) in either order of BN and g.

    Convs have no bias (a BN follows each one, except the last, whose output is summed).
    He init for the conv's actual input: ``N(0, 2/fan_in)`` after ``BN -> ReLU``, ``N(0, 1/fan_in)``
    after ``ReLU -> BN`` (its output is already zero-mean, unit-variance). No beta, alpha 1 and
    no skip gain by default: ``out = shortcut + branch``; ``alpha`` and ``skip_gain_init`` are
    honoured if given. SE, if asked for, is the standard one (gain 1, Hu et al. 2018).
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, *, stage: int = 0,
                 beta: float = 1.0, alpha: float = 1.0, activation: str = "relu",
                 order: str = "bn_relu_conv", bottleneck: bool = True,
                 bottleneck_ratio: float = 0.25, skip_gain_init: float | None = None,
                 stochdepth_rate: float = 0.0, se_ratio: float = 0.0):
        m2 = activation_second_moment(activation) if order == "bn_relu_conv" else 1.0
        conv = functools.partial(make_conv, bias=False, input_second_moment=m2)
        shapes = branch_shapes(in_ch, out_ch, stride, bottleneck, bottleneck_ratio)
        super().__init__(
            pre=norm_act(in_ch, activation, order),
            shortcut=conv(in_ch, out_ch, 1, stride) if _needs_projection(in_ch, out_ch, stride) else None,
            convs=[conv(*s) for s in shapes],
            acts=[norm_act(s[0], activation, order) for s in shapes[1:]],
            se=SqueezeExcite(out_ch, out_ch, se_ratio, gain=1.0) if se_ratio > 0 else None,
            in_ch=in_ch, out_ch=out_ch, stride=stride, stage=stage, alpha=alpha, beta=beta,
            skip_gain_init=skip_gain_init, stochdepth_rate=stochdepth_rate)


class PlainBlock(PreActBlock):
    """Unnormalised pre-activation bottleneck: unscaled g, plain convs (bias 0, He init), no beta,
    alpha 1 and no skip gain by default, so ``out = shortcut + branch``. He init preserves each
    branch's second moment, so every block roughly doubles the signal's (about 1.6-2x measured):
    the exponential growth of the unnormalised curve in the NF-ResNet paper's §2 SPPs."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, *, stage: int = 0,
                 beta: float = 1.0, alpha: float = 1.0, activation: str = "relu",
                 bottleneck: bool = True, bottleneck_ratio: float = 0.25,
                 skip_gain_init: float | None = None, stochdepth_rate: float = 0.0,
                 se_ratio: float = 0.0):
        conv = functools.partial(make_conv, input_second_moment=activation_second_moment(activation))
        shapes = branch_shapes(in_ch, out_ch, stride, bottleneck, bottleneck_ratio)
        super().__init__(
            pre=Activation(activation),
            shortcut=conv(in_ch, out_ch, 1, stride) if _needs_projection(in_ch, out_ch, stride) else None,
            convs=[conv(*s) for s in shapes],
            acts=[Activation(activation) for _ in shapes[1:]],
            se=SqueezeExcite(out_ch, out_ch, se_ratio, gain=1.0) if se_ratio > 0 else None,
            in_ch=in_ch, out_ch=out_ch, stride=stride, stage=stage, alpha=alpha, beta=beta,
            skip_gain_init=skip_gain_init, stochdepth_rate=stochdepth_rate)
