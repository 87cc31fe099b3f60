"""Fold Scaled Weight Standardization into plain convolutions for inference.

At inference the weights are fixed, so the standardized weight
``W_hat = gain * (W - mean) / sqrt(max(N var, 1e-4))`` (NFNets §3, official ``base.WSConv2D``)
can be computed once. :func:`fold_weight_standardization` returns a copy of a model in which every
:class:`~nfrepro.weight_standardization.WSConv2d` is replaced by a
:class:`~nfrepro.weight_standardization.SamePadConv2d` (same TF "SAME" padding, stride, groups)
holding ``W_hat`` and the bias. The copy computes the same function (up to float rounding) with no
per-forward standardization, and contains only standard ops, so it exports
(``torch.export``) and runs on inference runtimes. Training the folded copy would not train an
NFNet: the standardization is gone.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

from .weight_standardization import SamePadConv2d, WSConv2d


def fold_conv(conv: WSConv2d) -> SamePadConv2d:
    """A plain conv with the standardized weight of ``conv`` and its bias (and its padding rule)."""
    weight = conv.standardized_weight().detach()
    plain = SamePadConv2d(conv.in_channels, conv.out_channels, conv.kernel_size[0], stride=conv.stride[0],
                          padding=0, dilation=conv.dilation[0], groups=conv.groups, bias=conv.bias is not None)
    plain.to(device=weight.device, dtype=weight.dtype)
    # copy the padding behaviour as it is (static symmetric amount, or TF SAME at run time)
    plain.tf_same, plain.padding = conv.tf_same, conv.padding
    plain.stride, plain.dilation, plain.kernel_size = conv.stride, conv.dilation, conv.kernel_size
    with torch.no_grad():
        plain.weight.copy_(weight)
        if conv.bias is not None:
            plain.bias.copy_(conv.bias)
    plain.train(conv.training)
    return plain


def fold_weight_standardization(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every ``WSConv2d`` folded into a plain conv (the input is untouched)."""
    folded = copy.deepcopy(model)
    for name, module in list(folded.named_modules()):
        if isinstance(module, WSConv2d):
            parent_name, _, child = name.rpartition(".")
            parent = folded.get_submodule(parent_name) if parent_name else folded
            if parent is module:  # the model itself is a single WSConv2d
                return fold_conv(module)
            setattr(parent, child, fold_conv(module))
    return folded
