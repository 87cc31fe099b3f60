"""Fold an NF network's constants into plain convolutions for inference.

At inference the weights are fixed, so the standardized weight
``W_hat = input_scale * gain * (W - mean) / sqrt(max(N var, 1e-4))`` (NFNets §3, official
``base.WSConv2D``; ``input_scale`` is the gamma * beta that multiplies the conv's input) can be
computed once. :func:`fold_weight_standardization` returns a copy of a model in which every
:class:`~nfrepro.layers.weight_standardization.WSConv2d` is a
:class:`~nfrepro.layers.padding.SamePadConv2d` (same TF "SAME" padding, stride, groups) holding
``W_hat`` and the bias: the same function up to float rounding, standard ops only, so it exports
(``torch.export``). Training the folded copy would not train an NF net: the standardization is gone.

:func:`fold_for_inference` goes on for every NF family (NF-ResNets, NFNets and the NFNet "-NF, +BN"
model), moving each remaining constant into the linear map beside it:

* a plain conv's ``input_scale`` into its weight;
* "+BN": each eval-mode BatchNorm into the conv before it (``w * g / sqrt(var + eps)``, bias
  ``b - mean * g / sqrt(var + eps)``);
* NFNet blocks: ``alpha``, the skip gain and the SE's x2 into the SE's sigmoid gate (an ``N x C``
  tensor), the gated branch added to the shortcut in one ``addcmul`` (:class:`FoldedNFBlock`).

A folded NFNet block keeps no hook point (``residual_out``), stochastic depth or dropout: it is an
inference artefact, not a model to train or to measure signal propagation on. The head's gamma stays
in the final activation (it could go into the classifier, the mean pool being linear, but then
``forward_features`` and ``forward_head(..., pre_logits=True)`` would differ from the model's by
that factor; it costs one multiply of the small last map). A ``features_only`` backbone folds too:
its model is folded and wrapped again with the same ``out_indices``.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

from nfrepro.layers.padding import SamePadConv2d
from nfrepro.layers.weight_standardization import WSConv2d
from nfrepro.models.features import FeatureExtractor
from nfrepro.models.nfnet import NFNet
from nfrepro.models.resnet import ResNet
from nfrepro.models.resnet_blocks import ConvBN


def fold_conv(conv: nn.Module) -> SamePadConv2d:
    """A plain conv (input scale 1) computing what ``conv`` (WS, plain or :class:`ConvBN` at eval) does."""
    bn = conv.bn if isinstance(conv, ConvBN) else None
    conv = conv.conv if bn is not None else conv
    weight = conv.standardized_weight() if isinstance(conv, WSConv2d) else conv.weight * conv.input_scale
    bias = conv.bias
    if bn is not None:
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        weight = weight * scale.view(-1, 1, 1, 1)
        bias = bn.bias - bn.running_mean * scale + (0.0 if bias is None else bias * scale)
    plain = SamePadConv2d(conv.in_channels, conv.out_channels, conv.kernel_size[0], stride=conv.stride[0],
                          padding=0, dilation=conv.dilation[0], groups=conv.groups, bias=bias is not None)
    plain.to(device=weight.device, dtype=weight.dtype)
    # copy the padding behaviour as it is (static symmetric amount, or TF SAME at run time)
    plain.tf_same, plain.padding = conv.tf_same, conv.padding
    plain.stride, plain.dilation, plain.kernel_size = conv.stride, conv.dilation, conv.kernel_size
    with torch.no_grad():
        plain.weight.copy_(weight.detach())
        if bias is not None:
            plain.bias.copy_(bias.detach())
    plain.train(conv.training)
    return plain


def _fold_modules(model: nn.Module, which) -> nn.Module:
    """A deep copy of ``model``, each module where ``which(module)`` holds folded by :func:`fold_conv`."""
    folded = copy.deepcopy(model)
    if which(folded):  # the model itself is a single conv
        return fold_conv(folded)
    for name, module in list(folded.named_modules()):
        if which(module):
            parent_name, _, child = name.rpartition(".")
            setattr(folded.get_submodule(parent_name) if parent_name else folded, child, fold_conv(module))
    return folded


def fold_weight_standardization(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every ``WSConv2d`` folded into a plain conv (the input is untouched)."""
    return _fold_modules(model, lambda m: isinstance(m, WSConv2d))


class FoldedNFBlock(nn.Module):
    """An NFNet block at eval with its constants folded (module docstring): for the bare activation
    ``g``, ``shortcut + h * (gain * sigmoid(SE(h)))`` with ``h = conv2(g(conv1b(g(conv1(g(conv0(g(x))))))))``
    and ``gain = 2 * alpha * skip_gain``; the convs are already plain (:func:`fold_for_inference`)."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.stage, self.stride, self.act = block.stage, block.stride, block.act
        self.conv0, self.conv1, self.conv1b, self.conv2 = block.conv0, block.conv1, block.conv1b, block.conv2
        self.pool, self.conv_shortcut = block.pool, block.conv_shortcut
        self.fc0, self.fc1 = block.se.fc0, block.se.fc1
        self.gate_gain = float(block.se.gain * block.alpha * block.skip_gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(x)
        if self.conv_shortcut is not None:
            shortcut = self.conv_shortcut(self.pool(out) if self.pool is not None else out)
        else:
            shortcut = x
        out = self.conv1(self.act(self.conv0(out)))
        if self.conv1b is not None:
            out = self.conv1b(self.act(out))
        out = self.conv2(self.act(out))
        s = self.fc1(torch.relu(self.fc0(out.mean(dim=(2, 3)))))
        gate = torch.sigmoid(s) * self.gate_gain                 # N x C: negligible work
        return torch.addcmul(shortcut, out, gate[:, :, None, None])

    def extra_repr(self) -> str:
        return f"stage={self.stage}, stride={self.stride}, gate_gain={self.gate_gain:.4g}"


def fold_for_inference(model: nn.Module) -> nn.Module:
    """A copy of an NF-ResNet or NFNet (either ``norm``), or of a ``features_only`` backbone of one,
    at eval with every constant folded (module docstring): the same logits, features and pre-logits
    as ``model.eval()`` up to float rounding; the input is untouched. BatchNorm and unnormalised
    ResNets have no constants to fold (their pre-activation BN cannot go into the next conv
    exactly: zero padding does not commute with its shift)."""
    if isinstance(model, FeatureExtractor):
        return FeatureExtractor(fold_for_inference(model.model), model.feature_info.out_indices).eval()
    if not (isinstance(model, NFNet) or (isinstance(model, ResNet) and model.family == "nf")):
        raise TypeError(f"fold_for_inference folds the constants of an NF-ResNet or NFNet; got "
                        f"{type(model).__name__} {getattr(model, 'family', '')}. Use "
                        f"fold_weight_standardization(model) to fold only a weight standardization.")
    folded = _fold_modules(model, lambda m: isinstance(m, (WSConv2d, ConvBN))
                           or (type(m) is SamePadConv2d and m.input_scale != 1.0)).eval()
    with torch.no_grad():
        if isinstance(folded, NFNet):
            folded.blocks = nn.Sequential(*[FoldedNFBlock(b) for b in folded.blocks])
    return folded
