r"""AGC as an optimizer: wrap any ``torch.optim`` optimizer so that every step clips first (NFNets §4).

The inner optimizer adds weight decay after clipping (official ``optim.py``); ``scaler.step(agc)``
unscales before AGC clips."""
from __future__ import annotations

import warnings
from collections import OrderedDict
from typing import Any, Callable, Iterable

import torch
import torch.nn as nn
from torch.optim import Optimizer

from nfrepro.models.head import CLASSIFIER_MARK
from nfrepro.optim import agc
from nfrepro.optim.agc import CLIPPING, EPS, PAPER_SELECTION, AGCSelection, Params


def _inner(name: str) -> Callable[..., Any]:  # a method that calls the inner optimizer's
    return lambda self, *args, **kwargs: getattr(self.optimizer, name)(*args, **kwargs)


def _inner_attribute(name: str) -> property:
    return property(lambda self: getattr(self.optimizer, name),
                    lambda self, value: setattr(self.optimizer, name, value))


class InnerStepError(RuntimeError):
    """The optimizer wrapped by AGC was stepped directly, so its gradients were never clipped."""


class AGC(Optimizer):
    """Wrap any ``torch.optim`` optimizer: :meth:`step` clips ``parameters`` (§4), then steps.

    ``param_groups``, ``state``, ``defaults``, ``state_dict()`` are the inner optimizer's; ``last_stats``
    the latest clip's statistics. Stepping the inner optimizer directly raises; handing AGC the
    classifier weight warns (§4.1), so does the first non-finite weight or gradient (unless
    ``warn_nonfinite=False``: the check is a device sync per step). A ``closure`` runs once, first.
    """

    _step_supports_amp_scaling = False  # a GradScaler unscales before step(), and skips it on infs

    def __init__(self, optimizer: Optimizer, parameters: Params, clipping: float = CLIPPING, *,
                 eps: float = EPS, stats: bool = True, clip_classifier: bool = False,
                 warn_nonfinite: bool = True):
        # Optimizer.__init__ is not called: it would build param_groups of its own.
        if not isinstance(optimizer, Optimizer) or isinstance(optimizer, AGC):
            raise TypeError(f"AGC wraps a torch.optim.Optimizer not already wrapped in AGC (that would clip "
                            f"twice), got {type(optimizer).__name__}")
        agc._check_hyperparameters(clipping, eps)
        self.optimizer, self.clipping, self.eps, self.stats = optimizer, clipping, eps, stats
        self.last_stats: dict[str, Any] | None = None  # of the latest step
        self._clip_params: list[torch.Tensor] = []
        self._add_clip_params(parameters)
        if not self._clip_params:  # e.g. a model.parameters() generator already read once
            raise ValueError("AGC was given no parameters to clip: pass a list, or use AGC.from_model")
        if not clip_classifier and any(getattr(p, CLASSIFIER_MARK, False) for p in self._clip_params):
            warnings.warn("AGC was given the classifier's weight to clip; the paper leaves it unclipped. "
                          "Use AGC.from_model(model, optimizer) or nfrepro.clip_parameters(model), or pass "
                          "clip_classifier=True to clip it on purpose.", UserWarning, stacklevel=2)
        self._in_step, self._warn_nonfinite = False, warn_nonfinite and stats  # warn until the first
        self._guard_inner()
        for name in ("step_pre", "step_post", "state_dict_pre", "state_dict_post", "load_state_dict_pre",
                     "load_state_dict_post"):
            setattr(self, f"_optimizer_{name}_hooks", OrderedDict())
        self._patch_step_function()  # step pre/post hooks and profiler labels, as for any optimizer

    @classmethod
    def from_model(cls, model: nn.Module, optimizer: Optimizer, clipping: float = CLIPPING, *,
                   selection: AGCSelection = PAPER_SELECTION,
                   exclude: Iterable[nn.Module | torch.Tensor] = (), stats: bool = True) -> "AGC":
        """Wrap ``optimizer``; clip what :func:`~nfrepro.optim.agc.clip_parameters` selects from
        ``model`` (by default all but the classifier weight), among the parameters it updates."""
        owned = {id(p) for group in optimizer.param_groups for p in group["params"]}
        params = [p for p in agc.clip_parameters(model, selection, exclude=exclude) if id(p) in owned]
        return cls(optimizer, params, clipping, eps=selection.eps, stats=stats,
                   clip_classifier=selection.clip_classifier)

    def _guard_inner(self) -> None:  # stepping the inner optimizer outside step() raises
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

    param_groups, state, defaults = _inner_attribute("param_groups"), _inner_attribute("state"), \
        _inner_attribute("defaults")

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        with torch.enable_grad():
            loss = closure() if closure is not None else None
        self.last_stats = agc.adaptive_grad_clip_(self._clip_params, self.clipping, eps=self.eps,
                                                  stats=self.stats)
        if self._warn_nonfinite and int(self.last_stats["num_nonfinite"]):
            self._warn_nonfinite = False  # once
            warnings.warn(f"AGC: {int(self.last_stats['num_nonfinite'])} unit(s) with a non-finite weight "
                          f"or gradient, which clipping does not repair", RuntimeWarning, stacklevel=2)
        self._in_step = True
        try:
            self.optimizer.step()
        finally:
            self._in_step = False
        return loss

    def add_param_group(self, param_group: dict[str, Any], *, clip: bool = True) -> None:
        """Add a group to the inner optimizer; its parameters are clipped unless ``clip=False``."""
        self.optimizer.add_param_group(param_group)
        if clip:
            self._add_clip_params(self.optimizer.param_groups[-1]["params"])

    # state_dict() and its hooks belong to the inner optimizer
    zero_grad, state_dict = _inner("zero_grad"), _inner("state_dict")
    load_state_dict = _inner("load_state_dict")
    register_state_dict_pre_hook = _inner("register_state_dict_pre_hook")
    register_state_dict_post_hook = _inner("register_state_dict_post_hook")
    register_load_state_dict_pre_hook = _inner("register_load_state_dict_pre_hook")
    register_load_state_dict_post_hook = _inner("register_load_state_dict_post_hook")

    def __getstate__(self) -> dict[str, Any]:  # pickling / deepcopy: the hook (a closure) is re-made on load
        return {k: v for k, v in self.__dict__.items() if k != "_inner_hook"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _in_step=False)
        self._patch_step_function()
        self._guard_inner()

    def __repr__(self) -> str:
        return f"AGC({self.optimizer!r}, clipping={self.clipping}, eps={self.eps})"
