"""NF-ResNet / BN-ResNet / unnormalised ResNet (nfrepro.models.resnet, nfrepro.models.resnet_blocks).

Pins the official ``nf_resnet.NF_ResNet`` structure (depth table, stem, beta bookkeeping,
SkipInit gain, stochastic-depth schedule, head init), the model contract of docs/DESIGN.md and
the signal-propagation behaviour at initialisation (NF-ResNet paper §2, §4).
"""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn as nn

from nfrepro.layers.gains import (
    GAMMAS,
    Activation,
    ScaledActivation,
    activation_second_moment,
)
from nfrepro.layers.padding import SamePadConv2d, SamePadMaxPool2d
from nfrepro.layers.squeeze_excite import SqueezeExcite
from nfrepro.layers.weight_standardization import WSConv2d
from nfrepro.models import registry
from nfrepro.models import resnet as R

FAMILIES = ("nf", "bn", "plain")
BUILDERS = {"nf": R.nf_resnet, "bn": R.bn_resnet, "plain": R.plain_resnet}
TINY = dict(depths=(2, 3, 2), widths=(8, 16, 32))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv_weight_shapes(model: nn.Module) -> list[tuple[int, ...]]:
    return [tuple(m.weight.shape) for m in model.modules() if isinstance(m, nn.Conv2d)]


def official_betas(depths, alpha):
    """The official NF_ResNet loop, transcribed: beta = 1 / expected_std, reset after block 0."""
    betas, expected_std = [], 1.0
    for depth in depths:
        for j in range(depth):
            betas.append(1.0 / expected_std)
            if j == 0:
                expected_std = 1.0
            expected_std = (expected_std ** 2 + alpha ** 2) ** 0.5
    return betas


def test_every_variant_is_registered():
    names = {f"{f}_resnet{d}" for f in FAMILIES for d in R.DEPTHS} | {f"{f}_resnet_small" for f in FAMILIES}
    assert names <= set(registry._REGISTRY)
    assert R.DEPTHS[50] == (3, 4, 6, 3) and R.DEPTHS[101] == (3, 4, 23, 3)
    assert R.DEPTHS[152] == (3, 8, 36, 3) and R.DEPTHS[200] == (3, 24, 36, 3)
    assert R.DEPTHS[288] == (24,) * 4 and R.DEPTHS[600] == (50,) * 4


def test_resnet50_parameter_counts():
    with torch.device("meta"):
        nf, bn, plain = (registry.build_model(f"{f}_resnet50") for f in FAMILIES)
    # torchvision/timm ResNet-50 has 25,557,032: every WS conv's gain + bias (2 x C_out) sits
    # where that net has a BN (2 x C_out); the NF net adds one scalar skip gain per block (16).
    assert n_params(nf) == 25_557_032 + 16
    # Ours, stated for reference: pre-activation BN on each conv's input + a final BN; no stem BN.
    assert n_params(bn) == 25_549_352
    assert n_params(plain) == 25_530_472  # conv biases, no norm
    assert conv_weight_shapes(nf) == conv_weight_shapes(bn) == conv_weight_shapes(plain)
    assert len(nf.blocks) == 16 and nf.stem[0].weight.shape == (64, 3, 7, 7)


@pytest.mark.parametrize("family", FAMILIES)
def test_forward_shapes_at_224_on_meta(family):
    with torch.device("meta"):  # defaults built and run for shapes only (no compute)
        model = registry.build_model(f"{family}_resnet50")
        assert model.stem(torch.empty(1, 3, 224, 224)).shape == (1, 64, 56, 56)
        assert model.forward_features(torch.empty(1, 3, 224, 224)).shape == (1, 2048, 7, 7)
        assert model(torch.empty(1, 3, 224, 224)).shape == (1, 1000)


@pytest.mark.parametrize("family", ["nf", pytest.param("bn", marks=pytest.mark.slow),
                                    pytest.param("plain", marks=pytest.mark.slow)])
