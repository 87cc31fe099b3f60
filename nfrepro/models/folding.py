"""Fold Scaled Weight Standardization into plain convolutions for inference.

At inference the weights are fixed, so the standardized weight
``W_hat = gain * (W - mean) / sqrt(max(N var, 1e-4))`` (NFNets §3, official ``base.WSConv2D``)
can be computed once. :func:`fold_weight_standardization` returns a copy of a model in which every
:class:`~nfrepro.layers.weight_standardization.WSConv2d` is replaced by a
:class:`~nfrepro.layers.weight_standardization.SamePadConv2d` (same TF "SAME" padding, stride, groups)
holding ``W_hat`` and the bias. The copy computes the same function (up to float rounding) with no
per-forward standardization, and contains only standard ops, so it exports
(``torch.export``) and runs on inference runtimes. Training the folded copy would not train an
NFNet: the standardization is gone.

:func:`fold_for_inference` goes one step further for an NFNet: every scalar of the signal
propagation bookkeeping (NFNets §3; NF-ResNets §4) is a constant at inference and sits next to a
linear map, so it can be moved into that map's weight:

* an activation's gain ``gamma`` (and, at the head of a block, ``beta``) multiplies the input of
  the next convolution (or, after the final activation, of the global mean pool and the
  classifier): it goes into that conv's (or classifier's) weight, and the activation becomes the
  bare nonlinearity ``g``. Zero "SAME" padding commutes with the scaling, the conv bias does not
  see it;
* ``alpha``, the skip gain and the SE's x2 multiply the branch output after the SE's sigmoid
  gate: they go into the gate (an ``N x C`` tensor), and the gated branch is added to the
  shortcut in one ``addcmul``.

Each fold saves one pass over an activation-sized tensor (four per block, one more at the SE),
the elementwise work that, with the convolutions, makes up most of an F0 forward on a CPU
(measured: ``python -m nfrepro bench --which inference``, ``results/bench_inference.csv``).
The folded block keeps no hook point (``residual_out``), no stochastic depth and no dropout: it
is an inference artefact, not a model to train or to measure signal propagation on.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

from nfrepro.layers.gains import Activation, ScaledActivation
from nfrepro.layers.padding import SamePadConv2d
from nfrepro.layers.weight_standardization import WSConv2d
from nfrepro.models.nfnet import NFNet


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


class FoldedNFBlock(nn.Module):
    """An NFNet block with its scalars folded (see the module docstring); built by :func:`fold_for_inference`.

    Takes a block whose gamma and beta :func:`fold_for_inference` already moved into its (plain)
    convs and computes, for the bare activation ``g``, ``shortcut + h * (gain * sigmoid(SE(h)))``
    with ``h = conv2(g(conv1b(g(conv1(g(conv0(g(x))))))))`` and ``gain = 2 * alpha * skip_gain``:
    the :class:`~nfrepro.models.nfnet.NFBlock` function at eval.
    """

    def __init__(self, block: nn.Module, act: nn.Module):
        super().__init__()
        if block.pool is not None and block.conv_shortcut is None:
            raise TypeError("FoldedNFBlock needs strided blocks with a shortcut conv")
        self.stage, self.stride, self.act = block.stage, block.stride, act
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


def _scale_(module: nn.Module | None, factor: float) -> None:
    """Multiply a plain conv's (or linear's) weight by ``factor``: conv(s x) = conv_{s W}(x)."""
    if module is not None and factor != 1.0:
        module.weight.mul_(factor)


def fold_for_inference(model: nn.Module) -> nn.Module:
    """A copy of an NFNet with WS folded (:func:`fold_weight_standardization`) and every gain folded.

    Same logits as ``model.eval()`` up to float rounding; the input is untouched. Only for
    normaliser-free NFNets (:class:`~nfrepro.models.nfnet.NFNet` with ``norm="none"``): their gains
    (gamma, beta, alpha, skip gain) are the constants folded here. For other models use
    :func:`fold_weight_standardization`, which folds only the weight standardization.

    The walk: each stem activation's gamma goes into the next stem conv; in each block gamma * beta
    goes into ``conv0`` and the shortcut conv (they read the block's first activation), gamma into
    ``conv1``, ``conv1b`` and ``conv2``; the final activation's gamma into the classifier (the mean
    pool and dropout at eval are linear); every activation becomes the bare nonlinearity.
    """
    if not isinstance(model, NFNet) or model.norm != "none":
        raise TypeError(f"fold_for_inference folds the gains of a normaliser-free NFNet; got "
                        f"{type(model).__name__}{' with norm=' + repr(model.norm) if isinstance(model, NFNet) else ''}. "
                        f"Use fold_weight_standardization(model) to fold only the weight standardization.")
    folded = fold_weight_standardization(model).eval()
    with torch.no_grad():
        stem = list(folded.stem.named_children())
        for (name, module), (_, following) in zip(stem, stem[1:]):
            if isinstance(module, ScaledActivation):                  # act_i -> conv_{i+1}
                _scale_(following, module.gamma)
                setattr(folded.stem, name, Activation(module.name))
        blocks = []
        for block in folded.blocks:
            gamma = block.act.gamma
            for conv in (block.conv0, block.conv_shortcut):           # read gamma g(x) beta
                _scale_(conv, gamma * block.beta)
            for conv in (block.conv1, block.conv1b, block.conv2):     # read gamma g(.)
                _scale_(conv, gamma)
            blocks.append(FoldedNFBlock(block, Activation(block.act.name)))
        folded.blocks = nn.Sequential(*blocks)
        _scale_(folded.fc, folded.final_act.gamma)
        folded.final_act = Activation(folded.final_act.name)
    return folded
