"""NFNet-F0..F7 against Table 1, the official ``nfnet.NFNet``/``NFBlock`` and the model contract."""
import math

import pytest
import torch
import torch.nn as nn

from nfrepro.analysis.complexity import count_macs, count_params
from nfrepro.layers.gains import GAMMAS, Activation, ScaledActivation
from nfrepro.layers.padding import SamePadConv2d
from nfrepro.layers.weight_standardization import WSConv2d
from nfrepro.models.nfnet import VARIANTS, NFBlock, NFNet
from nfrepro.models.resnet_blocks import ConvBN

# Official parameter counts (exact for F0 and F6 from paper-facts; all eight equal timm's dm_nfnet_f*)
PARAMS = {"F0": 71_489_284, "F1": 132_634_256, "F2": 193_779_228, "F3": 254_924_200,
          "F4": 316_069_172, "F5": 377_214_144, "F6": 438_359_116, "F7": 499_504_088}
PAPER_PARAMS_M = {"F0": 71.49, "F1": 132.63, "F2": 193.78, "F3": 254.92, "F4": 316.07, "F5": 377.21,
                  "F6": 438.36, "F7": 499.50}
PAPER_MACS_B = {"F0": 12.38, "F1": 35.54, "F2": 62.59, "F3": 114.76, "F4": 215.24, "F5": 289.76,
                "F6": 377.28, "F7": 478.78}  # Table 1 "FLOPs": multiply-adds at the test resolution


def tiny(**kw):
    """A 4-stage NFNet small enough for real forward passes in milliseconds."""
    kw.setdefault("channels", (32, 64, 64, 64))
    kw.setdefault("depths", (1, 2, 2, 1))
    kw.setdefault("group_size", 16)
    kw.setdefault("num_classes", 10)
    return NFNet("F0", **kw)


def meta(variant, **kw):
    with torch.device("meta"):
        return NFNet(variant, **kw)


def test_variant_table_is_table_1():
    rows = {k: (v.depths, v.train_px, v.test_px, v.drop_rate, v.randaugment) for k, v in VARIANTS.items()
            if "+" not in k}
    assert rows == {
        "F0": ((1, 2, 6, 3), 192, 256, 0.2, (4, 5)), "F1": ((2, 4, 12, 6), 224, 320, 0.3, (4, 10)),
        "F2": ((3, 6, 18, 9), 256, 352, 0.4, (4, 10)), "F3": ((4, 8, 24, 12), 320, 416, 0.4, (4, 15)),
        "F4": ((5, 10, 30, 15), 384, 512, 0.5, (4, 15)), "F5": ((6, 12, 36, 18), 416, 544, 0.5, (4, 15)),
        "F6": ((7, 14, 42, 21), 448, 576, 0.5, (4, 15)), "F7": ((8, 16, 48, 24), 480, 608, 0.5, (4, 15)),
    }
    assert all(v.widths == (256, 512, 1536, 1536) for k, v in VARIANTS.items() if "+" not in k)
    assert VARIANTS["F3+"].widths == (384, 768, 2048, 2048)
    assert VARIANTS["F3+"].depths == VARIANTS["F3"].depths


@pytest.mark.parametrize("variant", list(PARAMS))
def test_parameter_counts_are_official(variant):
    n = count_params(meta(variant))
    assert n == PARAMS[variant]
    assert round(n / 1e6, 2) == PAPER_PARAMS_M[variant]


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(PAPER_MACS_B))
def test_flops_at_test_resolution_within_half_a_percent(variant):
    macs = count_macs(meta(variant), VARIANTS[variant].test_px)
    assert macs / 1e9 == pytest.approx(PAPER_MACS_B[variant], rel=0.005)


def test_stem():
    model = tiny(channels=(256, 512, 1536, 1536))
    convs = [m for m in model.stem if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.stride[0], c.kernel_size[0]) for c in convs] == [
        (3, 16, 2, 3), (16, 32, 1, 3), (32, 64, 1, 3), (64, 128, 2, 3)]
    assert all(isinstance(c, WSConv2d) for c in convs)
    assert [type(m) for m in model.stem].count(Activation) == 3  # bare g: gamma is in the next conv
    assert [c.input_scale for c in convs] == [1.0] + [GAMMAS["gelu"]] * 3
    assert isinstance(model.final_act, ScaledActivation) and model.final_act.gamma == GAMMAS["gelu"]
    assert isinstance(model.stem[-1], WSConv2d)  # no activation after the last stem conv


