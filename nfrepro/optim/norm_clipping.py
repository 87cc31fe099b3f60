r"""The clipping rules AGC is measured against (NFNets §4): ordinary global-norm clipping, and
AGC's own ratio taken per tensor (layer-wise) instead of per unit.

Ordinary clipping (Pascanu et al. 2013): if the global norm of every gradient :math:`\|G\|` exceeds a
threshold :math:`\lambda`, scale all gradients by :math:`\lambda / \|G\|`. NFNets §4 argues that its
best threshold depends on the depth, the batch size and the learning rate, because it compares the
gradient with a fixed number; AGC compares each unit's gradient with that unit's weights.
:class:`GradNormClip` is ``torch.nn.utils.clip_grad_norm_`` as a step hook with the clip statistics
the training engine records for AGC.

Layer-wise AGC: §4 reports that the unit-wise ratio :math:`\|G_i\| / \|W_i\|` works better than the
layer-wise one, :math:`\|G\|_F / \|W\|_F` over a whole tensor (the ratio LARS, You et al. 2017, sets
each layer's step from). :func:`tensorwise_agc_` is AGC's rule (:mod:`nfrepro.optim.agc`: the same
eps floor on the weight norm, the same floor on the gradient norm) with each tensor as one unit:

.. math::  G \leftarrow \lambda \frac{\max(\|W\|_F, \epsilon)}{\|G\|_F} G \quad \text{if} \quad
           \frac{\|G\|_F}{\max(\|W\|_F, \epsilon)} > \lambda .

A tensor of <= 1 dim (bias, gain, skip gain) is one unit under both rules, so the two differ on the
weight matrices and filter banks only. Notebook 07 trains with both (``TrainConfig.agc_granularity``).
"""
from __future__ import annotations

from typing import Any, Iterable

import torch

from nfrepro.optim import agc
from nfrepro.optim.agc import CLIPPING, EPS, GRAD_NORM_FLOOR, LOW_PRECISION

AGC_GRANULARITIES = ("unit", "tensor")  # AGC's ratio per output unit (the paper's) or per tensor


class GradNormClip:
    """Callable run after ``backward`` and before ``optimizer.step()``: clips the global gradient norm
    of ``parameters`` to ``max_norm``. ``last_stats["frac_units_clipped"]`` is 1.0 when this step was
    clipped and 0.0 otherwise (a 0-d tensor on the parameters' device: reading it is the caller's sync)."""

    def __init__(self, parameters: Iterable[torch.Tensor], max_norm: float):
        if not max_norm > 0 or max_norm == float("inf"):
            raise ValueError(f"max_norm must be a finite number > 0, got {max_norm!r}")
        self.parameters, self.max_norm = list(parameters), float(max_norm)
        self.last_stats: dict[str, torch.Tensor] = {}

    def __call__(self) -> torch.Tensor:
        total = torch.nn.utils.clip_grad_norm_(self.parameters, self.max_norm)
        self.last_stats = {"total_norm": total, "frac_units_clipped": (total > self.max_norm).float()}
        return total


@torch.no_grad()
def tensorwise_agc_(parameters: Iterable[torch.Tensor], clipping: float = CLIPPING, *,
                    eps: float = EPS) -> dict[str, Any]:
    """Layer-wise AGC in place: each tensor's gradient is clipped as one unit (module docstring).
    Returns ``{"num_tensors": int, "num_units", "num_clipped", "frac_units_clipped"}``, counting
    units (output rows) as AGC does, so the fractions of the two rules compare; the counts are
    tensors on the parameters' device (no host sync). Parameters without ``.grad`` are skipped."""
    agc._check_hyperparameters(clipping, eps)
    params = list({id(p): p for p in parameters if p.grad is not None}.values())  # a repeat once
    num_units, num_clipped = 0, torch.zeros(())
    for p in params:
        g = p.grad
        up = torch.float32 if p.dtype in LOW_PRECISION else p.dtype  # fp16 / bf16 norms in fp32
        max_norm = clipping * torch.linalg.vector_norm(p.detach().to(up)).clamp_min(eps)
        g_norm = torch.linalg.vector_norm(g.to(up))  # ||G||_F
        trigger = g_norm > max_norm  # ||G||_F / max(||W||_F, eps) > lambda
        g.mul_(torch.where(trigger, max_norm / g_norm.clamp_min(GRAD_NORM_FLOOR), 1.0).to(g.dtype))
        units = p.shape[0] if p.ndim > 1 else 1  # all of them or none
        num_units += units
        num_clipped = num_clipped.to(trigger.device) + trigger * units
    return {"num_tensors": len(params), "num_units": num_units, "num_clipped": num_clipped,
            "frac_units_clipped": num_clipped / max(num_units, 1)}


class TensorwiseAGC:
    """Callable run after ``backward`` and before ``optimizer.step()``: layer-wise AGC
    (:func:`tensorwise_agc_`) on ``parameters`` (select them as AGC does:
    :func:`nfrepro.optim.agc.clip_parameters`); ``last_stats`` as :class:`GradNormClip`'s."""

    def __init__(self, parameters: Iterable[torch.Tensor], clipping: float = CLIPPING, *, eps: float = EPS):
        agc._check_hyperparameters(clipping, eps)
        self.parameters, self.clipping, self.eps = list(parameters), clipping, eps
        self.last_stats: dict[str, Any] = {}

    def __call__(self) -> dict[str, Any]:
        self.last_stats = tensorwise_agc_(self.parameters, self.clipping, eps=self.eps)
        return self.last_stats
