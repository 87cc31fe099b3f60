"""Models: NF-ResNets and their BatchNorm / unnormalised twins, NFNet-F0..F7, and what serves them.

``registry`` (``create_model``, ``list_models``), ``variance`` (the expected-variance and beta
bookkeeping), ``resnet_blocks`` and ``resnet`` (NF-ResNet paper), ``nfnet`` (NFNets Table 1),
``pretrained`` (DeepMind and timm weight files) and ``folding`` (inference-time folding).
Importing this package registers every model.
"""
from nfrepro.models import nfnet, resnet  # noqa: F401  (registers the models)
from nfrepro.models.factory import create_model
from nfrepro.models.folding import fold_for_inference, fold_weight_standardization
from nfrepro.models.nfnet import NFNet
from nfrepro.models.pretrained import load_pretrained
from nfrepro.models.registry import (
           build_model,
           list_models,
           register_model,
           register_variant,
)
from nfrepro.models.resnet import ResNet

__all__ = ["create_model", "build_model", "list_models", "register_model", "register_variant", "NFNet",
           "ResNet",
           "load_pretrained", "fold_for_inference", "fold_weight_standardization"]
