"""Multi-scale feature maps for dense heads: timm's ``features_only`` over the model contract.

``create_model(name, features_only=True, out_indices=(1, 2, 3, 4))`` wraps a model in
:class:`FeatureExtractor`, whose forward returns a list of ``N x C_i x H/r_i x W/r_i`` maps. The
levels (``model.feature_info``, default: all of them) are those of timm's NF models, each the output
of a real module of ours (``module``), so that a forward hook or torchvision's
``create_feature_extractor`` finds the same map:

* 0: inside the stem, the last map at stride 2 (NFNet: ``stem.conv2``, 64 channels, timm's
  ``stem.conv3`` of ``dm_nfnet_*``, which numbers the stem convs from 1; ResNets: the 7x7 conv
  ``stem.0`` before the max-pool; the small nets: their stride-1 stem conv);
* 1 .. 3 (and 4 for the ResNets): each stage's last block ``blocks.{i}`` (timm's ``stages.{s}``);
* NFNet's last level: the final 1x1 conv's output ``final_conv`` (3072 channels), as timm's.

Every level is the residual stream, *before* any activation: these are pre-activation nets, whose
next block (or head) opens with its own activation. So the last level is not ``forward_features``
(which ends with the final activation): ``model.final_act`` of it is. ``feature_info.channels()``
and ``.reduction()`` answer as timm's do.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn


class FeatureInfo:
    """One dict per level: ``num_chs``, ``reduction`` (input pixels per feature pixel), ``module``."""

    def __init__(self, levels: Sequence[dict[str, Any]], out_indices: Sequence[int] | None = None):
        self.levels = [dict(level) for level in levels]
        self.out_indices = tuple(range(len(self.levels)) if out_indices is None else out_indices)

    def _get(self, key: str, idx: int | Sequence[int] | None) -> Any:
        if idx is None:
            return [self.levels[i][key] for i in self.out_indices]
        if isinstance(idx, int):
            return self.levels[idx][key]
        return [self.levels[i][key] for i in idx]

    def channels(self, idx: int | Sequence[int] | None = None) -> Any:
        return self._get("num_chs", idx)

    def reduction(self, idx: int | Sequence[int] | None = None) -> Any:
        return self._get("reduction", idx)

    def module_name(self, idx: int | Sequence[int] | None = None) -> Any:
        return self._get("module", idx)

    def get_dicts(self) -> list[dict[str, Any]]:
        return [self.levels[i] for i in self.out_indices]

    def select(self, out_indices: Sequence[int]) -> "FeatureInfo":
        n = len(self.levels)
        wanted = tuple(i % n if -n <= i < n else i for i in out_indices)  # -1: the last level
        bad = [i for i in wanted if not 0 <= i < n]
        if bad or not wanted:
            raise ValueError(f"out_indices {tuple(out_indices)}: choose among 0..{n - 1} "
                             f"({', '.join(level['module'] for level in self.levels)})")
        return FeatureInfo(self.levels, sorted(set(wanted)))

    def __len__(self) -> int:
        return len(self.out_indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.levels[self.out_indices[i]]

    def __repr__(self) -> str:
        return f"FeatureInfo(channels={self.channels()}, reduction={self.reduction()})"


def _stride(module: nn.Module) -> int:
    """How much ``module`` shrinks a map: the product of the strides of its convs and pools."""
    out = 1
    for m in module.modules():
        if hasattr(m, "kernel_size"):  # nn.Conv2d and the pools; a block's own .stride is not counted
            stride = m.stride
            out *= stride[0] if isinstance(stride, tuple) else stride
    return out


def feature_levels(model: nn.Module, stem_tap: str, final: str | None = None) -> FeatureInfo:
    """The levels of a model with an ``nn.Sequential`` stem and blocks carrying ``.stage`` and
    ``.stride`` (module docstring): the stem's module ``stem_tap`` (a path such as ``stem.conv2``),
    each stage's last block, and the last stage's map through ``final`` (a module) when given."""
    reduction, levels = 1, []
    for name, module in model.stem.named_children():
        reduction *= _stride(module)
        if f"stem.{name}" == stem_tap:
            levels.append(dict(num_chs=_out_channels(module), reduction=reduction, module=stem_tap))
    blocks = list(model.blocks)
    for i, block in enumerate(blocks):
        reduction *= block.stride
        if i + 1 == len(blocks) or blocks[i + 1].stage != block.stage:
            levels.append(dict(num_chs=model.widths[block.stage], reduction=reduction, module=f"blocks.{i}"))
    if final is not None:
        levels[-1] = dict(num_chs=_out_channels(model.get_submodule(final)), reduction=reduction,
                          module=final)
    return FeatureInfo(levels)


def _out_channels(module: nn.Module) -> int:
    """The channels a conv (or a conv + BN) outputs."""
    if hasattr(module, "out_channels"):
        return module.out_channels
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)][-1].out_channels


class FeatureExtractor(nn.Module):
    """A model's stem and blocks returning the feature maps of ``out_indices`` (the classifier is dropped).

    Keeps the model's own modules (``model``), so weights loaded before wrapping are the ones used
    and AGC / signal-propagation tools still find ``stem`` and ``blocks``. It runs the modules in
    order up to the last level asked for. ``get_classifier()`` is ``nn.Identity`` (timm's headless
    convention): ``AGC.from_model`` then clips every parameter, there being no classifier to spare;
    ``fold_for_inference`` and ``to_timm`` take the backbone as they take its model.
    """

    def __init__(self, model: nn.Module, out_indices: Sequence[int] | None = None):
        super().__init__()
        info = getattr(model, "feature_info", None)
        if not isinstance(info, FeatureInfo):
            raise TypeError(f"{type(model).__name__} has no feature_info: build it with nfrepro.create_model")
        self.feature_info = info.select(range(len(info.levels)) if out_indices is None else out_indices)
        self.pretrained_cfg = getattr(model, "pretrained_cfg", None)
        self.model = model
        self.model.reset_classifier(0)   # no head: its parameters would get no gradient
        path = [f"stem.{name}" for name, _ in model.stem.named_children()]
        path += [f"blocks.{i}" for i in range(len(model.blocks))]
        path += [level["module"] for level in info.levels if level["module"] not in path]  # final_conv
        self._taps = self.feature_info.module_name()
        self._path = path[:max(path.index(tap) for tap in self._taps) + 1]

    @property
    def stem(self) -> nn.Module:
        return self.model.stem

    @property
    def blocks(self) -> nn.Module:
        return self.model.blocks

    def get_classifier(self) -> nn.Module:
        return self.model.get_classifier()   # nn.Identity: reset_classifier(0) above

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for name in self._path:
            x = self.model.get_submodule(name)(x)
            if name in self._taps:
                out.append(x)
        return out
