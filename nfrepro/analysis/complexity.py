"""Model size: parameters and multiply-adds (the "params" and "FLOPs" columns of NFNets Table 1/3).

The paper's "FLOPs" are multiply-adds of the convolutions and linear layers at the *test*
resolution, batch 1 (official ``NFNet.count_flops``: every conv, the SE linears, the final conv and
the classifier; no activations, pooling, weight standardization or elementwise work).
:func:`count_macs` measures the same thing with ``torch.utils.flop_counter.FlopCounterMode``,
which counts 2 FLOPs per multiply-add for convolutions and matrix products; we halve it.

Both functions work on the meta device, so the largest models cost no memory and almost no
time: ``with torch.device("meta"): model = nfrepro.create_model("nfnet_f7")``, then
``count_macs(model, 608)``. FlopCounterMode computes counts from shapes only, so meta tensors
are enough (checked with torch 2.14).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from nfrepro.layers.weight_standardization import WSConv2d


def count_params(model: nn.Module) -> int:
    """Number of parameter elements (every weight, WS gain, bias, skip gain and the classifier)."""
    return sum(p.numel() for p in model.parameters())


def _first_conv(model: nn.Module) -> nn.Conv2d:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module
    raise ValueError("count_macs: the model has no nn.Conv2d; pass in_chans explicitly")


def count_macs(model: nn.Module, image_size: int | tuple[int, int], in_chans: int | None = None) -> int:
    """Multiply-adds of one forward pass of one image at ``image_size`` (eval mode, no grad).

    The input lives on the model's device: a meta-device model is counted without computing.
    """
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    param = next(model.parameters())
    in_chans = in_chans or _first_conv(model).in_channels
    x = torch.zeros(1, in_chans, h, w, device=param.device, dtype=param.dtype)
    # On the meta device only shapes exist, and every elementwise op costs ~1 ms of Python: skip
    # the weight standardization arithmetic (same shapes, no multiply-adds) to count 3x faster.
    shortcut = [m for m in model.modules() if isinstance(m, WSConv2d)] if param.is_meta else []
    for conv in shortcut:
        conv.standardized_weight = _raw_weight(conv)
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model(x)
    finally:
        model.train(was_training)
        for conv in shortcut:
            del conv.standardized_weight
    return counter.get_total_flops() // 2  # FlopCounterMode: 2 FLOPs per multiply-add


def _raw_weight(conv: WSConv2d) -> Callable[..., torch.Tensor]:
    """Stands in for ``conv.standardized_weight(input_scale=1.0)``: same shape, no arithmetic."""
    return lambda input_scale=1.0: conv.weight
