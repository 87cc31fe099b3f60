"""Layers: the papers' building blocks, in plain PyTorch; they know nothing of any model.

TF "SAME" padding (:mod:`~nfrepro.layers.padding`), Scaled Weight Standardization
(:mod:`~nfrepro.layers.weight_standardization`), nonlinearity gains gamma
(:mod:`~nfrepro.layers.gains`), initialisers (:mod:`~nfrepro.layers.init`), squeeze-excite with the
x2 gain (:mod:`~nfrepro.layers.squeeze_excite`) and stochastic depth
(:mod:`~nfrepro.layers.stochastic_depth`).
"""
from nfrepro.layers.gains import GAMMAS, Activation, ScaledActivation, compute_gamma
from nfrepro.layers.padding import SamePadConv2d, SamePadMaxPool2d, same_padding
from nfrepro.layers.squeeze_excite import SqueezeExcite
from nfrepro.layers.stochastic_depth import StochasticDepth
from nfrepro.layers.weight_standardization import WSConv2d, standardize_weight

__all__ = ["GAMMAS", "Activation", "ScaledActivation", "compute_gamma", "SamePadConv2d",
           "SamePadMaxPool2d", "same_padding", "SqueezeExcite", "StochasticDepth", "WSConv2d",
           "standardize_weight"]
