"""features_only: a list of feature maps and timm-style feature_info, for dense heads; the levels
are timm's (``dm_nfnet_f0``), and a backbone goes through AGC, folding and ``to_timm``."""
import pytest
import torch

import nfrepro
from nfrepro.models.features import FeatureExtractor
from nfrepro.models.folding import fold_for_inference
from nfrepro.models.weight_formats import to_timm

NF = dict(depths=(1, 2, 1, 1), channels=(16, 32, 32, 64), group_size=8)


def test_nfnet_levels_channels_and_reductions():
    torch.manual_seed(0)
    model = nfrepro.create_model("nfnet_f0", features_only=True, **NF).eval()
    assert isinstance(model, FeatureExtractor)
    info = model.feature_info
    assert info.channels() == [64, 16, 32, 32, 128] and info.reduction() == [2, 4, 8, 16, 32]
    assert info.module_name() == ["stem.conv2", "blocks.0", "blocks.2", "blocks.3", "final_conv"]
    x = torch.randn(2, 3, 64, 64)
    outs = model(x)
    assert [o.shape[1] for o in outs] == info.channels()
    assert [64 // o.shape[-1] for o in outs] == info.reduction()
    inner = model.model   # each level is the output of the module it names, before any activation
    stem = inner.stem.act1(inner.stem.conv1(inner.stem.act0(inner.stem.conv0(x))))
    assert torch.equal(outs[0], inner.stem.conv2(stem))
    assert torch.equal(inner.final_act(outs[-1]), inner.forward_features(x))


def test_nfnet_f0_levels_are_timm_dm_nfnet_f0s():
    """Same channels and reductions as timm's feature_info, the same default out_indices (every
    level), and the same modules: our 0-based ``stem.conv2`` is timm's ``stem.conv3`` (timm numbers
    its stem convs from 1), the last block of stage s timm's ``stages.{s}``, ``final_conv`` itself."""
    timm = pytest.importorskip("timm")
    theirs = timm.create_model("dm_nfnet_f0", pretrained=False, features_only=True).feature_info
    ours = nfrepro.create_model("nfnet_f0", features_only=True)
    assert ours.feature_info.channels() == theirs.channels() == [64, 256, 512, 1536, 3072]
    assert ours.feature_info.reduction() == theirs.reduction() == [2, 4, 8, 16, 32]
    assert tuple(ours.feature_info.out_indices) == tuple(theirs.out_indices)
    stage = {f"blocks.{i}": f"stages.{b.stage}" for i, b in enumerate(ours.blocks)}
    renamed = [{"stem.conv2": "stem.conv3"}.get(m, stage.get(m, m)) for m in ours.feature_info.module_name()]
    assert renamed == theirs.module_name()


@pytest.mark.slow
def test_nfnet_f0_feature_maps_equal_timms_through_to_timm(tmp_path):
    """On the same weights (``to_timm`` of a backbone, read by timm's own features_only loader) and
    timm's numerics, every level equals timm's map to float rounding."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    ours = nfrepro.create_model("nfnet_f0", features_only=True, numerics="timm").eval()
    with torch.no_grad():   # skip gains away from 0, so that every block contributes
        for block in ours.blocks:
            block.skip_gain.fill_(1.0)
    state = to_timm(ours)
    assert not any(k.startswith("head.") for k in state)        # a backbone: no classifier
    path = tmp_path / "backbone.pth"
    torch.save(state, path)
    theirs = timm.create_model("dm_nfnet_f0", features_only=True, pretrained=True,
                               pretrained_cfg_overlay=dict(file=str(path))).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(ours(x), theirs(x), strict=True):
            assert a.shape == b.shape
            assert (a - b).abs().max() <= 1e-4 * b.abs().max()
    timm.create_model("dm_nfnet_f0", pretrained=False, num_classes=0).load_state_dict(state)  # strict


def test_out_indices_select_and_resnet_levels_are_the_stream():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 64, 64)
    model = nfrepro.create_model("nf_resnet26", features_only=True, out_indices=(0, 2, -1),
                                 depths=(1, 1, 1, 1), widths=(16, 32, 32, 64)).eval()
    assert model.feature_info.channels() == [4, 32, 64] and model.feature_info.reduction() == [2, 8, 32]
    assert model.feature_info.module_name() == ["stem.0", "blocks.1", "blocks.3"]
    stem, a, b = model(x)
    assert torch.equal(stem, model.model.stem[0](x))               # before the max-pool
    assert a.shape == (1, 32, 8, 8) and torch.equal(model.model.final_act(b), model.model.forward_features(x))
    assert "model.fc.weight" not in model.state_dict()          # the head is gone
    with pytest.raises(ValueError, match="choose among 0..4"):
        nfrepro.create_model("nf_resnet26", features_only=True, out_indices=(7,))
    with pytest.raises(ValueError, match="features_only=True"):
        nfrepro.create_model("nf_resnet_small", out_indices=(1,))


def test_only_the_modules_up_to_the_last_level_run():
    model = nfrepro.create_model("nfnet_f0", features_only=True, out_indices=(1,), **NF)
    ran = []
    for name, module in model.model.named_modules():
        module.register_forward_hook(lambda m, i, o, name=name: ran.append(name))
    (out,) = model(torch.randn(1, 3, 32, 32))
    assert out.shape == (1, 16, 8, 8) and "blocks.0" in ran
    assert "blocks.1" not in ran and "final_conv" not in ran


def test_small_nets_keep_full_resolution_at_the_stem():
    model = nfrepro.create_model("nf_resnet_small", features_only=True, in_chans=1)
    assert model.feature_info.reduction() == [1, 1, 2, 4]
    assert [o.shape[-1] for o in model(torch.randn(2, 1, 28, 28))] == [28, 28, 14, 7]


def test_a_backbone_clips_every_parameter_with_agc():
    """No classifier to spare: AGC.from_model clips all of a backbone's parameters, with no
    ``clip_classifier=True`` needed; the stage and first-conv exclusions still find their layers."""
    backbone = nfrepro.create_model("nfnet_f0", features_only=True, **NF)
    assert isinstance(backbone.get_classifier(), torch.nn.Identity)
    opt = nfrepro.AGC.from_model(backbone, torch.optim.SGD(backbone.parameters(), lr=0.1), clipping=0.01)
    assert {id(p) for p in opt._clip_params} == {id(p) for p in backbone.parameters()}
    sum(o.square().mean() for o in backbone(torch.randn(2, 3, 32, 32))).backward()
    opt.step()
    fewer = nfrepro.clip_parameters(backbone, nfrepro.AGCSelection(exclude_first_conv=True,
                                                                   exclude_stages=(-1,)))
    assert len(fewer) < len(list(backbone.parameters()))


@pytest.mark.parametrize("size", [64, 65])
def test_a_backbone_folds_for_inference(size):
    torch.manual_seed(0)
    backbone = nfrepro.create_model("nfnet_f0", features_only=True, out_indices=(0, 2, 4),
                                    skip_gain_init=1.0, **NF).eval()
    folded = fold_for_inference(backbone)
    assert isinstance(folded, FeatureExtractor) and folded.feature_info.module_name() == \
        backbone.feature_info.module_name()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        for a, b in zip(folded(x), backbone(x), strict=True):
            assert (a - b).abs().max() <= 1e-5 * b.abs().max()
