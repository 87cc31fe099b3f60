r"""AGC as an optimizer: wrap any ``torch.optim`` optimizer so that every step clips first (NFNets §4).

Usage, with mixed precision (clipping must see unscaled gradients; pass the *wrapper* to the
scaler, which then unscales before :meth:`AGC.step` clips)::

    opt = AGC.from_model(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9,
                                                nesterov=True), clipping=0.01)
    scaler.scale(loss).backward(); scaler.step(opt); scaler.update()

Misuse is caught: stepping the inner optimizer directly (``scaler.step(inner)``) raises, since
no clipping would run; handing AGC every parameter of an nfrepro model, its classifier weight
included, warns (the paper leaves the classifier unclipped, §4.1).

The clipping itself is :func:`nfrepro.optim.agc.adaptive_grad_clip_`; which parameters to clip,
:func:`nfrepro.optim.agc.clip_parameters`. Weight decay is added by the inner optimizer, after
clipping (official ``optim.py``).
"""
from __future__ import annotations

import warnings
from collections import OrderedDict
from typing import Any, Callable, Iterable

import torch
import torch.nn as nn
from torch.optim import Optimizer

from nfrepro.optim.agc import (
    CLASSIFIER_MARK,
    CLIPPING,
    EPS,
    Params,
    _check_hyperparameters,
    adaptive_grad_clip_,
    clip_parameters,
)


class InnerStepError(RuntimeError):
    """The optimizer wrapped by AGC was stepped directly, so its gradients were never clipped."""