def test_resnet50_builds_with_defaults_and_runs(family):
    torch.manual_seed(0)
    model = registry.build_model(f"{family}_resnet50")
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 1000) and torch.isfinite(out).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_small_nets(family):
    model = registry.build_model(f"{family}_resnet_small", in_chans=1)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    model = registry.build_model(f"{family}_resnet_small")  # in_chans=3 by default (CIFAR-10)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert [b.stage for b in model.blocks] == [0, 0, 1, 1, 2, 2]
    assert model.stem[0].kernel_size == (3, 3) and model.stem[0].stride == (1, 1)
    assert len(model.stem) == 1  # no max-pool


def test_small_nets_have_identical_shapes_and_pinned_sizes():
    nets = {f: registry.build_model(f"{f}_resnet_small") for f in FAMILIES}
    shapes = {f: conv_weight_shapes(m) for f, m in nets.items()}
    assert shapes["nf"] == shapes["bn"] == shapes["plain"]
    assert shapes["nf"][0] == (16, 3, 3, 3) and shapes["nf"][-1] == (64, 64, 3, 3)
    assert {f: n_params(m) for f, m in nets.items()} == {"nf": 175_264, "bn": 175_066, "plain": 174_698}
    wide = registry.build_model("nf_resnet_small", widths=(64, 128, 256), depths=(3, 3, 3))
    assert wide.num_features == 256 and len(wide.blocks) == 9


def test_nf_block_structure_follows_the_official_block():
    with torch.device("meta"):  # structure only: no weights needed
        model = registry.build_model("nf_resnet50", se_ratio=0.25)
    first, second = model.blocks[0], model.blocks[1]
    assert type(first.pre) is Activation and first.gamma == GAMMAS["relu"]  # gamma: the convs' input scale
    assert first.convs[0].input_scale == first.shortcut.input_scale == GAMMAS["relu"] * first.beta
    assert [c.input_scale for c in first.convs[1:]] == [GAMMAS["relu"]] * 2
    assert [tuple(c.weight.shape) for c in first.convs] == [(64, 64, 1, 1), (64, 64, 3, 3), (256, 64, 1, 1)]
    assert tuple(first.shortcut.weight.shape) == (256, 64, 1, 1) and second.shortcut is None
    transition = model.blocks[3]
    assert transition.convs[1].stride == (2, 2) and transition.shortcut.stride == (2, 2)
    assert all(isinstance(m, WSConv2d) and m.bias is not None
               for m in model.modules() if isinstance(m, nn.Conv2d))
    assert isinstance(first.se, SqueezeExcite) and first.se.gain == 2.0
    assert first.se.fc0.out_features == 64  # int(256 * 0.25)
    assert model.stem[0].bias is not None   # the official WSConv2D always adds a bias
    # stochastic depth: official rate * index / num_blocks, with rate 0.1 by default
    assert [b.stoch_depth.drop_rate for b in model.blocks] == pytest.approx([0.1 * i / 16 for i in range(16)])


def test_beta_schedule_matches_the_official_bookkeeping():
    alpha = 0.3
    model = R.nf_resnet(**TINY, alpha=alpha)
    betas = [b.beta for b in model.blocks]
    assert betas == pytest.approx(official_betas(TINY["depths"], alpha))
    # closed form: 1 / sqrt(1 + k alpha^2), k = number of blocks since the last reset
    ks = [0, 1, 2, 1, 2, 3, 1]  # a transition block's beta still sees the previous stage's k
    assert betas == pytest.approx([1 / math.sqrt(1 + k * alpha ** 2) for k in ks])
    expected = [1.0] + [1 / b ** 2 for b in betas[1:]] + [1 + 2 * alpha ** 2]
    assert model.expected_block_variances() == pytest.approx(expected)
    assert all(b.alpha == alpha for b in model.blocks) and model.alpha == alpha
    assert all(b.beta == 1.0 for b in R.bn_resnet(**TINY).blocks)


