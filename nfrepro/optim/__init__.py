"""Optimisation: Adaptive Gradient Clipping (NFNets §4) and the training recipe (App. A).

``agc`` (the unit-wise clipping maths and which parameters to clip), ``agc_optimizer`` (the
:class:`AGC` wrapper around any ``torch.optim`` optimizer) and ``recipe`` (SGD with Nesterov
momentum, warmup-cosine schedule, weight-decay groups, EMA, label smoothing, SAM). Needs torch only.
"""
from nfrepro.optim.agc import (
    adaptive_grad_clip_,
    clip_parameters,
    unitwise_norm,
    unwrap_model,
)
from nfrepro.optim.agc_optimizer import AGC

__all__ = ["AGC", "adaptive_grad_clip_", "clip_parameters", "unitwise_norm", "unwrap_model"]
