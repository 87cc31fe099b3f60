"""The expected-variance / beta bookkeeping (NF-ResNet paper §4; official expected_std)."""
import math

import pytest
import torch

from nfrepro.models.nfnet import NFNet
from nfrepro.models.variance import expected_betas, expected_variances


def meta(variant, **kw):
    with torch.device("meta"):
        return NFNet(variant, **kw)


def test_beta_schedule_resets_at_every_stage():
    """beta = 1/sqrt(1 + k alpha^2): k counts the blocks since the last reset (official expected_std)."""
    alpha, depths = 0.2, (2, 3, 4, 2)
    closed = []
    for stage, depth in enumerate(depths):
        # the first block sees the previous stage's output, whose variance grew over that whole stage
        closed.append(1 / math.sqrt(1 + (depths[stage - 1] if stage else 0) * alpha ** 2))
        closed += [1 / math.sqrt(1 + k * alpha ** 2) for k in range(1, depth)]
    assert expected_betas(depths, alpha) == pytest.approx(closed, abs=1e-12)
    model = meta("F1")
    assert [b.beta for b in model.blocks] == pytest.approx(expected_betas((2, 4, 12, 6), 0.2))
    assert model.blocks[0].beta == 1.0 and model.blocks[2].beta == pytest.approx(1 / math.sqrt(1.08))


def test_expected_variance_restarts_at_each_stage_and_agrees_with_beta():
    alpha = 0.2
    assert expected_variances((3, 2), alpha) == pytest.approx([1.04, 1.08, 1.12, 1.04, 1.08])
    assert expected_betas((3, 2), alpha) == pytest.approx(
        [1.0] + [1 / math.sqrt(v) for v in expected_variances((3, 2), alpha)[:-1]])


def test_nf_expected_variance_resets_at_transitions():
    a2 = 0.2 ** 2
    assert [1.0] + expected_variances((3, 2), 0.2) == pytest.approx(
        [1.0, 1 + a2, 1 + 2 * a2, 1 + 3 * a2, 1 + a2, 1 + 2 * a2])
    # the same bookkeeping as the official expected_std: reset after the transition block
    std, expected = 1.0, []
    for stage_depth in (3, 2):
        for j in range(stage_depth):
            if j == 0:
                std = 1.0
            std = math.sqrt(std ** 2 + 0.2 ** 2)
            expected.append(std ** 2)
    assert expected_variances((3, 2), 0.2) == pytest.approx(expected)


def test_propagated_variances_reduce_to_the_bookkeeping_for_relu_and_conv_shortcuts():
    from nfrepro.models.variance import expected_betas, expected_variances, propagated_variances

    depths, alpha = (2, 3), 0.2
    kinds = ["conv", "identity", "conv", "identity", "identity"]
    stream, residual = propagated_variances(kinds, expected_betas(depths, alpha), alpha, lambda v: v, 3)
    assert stream == pytest.approx(expected_variances(depths, alpha)) and residual == pytest.approx([1.0] * 5)


def test_propagated_variances_quarter_at_a_pooled_transition():
    from nfrepro.models.variance import propagated_variances

    stream, residual = propagated_variances(["conv", "pool_conv", "identity"], [1.0, 1.0, 1.0], 0.2,
                                            lambda v: v, 2)
    assert stream[0] == pytest.approx(1.04) and stream[1] == pytest.approx(1.04 / 4 + 0.04 * 1.04)
    assert stream[2] == pytest.approx(stream[1] * 1.04) and residual[2] == pytest.approx(stream[1])
    with pytest.raises(ValueError):
        propagated_variances(["maxpool"], [1.0], 0.2, lambda v: v, 2)


def test_unnormalised_second_moment_grows_geometrically():
    """He init keeps each branch's second moment: x (1 + alpha^2) per block, no reset at stages."""
    assert expected_variances((2, 1), 0.5, normalized=False) == pytest.approx([1.25, 1.25 ** 2, 1.25 ** 3])
