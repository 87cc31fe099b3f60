"""Data: the small data sets held as tensors, the on-device loader, augmentation, ImageNet folders.

``datasets`` (Fashion-MNIST, CIFAR-10, synthetic), ``loader`` (:class:`TensorLoader`), ``augment``
(batched crop / flip, MixUp, CutMix, RandAugment; NFNets App. A) and ``imagenet`` (class folders
with the paper's evaluation protocol). torchvision is imported only where it is needed (CIFAR-10,
RandAugment, image folders).
"""
from nfrepro.data.datasets import (
                                   DATASETS,
                                   ArrayDataset,
                                   DataIntegrityError,
                                   DataNotFoundError,
                                   load_dataset,
)
from nfrepro.data.loader import TensorLoader

__all__ = ["DATASETS", "ArrayDataset", "DataIntegrityError", "DataNotFoundError", "TensorLoader",
           "load_dataset"]
