"""Optimisation: Adaptive Gradient Clipping (NFNets §4) and the training recipe (App. A).

``agc`` (the unit-wise clipping maths and :class:`AGCSelection`, which parameters to clip),
``agc_optimizer`` (the :class:`AGC` wrapper around any ``torch.optim`` optimizer) and ``recipe``
(SGD with Nesterov momentum, warmup-cosine schedule, weight-decay groups, EMA, label smoothing,
SAM). Needs torch only.
"""
from nfrepro.optim.agc import AGCSelection, adaptive_grad_clip_, clip_parameters, unitwise_norm
from nfrepro.optim.agc_optimizer import AGC

__all__ = ["AGC", "AGCSelection", "adaptive_grad_clip_", "clip_parameters", "unitwise_norm"]
