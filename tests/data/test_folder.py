"""nfrepro.data.folder: training on an ImageNet-style folder with the paper's crop, exactly resumable."""
import numpy as np
import pytest
import torch
from conftest import train_killed_after
from PIL import Image

from nfrepro.data.folder import FolderLoader, num_classes
from nfrepro.engine.checkpoint import load_checkpoint
from nfrepro.engine.config import ConfigError, TrainConfig
from nfrepro.engine.training import train


@pytest.fixture
def image_root(tmp_path):
    """A tiny ImageNet-style folder: 2 classes, 12 training and 4 validation images each, 40 x 36 px."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("val", 4)):
        for c, colour in enumerate(((200, 40, 40), (40, 40, 200))):
            folder = tmp_path / "data" / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(rng.normal(colour, 30, size=(36, 40, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return tmp_path / "data"


def test_loader_crops_shards_and_resumes_the_same_batches(image_root):
    loader = FolderLoader(image_root, True, image_size=16, batch_size=8, seed=3)
    assert num_classes(image_root) == loader.num_classes == 2 and len(loader) == 3
    state = loader.state_dict()
    first = [(x.clone(), y.clone()) for x, y in loader]
    assert first[0][0].shape == (8, 3, 16, 16) and first[0][0].dtype == torch.float32
    loader.load_state_dict(state)
    again = list(loader)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
               for a, b in zip(first, again, strict=True))
    workers = FolderLoader(image_root, True, image_size=16, batch_size=8, seed=3, workers=2)
    assert torch.equal(next(iter(workers))[0], first[0][0])  # the crops do not depend on the workers
    halves = [FolderLoader(image_root, True, image_size=16, batch_size=8, seed=3, rank=r, world_size=2)
              for r in range(2)]
    assert torch.equal(torch.cat([next(iter(h))[1] for h in halves]), first[0][1])
    val = FolderLoader(image_root, False, image_size=16, batch_size=5)
    assert sum(len(y) for _, y in val) == 8


def test_train_on_a_folder_resumes_bit_identically(image_root, tmp_path):
    values = dict(model="nf_resnet_small",
                  model_kwargs={"depths": [1, 1], "widths": [4, 8], "small_stem": False},
                  dataset="folder", data_root=str(image_root), image_size=16, batch_size=8, epochs=2,
                  base_lr=0.4, warmup_epochs=0.5, clipping=0.05, mix="mixup", ema_decay=0.9, progress=False)
    whole = train(TrainConfig(**values, run_dir=str(tmp_path / "whole")))
    assert whole.status == "completed" and 0 <= whole.final("test_top1") <= 100
    train_killed_after(TrainConfig(**values, run_dir=str(tmp_path / "resumed")), epoch=1)
    train(TrainConfig(**values, run_dir=str(tmp_path / "resumed")))
    a = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_folder_problems_are_caught_before_any_work(image_root, tmp_path):
    base = dict(model="nf_resnet_small", dataset="folder", progress=False)
    with pytest.raises(ConfigError, match="needs --data-root"):
        TrainConfig(**base).validate()
    with pytest.raises(ConfigError, match="must hold train/ and val/"):
        TrainConfig(**base, data_root=str(tmp_path / "nowhere")).validate()
    with pytest.raises(ConfigError, match="num_classes"):
        TrainConfig(**base, data_root=str(image_root), model_kwargs={"num_classes": 5}).validate()
    TrainConfig(**base, data_root=str(image_root)).validate()


def test_cli_trains_on_a_folder(image_root, tmp_path, capsys):
    from nfrepro import cli
    assert cli.main(["train", "--model", "nf_resnet_small", "--model-arg", "depths=[1,1]", "--model-arg",
                     "widths=[4,8]", "--dataset", "folder", "--data-root", str(image_root),
                     "--image-size", "16",
                     "--batch-size", "8", "--epochs", "1", "--crop-padding", "0", "--no-progress",
                     "--run-dir", str(tmp_path / "run")]) == 0
    assert "completed" in capsys.readouterr().out
