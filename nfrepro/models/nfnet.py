r"""NFNet-F0..F7 (NFNets, arXiv:2102.06171 §5 and Table 1; official ``nfnet.NFNet``/``NFBlock``).

An NFNet is a pre-activation SE-ResNeXt-D without normalization layers. Every block computes

.. math::  h_{i+1} = h_i + \alpha \, g_i \, f_i(h_i / \beta_i), \qquad
           \beta_i = \sqrt{\operatorname{Var}(h_i)}, \qquad
           \operatorname{Var}(h_{i+1}) = \operatorname{Var}(h_i) + \alpha^2

with a scalar skip gain :math:`g_i` (SkipInit, init 0), ``alpha = 0.2``, the variance restarting at 1
after each stage's first block (:mod:`nfrepro.models.variance`); the code's ``beta`` is :math:`1/\beta_i`.

Branch ``f_i``: 1x1 conv -> act -> grouped 3x3 conv (stride) -> act -> grouped 3x3 conv (the
"second conv" of §5 / Table 2) -> act -> 1x1 conv -> SE (x2 gain) -> stochastic depth. Shortcut:
the input, or at a change of width or resolution a 1x1 conv of the activated, beta-scaled input,
after a 2x2 average pool where the block is strided (ResNet-D). Convolutions: Scaled WS, TF "SAME"
padding; gamma and beta are the ``input_scale`` of the convs reading the activation (as in
:mod:`nfrepro.models.resnet_blocks`).

Departures, each a choice the paper or the official code leaves open:

* ``stochdepth_rate`` 0.25, the official training config's (its ``NFNet`` default is 0.1): block
  ``i`` drops with rate ``0.25 * i / num_blocks``. The 2x2 average pool follows TF "SAME".
* A bottleneck narrower than ``group_size`` uses one group (officially 0 groups: small models only).
* ``use_ws=False``: plain convs (a bias, no gain), N(0, 1/fan_in), He init for the gamma-scaled
  activations: the NF-ResNet paper's "without Scaled WS" comparison.
* ``norm="batch"``, the "-NF, +BN" model of Table 6 (no details in the paper): each WS conv becomes
  a bias-free conv and ``BatchNorm2d`` (PyTorch defaults), the activations are plain (gamma 1),
  beta 1 and alpha 1 by default; SE, stochastic depth and the skip gain (init 0) are kept.
"""
from __future__ import annotations

import functools
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Callable

import torch
import torch.nn as nn

from nfrepro.layers.gains import GAMMAS, Activation, ScaledActivation, check_activation
from nfrepro.layers.squeeze_excite import SqueezeExcite
from nfrepro.layers.stochastic_depth import StochasticDepth
from nfrepro.models.features import feature_levels
from nfrepro.models.head import ClassifierHead, new_classifier
from nfrepro.models.numerics import set_numerics
from nfrepro.models.protocol import imagenet_cfg
from nfrepro.models.registry import check_common_args, register_variant
from nfrepro.models.resnet_blocks import make_conv
from nfrepro.models.variance import expected_betas

DEFAULT_WIDTHS = (256, 512, 1536, 1536)   # the "modified width" pattern (§5, Table 2)
PLUS_WIDTHS = (384, 768, 2048, 2048)      # "Fn+" models (official ``nfnet_params``)
STAGE_STRIDES = (1, 2, 2, 2)              # total stride 32 with the two stride-2 stem convs


@dataclass(frozen=True)
class Variant:
    """One row of Table 1 (official ``base.nfnet_params``)."""
    name: str
    depths: tuple[int, int, int, int]
    train_px: int
    test_px: int
    drop_rate: float
    randaugment: tuple[int, int]  # (layers, magnitude); official "RA_level" "405" = 4 layers, magnitude 5
    widths: tuple[int, int, int, int] = DEFAULT_WIDTHS


VARIANTS: dict[str, Variant] = {
    #                   depths            train test dropout  RandAugment
    "F0": Variant("F0", (1, 2, 6, 3),     192,  256,  0.2,    (4, 5)),
    "F1": Variant("F1", (2, 4, 12, 6),    224,  320,  0.3,    (4, 10)),
    "F2": Variant("F2", (3, 6, 18, 9),    256,  352,  0.4,    (4, 10)),
    "F3": Variant("F3", (4, 8, 24, 12),   320,  416,  0.4,    (4, 15)),
    "F4": Variant("F4", (5, 10, 30, 15),  384,  512,  0.5,    (4, 15)),
    "F5": Variant("F5", (6, 12, 36, 18),  416,  544,  0.5,    (4, 15)),
    "F6": Variant("F6", (7, 14, 42, 21),  448,  576,  0.5,    (4, 15)),
    "F7": Variant("F7", (8, 16, 48, 24),  480,  608,  0.5,    (4, 15)),
}
VARIANTS.update({f"{k}+": replace(v, name=f"{k}+", widths=PLUS_WIDTHS) for k, v in list(VARIANTS.items())})


