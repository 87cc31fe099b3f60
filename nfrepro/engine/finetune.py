"""What fine-tuning a pre-trained net adds to a run: a frozen backbone, and BatchNorm statistics.

NFNets §6 (Table 4) fine-tunes JFT-300M-pre-trained NF- and BN-ResNets on ImageNet. Two choices
that a fine-tuning run must make explicit, the run's configuration names them
(:class:`~nfrepro.engine.config.TrainConfig` ``freeze_backbone``, ``bn_reestimate``):

* **a linear probe** trains the classifier only: every other parameter is frozen and the backbone
  stays in eval mode, so a BatchNorm layer normalises with the running statistics it brought
  (from the source task, or re-estimated) and does not update them;
* **BatchNorm statistics**: a pre-trained BN net carries running means and variances of the
  *source* data. Trained in train mode, BN normalises each batch with its own statistics and its
  running averages move to the target data (momentum 0.1: after k steps the source's share is
  0.9^k); frozen, it keeps the source's unless they are re-estimated on the target images first
  (:func:`reestimate_bn_statistics`). NF nets have no such state.
"""
from __future__ import annotations

import logging
import os
import warnings
from typing import Iterable

import torch
import torch.nn as nn

from nfrepro.models.pretrained import load_pretrained
from nfrepro.models.utils import unwrap_model

BatchNorm = nn.modules.batchnorm._BatchNorm
logger = logging.getLogger(__name__)


def load_weights(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """The fine-tuning load (:func:`~nfrepro.models.pretrained.load_pretrained`, ``strict=False``).
    A fresh classifier for the target's classes is what a fine-tuning run asks for: logged, not
    warned; anything else (tensors skipped, missing or adapted) stays a warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_pretrained(model, path, strict=False)
    for w in caught:
        text = str(w.message)
        if any(word in text for word in ("skipped", "not in the file", "adapted")):
            warnings.warn(text, UserWarning, stacklevel=2)
        else:
            logger.info(text)
    return model


def freeze_backbone(model: nn.Module) -> nn.Module:
    """Freeze every parameter but the classifier's (``model.get_classifier()``); returns ``model``."""
    bare = unwrap_model(model)
    bare.requires_grad_(False)
    bare.get_classifier().requires_grad_(True)
    return model


def train_mode(model: nn.Module, frozen_backbone: bool = False) -> None:
    """``model.train()``; with a frozen backbone, everything but the classifier stays in eval mode
    (BatchNorm keeps and uses its running statistics; dropout in the head is the classifier's
    input, in eval mode too: a probe trains on the features the frozen net computes)."""
    model.train()
    if frozen_backbone:
        model.eval()
        unwrap_model(model).get_classifier().train()


@torch.no_grad()
def reestimate_bn_statistics(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> int:
    """Replace every BatchNorm layer's running mean and variance by their plain average over
    ``batches`` (one pass in train mode, ``momentum=None``: PyTorch's cumulative average), leaving
    the weights, the layers' momentum and the model's mode as they were. Returns the number of
    BatchNorm layers (0 for an NF net: nothing to do)."""
    layers = [m for m in model.modules() if isinstance(m, BatchNorm)]
    if not layers:
        return 0
    was_training, momenta = model.training, [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    try:
        for x, _ in batches:
            model(x)
    finally:
        for m, momentum in zip(layers, momenta, strict=True):
            m.momentum = momentum
        model.train(was_training)
    return len(layers)
