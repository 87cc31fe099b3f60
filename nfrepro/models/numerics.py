r"""Which numerics an NFNet computes, the official code's or timm's; stochastic depth's two conventions.

DeepMind's JAX code and timm's ``dm_nfnet_*`` port run the same weights through two slightly
different functions (paper-facts, "Pitfalls"; timm's ``ScaledStdConv2dSame`` and ``GammaAct``):

=============  ==================================================  =========================================
``numerics``   Scaled WS of a row of fan-in ``N``                   GELU
=============  ==================================================  =========================================
``"official"`` ``(W - mean) / sqrt(max(N var, 1e-4))`` (default)    tanh approximation (``jax.nn.gelu``)
``"timm"``     ``(W - mean) / sqrt(N (var + 1e-5))``                exact, with ``erf`` (``nn.GELU()``)
=============  ==================================================  =========================================

(timm standardizes with ``F.batch_norm(eps=1e-5)`` and then scales by ``gain / sqrt(N)``.) The eps
is the larger difference: ``N * 1e-5`` is 0.015 for a 1x1 conv over 1536 channels, 1.5% on
its output. On NFNet-F0 with random weights the logits of the two differ by a few percent; with
``numerics="timm"`` ours equal timm's to float rounding (``tests/models/test_numerics.py``).

The default is the official one: the paper's weights were trained, and its Table 3 accuracies
measured, with it. ``"timm"`` is for matching a timm pipeline output for output (its published
scores of DeepMind's weights). The option changes nothing else: the initialisation, the
parameters (``to_timm`` / ``load_pretrained`` work either way) and training, whose stochastic
depth keeps its own switch (:func:`set_stochastic_depth`). ``numerics="timm"`` standardizes with
autograd's backward, not the fused one of :mod:`nfrepro.layers.ws_fast`: a slower training step.

:func:`set_numerics` switches a built model in place; ``NFNet(numerics=...)`` and
``create_model(name, numerics=...)`` call it. Under the official numerics an NFNet's GELU is
:func:`nfrepro.models.gelu.gelu_tanh`, the same function as ``F.gelu(x, approximate="tanh")``
computed in cheaper CPU passes.

Stochastic depth (``drop_path_rate`` / ``stochdepth_rate`` ``p``) differs as well. Official
(``base.StochDepth``, our default): block ``i`` of ``n`` drops its branch with rate ``p i / n`` (the
first block never, the last ``p (n - 1) / n``), a kept branch is *not* rescaled, so in training
the branch's expected value is ``(1 - p_i)`` times the eval one. timm (``DropPath``,
``scale_by_keep=True``): a kept branch is divided by ``1 - p_i``, so the expected value is the
eval one; its NFNets use the rates ``p i / (n - 1)`` (``torch.linspace(0, p, n)``: the last block
gets ``p``). ``set_stochastic_depth(model, scale_by_keep=True)`` (``create_model(...,
scale_by_keep=True)``) gives timm's rescaling, on our rates.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from nfrepro.layers.gains import ScaledActivation
from nfrepro.layers.stochastic_depth import StochasticDepth
from nfrepro.layers.weight_standardization import WSConv2d
from nfrepro.models.gelu import gelu_tanh

NUMERICS = ("official", "timm")
TIMM_WS_EPS = 1e-5  # timm's NfCfg.std_conv_eps, added to the variance (not to N var, not a floor)


def gelu_erf(x: torch.Tensor) -> torch.Tensor:
    """The exact GELU, ``x Phi(x)`` (timm's); a module-level function, so that a model pickles."""
    return F.gelu(x)


class TimmWSConv2d(WSConv2d):
    """:class:`~nfrepro.layers.weight_standardization.WSConv2d` with timm's standardization,
    ``gain * (W - mean) / sqrt(N (var + 1e-5))`` (module docstring); same parameters and init."""

    def standardized_weight(self) -> torch.Tensor:
        gain = self.gain if self.input_scale == 1.0 else self.gain * self.input_scale
        dims = tuple(range(1, self.weight.ndim))
        centred = self.weight - self.weight.mean(dim=dims, keepdim=True)
        var = centred.square().mean(dim=dims, keepdim=True)            # population variance
        fan_in = math.prod(self.weight.shape[1:])
        return centred * torch.rsqrt((var + TIMM_WS_EPS) * fan_in) * gain.view(-1, *([1] * len(dims)))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", timm numerics (eps={TIMM_WS_EPS:g} on var)"


def set_numerics(model: nn.Module, numerics: str = "official") -> nn.Module:
    """In place: every Scaled WS conv and GELU of ``model`` computes ``numerics`` (module docstring);
    other activations and the parameters are untouched. Returns ``model`` (``model.numerics`` says)."""
    if numerics not in NUMERICS:
        raise ValueError(f"numerics={numerics!r}: choose 'official' (DeepMind's code, the default) "
                         f"or 'timm' (timm's dm_nfnet_* port)")
    for module in model.modules():
        if type(module) in (WSConv2d, TimmWSConv2d):      # same state: only the method changes
            module.__class__ = TimmWSConv2d if numerics == "timm" else WSConv2d
        if isinstance(module, ScaledActivation) and module.name == "gelu":
            module.fn = gelu_erf if numerics == "timm" else gelu_tanh
    model.numerics = numerics
    return model


def set_stochastic_depth(model: nn.Module, scale_by_keep: bool) -> nn.Module:
    """In place: every stochastic-depth layer of ``model`` divides a kept branch by its keep
    probability (``True``, timm's ``DropPath``) or not (``False``, official; module docstring)."""
    if not isinstance(scale_by_keep, bool):
        raise TypeError(f"scale_by_keep must be True or False, got {scale_by_keep!r}")
    layers = [m for m in model.modules() if isinstance(m, StochasticDepth)]
    if not layers:
        raise ValueError(f"scale_by_keep: {type(model).__name__} has no stochastic depth")
    for layer in layers:
        layer.scale_by_keep = scale_by_keep
    return model
