r"""Adaptive Gradient Clipping, AGC (NFNets, arXiv:2102.06171, §4; official ``agc_optax.py``).

For every unit ``i`` (an output row) of every clipped parameter ``W`` with gradient ``G``:

.. math::  G_i \leftarrow \begin{cases}
              \lambda \frac{\max(\|W_i\|, \epsilon)}{\|G_i\|} G_i & \text{if }
              \frac{\|G_i\|}{\max(\|W_i\|, \epsilon)} > \lambda \\
              G_i & \text{otherwise} \end{cases}

with ``lambda = clipping``. Units: rows of a conv ``O x I x kh x kw`` or linear ``O x I``; a tensor
of <= 1 dim (bias, gain) is one unit (timm clips its ``O x 1 x 1 x 1`` WS gain per element). The
classifier weight is not clipped (:class:`AGCSelection`). Non-finite values are not repaired (nor
officially): a NaN unit passes, an inf one becomes 0 x inf; ``num_nonfinite`` counts them.
"""
from __future__ import annotations

import math
import numbers
from collections import defaultdict
from dataclasses import dataclass, field, fields
from typing import Any, Iterable

import torch
import torch.nn as nn

from nfrepro.models.utils import first_conv, unwrap_model

CLIPPING = 0.01  # lambda for batch 1024-4096 (§5.1); smaller lambda at larger batch (§4.1)
EPS = 1e-3  # floor on ||W_i||: zero-initialised weights (skip gains, biases) can still move
GRAD_NORM_FLOOR = 1e-6  # official: max(||G_i||, 1e-6) in the division, against division by zero
LOW_PRECISION = (torch.float16, torch.bfloat16)  # their unit norms accumulate in fp32
Params = torch.Tensor | Iterable[torch.Tensor]


def unitwise_norm(x: torch.Tensor) -> torch.Tensor:
    """||x_i|| per output unit: over dims 1.. for >= 2-d tensors (shape ``O``), whole tensor else."""
    return torch.linalg.vector_norm(x, dim=tuple(range(1, x.ndim)) if x.ndim > 1 else None)


def _check_hyperparameters(clipping: float, eps: float) -> None:
    for name, value, paper in (("clipping", clipping, "0.01 at batch 1024-4096"), ("eps", eps, "1e-3")):
        if isinstance(value, bool) or not isinstance(value, (numbers.Real, torch.Tensor)):
            raise TypeError(f"AGC {name} must be a number, got {value!r} ({type(value).__name__})")
        if not (value > 0 and math.isfinite(value)):  # also rejects NaN; an infinite lambda never clips
            raise ValueError(f"AGC {name} must be finite and > 0, got {value!r}; the paper uses {paper}")


def _with_grads(parameters: Params) -> list[torch.Tensor]:
    params = [parameters] if isinstance(parameters, torch.Tensor) else parameters
    out = list({id(p): p for p in params if p.grad is not None}.values())  # a repeat is clipped once
    if any(p.grad.is_sparse for p in out):
        raise ValueError("AGC does not support sparse gradients (unit norms need dense rows)")
    return out


def _row_shape(x: torch.Tensor) -> tuple[int, ...]:
    """Shape that broadcasts one factor per unit over ``x``: ``(O, 1, .., 1)``, or all ones."""
    return (-1,) + (1,) * (x.ndim - 1) if x.ndim > 1 else (1,) * x.ndim


def _stats(num_units: int, num_clipped: torch.Tensor, num_nonfinite: torch.Tensor) -> dict[str, Any]:
    return {"num_units": num_units, "num_clipped": num_clipped,
            "frac_units_clipped": num_clipped / max(num_units, 1), "num_nonfinite": num_nonfinite}


# ----------------------------------------------------------------------------- the reference
@torch.no_grad()
def adaptive_grad_clip_reference_(parameters: Params, clipping: float = CLIPPING, *,
                                  eps: float = EPS) -> dict[str, Any]:
    """AGC as a plain loop over parameters and their units; the contract of :func:`adaptive_grad_clip_`."""
    _check_hyperparameters(clipping, eps)
    num_units, num_clipped, num_nonfinite = 0, 0, 0
    for p in _with_grads(parameters):
        g = p.grad
        up = torch.float32 if p.dtype in LOW_PRECISION else p.dtype  # fp16 / bf16 norms in fp32
        w_norm = unitwise_norm(p.detach().to(up)).clamp_min(eps)  # max(||W_i||, eps), shape O or ()
        g_norm = unitwise_norm(g.to(up))  # ||G_i||
        max_norm = clipping * w_norm
        trigger = g_norm > max_norm  # ||G_i|| / max(||W_i||, eps) > lambda
        scale = max_norm / g_norm.clamp_min(GRAD_NORM_FLOOR)  # lambda max(||W_i||, eps) / ||G_i||
        shape = _row_shape(g)  # broadcast each unit's factor over its row
        g.copy_(torch.where(trigger.view(shape), g * scale.view(shape), g))
        num_units += trigger.numel()
        num_clipped += int(trigger.sum())
        num_nonfinite += int((~(torch.isfinite(g_norm) & torch.isfinite(w_norm))).sum())
    return _stats(num_units, torch.tensor(num_clipped), torch.tensor(num_nonfinite))


