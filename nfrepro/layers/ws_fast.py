r"""Scaled WS for training: PyTorch's native batch norm where it computes the same function
(:func:`standardize_weight_fast`, CPU), else an autograd Function with a hand-written backward.

The reference's values (tests hold them equal) in fewer weight-sized passes. Per row ``w`` of fan-in ``N``:
``c = w - mean(w)``, ``s = max(|c|^2, eps)^{-1/2}`` (``|c|^2 = N var``), ``u = c s``, ``out = g u``.
With ``k = <dout, u> = s (<dout, w> - mean(w) sum(dout))``:

.. math::  \frac{\partial L}{\partial g} = k, \qquad
           \frac{\partial L}{\partial w} = g s \left(d_{out} - \overline{d_{out}} - u\,k\right)

where the ``u k`` term vanishes on rows whose floor is active (``s`` is then a constant). The forward
takes four weight-sized passes (mean, centre, a row-wise norm, scale in place) and keeps only per-row
``mean`` and ``s`` (the weight itself is saved, not a standardised copy); the backward reads
``dout`` and ``w`` in a row-wise dot product and a sum, and writes the gradient in two passes.

Channels-last weights are standardised in their memory order, ``O x (kh kw C_in)``, and handed back
with the parameter's strides: an NCHW weight would make the conv of a 1-channel image output NCHW.
"""
from __future__ import annotations

import math

import torch


class _StandardizeWeight(torch.autograd.Function):
    generate_vmap_rule = True  # with forward / setup_context apart: torch.func, torch.compile see through

    @staticmethod
    def forward(weight: torch.Tensor, gain: torch.Tensor, eps: float):
        cl = _channels_last(weight)
        rows = _rows(weight, cl)                                         # O x N
        mean = rows.mean(dim=1, keepdim=True)
        out = rows - mean                                                # c
        sq_norm = torch.linalg.vector_norm(out, dim=1, keepdim=True).square()  # |c|^2 = N var
        scale = torch.rsqrt(torch.clamp(sq_norm, min=eps))
        out.mul_(gain.view(-1, 1) * scale)                               # g s c, in place
        return _unrows(out, weight, cl), mean, scale, sq_norm >= eps

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        weight, gain, _ = inputs
        _, mean, scale, active = output
        ctx.mark_non_differentiable(mean, scale, active)
        ctx.save_for_backward(weight, mean, scale, gain, active)  # the weight itself: no extra memory
        ctx.channels_last = _channels_last(weight)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor, *_unused):
        weight, mean, scale, gain, active = ctx.saved_tensors
        d = _rows(grad_out, ctx.channels_last)
        w = _rows(weight, ctx.channels_last)
        d_sum = d.sum(dim=1, keepdim=True)                               # O x 1
        d_w = torch.linalg.vecdot(d, w, dim=1).unsqueeze(1)              # <dout, w>
        k = (d_w - mean * d_sum) * scale                                 # <dout, u>, u = (w - mean) s
        gs = gain.view(-1, 1) * scale
        # g s (d - mean(d) - u k) = gs d - (gs k s) w + gs (k s mean - mean(d)), k dropped where the
        # floor holds s constant: two weight-sized passes
        ks = k * active * scale
        grad_w = torch.addcmul(gs * (ks * mean - d_sum / d.shape[1]), w, -gs * ks).addcmul_(d, gs)
        return _unrows(grad_w, grad_out, ctx.channels_last), k.view_as(gain), None


def standardize_weight_fast(weight: torch.Tensor, gain: torch.Tensor, eps: float) -> torch.Tensor:
    """Scaled WS for training: on the CPU in eager mode, PyTorch's native batch norm over the ``O x N``
    rows with eps 0 (one op forward and one backward, as timm standardises), kept only when every row
    lies above the floor (``N var >= eps``, read from the op's own inverse deviations); otherwise, and on
    other devices or under compilation, the autograd Function above. The same function either way:
    with no floor active, ``g (w - mean) / sqrt(N var) = (g / sqrt(N)) (w - mean) / sqrt(var)``."""
    if (weight.device.type == "cpu" and not torch.compiler.is_compiling() and not _channels_last(weight)
            and not torch._C._are_functorch_transforms_active()):  # vmap / grad: no data-dependent branch
        rows = weight.reshape(1, weight.shape[0], -1)
        n = rows.shape[2]
        out, _, invstd = torch.ops.aten.native_batch_norm(rows, gain * (1.0 / math.sqrt(n)), None, None, None,
                                                          True, 0.0, 0.0)
        # 1 / sqrt(var) <= sqrt(N / eps): no floor active; a constant row reports 0 (PyTorch's guard for
        # var + eps = 0), and its floored gradient is not batch norm's: the Function takes it. One
        # reduction (min and max; a NaN fails both tests) costs less than four elementwise ops.
        low, high = torch.aminmax(invstd)
        if low.item() > 0 and high.item() <= math.sqrt(n / eps):
            return out.view_as(weight)
    return _StandardizeWeight.apply(weight, gain, eps)[0]


def _channels_last(weight: torch.Tensor) -> bool:  # exactly the channels-last strides, not also NCHW's
    if weight.ndim != 4:
        return False
    o, i, h, w = weight.shape
    return weight.stride() == (h * w * i, 1, w * i, i) != (i * h * w, h * w, w, 1)


def _rows(t: torch.Tensor, channels_last: bool) -> torch.Tensor:  # O x N, channels-last order a view
    if channels_last:
        t = t.permute(0, 2, 3, 1)
    return t.reshape(t.shape[0], -1)


def _unrows(rows: torch.Tensor, like: torch.Tensor, channels_last: bool) -> torch.Tensor:  # inverse of _rows
    if channels_last:
        o, i, h, w = like.shape
        return rows.view(o, h, w, i).permute(0, 3, 1, 2)
    return rows.view(like.shape)
