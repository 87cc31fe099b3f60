"""One registry for every model: ``build_model(name, **overrides)`` and ``list_models()``.

``nfrepro.create_model`` (:mod:`nfrepro.models.factory`) builds through :func:`build_model` and
adds timm's creation options (weights file, ``features_only``, ``drop_path_rate``).

Model modules register their named variants with :func:`register_variant` (one line per variant,
shaped like the papers' tables); ``nfrepro.models`` imports every model module, so the registry
is complete as soon as any of it is imported.
"""
from __future__ import annotations

import difflib
import fnmatch
from typing import Any, Callable

import torch.nn as nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register ``fn`` under its ``__name__`` (for example ``nfnet_f0``)."""
    if fn.__name__ in _REGISTRY and _REGISTRY[fn.__name__] is not fn:
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    _REGISTRY[fn.__name__] = fn
    return fn


def register_variant(name: str, builder: Callable[..., nn.Module], *args: Any,
                     **defaults: Any) -> Callable[..., nn.Module]:
    """Register ``name`` as ``builder(*args, **defaults)``; keyword overrides win over ``defaults``.

    ``nf_resnet50 = register_variant("nf_resnet50", nf_resnet, depths=(3, 4, 6, 3))``.
    """
    def build(**overrides: Any) -> nn.Module:
        return builder(*args, **{**defaults, **overrides})
    settings = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in defaults.items()]
    build.__name__ = build.__qualname__ = name
    build.__doc__ = (f"``{builder.__name__}({', '.join(settings)})``; any keyword of "
                     f":func:`{builder.__name__}` overrides.")
    build.defaults = defaults  # type: ignore[attr-defined]
    return register_model(build)


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern`` (for example ``"nfnet_f*"``)."""
    return sorted(name for name in _REGISTRY if fnmatch.fnmatch(name, pattern))


def build_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered model; ``overrides`` go to its constructor (``num_classes=10`` ...)."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown model {name!r}.{hint} nfrepro.list_models() lists all "
                         f"{len(_REGISTRY)} models.")
    return _REGISTRY[name](**overrides)
