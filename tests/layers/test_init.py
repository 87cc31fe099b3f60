"""Initialisers: fan-in normal (Haiku VarianceScaling / He et al.) and Haiku's truncated normal."""
import math

import pytest
import torch

from nfrepro.layers.init import fan_in_normal_, init_linear_haiku_, trunc_normal_2std_


def test_haiku_truncated_normal_init():
    lin = init_linear_haiku_(torch.nn.Linear(400, 2000))
    std = 1 / math.sqrt(400)
    assert lin.weight.std().item() == pytest.approx(std, rel=0.02)           # std of the *truncated* law
    assert lin.weight.abs().max().item() <= 2 * std / 0.87962566103423978 + 1e-7
    assert torch.equal(lin.bias, torch.zeros(2000))
    w = trunc_normal_2std_(torch.empty(1_000_000), 1.0)
    assert w.mean().item() == pytest.approx(0.0, abs=0.005)
    assert w.std().item() == pytest.approx(1.0, rel=0.01)


@pytest.mark.parametrize("second_moment", [1.0, 0.5])
def test_fan_in_normal_std_and_zero_bias(second_moment):
    torch.manual_seed(0)
    conv = fan_in_normal_(torch.nn.Conv2d(64, 256, 3), second_moment)
    assert conv.weight.std().item() == pytest.approx(1 / math.sqrt(64 * 9 * second_moment), rel=0.02)
    assert torch.equal(conv.bias, torch.zeros(256))


def test_initialisers_leave_meta_tensors_alone():
    with torch.device("meta"):
        conv = fan_in_normal_(torch.nn.Conv2d(4, 8, 3))
        lin = init_linear_haiku_(torch.nn.Linear(4, 8))
    assert conv.weight.is_meta and lin.weight.is_meta