class NFBlock(nn.Module):
    """Pre-activation NF bottleneck block (official ``nfnet.NFBlock``; module docstring). ``conv``:
    :func:`~nfrepro.models.resnet_blocks.make_conv` of one kind; ``gamma``: 1 for the "+BN" model."""

    def __init__(self, in_ch: int, out_ch: int, *, stride: int, stage: int, beta: float, alpha: float,
                 activation: str, gamma: float, conv: Callable[..., nn.Module], bottleneck_ratio: float = 0.5,
                 group_size: int = 128, se_ratio: float = 0.5, extra_conv: bool = True,
                 stochdepth_rate: float = 0.0, skip_gain_init: float = 0.0):
        super().__init__()
        self.stage, self.stride, self.beta, self.alpha, self.gamma = stage, stride, beta, alpha, gamma
        width = int(out_ch * bottleneck_ratio)            # official "big_width": ratio of the output width
        group_size = min(group_size, width)
        self.groups = width // group_size
        width = group_size * self.groups                  # round down to whole groups
        head = gamma * beta                               # h = gamma g(x) beta: conv0 and shortcut read it
        self.act = Activation(activation)                 # g; gamma is in the convs that read it
        self.conv0 = conv(in_ch, width, 1, input_scale=head)
        self.conv1 = conv(width, width, 3, stride, self.groups, input_scale=gamma)
        self.conv1b = conv(width, width, 3, 1, self.groups, input_scale=gamma) if extra_conv else None
        self.conv2 = conv(width, out_ch, 1, input_scale=gamma)
        # TF "SAME" 2x2/2 average pool: averages only the in-bounds pixels of a window
        self.pool = nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False) if stride > 1 else None
        projection = stride > 1 or in_ch != out_ch
        self.conv_shortcut = conv(in_ch, out_ch, 1, input_scale=head) if projection else None
        self.se = SqueezeExcite(out_ch, out_ch, se_ratio=se_ratio)   # includes the x2 gain
        self.residual_out = nn.Identity()                 # hook point: the branch before SD, gain, alpha
        self.stoch_depth = StochasticDepth(stochdepth_rate)
        self.skip_gain = nn.Parameter(torch.full((), float(skip_gain_init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(x)                                 # h = gamma * g(x) * beta, as input_scale
        if self.conv_shortcut is None:
            shortcut = x
        else:                                             # transition: ResNet-D pool; 128 -> 256: none
            shortcut = self.conv_shortcut(out if self.pool is None else self.pool(out))
        out = self.conv1(self.act(self.conv0(out)))
        if self.conv1b is not None:
            out = self.conv1b(self.act(out))
        out = self.se(self.conv2(self.act(out)))
        out = self.stoch_depth(self.residual_out(out))
        return torch.addcmul(shortcut, out, self.skip_gain, value=self.alpha)  # shortcut + alpha s out

    def extra_repr(self) -> str:
        return f"stage={self.stage}, stride={self.stride}, beta={self.beta:.4f}, alpha={self.alpha}"


class NFNet(ClassifierHead, nn.Module):
    """NFNet-Fn, ``variant`` a key of :data:`VARIANTS` (kept as ``model.variant``). Ablations:
    ``channels``/``depths`` replace the row's (T2's default widths: ``(256, 512, 1024, 2048)``),
    ``width`` multiplies the widths, ``extra_conv=False`` drops the second 3x3 conv (T2),
    ``norm="batch"`` is Table 6's "-NF, +BN" model; ``numerics="timm"``: :mod:`nfrepro.models.numerics`."""

    def __init__(self, variant: str = "F0", num_classes: int = 1000, in_chans: int = 3, *,
                 use_ws: bool = True, norm: str = "none", skip_gain_init: float = 0.0,
                 alpha: float | None = None, activation: str = "gelu", drop_rate: float | None = None,
                 stochdepth_rate: float = 0.25, width: float = 1.0,
                 channels: tuple[int, ...] | None = None, depths: tuple[int, ...] | None = None,
                 se_ratio: float = 0.5, group_size: int = 128, bottleneck_ratio: float = 0.5,
                 extra_conv: bool = True, numerics: str = "official"):
        super().__init__()
        check_common_args(num_classes, in_chans, alpha, group_size=group_size)
        if variant not in VARIANTS:
            raise ValueError(f"unknown NFNet variant {variant!r}: choose one of {', '.join(VARIANTS)}")
        if norm not in ("none", "batch"):
            raise ValueError(f"norm must be 'none' (normalizer-free) or 'batch', got {norm!r}")
        if norm == "batch" and use_ws:
            raise ValueError("use_ws=True cannot be honoured with norm='batch' (BN replaces Scaled WS)")
        self.variant, self.num_classes, self.norm = VARIANTS[variant], num_classes, norm
        self.alpha = (1.0 if norm == "batch" else 0.2) if alpha is None else float(alpha)
        self.drop_rate = self.variant.drop_rate if drop_rate is None else float(drop_rate)
        self.depths = tuple(depths or self.variant.depths)
        self.widths = tuple(int(c * width) for c in (channels or self.variant.widths))
        if len(self.depths) != 4 or len(self.widths) != 4:
            raise ValueError(f"NFNets have 4 stages: got depths {self.depths}, widths {self.widths}")
        check_activation(activation)
        gamma = 1.0 if norm == "batch" else GAMMAS[activation]
        conv = functools.partial(make_conv, kind="bn" if norm == "batch" else "ws" if use_ws else "plain")
        act = functools.partial(Activation, activation)  # g; a fresh module per position, for hooks

        stem_ch = (channels or self.variant.widths)[0] // 2   # official: width_pattern[0] // 2, unscaled
        self.stem = nn.Sequential(OrderedDict([                # gamma * g(x) -> conv: input_scale gamma
            ("conv0", conv(in_chans, 16, 3, 2)), ("act0", act()),
            ("conv1", conv(16, 32, 3, 1, input_scale=gamma)), ("act1", act()),
            ("conv2", conv(32, 64, 3, 1, input_scale=gamma)), ("act2", act()),
            ("conv3", conv(64, stem_ch, 3, 2, input_scale=gamma)),  # no activation: each block opens with one
        ]))
        num_blocks = sum(self.depths)
        betas = expected_betas(self.depths, self.alpha) if norm == "none" else [1.0] * num_blocks
        blocks, ch, index = [], stem_ch, 0
        stages = zip(self.widths, self.depths, STAGE_STRIDES, strict=True)
        for stage, (out_ch, depth, stride) in enumerate(stages):
            for block_index in range(depth):
                blocks.append(NFBlock(
                    ch, out_ch, stride=stride if block_index == 0 else 1, stage=stage, beta=betas[index],
                    alpha=self.alpha, activation=activation, gamma=gamma, conv=conv,
                    bottleneck_ratio=bottleneck_ratio,
                    group_size=group_size, se_ratio=se_ratio, extra_conv=extra_conv,
                    stochdepth_rate=stochdepth_rate * index / num_blocks, skip_gain_init=skip_gain_init))
                ch, index = out_ch, index + 1
        self.blocks = nn.Sequential(*blocks)
        self.num_features = 2 * ch                         # 2 x 1536 = 3072
        self.final_conv = conv(ch, self.num_features, 1)
        self.final_act = Activation(activation) if norm == "batch" else ScaledActivation(activation)
        self.head_drop = nn.Dropout(self.drop_rate)
        self.fc = new_classifier(self.num_features, num_classes)  # official fc_init N(0, 0.01)
        # timm conventions: the feature levels of features_only, the paper's image protocol
        self.feature_info = feature_levels(self, "stem.conv2", final="final_conv")  # timm's levels
        self.pretrained_cfg = imagenet_cfg(self.variant.train_px, self.variant.test_px, in_chans=in_chans,
                                           num_classes=num_classes, first_conv="stem.conv0",
                                           source="NFNets Table 1 / App. A")
        set_numerics(self, numerics)                       # official WS eps and GELU, or timm's

    def final_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last block's output -> the unpooled ``N x num_features`` map (final 1x1 conv, activation)."""
        return self.final_act(self.final_conv(x))


for _key in VARIANTS:                                  # nfnet_f0 .. nfnet_f7, nfnet_f0_plus ..
    register_variant(f"nfnet_{_key.lower().replace('+', '_plus')}", NFNet, _key)
for _key in ("F0", "F1", "F2", "F3"):                  # Table 6 has BN versions of F0..F3
    register_variant(f"nfnet_bn_{_key.lower()}", NFNet, _key, norm="batch", use_ws=False)