# ----------------------------------------------------------------------------- the fast path
@torch.no_grad()
def adaptive_grad_clip_(parameters: Params, clipping: float = CLIPPING, *, eps: float = EPS,
                        stats: bool = True) -> dict[str, Any]:
    """Clip the gradients of ``parameters`` unit-wise in place (§4), vectorised: per (device, dtype)
    one flat vector of unit norms and one ``torch._foreach_mul_``. Returns ``{"num_units": int,
    "num_clipped", "frac_units_clipped", "num_nonfinite": 0-d tensors on the parameters' device}``
    (``{}`` with ``stats=False``); parameters without ``.grad`` are skipped."""
    _check_hyperparameters(clipping, eps)
    groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = defaultdict(list)
    for p in _with_grads(parameters):
        groups[(p.device, p.dtype)].append(p)
    done = [_clip_group_(params, clipping, eps, stats) for params in groups.values()]
    num_units, counts = sum(n for n, _ in done), [count for _, count in done]
    if not stats:
        return {}
    total = counts[0] if counts else torch.zeros(2, dtype=torch.int64)  # (clipped, non-finite)
    total = sum((count.to(total.device, non_blocking=True) for count in counts[1:]), total)
    return _stats(num_units, total[0], total[1])


def _unit_norms(tensors: list[torch.Tensor], num_nd: int, dtype: torch.dtype | None) -> torch.Tensor:
    """Flat vector of the unit norms of ``tensors``: the first ``num_nd`` are >= 2-d, the rest <= 1-d."""
    parts = [torch.linalg.vector_norm(t, dim=tuple(range(1, t.ndim)), dtype=dtype) for t in tensors[:num_nd]]
    if len(tensors) > num_nd:
        parts += [n.view(1) for n in torch._foreach_norm(tensors[num_nd:], 2, dtype=dtype)]
    return torch.cat(parts)  # shape (total units,)


def _clip_group_(params: list[torch.Tensor], clipping: float, eps: float,
                 stats: bool) -> tuple[int, torch.Tensor | None]:
    """AGC on parameters of one device and dtype: (number of units, [clipped, non-finite] or None)."""
    norm_dtype = torch.float32 if params[0].dtype in LOW_PRECISION else None
    params = [p for p in params if p.ndim > 1] + [p for p in params if p.ndim <= 1]
    num_nd = sum(p.ndim > 1 for p in params)
    grads = [p.grad for p in params]
    sizes = [p.shape[0] if p.ndim > 1 else 1 for p in params]  # units per tensor

    max_norm = _unit_norms(params, num_nd, norm_dtype).clamp_min_(eps).mul_(clipping)
    g_norm = _unit_norms(grads, num_nd, norm_dtype)  # ||G_i||
    trigger = g_norm > max_norm
    scale = torch.where(trigger, max_norm / g_norm.clamp_min_(GRAD_NORM_FLOOR), 1.0)

    keep: Iterable[int] = range(len(params))
    if params[0].device.type == "cpu":  # reading a CPU tensor costs no sync: skip the unclipped tensors
        ends = torch.tensor(sizes).cumsum(0)
        per_tensor = torch.diff(trigger.cumsum(0)[ends - 1], prepend=torch.zeros(1, dtype=torch.int64))
        keep = per_tensor.nonzero().flatten().tolist()
    finite = torch.isfinite(g_norm) & torch.isfinite(max_norm)  # max_norm: lambda max(||W_i||, eps)
    count = torch.stack([trigger.sum(), (~finite).sum()]) if stats else None
    if keep:
        scales = scale.split(sizes)  # views, no copies
        torch._foreach_mul_([grads[i] for i in keep],
                            [scales[i].view(_row_shape(grads[i])) for i in keep])
    return len(scale), count


