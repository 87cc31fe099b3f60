"""A loader that batches a whole in-memory data set on the device, resumably and DDP-aware.

No worker processes, no per-sample Python: the split is moved to the device once and batched by
index, so on a GPU the batch never leaves it. The shuffle comes from a seeded ``torch.Generator``
whose state is part of every checkpoint, so a resumed run sees the same batches as an
uninterrupted one.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterator

import torch

from nfrepro.data.datasets import ArrayDataset


class ShardedLoader:
    """What the engine's loaders share: the *global* ``batch_size`` split over ranks, a fresh
    permutation per epoch from a seeded, checkpointed generator, and each batch's augmentation and
    normalisation on the device.

    Training (``shuffle=True``): batches of the global ``batch_size`` (the last partial batch is
    dropped), of which rank ``r`` of ``world_size`` takes the ``r``-th contiguous slice, so that N
    processes together see exactly the batches one process would (DistributedSampler's role).
    ``augment(x, y, rank, world_size)`` receives 0-255 float images of the rank's slice of the
    global batch and returns ``(x, targets)``. Evaluation (``shuffle=False``): every example once,
    the data split evenly over ranks. Subclasses say where the images come from.
    """

    def __init__(self, size: int, batch_size: int, shuffle: bool, seed: int, device: str | torch.device,
                 augment: Callable | None, rank: int, world_size: int, channels_last: bool,
                 mean: tuple[float, ...], std: tuple[float, ...]):
        if batch_size % world_size:
            raise ValueError(f"batch size {batch_size} is not divisible by the world size "
                             f"{world_size}: use a multiple of {world_size}")
        if shuffle and batch_size > size:
            raise ValueError(f"batch size {batch_size} is larger than the data set ({size})")
        self.size, self.batch_size, self.shuffle = size, batch_size, shuffle
        self.rank, self.world_size, self.augment = rank, world_size, augment
        self.device = torch.device(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        shape = (1, -1, 1, 1)  # normalise in 0-255 units: (x / 255 - mean) / std
        self.mean = torch.tensor(mean, device=self.device).view(shape) * 255
        self.std = torch.tensor(std, device=self.device).view(shape) * 255
        self.generator = torch.Generator().manual_seed(seed)
        self.eval_range = (size * rank // world_size, size * (rank + 1) // world_size)

    def __len__(self) -> int:
        if self.shuffle:
            return self.size // self.batch_size
        lo, hi = self.eval_range
        return math.ceil((hi - lo) / (self.batch_size // self.world_size))

    def _index_batches(self, device: torch.device) -> Iterator[torch.Tensor]:
        """This rank's indices, batch by batch, for one pass (draws the epoch's permutation)."""
        local = self.batch_size // self.world_size
        if not self.shuffle:
            lo, hi = self.eval_range
            for start in range(lo, hi, local):
                yield torch.arange(start, min(start + local, hi), device=device)
            return
        perm = torch.randperm(self.size, generator=self.generator).to(device)
        for i in range(len(self)):
            start = i * self.batch_size + self.rank * local
            yield perm[start:start + local]

    def _finish(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """0-255 images on the device -> augmented, normalised float images in the memory format."""
        x = x.float()
        if self.augment is not None:
            x, y = self.augment(x, y, self.rank, self.world_size)
        return ((x - self.mean) / self.std).contiguous(memory_format=self.memory_format), y

    def state_dict(self) -> dict[str, Any]:
        state = {"generator": self.generator.get_state()}
        if self.augment is not None and hasattr(self.augment, "state_dict"):
            state["augment"] = self.augment.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        if "augment" in state:
            self.augment.load_state_dict(state["augment"])


class TensorLoader(ShardedLoader):
    """Batches an :class:`ArrayDataset` held on ``device`` (moved there once); yields normalised
    float images (:class:`ShardedLoader` says how batches are drawn and split)."""

    def __init__(self, data: ArrayDataset, batch_size: int, shuffle: bool = False,
                 seed: int = 0, device: str | torch.device = "cpu",
                 augment: Callable | None = None, rank: int = 0, world_size: int = 1,
                 channels_last: bool = False):
        super().__init__(len(data), batch_size, shuffle, seed, device, augment, rank, world_size,
                         channels_last, data.mean, data.std)
        self.data = data
        self.images = data.images.to(self.device)
        self.labels = data.labels.to(self.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for idx in self._index_batches(self.device):
            yield self._finish(self.images[idx], self.labels[idx])
