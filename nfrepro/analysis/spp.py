r"""Signal Propagation Plots (SPPs): per-block activation statistics at initialisation.

NF-ResNet paper (Brock, De & Smith 2021, arXiv:2101.08692), Fig. 1 and 2; official code
``base.signal_metrics`` and ``nf_resnet.NF_ResNet.__call__(return_metrics=True)``.
A batch of :math:`N(0, 1)` inputs goes through the network once and, for the stem output
(index 0) and the output of every residual block (index ``i + 1`` for block ``i``), we record

.. math::
    \text{avg\_sq\_mean} = \frac1C \sum_c \Big(\mathbb E_{n,h,w}[x_{nchw}]\Big)^2, \qquad
    \text{avg\_var} = \frac1C \sum_c \operatorname{Var}_{n,h,w}[x_{nchw}],

with the *population* variance (the official ``jnp.var``), and ``res_avg_var``: the same
average variance of the block's residual branch, read at ``block.residual_out`` (before
stochastic depth, the skip gain and alpha, as in the official ``NFResBlock``).

Layouts: the official tensors are NHWC and reduce over axes ``[0, 1, 2]``; ours are NCHW and
reduce over every axis except the channel axis 1 (so ``N x C`` tensors also work).

Everything is read through forward hooks on the model contract of ``docs/DESIGN.md``
(``model.stem``, ``model.blocks``, ``block.stage``, ``block.residual_out``), so the same function
measures NF, BatchNorm and unnormalised networks.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Mapping, Sequence

import pandas as pd
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from nfrepro.models import variance
from nfrepro.models.utils import unwrap_model

COLUMNS = ("index", "block", "stage", "block_in_stage", "avg_sq_mean", "avg_var", "res_avg_var")


def channel_stats(x: torch.Tensor) -> tuple[float, float]:
    """``(avg_sq_mean, avg_var)`` of a tensor with channels on axis 1 (official ``signal_metrics``).

    Computed in float64 so that exploding unnormalised activations (variances of 1e30 and more)
    keep their precision.
    """
    if x.ndim < 2:
        raise ValueError(f"channel_stats needs a tensor with a channel axis 1, got shape {tuple(x.shape)}")
    x = x.detach().to(torch.float64)
    dims = (0,) + tuple(range(2, x.ndim))          # every axis but channels: N, H, W
    mean = x.mean(dim=dims, keepdim=True)            # 1 x C x 1 x 1
    var = (x - mean).square().mean(dim=dims)         # population variance (ddof = 0), C
    return float(mean.square().mean()), float(var.mean())


def check_contract(model: nn.Module) -> tuple[nn.Module, list[nn.Module]]:
    """``(stem, blocks)`` of a model following the contract, else a ``TypeError`` saying what is missing."""
    name = type(model).__name__
    how = ("signal_propagation needs the nfrepro model contract (docs/DESIGN.md): `model.stem`, "
           "`model.blocks` (residual blocks in order), `block.stage` and `block.residual_out`")
    stem = getattr(model, "stem", None)
    if not isinstance(stem, nn.Module):
        raise TypeError(f"{name} has no `stem` module. {how}.")
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, (nn.Sequential, nn.ModuleList)) or len(blocks) == 0:
        raise TypeError(f"{name}.blocks must be a non-empty nn.Sequential of residual blocks. {how}.")
    blocks = list(blocks)
    for i, block in enumerate(blocks):
        stage = getattr(block, "stage", None)
        if isinstance(stage, bool) or not isinstance(stage, int):
            raise TypeError(f"{name}.blocks[{i}] ({type(block).__name__}) has no integer `stage`. {how}.")
        if not isinstance(getattr(block, "residual_out", None), nn.Module):
            raise TypeError(f"{name}.blocks[{i}] ({type(block).__name__}) has no `residual_out` "
                            f"module (an nn.Identity hook point on the residual branch). {how}.")
    stages = [b.stage for b in blocks]
    if stages != sorted(stages):
        raise TypeError(f"{name}.blocks: `stage` must not decrease along the blocks, got {stages}.")
    return stem, blocks


def _block_in_stage(stages: Sequence[int]) -> list[int]:
    """0-based position of each block inside its stage (0 = the stage's transition block)."""
    out, prev, j = [], None, 0
    for s in stages:
        j = 0 if s != prev else j + 1
        out.append(j)
        prev = s
    return out


@torch.no_grad()
def signal_propagation(model: nn.Module, x: torch.Tensor, batch_stats: bool = True) -> pd.DataFrame:
    """Signal-propagation statistics of ``model`` on the input batch ``x``.

    One row for the stem (``index`` 0, ``block`` "stem", ``stage`` -1) and one per residual block
    (``index`` i + 1, ``block`` "blocks.i"), with ``block_in_stage`` (0 = transition block),
    ``avg_sq_mean``, ``avg_var`` and ``res_avg_var`` (NaN for the stem).

    The model runs once, in eval mode (no stochastic depth or dropout) and without gradients;
    every module's training flag is restored afterwards and every hook removed, even on error.
    With ``batch_stats=True`` (the default) BatchNorm layers normalise with the batch's own
    statistics, as in the paper's SPPs: at initialisation the running averages are still 0 and 1,
    so eval-mode BatchNorm would be the identity. Their running averages are left untouched.
    ``x`` is cast to the model's parameter dtype and device (run an exploding unnormalised net
    in float64 to keep its variances finite).
    """
    model = unwrap_model(model)
    stem, blocks = check_contract(model)
    param = next(model.parameters(), None)
    if param is not None:
        x = x.to(device=param.device, dtype=param.dtype)

    rows: list[dict] = []
    residual: dict[int, list[float]] = {}

    def record(index: int, label: str, stage: int, in_stage: int):
        def hook(_module, _inputs, output):
            if not torch.is_tensor(output):
                raise TypeError(f"{label}: expected a tensor output for signal propagation, "
                                f"got {type(output).__name__}")
            sq_mean, var = channel_stats(output)
            rows.append(dict(index=index, block=label, stage=stage, block_in_stage=in_stage,
                             avg_sq_mean=sq_mean, avg_var=var))
        return hook

    def record_residual(i: int):
        def hook(_module, _inputs, output):
            residual.setdefault(i, []).append(channel_stats(output)[1])
        return hook

    stages = [b.stage for b in blocks]
    handles = [stem.register_forward_hook(record(0, "stem", -1, -1))]
    for i, (block, in_stage) in enumerate(zip(blocks, _block_in_stage(stages), strict=True)):
        handles.append(block.register_forward_hook(record(i + 1, f"blocks.{i}", block.stage, in_stage)))
        handles.append(block.residual_out.register_forward_hook(record_residual(i)))

    flags = {m: m.training for m in model.modules()}
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)] if batch_stats else []
    saved = [{k: b.clone() for k, b in m.named_buffers(recurse=False)} for m in norms]
    try:
        model.eval()
        for m in norms:
            m.train()  # batch statistics; the running averages are restored below
        model(x)
    finally:
        for h in handles:
            h.remove()
        for m, buffers in zip(norms, saved, strict=True):
            for k, b in buffers.items():
                getattr(m, k).copy_(b)
        for m, flag in flags.items():
            m.training = flag

    if len(rows) != len(blocks) + 1:
        raise RuntimeError(f"expected the stem and {len(blocks)} blocks to run once each, recorded "
                           f"{len(rows)} outputs: does forward() call every block of `model.blocks`?")
    for i, values in residual.items():
        if len(values) != 1:
            raise RuntimeError(f"blocks.{i}.residual_out ran {len(values)} times in one forward pass")
    df = pd.DataFrame(rows).sort_values("index", ignore_index=True)
    df["res_avg_var"] = [math.nan] + [residual.get(i, [math.nan])[0] for i in range(len(blocks))]
    return df[list(COLUMNS)]