class AGC(Optimizer):
    """Wrap any ``torch.optim`` optimizer: :meth:`step` clips ``parameters`` (§4), then steps.

    ``param_groups``, ``state`` and ``defaults`` are the inner optimizer's own objects, so LR
    schedulers, ``zero_grad`` and checkpoints behave as with the inner optimizer, and
    ``state_dict()`` is the inner one's (interchangeable with a checkpoint of the bare optimizer).
    ``last_stats`` holds the statistics of the latest clip (see :func:`adaptive_grad_clip_`).

    GradScaler: pass the wrapper (``scaler.step(agc)``, ``scaler.unscale_(agc)``), never the inner
    optimizer. ``_step_supports_amp_scaling = False`` makes the scaler unscale the gradients
    before :meth:`step` even when the inner optimizer is a fused one that could take scaled
    gradients, and when it finds infs it skips :meth:`step`, so no clip runs on them.
    A ``closure`` is evaluated once, before clipping (LBFGS-style re-evaluation is unsupported).
    """

    _step_supports_amp_scaling = False

    def __init__(self, optimizer: Optimizer, parameters: Params, clipping: float = CLIPPING,
                 eps: float = EPS, stats: bool = True, clip_classifier: bool = False):
        # Optimizer.__init__ is not called: it would build param_groups of its own.
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"AGC wraps a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if isinstance(optimizer, AGC):
            raise TypeError("this optimizer is already wrapped in AGC: wrapping it again clips twice")
        _check_hyperparameters(clipping, eps)
        self.optimizer, self.clipping, self.eps, self.stats = optimizer, clipping, eps, stats
        self.last_stats: dict[str, Any] | None = None
        self._clip_params: list[torch.Tensor] = []
        self._add_clip_params(parameters)
        if not clip_classifier and any(getattr(p, CLASSIFIER_MARK, False) for p in self._clip_params):
            warnings.warn("AGC was given the classifier's weight to clip (every parameter of the "
                          "model?); the paper leaves it unclipped. Use AGC.from_model(model, optimizer) "
                          "or AGC(optimizer, nfrepro.clip_parameters(model)); pass clip_classifier=True "
                          "to clip it on purpose.", UserWarning, stacklevel=2)
        self._in_step = False
        self._guard_inner()
        for name in ("_optimizer_step_pre_hooks", "_optimizer_step_post_hooks",
                     "_optimizer_state_dict_pre_hooks", "_optimizer_state_dict_post_hooks",
                     "_optimizer_load_state_dict_pre_hooks", "_optimizer_load_state_dict_post_hooks"):
            setattr(self, name, OrderedDict())
        self._patch_step_function()  # step pre/post hooks and profiler labels, as for any optimizer

    @classmethod
    def from_model(cls, model: nn.Module, optimizer: Optimizer, clipping: float = CLIPPING,
                   eps: float = EPS, *, exclude: Iterable[nn.Module | torch.Tensor] = (),
                   clip_classifier: bool = False, exclude_first_conv: bool = False,
                   exclude_stages: Iterable[int] = (), exclude_skip_gains: bool = False,
                   stats: bool = True) -> "AGC":
        """Wrap ``optimizer`` and clip what :func:`~nfrepro.optim.agc.clip_parameters` selects from
        ``model``: every parameter but the classifier weight (``model.get_classifier()``; for a
        model without one, name it: ``exclude=[model.fc]``). Only parameters the optimizer
        updates are clipped (a frozen backbone is left out)."""
        selected = clip_parameters(model, clip_classifier=clip_classifier,
                                   exclude_first_conv=exclude_first_conv, exclude_stages=exclude_stages,
                                   exclude_skip_gains=exclude_skip_gains, exclude=exclude)
        owned = {id(p) for group in optimizer.param_groups for p in group["params"]}
        return cls(optimizer, [p for p in selected if id(p) in owned], clipping, eps, stats,
                   clip_classifier=clip_classifier)

    def _guard_inner(self) -> None:
        """A step pre-hook on the inner optimizer: stepping it outside :meth:`step` would skip the clip
        (the usual slip: ``scaler.step(inner)`` instead of ``scaler.step(agc)``)."""
        def check(optimizer, args, kwargs):
            if not self._in_step:
                raise InnerStepError(
                    f"{type(optimizer).__name__} is wrapped by AGC but was stepped directly, so its "
                    f"gradients were not clipped: step the wrapper instead (agc.step(), and with a "
                    f"GradScaler scaler.step(agc) and scaler.unscale_(agc))")
        self._inner_hook = self.optimizer.register_step_pre_hook(check)

    def _add_clip_params(self, parameters: Params) -> None:
        params = [parameters] if isinstance(parameters, torch.Tensor) else list(parameters)
        owned = {id(p) for group in self.optimizer.param_groups for p in group["params"]}
        stray = [tuple(p.shape) for p in params if p.requires_grad and id(p) not in owned]
        if stray:  # e.g. another model's (an EMA copy's) parameters: clipping them does nothing
            raise ValueError(f"AGC: {len(stray)} parameter(s) to clip are not in the optimizer "
                             f"(shapes {stray[:3]}...)")
        self._clip_params += params

    param_groups = property(lambda self: self.optimizer.param_groups,
                            lambda self, value: setattr(self.optimizer, "param_groups", value))
    state = property(lambda self: self.optimizer.state,
                     lambda self, value: setattr(self.optimizer, "state", value))
    defaults = property(lambda self: self.optimizer.defaults,
                        lambda self, value: setattr(self.optimizer, "defaults", value))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.last_stats = adaptive_grad_clip_(self._clip_params, self.clipping, self.eps, self.stats)
        self._in_step = True
        try:
            self.optimizer.step()
        finally:
            self._in_step = False
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def add_param_group(self, param_group: dict[str, Any], clip: bool = True) -> None:
        """Add a group to the inner optimizer; its parameters are clipped unless ``clip=False``."""
        self.optimizer.add_param_group(param_group)
        if clip:
            self._add_clip_params(self.optimizer.param_groups[-1]["params"])

    def state_dict(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state_dict)

    # state_dict hooks belong to the optimizer whose state_dict() runs: the inner one
    def register_state_dict_pre_hook(self, hook, prepend=False):
        return self.optimizer.register_state_dict_pre_hook(hook, prepend)

    def register_state_dict_post_hook(self, hook, prepend=False):
        return self.optimizer.register_state_dict_post_hook(hook, prepend)

    def register_load_state_dict_pre_hook(self, hook, prepend=False):
        return self.optimizer.register_load_state_dict_pre_hook(hook, prepend)

    def register_load_state_dict_post_hook(self, hook, prepend=False):
        return self.optimizer.register_load_state_dict_post_hook(hook, prepend)

    def __getstate__(self) -> dict[str, Any]:  # pickling / deepcopy: the base class's is for its own layout
        state = dict(self.__dict__)
        state.pop("_inner_hook", None)   # the hook is a closure; re-made on load
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._patch_step_function()
        self._in_step = False
        self._guard_inner()

    def __repr__(self) -> str:
        return f"AGC(clipping={self.clipping}, eps={self.eps}, clipped tensors={len(self._clip_params)}, " \
               f"optimizer={self.optimizer!r})"
