r"""Ordinary gradient-norm clipping, the baseline AGC is measured against (NFNets §4).

Pascanu et al. (2013): if the global norm of every gradient :math:`\|G\|` exceeds a threshold
:math:`\lambda`, scale all gradients by :math:`\lambda / \|G\|`. NFNets §4 argues that its best
threshold depends on the depth, the batch size and the learning rate, because it compares the
gradient with a fixed number; AGC compares each unit's gradient with that unit's weights.
:class:`GradNormClip` is ``torch.nn.utils.clip_grad_norm_`` as a step hook with the clip statistics
the training engine records for AGC (notebook 07 compares the two).
"""
from __future__ import annotations

from typing import Iterable

import torch


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
