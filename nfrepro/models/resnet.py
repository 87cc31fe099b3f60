r"""NF-ResNets and their BatchNorm and unnormalised twins (NF-ResNet paper, arXiv:2101.08692).

Three families with identical shapes, so that signal propagation (§2 SPPs, §4), AGC (NFNets
§4.1) and training runs compare like with like:

* ``nf_resnet{26,50,101,152,200,288,600}``: the official ``nf_resnet.NF_ResNet``. Stem: 7x7/2 WS
  conv to 64 channels, 3x3/2 "SAME" max-pool; four stages of pre-activation bottlenecks
  (:mod:`~nfrepro.models.resnet_blocks`; widths 256..2048, strides 1/2/2/2); head: scaled
  activation, mean pool, dropout, linear with N(0, 0.01) weights.
* ``bn_resnet*``: pre-activation BatchNorm ResNets (He et al. 2016b), ``order="bn_relu_conv"``
  (default) or ``"relu_bn_conv"``; ``plain_resnet*``: unscaled ReLU, He init (§2 SPPs' baselines).
* ``{nf,bn,plain}_resnet_small``: 28 / 32 px nets for CPU runs (not in the papers): 3x3 stride-1
  stem, basic blocks, widths 16/32/64, depths 2/2/2, 10 classes.

Departures: ResNet-26 is timm's, not official. The official ``drop_rate=None`` default raises
``KeyError``; ours is 0. Every NF conv has a bias (the official ``WSConv2D`` ignores
``with_bias=False``). The BN and unnormalised twins keep the NF stem and head init (He et al.
2016b put a BN and a ReLU in the stem): the families differ only in blocks and final activation.
"""
from __future__ import annotations

import functools
from typing import Sequence

import torch
import torch.nn as nn

from nfrepro.layers.gains import Activation, ScaledActivation, check_activation
from nfrepro.layers.padding import SamePadMaxPool2d
from nfrepro.models.features import feature_levels
from nfrepro.models.head import ClassifierHead, new_classifier
from nfrepro.models.protocol import imagenet_cfg, small_cfg
from nfrepro.models.registry import check_common_args, register_variant
from nfrepro.models.resnet_blocks import BN_ORDERS, make_conv, norm_act, preact_block
from nfrepro.models.variance import expected_betas, expected_variances

# Official `NF_ResNet.variant_dict` (depth per stage), plus ResNet-26 (timm's, not official).
DEPTHS: dict[int, tuple[int, ...]] = {
    26: (2, 2, 2, 2),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
    200: (3, 24, 36, 3),
    288: (24, 24, 24, 24),
    600: (50, 50, 50, 50),
}
WIDTHS = (256, 512, 1024, 2048)     # official: [64, 128, 256, 512] * width, width = 4
SMALL_DEPTHS = (2, 2, 2)
SMALL_WIDTHS = (16, 32, 64)         # the CIFAR ResNets' widths (He et al. 2016a §4.2)
# Each family's defaults: the official NF_ResNet's; the textbook BN / unnormalised ResNet's.
FAMILY_DEFAULTS: dict[str, dict] = {
    "nf": dict(use_ws=True, skip_gain_init=0.0, alpha=0.2, stochdepth_rate=0.1, order=None),
    "bn": dict(use_ws=False, skip_gain_init=None, alpha=1.0, stochdepth_rate=0.0, order="bn_relu_conv"),
    "plain": dict(use_ws=False, skip_gain_init=None, alpha=1.0, stochdepth_rate=0.0, order=None),
}


