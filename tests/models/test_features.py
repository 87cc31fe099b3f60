"""features_only: a list of feature maps and timm-style feature_info, for dense heads."""
import pytest
import torch

import nfrepro
from nfrepro.models.features import FeatureExtractor

NF = dict(depths=(1, 2, 1, 1), channels=(16, 32, 32, 64), group_size=8)


def test_nfnet_levels_channels_and_reductions():
    torch.manual_seed(0)
    model = nfrepro.create_model("nfnet_f0", features_only=True, **NF).eval()
    assert isinstance(model, FeatureExtractor)
    info = model.feature_info
    assert info.channels() == [8, 16, 32, 32, 128] and info.reduction() == [4, 4, 8, 16, 32]
    outs = model(torch.randn(2, 3, 64, 64))
    assert [o.shape[1] for o in outs] == info.channels()
    assert [64 // o.shape[-1] for o in outs] == info.reduction()
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(model(x)[-1], model.model.forward_features(x))


def test_out_indices_select_and_the_last_level_is_forward_features():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 64, 64)
    model = nfrepro.create_model("nf_resnet26", features_only=True, out_indices=(2, -1),
                                 depths=(1, 1, 1, 1), widths=(16, 32, 32, 64)).eval()
    assert model.feature_info.channels() == [32, 64] and model.feature_info.reduction() == [8, 32]
    assert model.feature_info.channels(0) == 4 and len(model.feature_info) == 2
    a, b = model(x)
    assert a.shape == (1, 32, 8, 8) and torch.equal(b, model.model.forward_features(x))
    assert "model.fc.weight" not in model.state_dict()          # the head is gone
    with pytest.raises(ValueError, match="choose among 0..3"):
        nfrepro.create_model("nf_resnet_small", features_only=True, out_indices=(7,))
    with pytest.raises(ValueError, match="features_only=True"):
        nfrepro.create_model("nf_resnet_small", out_indices=(1,))


def test_small_nets_keep_full_resolution_at_the_stem():
    model = nfrepro.create_model("nf_resnet_small", features_only=True, in_chans=1)
    assert model.feature_info.reduction() == [1, 1, 2, 4]
    assert [o.shape[-1] for o in model(torch.randn(2, 1, 28, 28))] == [28, 28, 14, 7]