ID_COLUMNS = ("net", "index", "block", "stage", "block_in_stage")


def to_long(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Tidy table of several SPPs: one row per net, SPP index and metric (``value`` column).

    ``frames`` maps a net's label to its :func:`signal_propagation` frame (plus any extra metric
    columns, such as ``expected_var``). Rows whose value is NaN (the stem's residual variance)
    are dropped.
    """
    wide = pd.concat({k: v for k, v in frames.items()}, names=["net"]).reset_index(level=0)
    metrics = [c for c in wide.columns if c not in ID_COLUMNS]
    long = wide.melt(id_vars=list(ID_COLUMNS), value_vars=metrics, var_name="metric")
    return long.dropna(subset=["value"]).reset_index(drop=True)


def model_alpha(model: nn.Module) -> float:
    """The model's alpha: ``model.alpha``, else the (common) ``alpha`` of its blocks."""
    model = unwrap_model(model)
    alpha = getattr(model, "alpha", None)
    if alpha is None:
        found = {float(b.alpha) for b in getattr(model, "blocks", []) if hasattr(b, "alpha")}
        if len(found) != 1:
            raise ValueError(f"{type(model).__name__} exposes no single alpha (model.alpha or "
                             f"block.alpha); pass alpha= explicitly")
        alpha = found.pop()
    return float(alpha)


def expected_variances(model: nn.Module, alpha: float | None = None) -> pd.Series:
    """The NF theory line of an SPP, indexed like its rows: 1 for the stem, then each block's
    expected output variance (:func:`nfrepro.models.variance.expected_variances`: the official
    ``expected_std`` bookkeeping, ``1 + (j + 1) alpha^2`` for the ``j``-th block of a stage; it holds
    with skip gains 1, with SkipInit gains 0 every block is the identity)."""
    _, blocks = check_contract(unwrap_model(model))
    alpha = model_alpha(model) if alpha is None else float(alpha)
    depths = list(Counter(b.stage for b in blocks).values())   # blocks per stage (stages non-decreasing)
    values = [1.0] + variance.expected_variances(depths, alpha)
    return pd.Series(values, index=pd.RangeIndex(len(values), name="index"), name="expected_var")
