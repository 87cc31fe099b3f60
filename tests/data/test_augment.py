"""nfrepro.data.augment: batched crop / flip, per-example MixUp and CutMix, seeded RandAugment."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nfrepro.data.augment import Augment, cutmix, mixup, random_crop_flip


def _batch(n=8, c=1, h=6, w=6):
    return torch.arange(n * c * h * w, dtype=torch.float32).view(n, c, h, w) % 251


def test_crop_flip_matches_a_per_example_loop():
    x = _batch()
    offsets = torch.tensor([[0, 0], [4, 4], [2, 1], [1, 3]] * 2)
    flips = torch.tensor([False, True] * 4)
    out = random_crop_flip(x, offsets, flips, padding=2)
    padded = F.pad(x, (2, 2, 2, 2))
    for i in range(len(x)):
        r, c = offsets[i].tolist()
        ref = padded[i, :, r:r + 6, c:c + 6]
        torch.testing.assert_close(out[i], ref.flip(2) if flips[i] else ref)
    centre = random_crop_flip(x, torch.full((8, 2), 2), torch.zeros(8, dtype=torch.bool), 2)
    torch.testing.assert_close(centre, x)


def test_mixup_and_cutmix_targets_match_the_pixels():
    x, y = _batch(), F.one_hot(torch.arange(8) % 3, 3).float()
    ratio = torch.linspace(0, 1, 8)
    xm, ym = mixup(x, y, ratio)
    torch.testing.assert_close(xm[3], ratio[3] * x[3] + (1 - ratio[3]) * x[2])
    torch.testing.assert_close(ym.sum(1), torch.ones(8))
    boxes = torch.tensor([[0, 0, 3, 6]] * 8)  # top half pasted from the partner
    xc, yc = cutmix(x, y, boxes)
    torch.testing.assert_close(xc[1, :, :3], x[0, :, :3])
    torch.testing.assert_close(xc[1, :, 3:], x[1, :, 3:])
    torch.testing.assert_close(yc[1], 0.5 * y[1] + 0.5 * y[0])


def test_augment_is_seeded_restorable_and_rank_consistent():
    x, labels = _batch(), torch.arange(8) % 4
    aug = Augment(4, crop_padding=1, flip=True, mix="mixup_cutmix", seed=0)
    state = aug.state_dict()
    out, targets = aug(x, labels)
    assert targets.shape == (8, 4) and torch.allclose(targets.sum(1), torch.ones(8))
    aug.load_state_dict(state)
    again, _ = aug(x, labels)
    torch.testing.assert_close(out, again)
    # two ranks crop and flip exactly as one process does on the whole batch
    whole = Augment(4, crop_padding=2, flip=True, seed=5)(x, labels)[0]
    halves = [Augment(4, crop_padding=2, flip=True, seed=5)(x[r * 4:(r + 1) * 4], labels[:4], r, 2)[0]
              for r in range(2)]
    torch.testing.assert_close(torch.cat(halves), whole)


def test_randaugment_is_per_image_seeded_and_leaves_global_rng_alone():
    x = torch.randint(0, 256, (6, 1, 12, 12)).float()
    aug = Augment(10, randaugment=(2, 5), seed=1)
    before = torch.get_rng_state()
    out = aug(x, torch.zeros(6, dtype=torch.long))[0]
    assert torch.equal(before, torch.get_rng_state())
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 255
    again = Augment(10, randaugment=(2, 5), seed=1)(x, torch.zeros(6, dtype=torch.long))[0]
    torch.testing.assert_close(out, again)
    with pytest.raises(ValueError, match="0-10"):
        Augment(10, randaugment=(4, 15))
    with pytest.raises(ValueError, match="mix"):
        Augment(10, mix="cutout")


def test_randaugment_batched_ops_equal_per_image_ops():
    """Images that drew the same op and sign are transformed in one call: per image, the same
    result as transforming each alone (every op, signed both ways, at level 5)."""
    from torchvision.transforms import v2

    from nfrepro.data.augment import RA_BINS

    ra = v2.RandAugment(num_ops=1, magnitude=5, num_magnitude_bins=RA_BINS)
    images = torch.randint(0, 256, (5, 1, 12, 12), dtype=torch.uint8)
    for name, (magnitudes, signed) in ra._AUGMENTATION_SPACE.items():
        table = magnitudes(RA_BINS, 12, 12)
        for sign in (1.0, -1.0) if signed else (1.0,):
            m = 0.0 if table is None else sign * float(table[5])
            batch = ra._apply_image_or_video_transform(images, name, m, interpolation=ra.interpolation,
                                                       fill=ra._fill)
            alone = torch.cat([ra._apply_image_or_video_transform(
                img[None], name, m, interpolation=ra.interpolation, fill=ra._fill) for img in images])
            assert torch.equal(batch, alone), name


def test_randaugment_draws_are_global_and_sliced_per_rank():
    x = torch.randint(0, 256, (8, 1, 12, 12)).float()
    labels = torch.zeros(8, dtype=torch.long)
    whole = Augment(10, randaugment=(2, 5), seed=3)(x, labels)[0]
    halves = [Augment(10, randaugment=(2, 5), seed=3)(x[r * 4:(r + 1) * 4], labels[:4], r, 2)[0]
              for r in range(2)]
    torch.testing.assert_close(torch.cat(halves), whole)
