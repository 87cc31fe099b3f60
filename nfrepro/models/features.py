"""Multi-scale feature maps for dense heads: timm's ``features_only`` over the model contract.

``create_model(name, features_only=True, out_indices=(1, 2, 3, 4))`` wraps a model in
:class:`FeatureExtractor`, whose forward returns a list of ``N x C_i x H/r_i x W/r_i`` maps. The
levels (``model.feature_info``): 0 the stem's output, then the output of each stage; the last
level is the map ``forward_features`` returns (NFNet: after the final 1x1 conv and activation;
ResNets: after the final activation), so a detection or segmentation neck sees what the
classifier sees. ``feature_info.channels()`` and ``.reduction()`` answer as timm's do.
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


def stage_levels(stem_chs: int, stem_reduction: int, widths: Sequence[int], final_chs: int) -> FeatureInfo:
    """The levels of a model with a stem and stages that each halve the resolution: the stem, every
    stage but the last, then ``final_act`` (the last stage's map after the model's final layers)."""
    levels = [dict(num_chs=stem_chs, reduction=stem_reduction, module="stem")]
    levels += [dict(num_chs=w, reduction=stem_reduction * 2 ** s, module=f"stage{s}")
               for s, w in enumerate(widths[:-1])]
    last = dict(num_chs=final_chs, reduction=stem_reduction * 2 ** (len(widths) - 1), module="final_act")
    return FeatureInfo(levels + [last])


class FeatureExtractor(nn.Module):
    """A model's stem and blocks returning the feature maps of ``out_indices`` (the classifier is dropped).

    Keeps the model's own ``stem``, ``blocks`` and ``final_features`` modules, so weights loaded
    before wrapping are the ones used and AGC / signal-propagation tools still find ``blocks``.
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
        self._stage_ends = [i for i, b in enumerate(model.blocks)
                            if i + 1 == len(model.blocks) or model.blocks[i + 1].stage != b.stage]
        self._last = max(self.feature_info.out_indices)

    @property
    def stem(self) -> nn.Module:
        return self.model.stem

    @property
    def blocks(self) -> nn.Module:
        return self.model.blocks

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        wanted = self.feature_info.out_indices
        x = self.model.stem(x)
        out = [x] if 0 in wanted else []
        level = 1
        for i, block in enumerate(self.model.blocks):
            if level > self._last:
                break
            x = block(x)
            if i in self._stage_ends:
                if level == len(self._stage_ends):
                    x = self.model.final_features(x)
                if level in wanted:
                    out.append(x)
                level += 1
        return out
