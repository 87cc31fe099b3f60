"""nfrepro.engine.checkpoint: RNG states round-trip, and a damaged one is one clear error."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from nfrepro.engine.checkpoint import CheckpointError, rng_state, set_rng_state


def test_rng_states_round_trip():
    state = rng_state()
    first = torch.rand(3), np.random.rand(), random.random()
    set_rng_state(state)
    again = torch.rand(3), np.random.rand(), random.random()
    assert torch.equal(first[0], again[0]) and first[1:] == again[1:]


@pytest.mark.parametrize("damage", [
    lambda s: s.update(torch=torch.zeros(3, dtype=torch.uint8)),  # wrong size
    lambda s: s.update(numpy=["MT19937", [1, 2], 0, 0, 0.0]),     # 2 of 624 keys
    lambda s: s.update(python=[3, [1, 2, 3], None]),               # truncated Mersenne state
    lambda s: s.pop("numpy"),
])
def test_a_damaged_rng_state_is_one_checkpoint_error(damage):
    state = rng_state()
    damage(state)
    with pytest.raises(CheckpointError, match="RNG state is damaged .*restart that run") as info:
        set_rng_state(state)
    assert "\n" not in str(info.value)
