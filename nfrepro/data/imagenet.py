"""ImageNet-style class folders with the paper's evaluation protocol.

NFNets App. A; official ``dataset.py``.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from nfrepro.data.datasets import DataIntegrityError, DataNotFoundError
from nfrepro.models.protocol import EVAL_RESIZE_MARGIN, IMAGENET_MEAN, IMAGENET_STD

# The protocol's numbers (official dataset.MEAN_RGB / STDDEV_RGB / 'resize_crop_32') live with the
# models (their pretrained_cfg); re-exported here for the data pipeline.
__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "imagenet_eval_transform", "image_folder"]


def imagenet_eval_transform(image_size: int, antialias: bool = False):
    """The paper's eval protocol: bicubic resize to ``(s+32) x (s+32)`` ignoring the aspect ratio,
    centre crop ``s``, normalise with the ImageNet mean / std.

    Official: ``dataset._decode_and_resize_then_crop`` with ``eval_preproc='resize_crop_32'``,
    ``tf.image.resize`` (no antialiasing) on float pixels, no clamping of the bicubic overshoot.
    We resize float tensors likewise (no clamp, ``antialias=False``); PyTorch's bicubic kernel
    uses a = -0.75 where TensorFlow's uses a = -0.5, a small difference we do not remove.
    """
    from torchvision.transforms import InterpolationMode, v2

    return v2.Compose([
        v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
        v2.Resize((image_size + EVAL_RESIZE_MARGIN,) * 2, InterpolationMode.BICUBIC, antialias=antialias),
        v2.CenterCrop(image_size), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def _load_image(path: str):
    """torchvision's PIL loader, with a file that is not a readable image named in one line
    (PIL raises ``UnidentifiedImageError`` or ``OSError`` for a truncated one)."""
    from torchvision.datasets.folder import default_loader

    try:
        return default_loader(path)
    except (OSError, ValueError, SyntaxError) as err:
        raise DataIntegrityError(f"{path} is not a readable image ({type(err).__name__}): "
                                 f"remove or replace it") from None


def image_folder(root: str | os.PathLike, image_size: int, antialias: bool = False):
    """An ImageNet-style folder (one sub-folder per class, sorted = class index) for evaluation."""
    from torchvision.datasets import ImageFolder

    root = Path(root)
    if not root.is_dir():
        raise DataNotFoundError(f"image folder {root} does not exist: pass a folder with one "
                                f"sub-folder of images per class (e.g. ImageNet val, sorted by synset)")
    splits = [name for name in ("train", "val") if (root / name).is_dir()]
    if len(splits) == 2:  # the data set's root, not a split: its two splits would be two "classes"
        raise DataNotFoundError(f"{root} holds train/ and val/, so it is a data set's root, not one "
                                f"split: pass {root / 'val'} (one sub-folder per class)")
    try:
        return ImageFolder(str(root), transform=imagenet_eval_transform(image_size, antialias),
                           loader=_load_image)
    except FileNotFoundError as err:
        raise DataNotFoundError(f"no images under {root}: {err}") from err