class ResNet(ClassifierHead, nn.Module):
    """A pre-activation ResNet of one family (``FAMILY_DEFAULTS`` has the rest of its defaults)."""

    def __init__(self, family: str, depths: Sequence[int] = DEPTHS[50], widths: Sequence[int] = WIDTHS, *,
                 use_ws: bool, skip_gain_init: float | None, alpha: float, stochdepth_rate: float,
                 order: str | None, num_classes: int = 1000, in_chans: int = 3, small_stem: bool = False,
                 bottleneck: bool = True, bottleneck_ratio: float = 0.25, activation: str = "relu",
                 drop_rate: float = 0.0, se_ratio: float = 0.0):
        super().__init__()
        check_common_args(num_classes, in_chans, alpha)
        _check_switches(family, depths, widths, use_ws, order, drop_rate, stochdepth_rate, se_ratio)
        check_activation(activation)
        self.family, self.order, self.activation = family, order, activation
        self.depths, self.widths = tuple(depths), tuple(widths)
        self.num_classes, self.in_chans, self.num_features = num_classes, in_chans, widths[-1]
        self.use_ws, self.skip_gain_init, self.alpha = use_ws, skip_gain_init, float(alpha)
        self.drop_rate, self.stochdepth_rate, self.se_ratio = drop_rate, stochdepth_rate, se_ratio

        # Stem (SPP index 0); official: 7x7/2 conv to 16 * width = widths[0] / 4. Body: betas from
        # the official bookkeeping (models.variance), 1 for the BN and plain nets.
        stem_ch = widths[0] if small_stem else max(1, widths[0] // 4)
        stem_conv = make_conv(in_chans, stem_ch, 3 if small_stem else 7, 1 if small_stem else 2,
                              kind="ws" if use_ws else "plain", bias=family != "bn")
        self.stem = nn.Sequential(stem_conv, *([] if small_stem else [SamePadMaxPool2d(3, 2)]))
        num_blocks = sum(depths)
        betas = expected_betas(depths, alpha) if family == "nf" else [1.0] * num_blocks
        blocks, ch, index = [], stem_ch, 0
        for stage, (width, depth) in enumerate(zip(widths, depths, strict=True)):
            for j in range(depth):
                blocks.append(preact_block(
                    family, ch, width, 2 if stage > 0 and j == 0 else 1, activation=activation,
                    use_ws=use_ws, order=order, stage=stage, alpha=alpha, beta=betas[index],
                    bottleneck=bottleneck, bottleneck_ratio=bottleneck_ratio,
                    skip_gain_init=skip_gain_init, se_ratio=se_ratio,
                    # official: rate * index / num_blocks, so the first block is never dropped
                    stochdepth_rate=stochdepth_rate * index / num_blocks))
                ch, index = width, index + 1
        self.blocks = nn.Sequential(*blocks)

        # Head (official `NF_ResNet.__call__`): activation, mean pool, dropout, linear.
        if family == "nf":
            self.final_act: nn.Module = ScaledActivation(activation)
        elif family == "bn":
            self.final_act = norm_act(ch, activation, order)
        else:
            self.final_act = Activation(activation)
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = new_classifier(ch, num_classes)  # official fc_init RandomNormal(0.01)

        # timm conventions: the feature levels of features_only, the image protocol
        self.feature_info = feature_levels(self, "stem.0")   # the stem conv, before the max-pool
        self.pretrained_cfg = (
            small_cfg(in_chans=in_chans, num_classes=num_classes, first_conv="stem.0") if small_stem else
            imagenet_cfg(224, 224, in_chans=in_chans, num_classes=num_classes, first_conv="stem.0",
                         source="NF-ResNet paper, ImageNet at 224 px"))

    def final_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_act(x)

    def expected_block_variances(self) -> list[float]:
        """The SPP's theory line: 1 (the stem), then :func:`~nfrepro.models.variance.expected_variances`."""
        return [1.0] + expected_variances(self.depths, self.alpha, normalized=self.family != "plain")


def _check_switches(family: str, depths: Sequence[int], widths: Sequence[int], use_ws: bool,
                    order: str | None, drop_rate: float, stochdepth_rate: float, se_ratio: float) -> None:
    if family not in FAMILY_DEFAULTS:
        raise ValueError(f"family={family!r}: choose one of {', '.join(FAMILY_DEFAULTS)}")
    if use_ws and family != "nf":
        raise ValueError(f"use_ws=True: {family}_resnet uses plain convs; Scaled WS is nf_resnet*'s")
    if family == "bn" and order not in BN_ORDERS:
        raise ValueError(f"order={order!r}: choose one of {', '.join(BN_ORDERS)}")
    if family != "bn" and order is not None:
        raise ValueError(f"order={order!r}: only the BatchNorm ResNets (bn_resnet*) take an order")
    if len(depths) != len(widths) or not depths or min(depths) < 1:
        raise ValueError(f"depths={tuple(depths)}, widths={tuple(widths)}: one depth >= 1 per width")
    for name, rate in (("drop_rate", drop_rate), ("stochdepth_rate", stochdepth_rate)):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"{name}={rate}: must be in [0, 1)")
    if se_ratio < 0.0:
        raise ValueError(f"se_ratio={se_ratio}: must be >= 0 (0 = no squeeze-excite)")


nf_resnet = functools.partial(ResNet, "nf", **FAMILY_DEFAULTS["nf"])
bn_resnet = functools.partial(ResNet, "bn", **FAMILY_DEFAULTS["bn"])
plain_resnet = functools.partial(ResNet, "plain", **FAMILY_DEFAULTS["plain"])

_SMALL = dict(depths=SMALL_DEPTHS, widths=SMALL_WIDTHS, small_stem=True, bottleneck=False,
              num_classes=10, stochdepth_rate=0.0)
for _family, _defaults in FAMILY_DEFAULTS.items():   # nf_resnet50, bn_resnet_small, ...
    for _depth, _stages in DEPTHS.items():
        register_variant(f"{_family}_resnet{_depth}", ResNet, _family, **{**_defaults, "depths": _stages})
    register_variant(f"{_family}_resnet_small", ResNet, _family, **{**_defaults, **_SMALL})
