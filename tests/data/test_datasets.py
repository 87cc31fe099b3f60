"""nfrepro.data.datasets: IDX / CIFAR readers with checksums, clear missing-data errors, the tensor loader,
the paper's ImageNet eval protocol."""
from __future__ import annotations

import gzip
import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from nfrepro.data import datasets as data
from nfrepro.data.datasets import (
    DataIntegrityError,
    DataNotFoundError,
    load_dataset,
    read_idx,
)

FMNIST = Path("/usr/share/datasets/fashion-mnist")


def require_fashion_mnist() -> None:
    """The real files are a test dependency (CI installs them): fail loudly, never skip."""
    data.locate_fashion_mnist(train=False, root=FMNIST)  # raises DataNotFoundError with the fix


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


@pytest.mark.parametrize("compressed", [True, False])
def test_read_idx_plain_and_gzip_with_md5(tmp_path, compressed):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = _idx_bytes(array)
    path = tmp_path / ("x.gz" if compressed else "x")
    path.write_bytes(gzip.compress(raw) if compressed else raw)
    np.testing.assert_array_equal(read_idx(path, hashlib.md5(raw).hexdigest()), array)
    with pytest.raises(DataIntegrityError, match="corrupt"):
        read_idx(path, "0" * 32)


def test_read_idx_decodes_a_file_once_and_sees_it_change(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(_idx_bytes(np.zeros((2, 3), np.uint8)))
    first = read_idx(path)
    assert read_idx(path) is first and not first.flags.writeable  # kept, and nobody can alter it
    path.write_bytes(_idx_bytes(np.ones((2, 3), np.uint8)))
    os.utime(path, ns=(1, 1))  # same size, another modification time (whatever the clock's grain): read again
    np.testing.assert_array_equal(read_idx(path), np.ones((2, 3)))


def test_missing_fashion_mnist_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("NFREPRO_DATA", str(tmp_path))
    with pytest.raises(DataNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion_mnist", train=False)


def test_fashion_mnist_test_split_checksummed_via_env(tmp_path, monkeypatch):
    require_fashion_mnist()
    folder = tmp_path / "fashion-mnist"  # $NFREPRO_DATA/fashion-mnist, decompressed copies
    folder.mkdir()
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (folder / name).write_bytes(gzip.decompress((FMNIST / f"{name}.gz").read_bytes()))
    monkeypatch.setenv("NFREPRO_DATA", str(tmp_path))
    ds = load_dataset("fashion_mnist", train=False)
    assert ds.images.shape == (10_000, 1, 28, 28) and ds.images.dtype == torch.uint8
    assert ds.labels.bincount().tolist() == [1000] * 10 and ds.num_classes == 10
    # a flipped byte is caught by the pinned md5
    raw = bytearray((folder / "t10k-labels-idx1-ubyte").read_bytes())
    raw[100] ^= 1
    (folder / "t10k-labels-idx1-ubyte").write_bytes(bytes(raw))
    with pytest.raises(DataIntegrityError, match="md5"):
        load_dataset("fashion_mnist", train=False)


def test_cifar10_reader_and_missing(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    with pytest.raises(DataNotFoundError, match="download=True"):
        load_dataset("cifar10", train=False, root=tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rows = np.random.default_rng(0).integers(0, 256, (5, 3072), dtype=np.uint8)
    blob = pickle.dumps({b"data": rows, b"labels": [0, 1, 2, 3, 9]})
    (folder / "test_batch").write_bytes(blob)
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", hashlib.md5(blob).hexdigest()]])
    ds = load_dataset("cifar10", train=False, root=tmp_path)
    assert ds.images.shape == (5, 3, 32, 32) and ds.labels.tolist() == [0, 1, 2, 3, 9]
    assert torch.equal(ds.images[1, 2].flatten(), torch.from_numpy(rows[1, 2048:]))  # CHW rows
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", "0" * 32]])
    with pytest.raises(DataIntegrityError):
        load_dataset("cifar10", train=False, root=tmp_path)


def test_synthetic_is_deterministic_and_splits_differ():
    a, b = load_dataset("synthetic", n=64), load_dataset("synthetic", n=64)
    test = load_dataset("synthetic", train=False, n=64)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, test.images)
    assert load_dataset("synthetic", subset=10).images.shape == (10, 1, 28, 28)
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("mnist")


# --- broken files are one clear error ------------------------------------------------------------
def test_broken_idx_files_are_data_integrity_errors(tmp_path):
    payload = _idx_bytes(np.zeros((20, 28, 28), np.uint8))
    cases = {"notgz.gz": b"plain text", "cut.gz": gzip.compress(np.random.default_rng(0).bytes(4000))[:80],
             "empty.gz": b"", "short": payload[:500], "tiny": b"\x00\x00"}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(DataIntegrityError, match="truncated|not a gzip|not a uint8 IDX"):
            read_idx(tmp_path / name)


def test_download_without_network_is_a_clear_error(tmp_path, monkeypatch):
    import urllib.error

    import torchvision.datasets

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", offline)
    with pytest.raises(DataNotFoundError, match="could not download CIFAR-10.*network"):
        load_dataset("cifar10", root=tmp_path, download=True)


def test_select_classes_relabels_in_the_order_given_and_keeps_the_first_per_class():
    ds = data.synthetic(n=200, num_classes=10, seed=0)
    target = ds.select_classes([7, 2, 5], per_class=4)
    assert target.num_classes == 3 and len(target) == 12
    assert sorted(target.labels.tolist()) == [0] * 4 + [1] * 4 + [2] * 4
    # the first 4 images of class 7 (in the split's order) became class 0, pixels unchanged
    first7 = torch.nonzero(ds.labels == 7).flatten()[:4]
    torch.testing.assert_close(target.images[target.labels == 0], ds.images[first7])
    everything = ds.select_classes([0, 1])
    assert len(everything) == int(((ds.labels == 0) | (ds.labels == 1)).sum())
    assert ds.select_classes(None) is ds
    with pytest.raises(ValueError, match="distinct"):
        ds.select_classes([1, 1])
