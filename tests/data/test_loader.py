"""nfrepro.data.loader: deterministic, resumable, DDP-sharded batches of an in-memory data set."""
import pytest
import torch

from nfrepro.data.datasets import load_dataset
from nfrepro.data.loader import TensorLoader


def test_loader_shuffles_deterministically_and_drops_the_last_partial_batch():
    ds = load_dataset("synthetic", n=100)
    loader = TensorLoader(ds, 32, shuffle=True, seed=3)
    assert len(loader) == 3
    epoch1 = [y for _, y in loader]
    assert len(epoch1) == 3 and all(len(y) == 32 for y in epoch1)
    again = TensorLoader(ds, 32, shuffle=True, seed=3)
    assert all(torch.equal(u, v) for u, v in zip(epoch1, (y for _, y in again), strict=True))
    state = loader.state_dict()
    epoch2 = [y for _, y in loader]
    loader.load_state_dict(state)
    assert all(torch.equal(u, v) for u, v in zip(epoch2, (y for _, y in loader), strict=True))
    x, _ = next(iter(loader))
    assert x.dtype == torch.float32 and abs(x.mean()) < 1.0  # normalised


def test_loader_shards_the_global_batch_over_ranks():
    ds = load_dataset("synthetic", n=64)
    whole = [y for _, y in TensorLoader(ds, 16, shuffle=True, seed=1)]
    parts = [[y for _, y in TensorLoader(ds, 16, shuffle=True, seed=1, rank=r, world_size=2)]
             for r in range(2)]
    for i, batch in enumerate(whole):
        assert torch.equal(torch.cat([parts[0][i], parts[1][i]]), batch)
    evals = [torch.cat([y for _, y in TensorLoader(ds, 10, rank=r, world_size=2)]) for r in range(2)]
    assert torch.equal(torch.cat(evals), ds.labels)  # every example once, in order
    with pytest.raises(ValueError, match="divisible"):
        TensorLoader(ds, 15, shuffle=True, world_size=2)
