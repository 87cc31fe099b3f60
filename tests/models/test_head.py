"""timm's head conventions on every family: unpooled forward_features, forward_head, reset_classifier."""
import pytest
import torch
import torch.nn as nn

import nfrepro
from nfrepro.optim import clip_parameters

TINY = {
    "nfnet_f0": dict(depths=(1, 1, 1, 1), channels=(16, 32, 32, 64), group_size=8),
    "nfnet_bn_f0": dict(depths=(1, 1, 1, 1), channels=(16, 32, 32, 64), group_size=8),
    "nf_resnet26": dict(depths=(1, 1, 1, 1), widths=(16, 32, 32, 64)),
    "bn_resnet26": dict(depths=(1, 1, 1, 1), widths=(16, 32, 32, 64)),
    "plain_resnet26": dict(depths=(1, 1, 1, 1), widths=(16, 32, 32, 64)),
    "nf_resnet_small": {},
}


@pytest.mark.parametrize("name", list(TINY))
def test_forward_features_is_the_unpooled_map_and_forward_head_finishes(name):
    torch.manual_seed(0)
    model = nfrepro.create_model(name, num_classes=5, **TINY[name]).eval()
    x = torch.randn(2, 3, 64, 64)
    feats = model.forward_features(x)
    reduction = model.feature_info.reduction(-1)
    assert feats.shape == (2, model.num_features, 64 // reduction, 64 // reduction)
    assert torch.equal(model.forward_head(feats), model(x))
    pre = model.forward_head(feats, pre_logits=True)
    assert pre.shape == (2, model.num_features) and torch.allclose(pre, feats.mean(dim=(2, 3)))
    assert model.get_classifier() is model.fc


@pytest.mark.parametrize("name", ["nfnet_f0", "nf_resnet26"])
def test_reset_classifier(name):
    model = nfrepro.create_model(name, num_classes=5, **TINY[name])
    model.reset_classifier(3)
    assert model.fc.out_features == 3 and model.num_classes == 3
    assert model.pretrained_cfg["num_classes"] == 3
    assert model.fc.weight.std().item() == pytest.approx(0.01, rel=0.5) and not model.fc.bias.any()
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    model.reset_classifier(0)   # headless: pooled features out, AGC still works
    assert isinstance(model.get_classifier(), nn.Identity)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, model.num_features)
    assert len(clip_parameters(model)) == len(list(model.parameters()))
    with pytest.raises(ValueError, match="num_classes must be >= 0"):
        model.reset_classifier(-1)
