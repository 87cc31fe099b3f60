"""Stochastic depth as in the official ``base.StochDepth``: per-example mask, no rescale by default."""
import pytest
import torch

from nfrepro.layers.stochastic_depth import StochasticDepth


def test_identity_at_eval_and_at_rate_zero():
    x = torch.randn(16, 3, 4, 4)
    sd = StochasticDepth(0.5).eval()
    assert torch.equal(sd(x), x)
    assert torch.equal(StochasticDepth(0.0).train()(x), x)


def test_per_example_mask_without_rescale():
    torch.manual_seed(0)
    x = torch.randn(20_000, 2, 3, 3)
    out = StochasticDepth(0.3).train()(x)
    kept = (out == x).flatten(1).all(1)
    dropped = (out == 0).flatten(1).all(1)
    assert bool((kept | dropped).all())           # every example is either kept whole (unscaled) or zeroed
    assert dropped.float().mean().item() == pytest.approx(0.3, abs=0.015)


def test_optional_rescale_by_keep():
    torch.manual_seed(0)
    x = torch.ones(1000, 1)
    out = StochasticDepth(0.2, scale_by_keep=True).train()(x)
    assert set(out.unique().tolist()) <= {0.0, 1.25}


def test_rate_must_be_a_probability_below_one():
    with pytest.raises(ValueError):
        StochasticDepth(1.0)
    with pytest.raises(ValueError):
        StochasticDepth(-0.1)
