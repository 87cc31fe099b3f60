"""nfrepro.data.imagenet: the paper's evaluation protocol on ImageNet-style class folders."""
import numpy as np
import pytest
import torch

from nfrepro.data import imagenet
from nfrepro.data.datasets import DataNotFoundError


def test_imagenet_eval_transform_squashes_then_centre_crops():
    from PIL import Image
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 80, 3), dtype=np.uint8))
    out = imagenet.imagenet_eval_transform(32)(img)
    assert out.shape == (3, 32, 32)
    x = F.to_dtype(F.to_image(img), torch.float32, scale=True)
    x = F.resize(x, [64, 64], InterpolationMode.BICUBIC, antialias=False)[:, 16:48, 16:48]
    mean = torch.tensor(imagenet.IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(imagenet.IMAGENET_STD)[:, None, None]
    torch.testing.assert_close(out, (x - mean) / std)


def test_image_folder(tmp_path):
    from PIL import Image

    with pytest.raises(DataNotFoundError):
        imagenet.image_folder(tmp_path / "nope", 32)
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        Image.new("RGB", (40, 30)).save(tmp_path / cls / "0.png")
    ds = imagenet.image_folder(tmp_path, 32)
    assert len(ds) == 2 and ds[1][0].shape == (3, 32, 32) and ds[1][1] == 1


def test_a_corrupt_image_is_named_in_one_line(tmp_path):
    from PIL import Image

    from nfrepro.data.datasets import DataIntegrityError

    (tmp_path / "a").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a" / "good.png")
    (tmp_path / "a" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    dataset = imagenet.image_folder(tmp_path, 16)
    with pytest.raises(DataIntegrityError, match="bad.png is not a readable image"):
        [dataset[i] for i in range(len(dataset))]


def test_a_data_set_root_with_train_and_val_is_refused(tmp_path):
    from PIL import Image
    for split in ("train", "val"):
        (tmp_path / split / "cat").mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / split / "cat" / "a.png")
    with pytest.raises(DataNotFoundError, match="holds train/ and val/.*pass .*val"):
        imagenet.image_folder(tmp_path, 8)
    assert len(imagenet.image_folder(tmp_path / "val", 8).classes) == 1
