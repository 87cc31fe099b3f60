"""Folding Scaled WS into plain convolutions for inference (``nfrepro.models.folding``)."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from nfrepro.layers.gains import ScaledActivation
from nfrepro.layers.padding import SamePadConv2d
from nfrepro.layers.weight_standardization import WSConv2d
from nfrepro.models.factory import create_model
from nfrepro.models.folding import (
    FoldedNFBlock,
    fold_for_inference,
    fold_weight_standardization,
)
from nfrepro.models.nfnet import NFNet


def count_ops(fn) -> int:
    """ATen ops that ``fn()`` dispatches."""
    class Ops(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Ops.n += 1
            return func(*args, **(kwargs or {}))

    with Ops():
        fn()
    return Ops.n


def randomise(model):
    """Every gain, bias and BN statistic away from its init, so that every constant matters."""
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("gain", "bias")) or ".bn." in name:
                p.uniform_(0.5, 1.5)
        for name, b in model.named_buffers():
            if name.endswith(("running_mean", "running_var")):
                b.uniform_(0.5, 1.5)
    return model.eval()


def tiny(**kwargs):
    torch.manual_seed(0)
    return randomise(NFNet("F0", channels=(32, 64, 64, 64), depths=(1, 2, 2, 1), group_size=16,
                           num_classes=10, skip_gain_init=1.0, **kwargs))


@pytest.mark.parametrize("size", [32, 33])  # 33: TF SAME pads asymmetrically at run time
def test_folded_model_computes_the_same_logits(size):
    model = tiny()
    folded = fold_weight_standardization(model)
    assert not any(isinstance(m, WSConv2d) for m in folded.modules())
    n_ws = sum(isinstance(m, WSConv2d) for m in model.modules())
    assert sum(type(m) is SamePadConv2d for m in folded.modules()) == n_ws
    assert all(isinstance(m, WSConv2d) for m in (model.stem.conv0, model.final_conv))  # input untouched
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert (folded(x) - model(x)).abs().max().item() < 1e-5
    conv = folded.blocks[1].conv1
    assert conv.tf_same and conv.stride == (2, 2) and conv.groups == 2
    assert torch.allclose(conv.weight, model.blocks[1].conv1.standardized_weight())


def test_fold_a_single_conv():
    conv = WSConv2d(4, 6, 3, stride=2)
    plain = fold_weight_standardization(conv)
    x = torch.randn(1, 4, 9, 9)
    assert type(plain) is SamePadConv2d
    assert torch.allclose(plain(x), conv(x), atol=1e-6)


@pytest.mark.parametrize("size", [32, 33])
def test_folding_every_gain_computes_the_same_logits(size):
    model = tiny()
    folded = fold_for_inference(model)
    assert all(type(b) is FoldedNFBlock for b in folded.blocks)
    scaled = [m for m in folded.modules() if isinstance(m, ScaledActivation) and m.gamma != 1.0]
    assert scaled == [folded.final_act]   # the head's gamma stays, so that the features stay equal
    assert all(m.input_scale == 1.0 for m in folded.modules() if isinstance(m, SamePadConv2d))
    assert isinstance(model.blocks[0].conv0, WSConv2d)  # input untouched
    assert model.final_act.gamma > 1.5 and model.blocks[0].conv0.input_scale > 1.5
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        ref = model(x)
        assert (folded(x) - ref).abs().max().item() < 1e-5 * ref.abs().max().item()


@pytest.mark.parametrize("name, kwargs", [
    ("nf_resnet_small", {}), ("nf_resnet_small", {"use_ws": False, "se_ratio": 0.25, "activation": "gelu"}),
    ("nf_resnet26", {"widths": (32, 64, 128, 256)}),
    ("nfnet_bn_f0", {"depths": (1, 2, 1, 1), "channels": (32, 64, 64, 64), "group_size": 16}),
])
def test_fold_for_inference_on_every_nf_family(name, kwargs):
    """NF-ResNets (with and without WS) and the "-NF, +BN" NFNet fold too: same logits, no WS conv,
    no input scale and (for "+BN") no BatchNorm left."""
    torch.manual_seed(0)
    model = randomise(create_model(name, skip_gain_init=1.0, **kwargs))
    folded = fold_for_inference(model)
    assert not any(isinstance(m, (WSConv2d, torch.nn.BatchNorm2d)) for m in folded.modules())
    assert all(m.input_scale == 1.0 for m in folded.modules() if isinstance(m, SamePadConv2d))
    x = torch.randn(2, model.in_chans if hasattr(model, "in_chans") else 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        assert (folded(x) - ref).abs().max().item() < 1e-5 * ref.abs().max().item()


@pytest.mark.parametrize("name, kwargs", [
    ("nfnet_f0", dict(channels=(32, 64, 64, 64), depths=(1, 2, 2, 1), group_size=16)),
    ("nf_resnet26", dict(widths=(16, 32, 32, 64), depths=(1, 1, 1, 1))),
])
def test_folded_features_and_pre_logits_equal_the_models(name, kwargs):
    """Not only the logits: forward_features and forward_head(..., pre_logits=True) of the folded copy
    are the model's (the head's gamma is not moved into the classifier, where it would divide them)."""
    torch.manual_seed(0)
    model = randomise(create_model(name, num_classes=10, skip_gain_init=1.0, **kwargs))
    folded = fold_for_inference(model)
    x = torch.randn(2, 3, 33, 33)
    with torch.no_grad():
        for fn in (lambda m: m.forward_features(x), lambda m: m.forward_head(m.forward_features(x), True),
                   lambda m: m(x)):
            ref = fn(model)
            assert (fn(folded) - ref).abs().max().item() < 1e-5 * ref.abs().max().item()


def test_folding_every_gain_does_less_work():
    """The SE's x * gate goes into the addcmul: fewer ops than the copy with only WS folded (a bound,
    not an exact count)."""
    model = tiny()
    x = torch.randn(1, 3, 32, 32)
    ws_only, folded = fold_weight_standardization(model).eval(), fold_for_inference(model)
    with torch.no_grad():
        assert count_ops(lambda: folded(x)) < count_ops(lambda: ws_only(x))


def test_folding_every_gain_refuses_models_without_nf_constants():
    for name in ("bn_resnet_small", "plain_resnet_small"):
        with pytest.raises(TypeError, match="fold_weight_standardization"):
            fold_for_inference(create_model(name))


@pytest.mark.slow
@pytest.mark.parametrize("fold", [fold_weight_standardization, fold_for_inference])
def test_folded_model_exports(fold):
    folded = fold(tiny())
    x = torch.randn(1, 3, 32, 32)
    program = torch.export.export(folded, (x,))
    with torch.no_grad():
        assert torch.allclose(program.module()(x), folded(x), atol=1e-6)
