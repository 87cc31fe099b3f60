"""numerics="official" | "timm" (Scaled WS eps and GELU form) and stochastic depth's two conventions,
checked against timm's dm_nfnet_f0 on the same weights."""
import pickle

import pytest
import torch
import torch.nn.functional as F

import nfrepro
from nfrepro.layers.gains import ScaledActivation
from nfrepro.layers.stochastic_depth import StochasticDepth
from nfrepro.layers.weight_standardization import WSConv2d, standardize_weight_reference
from nfrepro.models.folding import fold_for_inference
from nfrepro.models.gelu import gelu_tanh
from nfrepro.models.numerics import TimmWSConv2d, gelu_erf, set_numerics, set_stochastic_depth
from nfrepro.models.weight_formats import to_timm

TINY = dict(depths=(1, 1, 1, 1), channels=(16, 32, 32, 64), group_size=8, num_classes=3)


def randomise_(model):
    """Skip gains, WS gains and biases away from their init, so that every block and constant counts."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("skip_gain", ".gain", "bias")):
                p.uniform_(0.5, 1.5)
    return model.eval()


def assert_timms(ours, expected):
    """Equal to timm's output up to float rounding: 1e-4 of its scale."""
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


@pytest.fixture(scope="module")
def f0_pair():
    """Our F0 under timm's numerics and timm's dm_nfnet_f0 holding the same (random) weights."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    ours = randomise_(nfrepro.create_model("nfnet_f0", numerics="timm"))
    theirs = timm.create_model("dm_nfnet_f0", pretrained=False).eval()
    theirs.load_state_dict(to_timm(ours))
    return ours, theirs


@pytest.mark.slow
def test_timm_numerics_give_timms_logits_and_official_ones_do_not(f0_pair):
    ours, theirs = f0_pair
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = theirs(x)
        assert expected.abs().max() > 0.1
        assert_timms(ours(x), expected)
        official = set_numerics(ours, "official")(x)     # the same weights, the official numerics
        set_numerics(ours, "timm")
    gap = ((official - expected).abs().max() / expected.abs().max()).item()
    assert 1e-2 < gap < 0.2   # the documented few percent (mostly the WS eps)


@pytest.mark.slow
def test_timm_numerics_fold_and_features_match_timm_too(f0_pair):
    ours, theirs = f0_pair
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert_timms(fold_for_inference(ours)(x), theirs(x))
        # pre-logits: what a linear probe or a retrieval index reads
        assert_timms(*(m.forward_head(m.forward_features(x), pre_logits=True) for m in (ours, theirs)))


def test_timm_ws_is_the_additive_eps_formula():
    """timm: gain (W - mean) / sqrt(var + 1e-5) / sqrt(N), from F.batch_norm in ScaledStdConv2dSame."""
    torch.manual_seed(0)
    conv = set_numerics(WSConv2d(6, 4, 3, input_scale=1.7), "timm")
    assert type(conv) is TimmWSConv2d
    with torch.no_grad():
        conv.gain.uniform_(0.5, 1.5)
        conv.weight.mul_(0.01)   # a small variance, where eps matters
    w = conv.weight.view(4, -1)
    by_batch_norm = F.batch_norm(w[None], None, None, training=True, momentum=0.0, eps=1e-5)[0]
    expected = by_batch_norm * (conv.gain * 1.7 / w.shape[1] ** 0.5)[:, None]
    torch.testing.assert_close(conv.standardized_weight().view(4, -1), expected, rtol=1e-5, atol=1e-7)
    official = standardize_weight_reference(conv.weight, conv.gain * 1.7)
    assert not torch.allclose(official, conv.standardized_weight(), rtol=1e-3)
    assert type(set_numerics(conv, "official")) is WSConv2d        # and back
    torch.testing.assert_close(conv.standardized_weight(), official)


def test_set_numerics_switches_gelu_and_ws_only_and_pickles():
    model = nfrepro.create_model("nfnet_f0", **TINY).eval()
    assert model.numerics == "official"
    gelus = [m for m in model.modules() if isinstance(m, ScaledActivation)]
    assert gelus and all(m.fn is gelu_tanh for m in gelus)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    set_numerics(model, "timm")
    assert model.numerics == "timm" and all(m.fn is gelu_erf for m in gelus)
    assert not any(type(m) is WSConv2d for m in model.modules())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(pickle.loads(pickle.dumps(model))(x), model(x))
    relu = nfrepro.create_model("nfnet_f0", activation="relu", numerics="timm", **TINY)
    assert all(m.fn is torch.nn.functional.relu for m in relu.modules() if isinstance(m, ScaledActivation))
    with pytest.raises(ValueError, match="'official'"):
        nfrepro.create_model("nfnet_f0", numerics="jax", **TINY)


def test_scale_by_keep_semantics_in_training():
    """Official (default): a kept branch is not rescaled, so E[train output] = keep * eval output;
    timm's scale_by_keep=True: divided by keep, so E[train output] = eval output."""
    torch.manual_seed(0)
    x = torch.ones(200_000, 1)
    for scale_by_keep, expected_mean, kept_value in ((False, 0.7, 1.0), (True, 1.0, 1 / 0.7)):
        layer = set_stochastic_depth(torch.nn.Sequential(StochasticDepth(0.3)), scale_by_keep)[0].train()
        out = layer(x)
        assert out.unique().tolist() == pytest.approx([0.0, kept_value])
        assert out.mean().item() == pytest.approx(expected_mean, abs=5e-3)
        assert torch.equal(layer.eval()(x), x)       # eval: identity either way


def test_create_model_scale_by_keep_every_family():
    resnet = dict(depths=(1, 1, 1, 1), widths=(16, 32, 32, 64))
    for name, kwargs in (("nfnet_f0", TINY), ("nf_resnet26", resnet)):
        model = nfrepro.create_model(name, drop_path_rate=0.2, scale_by_keep=True, **kwargs)
        layers = [m for m in model.modules() if isinstance(m, StochasticDepth)]
        assert layers and all(m.scale_by_keep for m in layers)
        # the official per-block rates either way: block i of n drops with rate 0.2 i / n
        assert [m.drop_rate for m in layers] == pytest.approx([0.2 * i / 4 for i in range(4)])
        assert not any(m.scale_by_keep for m in nfrepro.create_model(name, **kwargs).modules()
                       if isinstance(m, StochasticDepth))
    with pytest.raises(TypeError, match="True or False"):
        nfrepro.create_model("nfnet_f0", scale_by_keep="yes", **TINY)
