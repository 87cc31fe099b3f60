"""Small data sets held as whole tensors: Fashion-MNIST, CIFAR-10 and a synthetic set.

Each split is loaded once into a uint8 ``N x C x H x W`` tensor (:class:`ArrayDataset`), which
:class:`nfrepro.data.loader.TensorLoader` moves to the training device once and batches by index.
ImageNet-style class folders for evaluation are :mod:`nfrepro.data.imagenet`.

Where the files live: ``root`` argument, else ``$NFREPRO_DATA``, else ``/usr/share/datasets``.
A missing data set raises :class:`DataNotFoundError` naming the command that installs it.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import math
import os
import pickle
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

ENV_VAR = "NFREPRO_DATA"
DEFAULT_ROOT = Path("/usr/share/datasets")
INSTALL_HINT = (f"install it with `sudo apt-get install dataset-fashion-mnist`, or set "
                f"${ENV_VAR} to a folder holding the four IDX files")

# md5 of the *decompressed* IDX files (computed from the files that `dataset-fashion-mnist`
# installs; they match the files published by Zalando Research).
FASHION_MNIST_MD5 = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}
# Per-channel mean / std of the training split, pixels scaled to [0, 1].
FASHION_MNIST_STATS = ((0.2860,), (0.3530,))
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
DATASETS = ("fashion_mnist", "cifar10", "synthetic")
# (channels, classes) of each data set, known without reading it: a run's model is checked
# against them before any file is opened (nfrepro.engine.config)
DATASET_SHAPES = {"fashion_mnist": (1, 10), "cifar10": (3, 10), "synthetic": (1, 10)}


class DataNotFoundError(FileNotFoundError):
    """A data set's files are missing; the message says how to get them."""


class DataIntegrityError(ValueError):
    """A data file exists but its checksum or format is wrong."""


@dataclass
class ArrayDataset:
    """A whole split in memory: ``images`` uint8 ``N x C x H x W``, ``labels`` int64 ``N``."""
    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, n: int | None) -> "ArrayDataset":
        """The first ``n`` examples (all when ``n`` is None)."""
        if n is None or n >= len(self):
            return self
        return replace(self, images=self.images[:n], labels=self.labels[:n])

    def select_classes(self, classes: Sequence[int] | None, per_class: int | None = None) -> "ArrayDataset":
        """The examples of ``classes`` only, relabelled ``0 .. len(classes) - 1`` in the order given
        (a source / target split of one data set), and of each class only its first ``per_class``
        examples in the split's order (a few labelled images per class); None: all of either."""
        if classes is None and per_class is None:
            return self
        classes = list(range(self.num_classes)) if classes is None else [int(c) for c in classes]
        if len(set(classes)) != len(classes) or not all(0 <= c < self.num_classes for c in classes):
            raise ValueError(f"classes must be distinct labels in 0..{self.num_classes - 1}, got {classes}")
        keep = [torch.nonzero(self.labels == c).flatten()[:per_class] for c in classes]
        idx = torch.cat(keep).sort().values  # the split's own order, classes interleaved as they were
        relabel = torch.full((self.num_classes,), -1, dtype=torch.long)
        relabel[torch.tensor(classes)] = torch.arange(len(classes))
        return replace(self, images=self.images[idx], labels=relabel[self.labels[idx]],
                       num_classes=len(classes))


def data_root(root: str | os.PathLike | None = None) -> Path:
    return Path(root) if root is not None else Path(os.environ.get(ENV_VAR) or DEFAULT_ROOT)


# ----------------------------------------------------------------------------- Fashion-MNIST
def _find_idx(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def read_idx(path: Path, expected_md5: str | None = None) -> np.ndarray:
    """Read an IDX file (gzip or plain); check the md5 of the decompressed bytes. The decoded array
    (read-only) is kept for the process, keyed by the file's path, size, modification time and inode,
    so a sweep worker that trains hundreds of runs decompresses and checks each file once."""
    path = Path(path)
    st = path.stat()
    return _read_idx(str(path), st.st_size, st.st_mtime_ns, st.st_ino, expected_md5)


@functools.lru_cache(maxsize=4)  # one data set's four files
def _read_idx(name: str, size: int, mtime_ns: int, inode: int, expected_md5: str | None) -> np.ndarray:
    path = Path(name)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:  # cut short, or not gzip at all
        raise DataIntegrityError(f"{path} is truncated or not a gzip file ({type(err).__name__}); "
                                 f"delete it and reinstall: {INSTALL_HINT}") from err
    if expected_md5 is not None and hashlib.md5(raw).hexdigest() != expected_md5:
        raise DataIntegrityError(
            f"{path} is corrupt or not the published file (md5 {hashlib.md5(raw).hexdigest()}, "
            f"expected {expected_md5}); delete it and reinstall: {INSTALL_HINT}")
    # header: two zero bytes, a dtype code (0x08 = uint8), the number of dims, then big-endian
    # uint32 sizes
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise DataIntegrityError(f"{path} is not a uint8 IDX file")
    ndim = raw[3]
    try:
        shape = tuple(int(s) for s in np.frombuffer(raw, ">u4", count=ndim, offset=4))
        return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)
    except ValueError as err:  # fewer bytes than its header promises
        raise DataIntegrityError(f"{path} is truncated (its IDX header promises more bytes); "
                                 f"delete it and reinstall: {INSTALL_HINT}") from err


