r"""Adaptive Gradient Clipping, AGC (NFNets paper, arXiv:2102.06171, §4; official ``agc_optax.py``).

For every unit ``i`` (an output row) of every clipped parameter ``W`` with gradient ``G``:

.. math::  G_i \leftarrow \begin{cases}
              \lambda \frac{\max(\|W_i\|, \epsilon)}{\|G_i\|} G_i & \text{if }
              \frac{\|G_i\|}{\max(\|W_i\|, \epsilon)} > \lambda \\
              G_i & \text{otherwise} \end{cases}

with ``lambda = clipping`` (0.01 for batch 1024-4096, §5.1) and ``eps = 1e-3``. Units in
PyTorch layout: conv ``O x I x kh x kw`` -> norm over dims 1, 2, 3; linear ``O x I`` -> dim 1
(the official JAX layouts are HWIO / IO, hence its axes 0..2 / 0; a port that keeps dim 0 for
PyTorch's linears clips per input column, a known pitfall); tensors of <= 1 dim (biases, WS gains,
scalar skip gains) use the whole-tensor norm. The official code floors ``||G_i||`` at 1e-6 in the
division only. Its trigger is "keep if ``||G_i|| < max_norm``": at equality it multiplies by
``max_norm / ||G_i|| = 1``, so it agrees with the paper's strict ">" used here.

Every parameter is clipped except the classifier's weight (its bias is clipped), see
:func:`clip_parameters`. Weight decay is added by the optimizer, after clipping.

Differences from timm's ``adaptive_clip_grad``: timm's WS gain has shape ``O x 1 x 1 x 1``, so it
clips each gain element on its own; ours (and the official) is a vector ``O`` clipped as a whole.

Speed (``nfrepro.bench.agc``, ``results/bench_agc.csv``): a loop over parameters launches ~10 kernels per tensor. Here the unit
norms of every tensor are concatenated into one flat vector per (device, dtype), the clip factors
are computed on it in a handful of kernels, and one ``torch._foreach_mul_`` applies them. On the
CPU, where reading a tensor costs no device sync, tensors with no clipped unit are skipped.

Non-finite gradients are not repaired (neither the paper nor the official code does): a unit
whose ``||G_i||`` is NaN fails the trigger and passes unchanged; one whose norm is inf is
multiplied by ``lambda max(||W_i||, eps) / inf = 0``, so its inf entries become NaN and its finite
ones 0. Either way the step that follows is poisoned, as it would be without clipping; the
statistics count such units (``num_nonfinite``) so that a caller can skip the step or stop the
run (the engine stops a run whose loss is not finite, :mod:`nfrepro.engine.training`).

The optimizer wrapper that clips before every step is :class:`nfrepro.optim.agc_optimizer.AGC`.
"""
from __future__ import annotations

import math
import numbers
from collections import defaultdict
from typing import Any, Iterable

import torch
import torch.nn as nn

CLIPPING = 0.01  # lambda for batch 1024-4096 (§5.1); smaller lambda at larger batch (§4.1)
EPS = 1e-3  # floor on ||W_i||: zero-initialised weights (skip gains, biases) can still move
GRAD_NORM_FLOOR = 1e-6  # official: max(||G_i||, 1e-6) in the division, against division by zero

Params = torch.Tensor | Iterable[torch.Tensor]


def _check_hyperparameters(clipping: float, eps: float) -> None:
    for name, value in (("clipping", clipping), ("eps", eps)):
        if isinstance(value, bool) or not isinstance(value, (numbers.Real, torch.Tensor)):
            raise TypeError(f"AGC {name} must be a number, got {value!r} ({type(value).__name__})")
    if not (clipping > 0 and math.isfinite(clipping)):  # also rejects NaN; inf would never clip
        raise ValueError(f"AGC clipping (lambda) must be finite and > 0, got {clipping!r}; the paper "
                         f"uses 0.01 at batch 1024-4096 (to turn AGC off, do not wrap the optimizer)")
    if not (eps > 0 and math.isfinite(eps)):
        raise ValueError(f"AGC eps must be > 0 (it floors ||W_i|| so that zero-initialised "
                         f"parameters can move), got {eps!r}; the paper uses 1e-3")


