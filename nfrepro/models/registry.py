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
import inspect
import math
import numbers
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
    build.builder, build.args = builder, args  # type: ignore[attr-defined]  (model_parameters)
    return register_model(build)


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern`` (for example ``"nfnet_f*"``)."""
    return sorted(name for name in _REGISTRY if fnmatch.fnmatch(name, pattern))


def model_parameters(name: str) -> set[str] | None:
    """The keyword arguments that model ``name`` accepts (None: it takes any ``**kwargs``).

    Lets a caller reject ``--model-arg colour=red`` by name before anything is built.
    """
    _check_name(name)
    fn = _REGISTRY[name]
    builder, args = getattr(fn, "builder", fn), getattr(fn, "args", ())
    params = list(inspect.signature(builder).parameters.values())
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name for p in params[len(args):] if p.kind in keyword}


def check_common_args(num_classes: Any, in_chans: Any, alpha: Any = None, **counts: Any) -> None:
    """The model contract's shared arguments (DESIGN.md), checked once for every family:
    ``num_classes >= 0`` (0: no classifier weights to speak of, but a valid head), ``in_chans >= 1``,
    a finite ``alpha``, and every other count a family names (``group_size=...``) >= 1. A wrong
    type is a ``TypeError``, a wrong value a ``ValueError``, each naming the argument."""
    checks = [("num_classes", num_classes, 0), ("in_chans", in_chans, 1),
              *((arg, value, 1) for arg, value in counts.items())]
    for arg, value, low in checks:
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            raise TypeError(f"{arg} must be an int, got {value!r}")
        if value < low:
            raise ValueError(f"{arg} must be >= {low}, got {value}")
    if alpha is not None:
        if not isinstance(alpha, numbers.Real) or isinstance(alpha, bool):
            raise TypeError(f"alpha must be a number, got {alpha!r}")
        if not math.isfinite(alpha) or alpha < 0:
            raise ValueError(f"alpha must be finite and >= 0, got {alpha}")


def _check_name(name: str) -> None:
    if not isinstance(name, str):
        raise TypeError(f"a model name is a string such as 'nfnet_f0', got {name!r}; "
                        f"nfrepro.list_models() lists them")
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown model {name!r}.{hint} nfrepro.list_models() lists all "
                         f"{len(_REGISTRY)} models.")


def build_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered model; ``overrides`` go to its constructor (``num_classes=10`` ...).
    :func:`nfrepro.models.factory.create_model` adds timm's options on top."""
    _check_name(name)
    return _REGISTRY[name](**overrides)
