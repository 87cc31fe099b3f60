r"""Nonlinearity gains gamma: activations rescaled to keep unit variance (NF-ResNet paper §4, NFNets §3).

.. math::  \gamma = 1 / \sqrt{\operatorname{Var}_{x \sim N(0,1)}[g(x)]}, \qquad
           \gamma_\text{ReLU} = \sqrt{2 / (1 - 1/\pi)} = 1.712859 .

The official code (``base.nonlinearities``) estimates gamma from random samples: :data:`GAMMAS`
holds its constants, which the models use; :func:`compute_gamma` is exact (quadrature). The
*variance* is made 1, not the second moment: the mean that remains is what Scaled WS removes.
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


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:  # jax.nn.gelu's default, as the official code (timm: erf)
    return F.gelu(x, approximate="tanh")


# Module-level functions, not lambdas, so that a model holding them pickles.
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": identity, "relu": F.relu, "gelu": gelu_tanh, "silu": F.silu, "tanh": torch.tanh, "elu": F.elu,
}

RELU_GAMMA_CLOSED_FORM = math.sqrt(2.0 / (1.0 - 1.0 / math.pi))  # NFNets §3: 1.712859


def gaussian_moments(fn: Callable[[torch.Tensor], torch.Tensor], num_points: int = 200_001,
                     limit: float = 12.0) -> tuple[float, float]:
    """``(E[g(z)], E[g(z)^2])``, z ~ N(0, 1): trapezoid rule, float64, on the CPU even under meta."""
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
        raise ValueError("compute_gamma: the activation has zero variance under N(0, 1): no gamma")
    return 1.0 / math.sqrt(var)


@functools.lru_cache(maxsize=None)
def activation_second_moment(name: str, gamma: float = 1.0) -> float:
    """``E[(gamma g(z))^2]``, z ~ N(0, 1): the second moment after the activation (ReLU: 1/2, He's 2)."""
    fn = ACTIVATIONS[check_activation(name)]
    return gaussian_moments(lambda z: fn(z) * gamma)[1]


@functools.lru_cache(maxsize=4096)
def activation_variance(name: str, var: float, gamma: float | None = None) -> float:
    """``Var[gamma g(sigma z)]``, z ~ N(0, 1), ``sigma^2 = var``: 1 at ``var = 1``; ``var`` for ReLU
    (homogeneous), about ``0.72 var`` for GELU at small ``var``. Default gamma: the official one."""
    fn = ACTIVATIONS[check_activation(name)]
    g = float(GAMMAS[name] if gamma is None else gamma)
    sd = math.sqrt(var)
    mean, second = gaussian_moments(lambda z: fn(z * sd) * g, num_points=20_001)
    return second - mean * mean


def check_activation(name: str) -> str:
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
    """The bare ``g(x)``: the baselines', and the NF blocks' (their gamma is the next conv's input scale)."""

    def __init__(self, name: str = "relu"):
        super().__init__(name, gamma=1.0)
