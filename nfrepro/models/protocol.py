"""The papers' image protocol as model metadata: timm's ``pretrained_cfg`` dict.

NFNets App. A (official ``dataset.py``): train at the variant's ``train_px``; evaluate at
``test_px`` by a bicubic resize of the whole image to ``(test_px + 32)^2`` *ignoring the aspect
ratio*, then a centre crop of ``test_px``; normalise with the ImageNet mean and std (official
``MEAN_RGB`` / ``STDDEV_RGB`` divided by 255). In timm's vocabulary that is
``interpolation="bicubic"``, ``crop_mode="squash"`` and ``crop_pct = test_px / (test_px + 32)``.
The NF-ResNet paper trains and tests its ImageNet models at 224 px (its Table 4 fine-tunes at
224); its code shares the NFNet pipeline, so the same resize-and-crop rule applies.
This module is the one home of these numbers: ``nfrepro.data.imagenet`` reads them from here.
"""
from __future__ import annotations

from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EVAL_RESIZE_MARGIN = 32   # resize to (size + 32)^2, then centre-crop size (official 'resize_crop_32')
INTERPOLATION = "bicubic"


def crop_pct(test_px: int) -> float:
    """The fraction of the resized image the centre crop keeps: ``s / (s + 32)``."""
    return test_px / (test_px + EVAL_RESIZE_MARGIN)


def imagenet_cfg(train_px: int, test_px: int, *, in_chans: int, num_classes: int,
                 first_conv: str, classifier: str = "fc", source: str = "") -> dict[str, Any]:
    """A ``pretrained_cfg`` for an ImageNet model trained at ``train_px`` and tested at ``test_px``."""
    return {
        "input_size": (in_chans, train_px, train_px),
        "test_input_size": (in_chans, test_px, test_px),
        "crop_pct": crop_pct(train_px),            # timm evaluates input_size with this crop
        "test_crop_pct": crop_pct(test_px),
        "crop_mode": "squash",                     # resize both sides to s + 32, ignoring aspect
        "interpolation": INTERPOLATION,
        "mean": IMAGENET_MEAN,                     # of the RGB images the weights were trained on
        "std": IMAGENET_STD,
        "num_classes": num_classes,
        "first_conv": first_conv,
        "classifier": classifier,
        "source": source,
    }


def small_cfg(*, in_chans: int, num_classes: int, first_conv: str) -> dict[str, Any]:
    """A ``pretrained_cfg`` for the 28/32 px nets (not in the papers): no resize, no crop; the data
    sets normalise themselves (``nfrepro.data``)."""
    return {"input_size": (in_chans, 32, 32), "test_input_size": (in_chans, 32, 32), "crop_pct": 1.0,
            "num_classes": num_classes, "first_conv": first_conv, "classifier": "fc",
            "mean": None, "std": None,
            "source": "not in the papers: CPU-sized nets for Fashion-MNIST / CIFAR-10"}
