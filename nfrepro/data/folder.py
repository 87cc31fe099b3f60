"""Training on an ImageNet-style folder: ``ROOT/train/<class>/*`` and ``ROOT/val/<class>/*``.

The paper's ImageNet pipeline (NFNets App. A; official ``dataset.py``): training images get an
Inception-style random resized crop (bicubic) and a random flip, then the batch-level MixUp / CutMix
/ RandAugment of :mod:`nfrepro.data.augment` on the device; validation images get the evaluation
protocol of :mod:`nfrepro.data.imagenet` (squash to ``(s+32)^2``, centre crop ``s``).

:class:`FolderLoader` has :class:`~nfrepro.data.loader.TensorLoader`'s interface (global batch
split over ranks, last partial batch dropped, ``state_dict`` for exact resume), so the training
engine runs on it unchanged. Its shuffle and the crop seeds of each epoch come from one seeded
``torch.Generator`` whose state is checkpointed, and each image's crop is drawn from a generator
seeded by the epoch's seed and the image's index, so the batches do not depend on the number of
loader workers, nor on any other use of torch's global RNG. Departure, on purpose: the crop uses
torchvision's ``RandomResizedCrop`` (scale 0.08-1, ratio 3/4-4/3), whose sampling differs in detail
from TensorFlow's ``sample_distorted_bounding_box`` with the official area range (0.08-1).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch.utils.data import DataLoader

from nfrepro.data.datasets import DataNotFoundError
from nfrepro.data.imagenet import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    _load_image,
    imagenet_eval_transform,
)
from nfrepro.data.loader import ShardedLoader

SPLITS = {True: "train", False: "val"}


def split_folder(root: str | os.PathLike | None, train: bool) -> Path:
    """``root/train`` or ``root/val``, or a :class:`DataNotFoundError` saying what is expected."""
    if root is None:
        raise DataNotFoundError("the folder data set needs --data-root: a folder holding train/ and val/, "
                                "each with one sub-folder of images per class (ImageNet's layout)")
    folder = Path(root) / SPLITS[train]
    if not folder.is_dir():
        raise DataNotFoundError(f"{folder} does not exist: --data-root must hold train/ and val/, each "
                                f"with one sub-folder of images per class")
    return folder


def num_classes(root: str | os.PathLike | None) -> int:
    """The number of class sub-folders of ``root/train`` (the class index is their sorted order)."""
    return sum(1 for p in split_folder(root, True).iterdir() if p.is_dir())


def train_transform(image_size: int):
    """Random resized crop (bicubic) and a random flip, kept as uint8 (0-255) for the batch augmentations."""
    from torchvision.transforms import InterpolationMode, v2

    return v2.Compose([v2.ToImage(),
                       v2.RandomResizedCrop(image_size, interpolation=InterpolationMode.BICUBIC,
                                            antialias=True),
                       v2.RandomHorizontalFlip(), v2.ToDtype(torch.uint8)])


class _SeededImages:
    """``dataset[i]`` with torch's RNG seeded from ``(seed, i)``: the same crop for the same image
    and epoch in any worker, in any order (the global RNG state is restored afterwards)."""

    def __init__(self, dataset, indices: list[int], seed: int):
        self.dataset, self.indices, self.seed = dataset, indices, seed

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        index = self.indices[i]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed + 1_000_003 * index) % 2 ** 63)
            return self.dataset[index]


class FolderLoader(ShardedLoader):
    """Batches of an ImageNet-style split on ``device``: normalised float images and class labels.

    Training (``train=True``): this epoch's permutation (:class:`~nfrepro.data.loader.ShardedLoader`),
    each image decoded and cropped, then ``augment`` (0-255 floats) and the ImageNet normalisation on
    the device. Evaluation: every image once, the protocol's transform (which normalises).
    ``subset``: the first N images of the split (sorted by class, then file name).
    """

    def __init__(self, root: str | os.PathLike | None, train: bool, image_size: int, batch_size: int,
                 seed: int = 0, device: str | torch.device = "cpu", augment: Callable | None = None,
                 rank: int = 0, world_size: int = 1, channels_last: bool = False, workers: int = 0,
                 subset: int | None = None):
        from torchvision.datasets import ImageFolder

        transform = train_transform(image_size) if train else imagenet_eval_transform(image_size)
        self.dataset = ImageFolder(str(split_folder(root, train)), transform=transform, loader=_load_image)
        self.num_classes = len(self.dataset.classes)
        size = min(len(self.dataset), subset) if subset else len(self.dataset)
        super().__init__(size, batch_size, train, seed, device, augment, rank, world_size, channels_last,
                         IMAGENET_MEAN, IMAGENET_STD)
        self.workers = workers

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        indices = [int(i) for batch in self._index_batches(torch.device("cpu")) for i in batch]
        seed = int(torch.randint(2 ** 62, (1,), generator=self.generator)) if self.shuffle else 0
        loader = DataLoader(_SeededImages(self.dataset, indices, seed),
                            batch_size=self.batch_size // self.world_size,
                            num_workers=self.workers, pin_memory=self.device.type == "cuda")
        for x, y in loader:
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            if self.shuffle:  # uint8 crops: augment and normalise on the device
                yield self._finish(x, y)
            else:             # the eval transform normalised already
                yield x.contiguous(memory_format=self.memory_format), y