def _with_grads(parameters: Params) -> list[torch.Tensor]:
    params = [parameters] if isinstance(parameters, torch.Tensor) else parameters
    out = list({id(p): p for p in params if p.grad is not None}.values())  # a repeat is clipped once
    if any(p.grad.is_sparse for p in out):
        raise ValueError("AGC does not support sparse gradients (unit norms need dense rows)")
    return out


def unitwise_norm(x: torch.Tensor) -> torch.Tensor:
    """||x_i|| per output unit: over dims 1.. for >= 2-d tensors (shape ``O``), whole tensor else."""
    if x.ndim <= 1:
        return torch.linalg.vector_norm(x)
    return torch.linalg.vector_norm(x, dim=tuple(range(1, x.ndim)))


def _norm_dtype(dtype: torch.dtype) -> torch.dtype | None:
    """Accumulate fp16 / bf16 norms in fp32 (``None``: keep the tensor's own dtype)."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else None


def _row_shape(x: torch.Tensor) -> tuple[int, ...]:
    """Shape that broadcasts one factor per unit over ``x``: ``(O, 1, .., 1)``, or all ones."""
    return (-1,) + (1,) * (x.ndim - 1) if x.ndim > 1 else (1,) * x.ndim


def _stats(num_units: int, num_clipped: torch.Tensor, num_nonfinite: torch.Tensor) -> dict[str, Any]:
    return {"num_units": num_units, "num_clipped": num_clipped,
            "frac_units_clipped": num_clipped / max(num_units, 1), "num_nonfinite": num_nonfinite}


@torch.no_grad()
def adaptive_grad_clip_reference_(parameters: Params, clipping: float = CLIPPING,
                                  eps: float = EPS) -> dict[str, Any]:
    """AGC as a plain loop over parameters and their units: the readable reference.

    Same contract as :func:`adaptive_grad_clip_`; used by the tests and the benchmark.
    """
    _check_hyperparameters(clipping, eps)
    num_units, num_clipped, num_nonfinite = 0, 0, 0
    for p in _with_grads(parameters):
        g = p.grad
        up = torch.float32 if _norm_dtype(p.dtype) else p.dtype  # fp16 / bf16 norms in fp32
        w_norm = unitwise_norm(p.detach().to(up)).clamp_min(eps)  # max(||W_i||, eps), shape O or ()
        g_norm = unitwise_norm(g.to(up))  # ||G_i||
        max_norm = clipping * w_norm
        trigger = g_norm > max_norm  # ||G_i|| / max(||W_i||, eps) > lambda
        scale = max_norm / g_norm.clamp_min(GRAD_NORM_FLOOR)  # lambda max(||W_i||, eps) / ||G_i||
        shape = _row_shape(g)  # broadcast each unit's factor over its row
        g.copy_(torch.where(trigger.view(shape), g * scale.view(shape), g))
        num_units += trigger.numel()
        num_clipped += int(trigger.sum())
        num_nonfinite += int((~torch.isfinite(g_norm)).sum())
    return _stats(num_units, torch.tensor(num_clipped), torch.tensor(num_nonfinite))


@torch.no_grad()
def adaptive_grad_clip_(parameters: Params, clipping: float = CLIPPING, eps: float = EPS,
                        stats: bool = True) -> dict[str, Any]:
    """Clip the gradients of ``parameters`` unit-wise in place (§4); vectorised.

    Parameters whose ``.grad`` is None are skipped. Returns ``{"num_units": int, "num_clipped":
    0-d tensor, "frac_units_clipped": 0-d tensor, "num_nonfinite": 0-d tensor}`` (units whose
    gradient norm is NaN or inf: see the module docstring for what clipping does to them): the counts stay on the parameters' device so
    that clipping never waits for the GPU; ``float(stats["frac_units_clipped"])`` is the one sync
    a logger pays. ``stats=False`` returns ``{}`` and saves two small kernels per device.
    """
    _check_hyperparameters(clipping, eps)
    groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = defaultdict(list)
    for p in _with_grads(parameters):
        groups[(p.device, p.dtype)].append(p)
    num_units, counts = 0, []
    for (device, dtype), params in groups.items():
        n, count = _clip_group_(params, clipping, eps, _norm_dtype(dtype), stats)
        num_units += n
        counts.append(count)
    if not stats:
        return {}
    if not counts:
        return _stats(0, torch.zeros((), dtype=torch.int64), torch.zeros((), dtype=torch.int64))
    total = counts[0]  # (clipped, non-finite)
    for count in counts[1:]:
        total = total + count.to(total.device, non_blocking=True)
    return _stats(num_units, total[0], total[1])


def _unit_norms(tensors: list[torch.Tensor], num_nd: int, dtype: torch.dtype | None) -> torch.Tensor:
    """Flat vector of the unit norms of ``tensors``: the first ``num_nd`` are >= 2-d, the rest <= 1-d."""
    # per tensor, one reduction over dims 1.. (shape O); one foreach call for all the small ones
    parts = [torch.linalg.vector_norm(t, dim=tuple(range(1, t.ndim)), dtype=dtype)
             for t in tensors[:num_nd]]
    if len(tensors) > num_nd:
        parts += [n.view(1) for n in torch._foreach_norm(tensors[num_nd:], 2, dtype=dtype)]
    return torch.cat(parts)  # shape (total units,)


def _clip_group_(params: list[torch.Tensor], clipping: float, eps: float,
                 norm_dtype: torch.dtype | None, stats: bool) -> tuple[int, torch.Tensor | None]:
    """AGC on parameters sharing one device and dtype; returns (number of units, counts of clipped
    and of non-finite units as one 2-vector, or None when ``stats`` is False)."""
    params = [p for p in params if p.ndim > 1] + [p for p in params if p.ndim <= 1]
    num_nd = sum(p.ndim > 1 for p in params)
    grads = [p.grad for p in params]
    sizes = [p.shape[0] if p.ndim > 1 else 1 for p in params]  # units per tensor

    max_norm = _unit_norms(params, num_nd, norm_dtype)  # no_grad: no detach() needed
    max_norm = max_norm.clamp_min_(eps).mul_(clipping)  # lambda max(||W_i||, eps)
    g_norm = _unit_norms(grads, num_nd, norm_dtype)  # ||G_i||
    trigger = g_norm > max_norm
    scale = torch.where(trigger, max_norm / g_norm.clamp_min_(GRAD_NORM_FLOOR), 1.0)

    if params[0].device.type == "cpu":
        # reading a CPU tensor costs no sync: skip tensors with no clipped unit (x * 1 == x anyway)
        ends = torch.tensor(sizes).cumsum(0)
        per_tensor = torch.diff(trigger.cumsum(0)[ends - 1], prepend=torch.zeros(1, dtype=torch.int64))
        keep = per_tensor.nonzero().flatten().tolist()
        count = per_tensor.sum() if stats else None
    else:
        keep = range(len(params))
        count = trigger.sum() if stats else None
    if stats:
        count = torch.stack([count, (~torch.isfinite(g_norm)).sum()])
    if keep:
        scales = scale.split(sizes)  # views, no copies
        torch._foreach_mul_([grads[i] for i in keep],
                            [scales[i].view(_row_shape(grads[i])) for i in keep])
    return len(scale), count


def unwrap_model(model: nn.Module) -> nn.Module:
    """The user's model inside DDP / DataParallel (``.module``) and ``torch.compile`` (``._orig_mod``)."""
    while True:
        inner = getattr(model, "_orig_mod", None)  # torch.compile's OptimizedModule
        if inner is None and isinstance(model, (nn.parallel.DistributedDataParallel,
                                                nn.parallel.DataParallel)):
            inner = model.module
        if not isinstance(inner, nn.Module):
            return model
        model = inner