def locate_fashion_mnist(train: bool = True, root: str | os.PathLike | None = None) -> list[Path]:
    """Paths of the images and labels IDX files of one split; :class:`DataNotFoundError` if absent."""
    base = data_root(root)
    prefix = "train" if train else "t10k"
    for folder in (base, base / "fashion-mnist"):
        paths = [_find_idx(folder, f"{prefix}-{kind}") for kind in ("images-idx3-ubyte",
                                                                    "labels-idx1-ubyte")]
        if all(paths):
            return paths
    raise DataNotFoundError(f"Fashion-MNIST not found in {base} (nor {base / 'fashion-mnist'}): "
                            f"{INSTALL_HINT}")


def load_fashion_mnist(train: bool = True, root: str | os.PathLike | None = None) -> ArrayDataset:
    """Fashion-MNIST (Xiao et al. 2017) from its four IDX files: 60k / 10k images, 1 x 28 x 28."""
    paths = locate_fashion_mnist(train, root)
    names = [p.name.removesuffix(".gz") for p in paths]
    images = read_idx(paths[0], FASHION_MNIST_MD5[names[0]])
    labels = read_idx(paths[1], FASHION_MNIST_MD5[names[1]])
    return ArrayDataset(torch.from_numpy(images.copy()).unsqueeze(1),
                        torch.from_numpy(labels.astype(np.int64)), 10,
                        *FASHION_MNIST_STATS, "fashion_mnist")


# ----------------------------------------------------------------------------- CIFAR-10
def load_cifar10(train: bool = True, root: str | os.PathLike | None = None,
                 download: bool = False) -> ArrayDataset:
    """CIFAR-10 from the python pickled batches (``cifar-10-batches-py``), checked by md5.

    ``download=True`` fetches and verifies the archive with torchvision's downloader (needs
    network access); otherwise a missing folder raises :class:`DataNotFoundError`.
    """
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import check_integrity

    base = data_root(root)
    folder = base / CIFAR10.base_folder
    files = CIFAR10.train_list if train else CIFAR10.test_list
    if download and not all((folder / name).is_file() for name, _ in files):
        try:
            CIFAR10(str(base), train=train, download=True)
        # URLError is an OSError; torchvision's md5 check raises a RuntimeError
        except (OSError, RuntimeError) as err:
            raise DataNotFoundError(f"could not download CIFAR-10 into {base} ({type(err).__name__}): "
                                    f"check the network access, or copy cifar-10-batches-py there "
                                    f"and drop --download") from err
    images, labels = [], []
    for name, md5 in files:
        path = folder / name
        if not path.is_file():
            raise DataNotFoundError(
                f"CIFAR-10 not found in {folder}: pass download=True (CLI: --download) when "
                f"online, or set ${ENV_VAR} to a folder holding cifar-10-batches-py")
        if not check_integrity(str(path), md5):
            raise DataIntegrityError(f"{path} is corrupt (md5 mismatch); delete it and download again")
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        images.append(np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32))  # rows are CHW
        labels.append(np.asarray(batch[b"labels"], np.int64))
    return ArrayDataset(torch.from_numpy(np.concatenate(images)),
                        torch.from_numpy(np.concatenate(labels)), 10, *CIFAR10_STATS, "cifar10")


# ----------------------------------------------------------------------------- synthetic
def synthetic(n: int = 512, num_classes: int = 10, shape: tuple[int, int, int] = (1, 28, 28),
              seed: int = 0, train: bool = True) -> ArrayDataset:
    """A learnable toy set for tests: each class is a fixed random texture plus noise.

    A class's texture is a random 4 x 4 patch tiled over the image, so global pooling keeps
    it; both splits share the textures (drawn from ``seed``), their examples differ.
    """
    c, h, w = shape
    patches = torch.rand((num_classes, c, 4, 4), generator=torch.Generator().manual_seed(seed))
    templates = patches.repeat(1, 1, math.ceil(h / 4), math.ceil(w / 4))[..., :h, :w] * 255
    g = torch.Generator().manual_seed(2 * seed + 1 + int(not train))
    labels = torch.randint(0, num_classes, (n,), generator=g)
    noise = torch.randn((n, *shape), generator=g) * 40
    images = (templates[labels] + noise).clamp(0, 255).round().to(torch.uint8)
    return ArrayDataset(images, labels, num_classes, (0.5,) * c, (0.29,) * c, "synthetic")


def load_dataset(name: str, train: bool = True, root: str | os.PathLike | None = None,
                 download: bool = False, subset: int | None = None, **kwargs: Any) -> ArrayDataset:
    """Load ``name`` (one of :data:`DATASETS`), optionally only its first ``subset`` examples.

    ``kwargs`` go to :func:`synthetic` (``n``, ``num_classes``, ``shape``, ``seed``).
    """
    if name == "fashion_mnist":
        ds = load_fashion_mnist(train, root)
    elif name == "cifar10":
        ds = load_cifar10(train, root, download)
    elif name == "synthetic":
        ds = synthetic(train=train, **kwargs)
    else:
        raise ValueError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    return ds.subset(subset)
