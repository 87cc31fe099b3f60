"""Layers: the papers' building blocks in plain PyTorch (padding, Scaled WS and its fast path,
gains gamma, initialisers, squeeze-excite, stochastic depth); they know nothing of any model."""
from nfrepro.layers.gains import GAMMAS, Activation, ScaledActivation, compute_gamma
from nfrepro.layers.padding import SamePadConv2d, SamePadMaxPool2d, same_padding
from nfrepro.layers.squeeze_excite import SqueezeExcite
from nfrepro.layers.stochastic_depth import StochasticDepth
from nfrepro.layers.weight_standardization import WSConv2d, standardize_weight

__all__ = ["GAMMAS", "Activation", "ScaledActivation", "compute_gamma", "SamePadConv2d", "SamePadMaxPool2d",
           "same_padding", "SqueezeExcite", "StochasticDepth", "WSConv2d", "standardize_weight"]