CLASSIFIER_MARK = "_nfrepro_classifier"  # set on a classifier weight (nfrepro.models.head, mark_classifier)


def mark_classifier(model: nn.Module) -> None:
    """Tag ``model.get_classifier().weight`` so that :class:`~nfrepro.optim.AGC` can warn when it is
    handed every parameter of the model (the classifier included) instead of ``clip_parameters``."""
    weight = getattr(unwrap_model(model).get_classifier(), "weight", None)
    if isinstance(weight, torch.Tensor):
        setattr(weight, CLASSIFIER_MARK, True)


def first_conv(model: nn.Module) -> nn.Conv2d:
    """The first ``nn.Conv2d`` of ``model.stem`` (of the model when it has no stem): the layer
    §4.1 says "can often be left unclipped"."""
    base = unwrap_model(model)
    stem = getattr(base, "stem", None)
    search = stem if isinstance(stem, nn.Module) else base
    conv = next((m for m in search.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise ValueError(f"exclude_first_conv: no nn.Conv2d in {type(search).__name__}")
    return conv


def clip_parameters(model: nn.Module, clip_classifier: bool = False, exclude_first_conv: bool = False,
                    exclude_stages: Iterable[int] = (), exclude_skip_gains: bool = False,
                    exclude: Iterable[nn.Module | torch.Tensor] = ()) -> list[nn.Parameter]:
    """The parameters AGC should clip: all but the classifier weight (its bias is clipped).

    The classifier is ``model.get_classifier()`` (DESIGN.md model contract), matched by identity,
    so wrapping the model in DDP or ``torch.compile`` (which prefix every name) changes nothing.
    ``exclude_first_conv`` leaves all parameters (weight, WS gain, bias) of the first ``nn.Conv2d``
    in ``model.stem`` unclipped (§4.1: "the first convolution can often be left unclipped");
    ``exclude_stages`` leaves every parameter of the blocks whose ``block.stage`` is listed.
    ``exclude_skip_gains`` leaves each block's SkipInit gain (``block.skip_gain``) unclipped: a
    departure from the paper, which clips them, for short runs in which a clipped gain that starts
    at 0 can hardly move (its norm is floored at ``eps``; notebook 02 measures what that costs).
    ``exclude`` leaves the listed parameters, or every parameter of the listed modules, unclipped:
    for a model without ``get_classifier()`` (a torchvision ResNet: ``exclude=[model.fc]``) it
    names the classifier in its place.
    """
    base = unwrap_model(model)
    excluded: set[int] = set()
    for item in exclude:
        if isinstance(item, nn.Module):
            excluded.update(id(p) for p in item.parameters())
        elif isinstance(item, torch.Tensor):
            excluded.add(id(item))
        else:
            raise TypeError(f"exclude takes modules or parameters, got {type(item).__name__}")
    if not clip_classifier and not excluded:
        if not callable(getattr(base, "get_classifier", None)):
            raise TypeError(
                f"{type(base).__name__} has no get_classifier(), so AGC cannot tell which layer is "
                f"the classifier (the paper leaves it unclipped). Pass it explicitly, e.g. "
                f"clip_parameters(model, exclude=[model.fc]) or AGC.from_model(model, optimizer, "
                f"exclude=[model.fc]), or pass clip_classifier=True to clip every parameter.")
    if not clip_classifier and callable(getattr(base, "get_classifier", None)):
        weight = getattr(base.get_classifier(), "weight", None)  # None for nn.Identity heads
        if isinstance(weight, torch.Tensor):
            excluded.add(id(weight))
    if exclude_first_conv:
        excluded.update(id(p) for p in first_conv(base).parameters())
    if exclude_skip_gains:
        blocks = getattr(base, "blocks", None)
        gains = [getattr(b, "skip_gain", None) for b in (blocks if isinstance(blocks, nn.Module) else ())]
        gains = [g for g in gains if isinstance(g, nn.Parameter)]
        if not gains:
            raise ValueError(f"exclude_skip_gains: {type(base).__name__} has no model.blocks[i].skip_gain "
                             f"parameter (built without SkipInit gains?); drop the option")
        excluded.update(id(g) for g in gains)
    wanted = set(exclude_stages)
    if wanted:
        blocks = getattr(base, "blocks", None)
        if not isinstance(blocks, nn.Module):
            raise ValueError(f"exclude_stages needs model.blocks (a flat sequence of residual blocks with .stage); "
                             f"{type(base).__name__} has none")
        found = set()
        for i, block in enumerate(blocks):
            if not hasattr(block, "stage"):
                raise ValueError(f"exclude_stages: model.blocks[{i}] has no .stage attribute")
            found.add(block.stage)
            if block.stage in wanted:
                excluded.update(id(p) for p in block.parameters())
        if wanted - found:
            raise ValueError(f"exclude_stages: no block has stage {sorted(wanted - found)}; "
                             f"the model's stages are {sorted(found)} (0-based)")
    return [p for p in base.parameters() if id(p) not in excluded]
