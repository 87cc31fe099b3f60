"""Finding parts of a model through its wrappers: the bare model, and its first convolution."""
from __future__ import annotations

import torch.nn as nn


def unwrap_model(model: nn.Module) -> nn.Module:
    """The user's model inside DDP / DataParallel (``.module``) and ``torch.compile`` (``._orig_mod``)."""
    while True:
        inner = getattr(model, "_orig_mod", None)  # torch.compile's OptimizedModule
        if inner is None and isinstance(model, (nn.parallel.DistributedDataParallel,
                                                nn.parallel.DataParallel)):
            inner = model.module
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def first_conv(model: nn.Module) -> nn.Conv2d:
    """The first ``nn.Conv2d`` of ``model.stem`` (of the model when it has no stem): the layer
    NFNets §4.1 says "can often be left unclipped"."""
    base = unwrap_model(model)
    stem = getattr(base, "stem", None)
    search = stem if isinstance(stem, nn.Module) else base
    conv = next((m for m in search.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise ValueError(f"exclude_first_conv: no nn.Conv2d in {type(search).__name__}")
    return conv
