r"""Nonlinearity gains gamma: activations rescaled to keep unit variance (NF-ResNet paper §4, NFNets §3).

An unnormalised network keeps its signal at unit variance if every activation ``g`` becomes
``gamma * g`` with

.. math::  \gamma = 1 / \sqrt{\operatorname{Var}_{x \sim N(0,1)}[g(x)]} ,

for ReLU :math:`\sqrt{2 / (1 - 1/\pi)} = 1.712859` (NFNets §3). The official code
(``base.nonlinearities``) estimates each gamma from random samples instead; :data:`GAMMAS` holds
those constants and the models use them. :func:`compute_gamma` gives the exact value by quadrature
(ReLU: 1.712859 against the official 1.713959). The *variance* is made 1, not the second moment
(``E[(gamma relu(x))^2] = gamma^2 / 2``): the mean that remains is what Scaled WS removes.
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

# Official empirical constants (deepmind-research nfnets/base.py, `nonlinearities`).
GAMMAS: dict[str, float] = {
    "identity": 1.0,
    "relu": 1.7139588594436646,
    "gelu": 1.7015043497085571,
    "silu": 1.7881293296813965,
    "tanh": 1.5939117670059204,
    "elu": 1.2716004848480225,
}


def identity(x: torch.Tensor) -> torch.Tensor:
    return x


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GELU, tanh approximation: ``jax.nn.gelu``'s default, which the official code calls (timm: erf)."""
    return F.gelu(x, approximate="tanh")


# Module-level functions, not lambdas, so that a model holding them pickles.
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": identity, "relu": F.relu, "gelu": gelu_tanh, "silu": F.silu, "tanh": torch.tanh, "elu": F.elu,
}

RELU_GAMMA_CLOSED_FORM = math.sqrt(2.0 / (1.0 - 1.0 / math.pi))  # NFNets §3: 1.712859


def gaussian_moments(fn: Callable[[torch.Tensor], torch.Tensor], num_points: int = 200_001,
                     limit: float = 12.0) -> tuple[float, float]:
    r"""``(E[g(z)], E[g(z)^2])`` for :math:`z \sim N(0, 1)`: trapezoid rule on [-limit, limit], float64
    on the CPU (also inside a ``torch.device("meta")`` context, where the models are built)."""
    z = torch.linspace(-limit, limit, num_points, dtype=torch.float64, device="cpu")
    density = torch.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    y = fn(z).to(torch.float64)
    if not torch.isfinite(y).all():
        raise ValueError(f"the activation returned non-finite values on [-{limit:g}, {limit:g}]")
    return float(torch.trapezoid(y * density, z)), float(torch.trapezoid(y * y * density, z))


def compute_gamma(fn: Callable[[torch.Tensor], torch.Tensor]) -> float:
    r"""gamma = Var[g(z)]^{-1/2} for z ~ N(0, 1)."""
    mean, second = gaussian_moments(fn)
    var = second - mean * mean
    if var <= 0.0:
        raise ValueError("compute_gamma: the activation has zero variance under N(0, 1); "
                         "gamma is undefined (a constant activation cannot be rescaled)")
    return 1.0 / math.sqrt(var)


@functools.lru_cache(maxsize=None)
def activation_second_moment(name: str, gamma: float = 1.0) -> float:
    r""":math:`E[(\gamma\, g(z))^2]`, z ~ N(0, 1): a conv's input second moment after the activation
    (ReLU: 1/2, He init's factor 2; scaled ReLU: :math:`\gamma^2 / 2`)."""
    fn = ACTIVATIONS[check_activation(name)]
    return gaussian_moments(lambda z: fn(z) * gamma)[1]


@functools.lru_cache(maxsize=4096)
def activation_variance(name: str, var: float, gamma: float | None = None) -> float:
    r""":math:`\operatorname{Var}[\gamma\, g(\sigma z)]`, z ~ N(0, 1), :math:`\sigma^2` = ``var``: 1 at
    ``var = 1`` by the choice of gamma; ``var`` for ReLU (homogeneous); about ``0.72 var`` for GELU at
    small ``var``. ``gamma`` defaults to the official constant of ``name``."""
    fn = ACTIVATIONS[check_activation(name)]
    g = float(GAMMAS[name] if gamma is None else gamma)
    sd = math.sqrt(var)
    mean, second = gaussian_moments(lambda z: fn(z * sd) * g, num_points=20_001)
    return second - mean * mean


def check_activation(name: str) -> str:
    """``name`` if it is a key of the gamma table, else a ``ValueError`` listing the keys."""
    if name not in GAMMAS:
        raise ValueError(f"unknown activation {name!r}: choose one of {', '.join(sorted(GAMMAS))}")
    return name


class ScaledActivation(nn.Module):
    """``gamma * g(x)``: the activation with its official nonlinearity gain (NFNets §3)."""

    def __init__(self, name: str = "relu", gamma: float | None = None):
        super().__init__()
        self.name = check_activation(name)
        self.fn = ACTIVATIONS[name]
        self.gamma = float(GAMMAS[name] if gamma is None else gamma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fn(x)
        return out if self.gamma == 1.0 else out * self.gamma  # gamma 1: no extra pass

    def extra_repr(self) -> str:
        return f"{self.name}, gamma={self.gamma:.6f}"


class Activation(ScaledActivation):
    """The bare activation ``g(x)`` (gamma = 1): the baselines', and the NF blocks', whose gamma is
    the ``input_scale`` of the convs that read it."""

    def __init__(self, name: str = "relu"):
        super().__init__(name, gamma=1.0)
