"""``create_model``: a registered model, with timm's creation options on top.

``create_model(name, pretrained=None, features_only=False, out_indices=None, drop_path_rate=None,
global_pool=None, use_ema=None, scale_by_keep=None, **overrides)``:

* ``overrides`` go to the model's constructor (``num_classes=10``, ``in_chans=1``, ``alpha=0.5`` ...);
* ``drop_path_rate`` is timm's name for the stochastic-depth rate (``stochdepth_rate``), with the
  official semantics: block ``i`` of ``n`` drops with rate ``drop_path_rate * i / n`` and a kept
  branch is not rescaled; ``scale_by_keep=True`` divides a kept branch by its keep probability, as
  timm's ``DropPath`` (timm's NFNets also spread the rates as ``i / (n - 1)``:
  :mod:`nfrepro.models.numerics`);
* ``numerics="timm"`` (NFNets) computes timm's WS eps and erf GELU instead of the official ones;
* ``pretrained`` is a weights file (or an in-memory state dict) loaded with
  :func:`nfrepro.models.pretrained.load_pretrained` in fine-tuning mode: every tensor that fits
  is kept, a classifier for another number of classes is re-initialised, a stem for another
  number of input channels is adapted (one log line says which); ``pretrained=False`` is no
  weights, ``pretrained=True`` (timm's download) an error asking for a path; ``use_ema`` picks a
  training checkpoint's EMA weights (:func:`~nfrepro.models.pretrained.load_pretrained`);
* ``global_pool``: timm's head pooling, ``"avg"`` (the papers'), ``"max"``, ``"avgmax"``, or ``""``
  with ``num_classes=0`` for unpooled maps (:mod:`nfrepro.models.timm_api`);
* ``features_only=True`` returns a :class:`~nfrepro.models.features.FeatureExtractor` whose
  forward gives the feature maps of ``out_indices`` (default: every level).
"""
from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from typing import Any, Sequence

import torch.nn as nn

from nfrepro.models.features import FeatureExtractor
from nfrepro.models.numerics import set_stochastic_depth
from nfrepro.models.pretrained import load_pretrained
from nfrepro.models.registry import build_model
from nfrepro.models.timm_api import TimmApi, check_pool


def create_model(name: str, pretrained: str | PathLike | Mapping[str, Any] | None = None, *,
                 features_only: bool = False, out_indices: Sequence[int] | None = None,
                 drop_path_rate: float | None = None, global_pool: str | None = None,
                 use_ema: bool | None = None, scale_by_keep: bool | None = None,
                 **overrides: Any) -> nn.Module:
    """Build the registered model ``name`` (``nfrepro.list_models()``); see the module docstring."""
    if drop_path_rate is not None:
        if overrides.get("stochdepth_rate", drop_path_rate) != drop_path_rate:
            raise ValueError(f"drop_path_rate={drop_path_rate} and stochdepth_rate="
                             f"{overrides['stochdepth_rate']} name the same rate: pass one of them")
        overrides["stochdepth_rate"] = drop_path_rate
    if use_ema is not None and pretrained in (None, False):
        raise ValueError("use_ema picks a training checkpoint's EMA weights: pass pretrained=PATH with it")
    if out_indices is not None and not features_only:
        raise ValueError("out_indices selects feature maps: pass features_only=True with it")
    if pretrained is True:
        raise ValueError("pretrained=True downloads weights in timm; nfrepro downloads nothing: pass "
                         "pretrained=PATH, a weights file (DeepMind F0_haiku.npz, a timm dm_nfnet .pth / "
                         ".pth.tar / .safetensors) or a state dict")
    model = build_model(name, **overrides)
    if global_pool is not None:
        if not isinstance(model, TimmApi):
            raise TypeError(f"global_pool: {name} ({type(model).__name__}) has no timm head to pool for")
        check_pool(global_pool, model.num_classes)
        model.global_pool = global_pool
    if scale_by_keep is not None:
        set_stochastic_depth(model, scale_by_keep)
    if pretrained is not None and pretrained is not False:
        load_pretrained(model, pretrained, strict=False, use_ema=use_ema)
    if features_only:
        return FeatureExtractor(model, out_indices)
    return model
