"""One registry for every model: ``create_model(name, **overrides)`` and ``list_models()``.

Model modules decorate their public constructors with :func:`register_model`; the registry
imports them lazily so that importing ``nfrepro`` stays cheap.
"""
from __future__ import annotations

import difflib
import fnmatch
import importlib
from typing import Any, Callable

import torch.nn as nn

_MODEL_MODULES = ("nfrepro.nfnet", "nfrepro.resnet")
_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register ``fn`` under its ``__name__`` (for example ``nfnet_f0``)."""
    if fn.__name__ in _REGISTRY and _REGISTRY[fn.__name__] is not fn:
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    _REGISTRY[fn.__name__] = fn
    return fn


def _load_all() -> None:
    for module in _MODEL_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:  # a missing dependency inside an existing module: report it
                raise
            # a model module not written yet (modules are developed in parallel): skip it


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern`` (for example ``"nfnet_f*"``)."""
    _load_all()
    return sorted(name for name in _REGISTRY if fnmatch.fnmatch(name, pattern))


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered model; ``overrides`` go to its constructor (``num_classes=10`` ...)."""
    _load_all()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown model {name!r}.{hint} nfrepro.list_models() lists all "
                         f"{len(_REGISTRY)} models.")
    return _REGISTRY[name](**overrides)
