"""Training augmentation applied to whole batches on the device (NFNets App. A, T2).

The paper's ImageNet recipe is Inception crop + flip, MixUp (alpha 0.2) on half the batch and
CutMix on the other half, then RandAugment; T2 credits MixUp, RandAugment and CutMix with +0.9,
+1.0 and +0.4 points of top-1 for F0. For 28 / 32 px images the crop is the usual small-image
one (zero padding then a random crop back to size) instead of Inception crop.

Order (official ``experiment_nfnets.py``, ``augment_before_mix=False``): crop and flip, then mix,
then RandAugment on the mixed images (clipped to 0-255 and cast to uint8 first, as there).

Departures, on purpose: the official pipeline draws two fresh images for every mixed one; here
each image is mixed with its neighbour in the batch (``roll(1)``, as torchvision's MixUp/CutMix
do), so a batch of N images yields N mixed ones. MixUp and CutMix draw one ratio per example, as
the official code does. RandAugment uses torchvision's ``v2.RandAugment`` ops: its op list and
magnitude ranges are torchvision's, not the official TF ``autoaugment.py``'s (which also applies
each chosen op with a probability drawn from U(0.2, 0.8); torchvision always applies it); the
magnitude is given on the official 0-10 level scale (level m = fraction m / 10 of each op's
range), which torchvision expresses as ``num_magnitude_bins=11``. Levels above 10 (F3+) do not
fit that table and are refused. Geometric magnitudes scale with the image: torchvision translates
by up to 150/331 of the width at level 10 (23% at level 5: 6 px of a 28 px image); the official
code translates by up to 100 px at level 10, 26% of F0's 192 px at level 5. Each image draws its
own op and sign per layer (as torchvision's per-image transform would); images that drew the same
op and sign are transformed together as one batch, which computes the same per-image function in
one call instead of one call per image.

Every random draw comes from one numpy generator whose state is checkpointed. Draws are made for
the global batch and sliced per rank, so N processes crop, flip and draw mixing ratios exactly as
one process would, RandAugment's ops and signs included; the mixing partner (the neighbour within
the rank's slice) is per rank.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

MIX_MODES = (None, "mixup", "cutmix", "mixup_cutmix")
MIXUP_ALPHA = 0.2  # App. A: MixUp with alpha 0.2
RA_BINS = 11  # RandAugment levels 0..10, the official scale (torchvision's num_magnitude_bins)


def random_crop_flip(x: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor,
                     padding: int) -> torch.Tensor:
    """Zero-pad by ``padding``, crop back to ``H x W`` at per-example ``offsets`` (N x 2, in
    ``[0, 2 * padding]``) and mirror the examples where ``flips`` (N, bool) is set."""
    n, c, h, w = x.shape
    if padding > 0:
        padded = F.pad(x, (padding,) * 4)
        rows = offsets[:, 0, None] + torch.arange(h, device=x.device)   # N x H
        cols = offsets[:, 1, None] + torch.arange(w, device=x.device)   # N x W
        # index all four dims so the result is a plain contiguous N x C x H x W tensor (a
        # permuted result has channels-last strides, which DDP on the CPU has crashed on)
        x = padded[torch.arange(n, device=x.device)[:, None, None, None],
                   torch.arange(c, device=x.device)[None, :, None, None],
                   rows[:, None, :, None], cols[:, None, None, :]]
    return torch.where(flips.view(-1, 1, 1, 1), x.flip(3), x)


def mixup(x: torch.Tensor, y: torch.Tensor, ratio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MixUp (Zhang et al. 2018): ``ratio * x + (1 - ratio) * x_partner``, targets likewise.

    ``y`` are one-hot (soft) targets N x K; the partner of example i is example i - 1.
    """
    r = ratio.view(-1, 1, 1, 1)
    return r * x + (1 - r) * x.roll(1, 0), ratio[:, None] * y + (1 - ratio[:, None]) * y.roll(1, 0)


