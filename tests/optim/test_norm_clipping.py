"""Ordinary gradient-norm clipping (``nfrepro.optim.norm_clipping``), the baseline of notebook 07."""
import pytest
import torch

from nfrepro.optim.norm_clipping import GradNormClip


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
