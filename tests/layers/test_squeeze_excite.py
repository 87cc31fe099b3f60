"""Squeeze-and-excite with the x2 gain (official ``base.SqueezeExcite`` and ``nfnet.NFBlock``)."""

import pytest
import torch

from nfrepro.layers.squeeze_excite import SqueezeExcite


@pytest.mark.parametrize("channels,ratio,hidden",
                         [(256, 0.5, 128), (1536, 0.5, 768), (64, 0.25, 16), (3, 0.25, 1)])
def test_hidden_size_rule(channels, ratio, hidden):
    """hidden = max(1, int(in_channels * se_ratio))."""
    se = SqueezeExcite(channels, se_ratio=ratio)
    assert se.fc0.out_features == hidden and se.fc1.in_features == hidden and se.fc1.out_features == channels


def test_times_two_gain_keeps_scale_at_a_neutral_gate():
    """sigmoid(0) = 0.5, times 2 = 1: a zero SE is the identity."""
    se = SqueezeExcite(8)
    for p in se.parameters():
        torch.nn.init.zeros_(p)
    x = torch.randn(2, 8, 5, 5)
    assert torch.allclose(se(x), x)


def test_formula_with_unscaled_relu():
    """out = x * 2 * sigmoid(fc1(relu(fc0(mean_hw(x))))): ReLU without gamma (the code, not the paper's
    GELU)."""
    se = SqueezeExcite(6, se_ratio=0.5)
    x = torch.randn(3, 6, 4, 4)
    s = x.mean(dim=(2, 3))
    gate = 2 * torch.sigmoid(se.fc1(torch.relu(se.fc0(s))))
    assert torch.allclose(se(x), x * gate[:, :, None, None], atol=1e-6)