def test_f0_block_structure():
    model = meta("F0")
    blocks = list(model.blocks)
    assert len(blocks) == 12 and [b.stage for b in blocks] == [0, 1, 1, 2, 2, 2, 2, 2, 2, 3, 3, 3]
    assert [b.stride for b in blocks] == [1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1]
    first, transition, plain = blocks[0], blocks[1], blocks[2]
    assert first.pool is None
    assert (first.conv_shortcut.in_channels, first.conv_shortcut.out_channels) == (128, 256)
    assert isinstance(transition.pool, nn.AvgPool2d) and transition.pool.kernel_size == 2
    assert transition.conv_shortcut.kernel_size == (1, 1) and transition.conv_shortcut.stride == (1, 1)
    assert plain.pool is None and plain.conv_shortcut is None
    for b in blocks:
        width = b.conv2.out_channels // 2                       # bottleneck ratio 0.5
        assert b.conv1.groups == b.conv1b.groups == width // 128  # group width 128
        assert b.conv1.out_channels == width and b.conv1.stride[0] == b.stride and b.conv1b.stride == (1, 1)
        assert b.se.fc0.out_features == b.conv2.out_channels // 2 and b.se.gain == 2.0
        assert b.skip_gain.shape == () and b.alpha == 0.2
        assert isinstance(b.residual_out, nn.Identity)
    assert [blocks[i].conv2.out_channels for i in (0, 1, 3, 9)] == [256, 512, 1536, 1536]
    assert all(b.skip_gain.item() == 0.0 for b in tiny().blocks)  # SkipInit (meta tensors hold no values)
    assert model.final_conv.out_channels == model.num_features == 3072
    assert isinstance(model.get_classifier(), nn.Linear) and model.get_classifier() is model.fc
    assert model.fc.in_features == 3072 and model.fc.out_features == 1000
    assert model.variant is VARIANTS["F0"] and model.drop_rate == 0.2 and model.head_drop.p == 0.2


def test_stochastic_depth_rates():
    model = meta("F0")
    rates = [b.stoch_depth.drop_rate for b in model.blocks]
    assert rates == pytest.approx([0.25 * i / 12 for i in range(12)])
    assert not model.blocks[3].stoch_depth.scale_by_keep
    other = meta("F0", stochdepth_rate=0.1)
    assert other.blocks[6].stoch_depth.drop_rate == pytest.approx(0.05)


def test_signal_propagation_at_init():
    """With skip gains 1, block k of a stage sees variance ~ 1 + k alpha^2 and its branch ~ 1.

    alpha = 1 makes the growth easy to see. (Across a ResNet-D transition the 2x2 average pool of
    the shortcut divides the variance of an i.i.d. input by up to 4; real images are smooth.)
    """
    torch.manual_seed(0)
    model = tiny(skip_gain_init=1.0, alpha=1.0, depths=(5, 1, 1, 1), channels=(64, 64, 64, 64)).eval()
    inputs, branches = [], []
    for block in list(model.blocks)[:5]:
        block.register_forward_pre_hook(lambda m, a: inputs.append(a[0].var().item()))
        block.residual_out.register_forward_hook(lambda m, a, out: branches.append(out.var().item()))
    with torch.no_grad():
        model(torch.randn(4, 3, 64, 64))
    assert [1 / b.beta ** 2 for b in list(model.blocks)[:5]] == pytest.approx([1, 2, 3, 4, 5])
    assert inputs == pytest.approx([1, 2, 3, 4, 5], rel=0.2)
    assert all(0.6 < v < 1.2 for v in branches)


def test_skip_gain_zero_makes_blocks_identities():
    model = tiny().eval()
    block = model.blocks[2]  # stride 1, same width: raw shortcut
    assert block.conv_shortcut is None
    x = torch.randn(2, 64, 8, 8)
    assert torch.equal(block(x), x)


