"""The classifier head and timm's conventions for it: ``forward_features`` / ``forward_head`` /
``get_classifier`` / ``reset_classifier``, shared by every model family.

Both papers end their networks the same way (official ``NFNet.__call__`` and
``NF_ResNet.__call__``): the last feature map, a global mean pool, dropout, and a linear
classifier initialised N(0, 0.01) with a zero bias. A model that mixes in :class:`ClassifierHead`
defines ``stem``, ``blocks``, ``final_features`` (what follows the last block up to the unpooled
map: NFNet's final conv and activation, a ResNet's final activation), ``head_drop``, ``fc`` and
``num_features``; the head methods below are then those timm users expect, and
:class:`~nfrepro.models.timm_api.TimmApi` adds the rest of timm's model API (gradient
checkpointing, ``forward_intermediates``, pruning, ``group_matcher``).

The pooling is timm's ``global_pool`` option (``create_model(..., global_pool=...)`` or
``reset_classifier(n, global_pool)``): the papers' ``"avg"`` by default, ``"max"``, ``"avgmax"``, or
``""`` with ``num_classes=0`` for unpooled maps from ``forward`` / ``forward_head``.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from nfrepro.models.timm_api import TimmApi, check_pool, pool

FC_INIT_STD = 0.01  # official fc_init: RandomNormal(stddev=0.01), zero bias
# A flag on the classifier's weight; nfrepro.optim.AGC (which models may not import) warns when it
# is asked to clip a tensor carrying it (the paper never clips the classifier, §4.1).
CLASSIFIER_MARK = "_nfrepro_classifier"
# TorchScript cannot compile our layers (Python dispatch: the fused WS backward, TF "SAME" padding
# computed from the input's size); the three tools below follow the input size exactly.
SCRIPT_REFUSAL = ("torch.jit.script cannot compile nfrepro models: use torch.compile(model), "
                  "torch.export.export(model, (x,)) or torch.jit.trace(model, x)")


def new_classifier(num_features: int, num_classes: int, like: nn.Module | None = None) -> nn.Module:
    """A fresh classifier (N(0, 0.01) weights, zero bias), or ``nn.Identity`` for ``num_classes=0``
    (timm's convention for a headless model); placed on ``like``'s device and dtype."""
    if num_classes == 0:
        return nn.Identity()
    ref = next(like.parameters(), None) if like is not None else None
    kwargs = {} if ref is None else {"device": ref.device, "dtype": ref.dtype}
    fc = nn.Linear(num_features, num_classes, **kwargs)
    setattr(fc.weight, CLASSIFIER_MARK, True)
    if not fc.weight.is_meta:
        nn.init.normal_(fc.weight, 0.0, FC_INIT_STD)
        nn.init.zeros_(fc.bias)
    return fc


class ClassifierHead(TimmApi):
    """Mixin for ``nn.Module`` models: timm's head methods over the model contract (DESIGN.md)."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The unpooled last feature map, ``N x num_features x H/32 x W/32`` (timm's convention)."""
        return self.final_features(self.run_blocks(self.stem(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global pool (``self.global_pool``, the mean by default), dropout, classifier;
        ``pre_logits=True`` stops before the classifier (``N x num_features``)."""
        x = self.head_drop(pool(x, self.global_pool))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def __prepare_scriptable__(self) -> nn.Module:
        """``torch.jit.script`` asks this first (for the model and any module holding it)."""
        raise RuntimeError(SCRIPT_REFUSAL)

    def get_classifier(self) -> nn.Module:
        """The final ``nn.Linear``, found by identity (AGC); ``nn.Identity`` after ``reset_classifier(0)``."""
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier by a freshly initialised one with ``num_classes`` outputs (0: none);
        ``global_pool`` (None: keep the current one) as in timm's ``reset_classifier``."""
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0 removes the classifier), got {num_classes}")
        check_pool(self.global_pool if global_pool is None else global_pool, num_classes)
        if global_pool is not None:
            self.global_pool = global_pool
        self.fc = new_classifier(self.num_features, num_classes, like=self.fc)
        self.num_classes = num_classes
        if isinstance(getattr(self, "pretrained_cfg", None), dict):
            self.pretrained_cfg = {**self.pretrained_cfg, "num_classes": num_classes}