# ----------------------------------------------------------------------------- which parameters
@dataclass(frozen=True, kw_only=True)
class AGCSelection:
    """Which parameters AGC clips, and its eps. The default is the paper's (§4.1): every parameter
    but the classifier weight, ``model.get_classifier().weight`` (DESIGN.md's model contract)."""
    eps: float = field(default=EPS, metadata=dict(help="AGC eps, the floor on each unit's weight norm"))
    clip_classifier: bool = field(default=False, metadata=dict(
        help="also clip the classifier weight (the paper does not, §4.1)"))
    exclude_first_conv: bool = field(default=False, metadata=dict(
        help="leave the stem's first convolution unclipped (§4.1: it \"can often be left unclipped\")"))
    exclude_stages: tuple[int, ...] = field(default=(), metadata=dict(
        help="leave the blocks of these stages unclipped (model.blocks[i].stage, 0-based; -1: the last)"))
    exclude_skip_gains: bool = field(default=False, metadata=dict(
        help="leave the SkipInit gains unclipped (a departure: clipped at 0 they hardly move in short runs)"))
    exclude_stage_skip_gains: bool = field(default=True, metadata=dict(
        help="with exclude_stages, their SkipInit gains too (false: those gains stay clipped)"))

    def __post_init__(self) -> None:
        _check_hyperparameters(CLIPPING, self.eps)
        for name in (f.name for f in fields(self) if f.type in ("bool", bool)):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if not isinstance(stages := self.exclude_stages, tuple | list) or {type(s) for s in stages} - {int}:
            raise TypeError(f"exclude_stages must be a tuple of stage numbers, got {stages!r}")
        object.__setattr__(self, "exclude_stages", tuple(stages))  # a tuple, so that it hashes

    def __repr__(self) -> str:  # only what differs from the paper's selection
        changed = [f"{f.name}={v!r}" for f in fields(self) if (v := getattr(self, f.name)) != f.default]
        return f"AGCSelection({', '.join(changed)})"


PAPER_SELECTION = AGCSelection()


def _classifier_weight(base: nn.Module) -> list[torch.Tensor]:
    if not callable(getattr(base, "get_classifier", None)):
        raise TypeError(f"{type(base).__name__} has no get_classifier(), so AGC cannot tell which layer is "
                        f"the classifier (the paper leaves it unclipped): name it, exclude=[model.fc], or "
                        f"clip every parameter with AGCSelection(clip_classifier=True)")
    weight = getattr(base.get_classifier(), "weight", None)  # None for nn.Identity heads
    return [weight] if isinstance(weight, torch.Tensor) else []


def _skip_gains(base: nn.Module) -> list[torch.Tensor]:
    gains = [b.skip_gain for b in getattr(base, "blocks", ())
             if isinstance(getattr(b, "skip_gain", None), nn.Parameter)]
    if not gains:
        raise ValueError(f"exclude_skip_gains: {type(base).__name__} has no model.blocks[i].skip_gain "
                         f"parameter (built without SkipInit gains?); drop the option")
    return gains


def _stage_parameters(base: nn.Module, stages: tuple[int, ...], gains: bool = True) -> list[torch.Tensor]:
    blocks = list(getattr(base, "blocks", ()))
    if not blocks or not all(hasattr(b, "stage") for b in blocks):
        raise ValueError(f"exclude_stages needs model.blocks, residual blocks with a .stage; "
                         f"{type(base).__name__} has none")
    found = sorted({b.stage for b in blocks})
    wanted = {found[s] if -len(found) <= s < 0 else s for s in stages}  # -1: the last stage
    if wanted - set(found):
        raise ValueError(f"exclude_stages: no block has stage {sorted(wanted - set(found))}; "
                         f"the model's stages are {found} (0-based)")
    return [p for b in blocks if b.stage in wanted for p in b.parameters()
            if gains or p is not getattr(b, "skip_gain", None)]  # gains=False: the skip gains stay clipped


def clip_parameters(model: nn.Module, selection: AGCSelection = PAPER_SELECTION, *,
                    exclude: Iterable[nn.Module | torch.Tensor] = ()) -> list[nn.Parameter]:
    """The parameters of ``model`` AGC clips under ``selection``, found by identity (through DDP and
    ``torch.compile``), less ``exclude`` (parameters, or modules: all their parameters). For a
    model without ``get_classifier()``, ``exclude`` names the classifier (``[model.fc]``)."""
    base = unwrap_model(model)
    skipped: list[torch.Tensor] = []
    for item in exclude:
        if not isinstance(item, (nn.Module, torch.Tensor)):
            raise TypeError(f"exclude takes modules or parameters, got {type(item).__name__}")
        skipped += item.parameters() if isinstance(item, nn.Module) else [item]
    has_head = callable(getattr(base, "get_classifier", None))
    if not selection.clip_classifier and (has_head or not skipped):  # no head, none named: an error
        skipped += _classifier_weight(base)
    if selection.exclude_first_conv:
        skipped += first_conv(base).parameters()
    if selection.exclude_skip_gains:
        skipped += _skip_gains(base)
    if selection.exclude_stages:
        skipped += _stage_parameters(base, selection.exclude_stages, selection.exclude_stage_skip_gains)
    ids = {id(p) for p in skipped}
    return [p for p in base.parameters() if id(p) not in ids]
