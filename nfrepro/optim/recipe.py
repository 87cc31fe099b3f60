r"""The paper's training recipe (NFNets App. A; official ``experiment_nfnets.py``, ``optim.py``).

- SGD with Nesterov momentum 0.9 (official ``optim.SGD``: ``buf = 0.9 buf + g``,
  ``step = g + 0.9 buf``, which is ``torch.optim.SGD(nesterov=True)`` with dampening 0);
- learning rate :math:`\eta = 0.1 \cdot B / 256` (1.6 at batch 4096), linear warmup from 0 over
  5 epochs, then cosine decay to 0, updated every step (official ``WarmupCosineDecay``);
- coupled weight decay 2e-5 (added to the gradient *after* AGC, inside the optimizer step),
  not applied to gains, biases or skip gains;
- label smoothing 0.1; an EMA of the weights with decay :math:`\min(0.99999, (1+t)/(10+t))`;
- AGC with :math:`\lambda = 0.01` on every parameter but the classifier weight (``nfrepro.optim.agc``);
- optional SAM (App. A.4, F5/F6 only): the ascent step uses 20% of the batch.

Dropout and stochastic depth are model constructor arguments, not part of this module.
"""
from __future__ import annotations

import contextlib
import copy
import math
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from nfrepro.models.utils import unwrap_model
from nfrepro.optim.agc import PAPER_SELECTION, AGCSelection, clip_parameters
from nfrepro.optim.agc_optimizer import AGC

BASE_LR = 0.1  # per 256 examples (official ``lr=0.1`` with ``lr_scale_by_bs=True``)
MOMENTUM = 0.9
WEIGHT_DECAY = 2e-5
LABEL_SMOOTHING = 0.1
EMA_DECAY = 0.99999
WARMUP_EPOCHS = 5
SAM_RHO = 0.05  # the paper does not give rho; this is the SAM paper's (Foret et al.) default
SAM_FRACTION = 0.2  # App. A.4: "the ascent step ... on 20% of the batch"
OPTIMIZERS = ("sgd", "adamw")  # the paper's SGD; AdamW for the AGC-with-Adam study (notebook 07)


def scaled_lr(base_lr: float, batch_size: int) -> float:
    r"""Linear scaling rule: :math:`\eta = \eta_{base} \cdot B / 256`."""
    return base_lr * batch_size / 256


def warmup_cosine(step: int, warmup_steps: int, total_steps: int) -> float:
    r"""LR multiplier at ``step`` (the number of updates already made, as the official ``itr``).

    .. math:: f(t) = t / t_w \ (t \le t_w), \qquad
              f(t) = \tfrac12 \left(1 + \cos\left(\pi \frac{t - t_w}{T - t_w}\right)\right)

    so the very first update has learning rate 0, as in the official schedule.
    """
    if warmup_steps > 0 and step <= warmup_steps:
        return step / warmup_steps
    progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def excluded_from_weight_decay(name: str, param: torch.Tensor) -> bool:
    """Gains, biases and skip gains get no weight decay.

    The official code matches Haiku names (``'gain'`` or ``'bias'`` in the name, or ``scale``,
    ``offset``, ``b``); PyTorch names differ by family (BN's scale is ``weight``, a WS gain may be
    stored as ``O x 1 x 1 x 1``), so we exclude a parameter when its own name (last dotted part)
    contains "gain" or "bias", *or* it has at most one dimension. Both rules agree on our models.
    """
    leaf = name.rsplit(".", 1)[-1]
    return param.ndim <= 1 or "gain" in leaf or "bias" in leaf


def param_groups(model: nn.Module, weight_decay: float = WEIGHT_DECAY) -> list[dict[str, Any]]:
    """Two optimizer groups: decayed weights, and gains / biases / skip gains without decay."""

    decay, no_decay = [], []
    for name, p in unwrap_model(model).named_parameters():
        if p.requires_grad:
            (no_decay if excluded_from_weight_decay(name, p) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, lr: float, *, weight_decay: float = WEIGHT_DECAY,
                   momentum: float = MOMENTUM, nesterov: bool = True, optimizer: str = "sgd",
                   clipping: float | None = None, selection: AGCSelection = PAPER_SELECTION,
                   stats: bool = True, warn_nonfinite: bool = True) -> torch.optim.Optimizer:
    """SGD (Nesterov) over :func:`param_groups`, wrapped in AGC when ``clipping`` (lambda) is a number.

    ``optimizer="adamw"`` uses ``torch.optim.AdamW`` (default betas, decoupled weight decay from
    the same groups) instead: not the paper's recipe, the optimizer practitioners often pair with
    AGC (notebook 07 measures which lambda keeps it stable); ``momentum`` and ``nesterov`` do not apply.

    ``clipping=None`` turns AGC off; ``selection`` says which parameters it clips (by default all
    but the classifier weight, :func:`nfrepro.optim.agc.clip_parameters`); ``stats=False`` skips
    the clip statistics (``AGC.last_stats``), as the benchmarks do; ``warn_nonfinite=False``
    skips AGC's per-step check for non-finite weights and gradients (a loop that watches its loss).
    """
    if optimizer == "sgd":
        # foreach: one loop in C++ over the parameters, PyTorch's default on CUDA; asked for on the
        # CPU too, where it saves a per-parameter Python loop (about 5% of a small net's step) and
        # does the same arithmetic (tests/optim/test_recipe.py checks the steps are bit-identical)
        opt: torch.optim.Optimizer = torch.optim.SGD(param_groups(model, weight_decay), lr=lr,
                                                     momentum=momentum, nesterov=nesterov, foreach=True)
    elif optimizer == "adamw":
        opt = torch.optim.AdamW(param_groups(model, weight_decay), lr=lr)
    else:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    if clipping is None:
        return opt
    return AGC(opt, clip_parameters(model, selection), clipping, eps=selection.eps, stats=stats,
               clip_classifier=selection.clip_classifier, warn_nonfinite=warn_nonfinite)