def cutmix(x: torch.Tensor, y: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CutMix (Yun et al. 2019): paste the partner's pixels inside ``boxes`` (N x 4: top, left,
    bottom, right); the targets mix in proportion to the pasted area."""
    _, _, h, w = x.shape
    r = torch.arange(h, device=x.device)[None, :, None]
    c = torch.arange(w, device=x.device)[None, None, :]
    b = boxes[:, :, None, None]
    mask = ((r >= b[:, 0]) & (r < b[:, 2]) & (c >= b[:, 1]) & (c < b[:, 3])).unsqueeze(1).to(x.dtype)
    pasted = mask.mean(dim=(1, 2, 3))  # fraction of the image taken from the partner
    x = (1 - mask) * x + mask * x.roll(1, 0)
    return x, (1 - pasted[:, None]) * y + pasted[:, None] * y.roll(1, 0)


class Augment:
    """Callable ``(x, labels, rank, world_size) -> (x, targets)`` for
    :class:`~nfrepro.data.loader.TensorLoader`.

    ``x`` is a float batch in 0-255 units; targets stay integer labels unless ``mix`` is set,
    then they are soft N x K rows (the loss takes either).
    """

    def __init__(self, num_classes: int, crop_padding: int = 0, flip: bool = False,
                 mix: str | None = None, mixup_alpha: float = MIXUP_ALPHA,
                 randaugment: tuple[int, int] | None = None, seed: int = 0):
        if mix not in MIX_MODES:
            raise ValueError(f"mix must be one of {MIX_MODES}, got {mix!r}")
        if randaugment is not None and not 0 <= randaugment[1] <= 10:
            raise ValueError(f"RandAugment level {randaugment[1]} is outside the official 0-10 scale")
        self.num_classes, self.crop_padding, self.flip = num_classes, crop_padding, flip
        self.mix, self.mixup_alpha, self.randaugment = mix, mixup_alpha, randaugment
        self.rng = np.random.default_rng(seed)

    def __call__(self, x: torch.Tensor, labels: torch.Tensor, rank: int = 0,
                 world_size: int = 1) -> tuple[torch.Tensor, torch.Tensor | Any]:
        n_local, _, h, w = x.shape
        n = n_local * world_size
        part = slice(rank * n_local, (rank + 1) * n_local)

        def draw(values: np.ndarray) -> torch.Tensor:  # global draws -> this rank's slice
            return torch.as_tensor(values[part]).to(x.device, non_blocking=True)

        if self.crop_padding or self.flip:
            offsets = draw(self.rng.integers(0, 2 * self.crop_padding + 1, size=(n, 2)))
            flips = draw(self.rng.random(n) < 0.5) if self.flip else torch.zeros(
                n_local, dtype=torch.bool, device=x.device)
            x = random_crop_flip(x, offsets, flips, self.crop_padding)
        targets: torch.Tensor = labels
        if self.mix is not None:
            targets = F.one_hot(labels, self.num_classes).to(x.dtype)
            ratio = draw(self.rng.beta(self.mixup_alpha, self.mixup_alpha, n).astype(np.float32))
            boxes = draw(self._cutmix_boxes(n, h, w))
            half = n_local // 2 if self.mix == "mixup_cutmix" else (
                n_local if self.mix == "mixup" else 0)
            xm, ym = mixup(x, targets, ratio)
            xc, yc = cutmix(x, targets, boxes)
            x = torch.cat([xm[:half], xc[half:]])
            targets = torch.cat([ym[:half], yc[half:]])
        if self.randaugment is not None:
            x = self._randaugment(x, n, part)
        return x, targets

    def _cutmix_boxes(self, n: int, h: int, w: int) -> np.ndarray:
        """Official ``dataset.cutmix_padding``: a uniform centre and a side ratio sqrt(1 - U)."""
        cy, cx = self.rng.integers(0, h, n), self.rng.integers(0, w, n)
        side = np.sqrt(1 - self.rng.random(n))
        rh, rw = (side * h).astype(int), (side * w).astype(int)
        return np.stack([np.clip(cy - rh // 2, 0, h), np.clip(cx - rw // 2, 0, w),
                         np.clip(cy + rh // 2, 0, h), np.clip(cx + rw // 2, 0, w)], 1)

    def _randaugment(self, x: torch.Tensor, n: int, part: slice) -> torch.Tensor:
        """``layers`` RandAugment ops per image (uint8 round trip, as the official code), drawn for the
        global batch of ``n`` and sliced to this rank's ``part``; grouped by (op, sign), one call each."""
        from torchvision.transforms import v2

        layers, level = self.randaugment
        ra = v2.RandAugment(num_ops=1, magnitude=level, num_magnitude_bins=RA_BINS)
        space = list(ra._AUGMENTATION_SPACE.items())  # name -> (magnitudes(bins, h, w), signed)
        images = x.clamp(0, 255).round().to(torch.uint8)
        h, w = images.shape[-2:]
        for _ in range(layers):
            which = self.rng.integers(0, len(space), n)[part]
            negative = (self.rng.random(n) < 0.5)[part]
            out = images.clone()
            for k, (name, (magnitudes, signed)) in enumerate(space):
                table = magnitudes(RA_BINS, h, w)
                magnitude = 0.0 if table is None else float(table[level])
                # a signed op with a magnitude is applied as +m to some images and -m to others
                for sign in ((1.0, -1.0) if signed and table is not None else (None,)):
                    chosen = which == k
                    if sign is not None:
                        chosen &= negative == (sign < 0)
                    idx = torch.as_tensor(np.flatnonzero(chosen), device=x.device)
                    if len(idx):
                        out[idx] = ra._apply_image_or_video_transform(
                            images[idx], name, (sign or 1.0) * magnitude, interpolation=ra.interpolation,
                            fill=ra._fill)
            images = out
        return images.to(x.dtype)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