def test_residual_out_sees_the_branch_before_gain_and_alpha():
    model = tiny(skip_gain_init=0.5).eval()
    block, seen = model.blocks[2], []
    block.residual_out.register_forward_hook(lambda m, a, out: seen.append(out))
    x = torch.randn(2, 64, 8, 8)
    with torch.no_grad():
        y = block(x)
    assert torch.allclose(y, x + 0.2 * 0.5 * seen[0], atol=1e-6)


def test_forward_train_and_eval_any_size():
    model = tiny(in_chans=1)
    for size in (32, 33):
        out = model.train()(torch.randn(2, 1, size, size))
        assert out.shape == (2, 10) and torch.isfinite(out).all()
    assert model.eval()(torch.randn(1, 1, 32, 32)).shape == (1, 10)


def test_classifier_init():
    model = tiny(channels=(64, 64, 512, 512), num_classes=1000)
    assert model.fc.weight.std().item() == pytest.approx(0.01, rel=0.02)
    assert torch.equal(model.fc.bias, torch.zeros(1000))


def test_switches():
    plain = tiny(use_ws=False)
    assert not any(isinstance(m, WSConv2d) for m in plain.modules())
    assert all(c.bias is not None for c in plain.modules() if isinstance(c, nn.Conv2d))
    relu = tiny(activation="relu", alpha=0.5, drop_rate=0.0, skip_gain_init=1.0)
    assert relu.blocks[0].gamma == GAMMAS["relu"] and relu.blocks[1].alpha == 0.5
    assert relu.blocks[2].conv0.input_scale == GAMMAS["relu"] * relu.blocks[2].beta
    assert relu.blocks[1].skip_gain.item() == 1.0 and relu.head_drop.p == 0.0
    assert relu.blocks[2].beta == pytest.approx(1 / math.sqrt(1.25))
    with pytest.raises(ValueError, match="unknown activation"):
        tiny(activation="swish")
    with pytest.raises(ValueError, match="variant"):
        NFNet("F9")
    no_second = meta("F0", extra_conv=False)
    assert all(b.conv1b is None for b in no_second.blocks)
    assert count_params(no_second) < PARAMS["F0"]


def test_ablation_overrides_of_table_2():
    """T2's default widths [256, 512, 1024, 2048] and the knobs of the block."""
    base = meta("F0", channels=(256, 512, 1024, 2048), extra_conv=False)
    assert [base.blocks[i].conv2.out_channels for i in (0, 1, 3, 9)] == [256, 512, 1024, 2048]
    assert base.num_features == 4096
    wide = meta("F0", width=2.0, se_ratio=0.25, group_size=64, bottleneck_ratio=0.25)
    b = wide.blocks[-1]
    assert b.conv2.out_channels == 3072 and b.conv1.out_channels == 768 and b.conv1.groups == 12
    assert b.se.fc0.out_features == 768
    assert wide.stem.conv3.out_channels == 128  # official: the stem ignores the width multiplier


def test_batchnorm_variant_of_table_6():
    model = tiny(norm="batch", use_ws=False)
    assert not any(isinstance(m, WSConv2d) for m in model.modules())
    convs = [m for m in model.modules() if isinstance(m, SamePadConv2d)]
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == len(bns) and all(c.bias is None for c in convs)
    assert all(isinstance(m, ConvBN) for m in (model.stem.conv0, model.final_conv,
                                               model.blocks[1].conv_shortcut))
    assert all(b.beta == 1.0 and b.alpha == 1.0 for b in model.blocks)
    assert model.blocks[0].gamma == 1.0 and type(model.final_act) is Activation
    assert model.train()(torch.randn(4, 3, 32, 32)).shape == (4, 10)
    with pytest.raises(ValueError, match="use_ws"):
        tiny(norm="batch")


def test_blocks_are_nfblocks_in_a_flat_sequential():
    model = tiny()
    assert isinstance(model.blocks, nn.Sequential) and all(isinstance(b, NFBlock) for b in model.blocks)
    assert [b.stage for b in model.blocks] == sorted(b.stage for b in model.blocks)
