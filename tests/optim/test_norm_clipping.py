"""The baselines of notebook 07 (``nfrepro.optim.norm_clipping``): ordinary gradient-norm clipping and
layer-wise AGC."""
import pytest
import torch

from nfrepro.optim.agc import adaptive_grad_clip_
from nfrepro.optim.norm_clipping import GradNormClip, TensorwiseAGC, tensorwise_agc_


def test_clips_the_global_norm_and_reports_it():
    params = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2, 2))]
    params[0].grad, params[1].grad = torch.full((3,), 3.0), torch.full((2, 2), 4.0)  # norm sqrt(27 + 64)
    clip = GradNormClip(params, max_norm=1.0)
    total = clip()
    assert float(total) == pytest.approx(91 ** 0.5) and float(clip.last_stats["frac_units_clipped"]) == 1.0
    norm = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in params]))
    assert float(norm) == pytest.approx(1.0, rel=1e-5)
    clip()  # already below: untouched, not counted
    assert float(clip.last_stats["frac_units_clipped"]) == 0.0
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="max_norm"):
            GradNormClip(params, bad)


def test_tensorwise_agc_clips_as_a_hand_computation():
    """Layer-wise AGC: one ratio ||G||_F / max(||W||_F, eps) per tensor, computed here by hand."""
    w = torch.tensor([[3.0, 4.0], [0.0, 0.0]])  # ||W||_F = 5; the second row alone would be floored
    g = torch.tensor([[0.3, 0.0], [0.0, 0.4]])  # ||G||_F = 0.5: ratio 0.1
    small = torch.tensor([0.0, 0.0])  # a zero bias: its norm is floored at eps
    params = [torch.nn.Parameter(w.clone()), torch.nn.Parameter(small.clone()),
              torch.nn.Parameter(torch.ones(3))]
    params[0].grad, params[1].grad = g.clone(), torch.tensor([3e-6, 4e-6])  # ratio 5e-6 / 1e-3 = 5e-3
    params[2].grad = torch.full((3,), 1e-3)  # ratio 1e-3: under lambda, untouched
    stats = tensorwise_agc_(params, clipping=0.02, eps=1e-3)
    assert torch.allclose(params[0].grad, g * (0.02 * 5.0 / 0.5))  # scaled to ||G|| = lambda ||W|| = 0.1
    assert torch.equal(params[1].grad, torch.tensor([3e-6, 4e-6]))  # 5e-3 < 0.02
    assert torch.equal(params[2].grad, torch.full((3,), 1e-3))
    # units counted as AGC counts them: the 2-row weight is 2 units, each vector 1
    assert stats["num_tensors"] == 3 and stats["num_units"] == 4 and int(stats["num_clipped"]) == 2
    assert float(stats["frac_units_clipped"]) == 0.5
    tensorwise_agc_(params[1:2], clipping=1e-3, eps=1e-3)  # 5e-3 > 1e-3: to lambda * eps = 1e-6
    assert float(torch.linalg.vector_norm(params[1].grad)) == pytest.approx(1e-6)
    with pytest.raises(ValueError, match="clipping"):
        TensorwiseAGC(params, clipping=0.0)


def test_tensorwise_and_unitwise_agc_agree_on_vectors_and_differ_on_rows():
    """On <= 1-d tensors both rules see one unit; on a matrix the unit-wise rule clips a row alone."""
    torch.manual_seed(0)
    w = torch.randn(4, 6)
    g = torch.randn(4, 6) * 1e-3
    g[2] = w[2] * 0.5  # one row far above lambda = 0.01, and with it the whole tensor (about 0.25)
    vector, vgrad = torch.randn(5), torch.randn(5)
    pairs = []
    for clip in (adaptive_grad_clip_, tensorwise_agc_):
        params = [torch.nn.Parameter(w.clone()), torch.nn.Parameter(vector.clone())]
        params[0].grad, params[1].grad = g.clone(), vgrad.clone()
        clip(params, 0.01)
        pairs.append([p.grad for p in params])
    (unit_m, unit_v), (tensor_m, tensor_v) = pairs
    assert torch.allclose(unit_v, tensor_v)
    assert torch.equal(unit_m[[0, 1, 3]], g[[0, 1, 3]])  # unit-wise: the quiet rows untouched
    assert not torch.allclose(tensor_m[0], g[0])  # layer-wise: every row scaled by one factor
    ratio = tensor_m / g
    assert torch.allclose(ratio, ratio[0, 0].expand_as(ratio))
