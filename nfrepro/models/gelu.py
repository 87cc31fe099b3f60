r"""The tanh-approximate GELU of the official NFNets (``jax.nn.gelu``'s default), in cheaper CPU passes.

.. math::  \operatorname{gelu}(x) = \tfrac12 x \,(1 + \tanh u) = x \,\sigma(2u), \qquad
           u = \sqrt{2/\pi}\,(x + 0.044715\, x^3)

(``(1 + tanh u) / 2 = sigmoid(2u)``): the same function as ``F.gelu(x, approximate="tanh")``, not
the erf GELU. PyTorch's CPU kernel evaluates a vectorised ``tanh``, several times dearer than the
``exp`` of the erf GELU or of ``sigmoid``; here ``2u`` comes from one ``addcmul`` and one multiply,
then one ``sigmoid`` and one multiply, and the backward is written by hand from saved ``x`` and
``s = sigma(2u)``, with no transcendental at all:

.. math::  \frac{d\,\mathrm{gelu}}{dx} = s + x\,s(1 - s)\,v', \qquad
           v' = \frac{d(2u)}{dx} = 2\sqrt{2/\pi}\,(1 + 3 \cdot 0.044715\, x^2)

It keeps ``s`` for the backward, one more activation-sized tensor per GELU than ``F.gelu``.
:func:`gelu_tanh` takes this path for plain float32 / float64 CPU tensors in eager mode; everywhere
else (CUDA, whose fused kernel is already one pass; bf16 / fp16, which ``F.gelu`` computes in
float32; ``torch.compile``, ``torch.export``, ``torch.jit.trace`` and FX tracing, which should see
one ``gelu`` op) it is ``F.gelu(x, approximate="tanh")``. ``tests/models/test_gelu.py`` holds the
two equal (values, gradients, ``gradcheck`` in float64); ``nfrepro.bench.gelu`` times them.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

KAPPA = 0.044715                           # the cubic coefficient of the tanh approximation
TWO_BETA = 2.0 * math.sqrt(2.0 / math.pi)  # 2u = TWO_BETA (x + KAPPA x^3)
FAST_DTYPES = (torch.float32, torch.float64)


class _GeluTanh(torch.autograd.Function):
    generate_vmap_rule = True  # forward and setup_context apart: torch.func sees through it

    @staticmethod
    def forward(x: torch.Tensor):
        v = torch.addcmul(x.new_full((), TWO_BETA), x, x, value=TWO_BETA * KAPPA)  # 2u / x
        s = v.mul_(x).sigmoid_()                                                   # sigma(2u)
        return x * s, s

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        _, s = output
        ctx.mark_non_differentiable(s)
        ctx.save_for_backward(inputs[0], s)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor, _unused):
        x, s = ctx.saved_tensors
        d = torch.addcmul(x.new_full((), TWO_BETA), x, x, value=3.0 * TWO_BETA * KAPPA).mul_(x)  # x v'
        q = torch.addcmul(s, s, s, value=-1.0)                 # s (1 - s), as s - s^2: exact near s = 1
        return torch.addcmul(s, d, q).mul_(grad_out)           # (s + x v' s (1 - s)) dL/dy


def gelu_tanh_reference(x: torch.Tensor) -> torch.Tensor:
    """``F.gelu(x, approximate="tanh")``: what :func:`gelu_tanh` computes."""
    return F.gelu(x, approximate="tanh")


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """The tanh-approximate GELU: the sigmoid form on eager CPU float tensors, ``F.gelu`` elsewhere."""
    if (type(x) is not torch.Tensor or x.device.type != "cpu" or x.dtype not in FAST_DTYPES
            or torch.jit.is_tracing() or torch.compiler.is_compiling()):
        return gelu_tanh_reference(x)
    return _GeluTanh.apply(x)[0]