def test_skip_gain_init_is_respected():
    model = R.nf_resnet(**TINY)
    assert all(b.skip_gain.ndim == 0 and b.skip_gain.item() == 0.0 for b in model.blocks)
    # SkipInit: with gain 0 a non-projection block is the identity at initialisation
    x = torch.randn(2, 16, 4, 4)
    assert torch.equal(model.blocks[3](x), x)
    assert all(b.skip_gain.item() == 1.0 for b in R.nf_resnet(**TINY, skip_gain_init=1.0).blocks)
    assert all(b.skip_gain is None for b in R.nf_resnet(**TINY, skip_gain_init=None).blocks)
    assert all(b.skip_gain is None for b in R.bn_resnet(**TINY).blocks)
    assert all(b.skip_gain.item() == 0.5 for b in R.plain_resnet(**TINY, skip_gain_init=0.5).blocks)


def test_use_ws_false_gives_plain_he_init_convs():
    model = R.nf_resnet(depths=(1,), widths=(1024,), use_ws=False)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and not any(isinstance(m, WSConv2d) for m in convs)
    assert all(type(m) is SamePadConv2d for m in convs)
    assert activation_second_moment("relu") == pytest.approx(0.5, abs=1e-6)
    # He init for the scaled ReLU: std = sqrt(2 / fan_in) / gamma (gamma cancels)
    conv = model.blocks[0].convs[1]
    fan_in = 256 * 9
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in) / GAMMAS["relu"], rel=0.02)
    assert all(type(m) is SamePadConv2d for m in R.plain_resnet(**TINY).modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize("builder, kwargs, word", [
    (R.bn_resnet, {"use_ws": True}, "use_ws"),
    (R.plain_resnet, {"use_ws": True}, "use_ws"),
    (R.nf_resnet, {"order": "relu_bn_conv"}, "order"),
    (R.plain_resnet, {"order": "bn_relu_conv"}, "order"),
    (R.bn_resnet, {"order": "conv_bn_relu"}, "order"),
    (R.nf_resnet, {"activation": "swish"}, "activation"),
    (R.nf_resnet, {"drop_rate": 1.0}, "drop_rate"),
    (R.bn_resnet, {"stochdepth_rate": 1.5}, "stochdepth_rate"),
    (R.plain_resnet, {"se_ratio": -0.5}, "se_ratio"),
    (R.nf_resnet, {"widths": (8, 16)}, "widths"),
])
def test_bad_switches_raise(builder, kwargs, word):
    with pytest.raises(ValueError, match=word):
        builder(**{**TINY, **kwargs})
    with pytest.raises(ValueError, match=word):  # through the registry's constructors too
        registry.build_model(f"{builder.args[0]}_resnet_small", **kwargs)


def test_bn_orders_differ_in_module_order():
    a = R.bn_resnet(**TINY)
    b = R.bn_resnet(**TINY, order="relu_bn_conv")
    assert [type(m) for m in a.blocks[0].pre] == [nn.BatchNorm2d, Activation]
    assert [type(m) for m in b.blocks[0].pre] == [Activation, nn.BatchNorm2d]
    assert [type(m) for m in b.blocks[0].acts[0]] == [Activation, nn.BatchNorm2d]
    assert [type(m) for m in b.final_act] == [Activation, nn.BatchNorm2d]
    assert a.order == "bn_relu_conv" and b.order == "relu_bn_conv"
    assert not any(type(m) in (WSConv2d, ScaledActivation) for m in a.modules())
    assert all(m.bias is None for m in a.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize("family", FAMILIES)
def test_model_contract(family):
    model = BUILDERS[family](**TINY, num_classes=7, in_chans=2, drop_rate=0.3)
    assert isinstance(model.stem, nn.Sequential) and isinstance(model.stem[0], nn.Conv2d)
    assert isinstance(model.stem[1], SamePadMaxPool2d)  # the NF stem: conv, then max-pool
    assert isinstance(model.blocks, nn.Sequential) and len(model.blocks) == 7
    assert [b.stage for b in model.blocks] == [0, 0, 1, 1, 1, 2, 2]
    assert all(isinstance(b.residual_out, nn.Identity) for b in model.blocks)
    fc = model.get_classifier()
    assert isinstance(fc, nn.Linear) and fc is model.fc and fc.out_features == 7
    assert fc.weight.std().item() == pytest.approx(0.01, rel=0.3) and not fc.bias.any()
    assert model.head_drop.p == 0.3 and model.family == family
    assert model(torch.randn(2, 2, 32, 32)).shape == (2, 7)


def test_residual_out_sees_the_branch_before_skip_gain_and_alpha():
    model = R.nf_resnet(**TINY, alpha=0.5, skip_gain_init=0.25).eval()
    block, seen = model.blocks[1], {}
    block.residual_out.register_forward_hook(lambda m, i, o: seen.setdefault("r", o.detach()))
    x = torch.randn(2, 8, 8, 8)
    out = block(x)
    assert torch.allclose(out, x + 0.5 * 0.25 * seen["r"], atol=1e-6)


@pytest.mark.parametrize("family", list(R.FAMILY_DEFAULTS))
@pytest.mark.parametrize("index", [0, 2])  # identity shortcut; projection shortcut at a transition
def test_block_forward_equals_the_paper_formula(family, index):
    """The block computes each activation as the bare g and hands its constant (gamma, times beta
    at the block's head) to the convs that read it as their input_scale; the result is the
    formula with the multiplies where the paper puts them: h = beta * gamma pre(x), shortcut(h)
    or x, f = conv(gamma act(conv(h))), x+ = shortcut + alpha s f, with unscaled convs."""
    torch.manual_seed(0)
    model = {"nf": R.nf_resnet, "bn": R.bn_resnet, "plain": R.plain_resnet}[family](
        **TINY, alpha=0.5, skip_gain_init=None if family != "nf" else 0.7).double().eval()
    block = model.blocks[index]

    def paper(conv):  # the conv of the paper's formula: no input scale
        conv = copy.deepcopy(conv)
        conv.input_scale = 1.0
        return conv

    x = torch.randn(2, block.in_channels, 8, 8, dtype=torch.float64)
    h = block.gamma * block.pre(x) * block.beta
    shortcut = x if block.shortcut is None else paper(block.shortcut)(h)
    f = paper(block.convs[0])(h)
    for act, conv in zip(block.acts, block.convs[1:], strict=True):
        f = paper(conv)(block.gamma * act(f))
    gain = block.alpha * (1.0 if block.skip_gain is None else block.skip_gain)
    expected = shortcut + gain * f
    if family == "nf" and index == 2:
        assert block.beta != 1.0  # the transition block: beta is folded too
    assert torch.allclose(block(x), expected, rtol=1e-10, atol=1e-12)


def test_channels_last_model_runs_channels_last_from_a_one_channel_stem():
    """With a channels-last model, every conv of a 1-channel (Fashion-MNIST) NF net reads and
    writes channels-last maps: the stem's standardized weight keeps the parameter's layout."""
    model = registry.build_model("nf_resnet_small", in_chans=1).to(memory_format=torch.channels_last)
    seen = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and name != "stem.0":
            m.register_forward_pre_hook(lambda m, a, n=name: seen.append(
                (n, a[0].is_contiguous(memory_format=torch.channels_last) and not a[0].is_contiguous())))
    x = torch.randn(4, 1, 28, 28)  # a 1-channel batch is both layouts at once
    model(x)
    assert seen and all(ok for _, ok in seen), [n for n, ok in seen if not ok]


def test_nf_signal_propagation_matches_theory():
    """§4: with Scaled WS and skip gains 1, Var(block output) = 1 + k alpha^2 (reset at
    transitions), channel means stay near 0 and the residual branch has variance near 1."""
    torch.manual_seed(0)
    model = R.nf_resnet(depths=(3, 3), widths=(64, 128), skip_gain_init=1.0, alpha=0.4).eval()
    outs, res = [], []
    for b in model.blocks:
        b.register_forward_hook(lambda m, i, o: outs.append(o))
        b.residual_out.register_forward_hook(lambda m, i, o: res.append(o))
    with torch.no_grad():
        model(torch.randn(8, 3, 64, 64))
    var = [o.var(dim=(0, 2, 3), unbiased=False).mean().item() for o in outs]
    assert var == pytest.approx(model.expected_block_variances()[1:], rel=0.2)
    assert var[2] > var[1] > var[0] and var[3] < var[2]  # linear growth, reset at the transition
    assert max(o.mean(dim=(0, 2, 3)).square().mean().item() for o in outs) < 0.05
    res_var = [r.var(dim=(0, 2, 3), unbiased=False).mean().item() for r in res]
    assert res_var == pytest.approx([1.0] * 6, rel=0.25)


def test_without_ws_channel_means_drift_and_plain_nets_explode():
    """§4 mean shift without WS; §2: unnormalised ResNets grow exponentially."""
    torch.manual_seed(0)
    x = torch.randn(8, 3, 32, 32)
    kw = dict(depths=(2, 2), widths=(64, 128), small_stem=True, bottleneck=False)

    def block_stats(model):
        outs = []
        for b in model.blocks:
            b.register_forward_hook(lambda m, i, o: outs.append(o))
        with torch.no_grad():
            model.eval()(x)
        return [(o.mean(dim=(0, 2, 3)).square().mean().item(), o.square().mean().item()) for o in outs]

    ws = block_stats(R.nf_resnet(**kw, skip_gain_init=1.0))
    no_ws = block_stats(R.nf_resnet(**kw, skip_gain_init=1.0, use_ws=False))
    assert no_ws[-1][0] > 10 * ws[-1][0] and no_ws[-1][0] > 0.1
    plain = block_stats(R.plain_resnet(**kw))
    assert plain[-1][1] > 4 * plain[0][1]  # second moment roughly doubles every block


def test_600_layer_structure_at_tiny_width():
    model = registry.build_model("nf_resnet600", widths=(8, 16, 32, 64))
    assert len(model.blocks) == 200 and [b.stage for b in model.blocks].count(3) == 50
    assert model.blocks[50].beta == pytest.approx(1 / math.sqrt(1 + 50 * 0.2 ** 2))  # stage 0 ends at k = 50


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_600_layer_forward_at_tiny_width(family):
    model = registry.build_model(f"{family}_resnet600", widths=(8, 16, 32, 64), skip_gain_init=1.0)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 1000) and (family == "plain" or torch.isfinite(out).all())


@pytest.mark.slow
def test_parameter_counts_of_every_depth():
    expected = {  # computed by this implementation; nf = bn-free torchvision-style count + skip gains
        "nf": {26: 15_995_184, 50: 25_557_048, 101: 44_549_193, 152: 60_192_858,
               200: 64_673_898, 288: 146_460_552, 600: 300_646_896},
        "bn": {26: 15_987_496, 50: 25_549_352, 101: 44_541_480, 152: 60_185_128,
               200: 64_666_152, 288: 146_452_776, 600: 300_639_016},
        "plain": {26: 15_979_752, 50: 25_530_472, 101: 44_496_488, 152: 60_117_096,
                  200: 64_585_832, 288: 146_318_312, 600: 300_354_792},
    }
    with torch.device("meta"):
        for family, counts in expected.items():
            for depth, count in counts.items():
                assert n_params(registry.build_model(f"{family}_resnet{depth}")) == count, (family, depth)