def make_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int,
                   total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step :func:`warmup_cosine` on the optimizer's initial learning rates."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, warmup_steps, total_steps))


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor,
                  label_smoothing: float = LABEL_SMOOTHING) -> torch.Tensor:
    """Softmax cross-entropy with label smoothing, in fp32 (official: logits cast from bf16).

    ``targets`` are class indices or soft N x K rows (MixUp / CutMix). The smoothed target is
    ``(1 - s) y + s / K``, the official formula, which is also PyTorch's.
    """
    return F.cross_entropy(logits.float(), targets, label_smoothing=label_smoothing)


class EMA:
    r"""Exponential moving average of a model's weights and floating buffers (BN statistics).

    .. math:: \bar\theta \leftarrow d_t \bar\theta + (1 - d_t) \theta, \qquad
              d_t = \min(d, (1 + t) / (10 + t))

    with ``t`` the number of updates made before this one (official ``utils.tf1_ema``): the
    warmup lets the average forget the random initialisation quickly. Integer buffers are copied.
    ``decay`` 0.99999 suits the paper's 112k steps; a run of a few thousand steps needs ~0.999.
    """

    def __init__(self, model: nn.Module, decay: float = EMA_DECAY, warmup: bool = True):

        self.decay, self.warmup = decay, warmup
        self.module = copy.deepcopy(unwrap_model(model)).eval().requires_grad_(False)

    def decay_at(self, step: int) -> float:
        return min(self.decay, (1 + step) / (10 + step)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:

        d = self.decay_at(step)
        source = unwrap_model(model)
        ema = [p for p in self.module.parameters()] + [
            b for b in self.module.buffers() if b.is_floating_point()]
        new = [p.detach() for p in source.parameters()] + [
            b for b in source.buffers() if b.is_floating_point()]
        torch._foreach_lerp_(ema, new, 1.0 - d)  # ema + (1 - d) (new - ema)
        for e, b in zip(self.module.buffers(), source.buffers(), strict=True):
            if not b.is_floating_point():
                e.copy_(b)

    def state_dict(self) -> dict[str, Any]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state)


def sam_backward(model: nn.Module, loss_of: Callable[[torch.Tensor, Any], torch.Tensor],
                 x: torch.Tensor, y: Any, rho: float = SAM_RHO,
                 fraction: float = SAM_FRACTION) -> torch.Tensor:
    r"""Leave in ``.grad`` the SAM gradient (Foret et al. 2021) of the batch; return its loss.

    Ascent: :math:`\hat\epsilon = \rho\, g_S / \|g_S\|_2`, with :math:`g_S` the gradient on the
    first ``fraction`` of the batch (App. A.4: 20%, to save compute; under DDP each process
    uses its own 20% without synchronising, as the paper says). Descent: the gradient of the
    whole batch at :math:`\theta + \hat\epsilon`; the weights are then restored, and the caller's
    optimizer step (AGC included) applies that gradient. The official repository has no SAM
    code; ``rho`` defaults to the SAM paper's 0.05 because the NFNets paper does not give it.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    k = max(1, round(fraction * x.shape[0]))
    no_sync = getattr(model, "no_sync", contextlib.nullcontext)  # DDP: no all-reduce for ascent
    with no_sync():
        loss_of(x[:k], y[:k]).backward()
    with torch.no_grad():
        moved = [p for p in params if p.grad is not None]
        saved = [p.detach().clone() for p in moved]  # restore exactly, not by subtracting
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in moved]))
        torch._foreach_add_(moved, [p.grad * (rho / (norm + 1e-12)) for p in moved])
        for p in params:
            p.grad = None
    loss = loss_of(x, y)
    loss.backward()
    with torch.no_grad():
        torch._foreach_copy_(moved, saved)
    return loss
