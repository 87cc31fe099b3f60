"""Signal propagation (NF-ResNet paper, arXiv:2101.08692, Fig. 1 and 2; official ``base.signal_metrics``).

The mechanics (statistics, hooks, flags, BatchNorm handling, contract errors) are pinned on a
tiny contract-following net defined here; the paper's SPP shapes are checked on the project's
own ResNets at small width and resolution (``slow``: the 600-layer nets).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from nfrepro.analysis import spp
from nfrepro.layers.gains import ScaledActivation
from nfrepro.layers.weight_standardization import WSConv2d

pytestmark = pytest.mark.usefixtures("one_thread")


class TinyBlock(nn.Module):
    """Pre-activation NF block (official ``NFResBlock`` without the bottleneck)."""

    def __init__(self, cin, cout, stride, stage, alpha, beta, bn=False, k=3):
        super().__init__()
        self.stage, self.alpha, self.beta = stage, alpha, beta
        self.act = ScaledActivation("relu")
        self.norm = nn.BatchNorm2d(cin) if bn else nn.Identity()
        self.conv0 = WSConv2d(cin, cout, k, stride=stride)
        self.conv1 = WSConv2d(cout, cout, k)
        self.shortcut = WSConv2d(cin, cout, 1, stride=stride) if stride > 1 or cin != cout else None
        self.residual_out = nn.Identity()

    def forward(self, x):
        out = self.act(self.norm(x)) * self.beta
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.residual_out(self.conv1(self.act(self.conv0(out))))
        return shortcut + self.alpha * out


class TinyNet(nn.Module):
    def __init__(self, depths=(2, 3), widths=(8, 16), alpha=0.2, bn=False, k=3):
        super().__init__()
        self.alpha = alpha
        self.stem = WSConv2d(3, widths[0], k)
        blocks, cin = [], widths[0]
        for stage, (depth, width) in enumerate(zip(depths, widths, strict=True)):
            expected_std = 1.0
            for j in range(depth):
                blocks.append(TinyBlock(cin, width, 2 if j == 0 and stage > 0 else 1, stage,
                                        alpha, 1.0 / expected_std, bn=bn, k=k))
                expected_std = math.sqrt((1.0 if j == 0 else expected_std ** 2) + alpha ** 2)
                cin = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(cin, 10)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


def _manual(model, x):
    """The SPP rows computed by hand, without hooks."""
    rows, h = [], model.stem(x)
    rows.append(spp.channel_stats(h))
    for block in model.blocks:
        h = block(h)
        rows.append(spp.channel_stats(h))
    return rows


def test_channel_stats_match_official_formula():
    x = torch.randn(4, 3, 5, 6, dtype=torch.float64) * torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1) + 0.5
    sq_mean, var = spp.channel_stats(x)
    # official: jnp.mean(jnp.mean(x, NHW) ** 2), jnp.mean(jnp.var(x, NHW)); jnp.var has ddof=0
    arr = x.permute(0, 2, 3, 1).reshape(-1, 3).numpy()
    assert sq_mean == pytest.approx(np.mean(arr.mean(0) ** 2), rel=1e-12)
    assert var == pytest.approx(np.mean(arr.var(0, ddof=0)), rel=1e-12)
    # N x C tensors (no spatial axes) reduce over N only
    assert spp.channel_stats(x[:, :, 0, 0])[1] == pytest.approx(np.mean(x[:, :, 0, 0].numpy().var(0)))


def test_signal_propagation_rows_and_values():
    torch.manual_seed(0)
    model, x = TinyNet(), torch.randn(8, 3, 16, 16)
    df = spp.signal_propagation(model, x)
    assert list(df.columns) == list(spp.COLUMNS)
    assert len(df) == 1 + len(model.blocks)
    assert df["index"].tolist() == list(range(len(df)))
    assert df.loc[0, "block"] == "stem" and df.loc[0, "stage"] == -1
    assert math.isnan(df.loc[0, "res_avg_var"]) and df["res_avg_var"].iloc[1:].notna().all()
    assert df["stage"].tolist() == [-1, 0, 0, 1, 1, 1]
    assert df["block_in_stage"].tolist() == [-1, 0, 1, 0, 1, 2]
    with torch.no_grad():
        manual = _manual(model, x)
    np.testing.assert_allclose(df[["avg_sq_mean", "avg_var"]].to_numpy(), np.array(manual), rtol=1e-6)


def test_residual_variance_is_read_before_alpha():
    torch.manual_seed(0)
    model, x = TinyNet(), torch.randn(8, 3, 16, 16)
    block = model.blocks[1]  # not a transition: out = x + alpha * residual
    captured = {}
    block.residual_out.register_forward_hook(lambda m, i, o: captured.update(r=o.clone()))
    df = spp.signal_propagation(model, x)
    assert df.loc[2, "res_avg_var"] == pytest.approx(spp.channel_stats(captured["r"])[1], rel=1e-9)


def test_hooks_removed_and_flags_restored():
    model = TinyNet()
    model.train()
    model.blocks[0].eval()  # a mixed state must come back exactly
    flags = {n: m.training for n, m in model.named_modules()}
    spp.signal_propagation(model, torch.randn(2, 3, 8, 8))
    assert {n: m.training for n, m in model.named_modules()} == flags
    assert all(not m._forward_hooks for m in model.modules())


def test_hooks_removed_on_error():
    model = TinyNet()
    model.train()

    def boom(module, inputs, output):
        raise RuntimeError("boom")

    model.blocks[2].conv0.register_forward_hook(boom)
    with pytest.raises(RuntimeError, match="boom"):
        spp.signal_propagation(model, torch.randn(2, 3, 8, 8))
    assert model.training and all(m.training for m in model.modules())
    hooked = [n for n, m in model.named_modules() if m._forward_hooks]
    assert hooked == ["blocks.2.conv0"]  # only the test's own hook is left


def test_eval_mode_inside_no_grad():
    seen = {}

    def spy(module, inputs, output):
        seen["training"], seen["grad"] = module.training, torch.is_grad_enabled()

    model = TinyNet()
    model.train()
    model.blocks[0].register_forward_hook(spy)
    spp.signal_propagation(model, torch.randn(2, 3, 8, 8))
    assert seen == {"training": False, "grad": False}


def test_batchnorm_uses_batch_statistics_and_keeps_running_averages():
    torch.manual_seed(0)
    model = TinyNet(bn=True)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.fill_(0.3)
            m.running_var.fill_(2.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    bn = model.blocks[1].norm
    seen = {}
    bn.register_forward_hook(lambda m, i, o: seen.update(out=o.clone()))
    spp.signal_propagation(model, torch.randn(8, 3, 16, 16) * 3 + 1)
    # the BN output is standardised with the batch's statistics, not the running ones
    sq_mean, var = spp.channel_stats(seen["out"])
    assert sq_mean < 1e-10 and var == pytest.approx(1.0, abs=1e-3)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_batch_stats_false_leaves_batchnorm_in_eval_mode():
    torch.manual_seed(0)
    model = TinyNet(bn=True)
    bn, seen = model.blocks[1].norm, {}
    bn.register_forward_hook(lambda m, i, o: seen.update(identity=torch.allclose(i[0], o, atol=1e-4)))
    spp.signal_propagation(model, torch.randn(4, 3, 8, 8), batch_stats=False)
    assert seen["identity"]  # running stats 0 / 1 at init: eval-mode BN is the identity


def test_input_follows_model_dtype():
    model = TinyNet().double()
    df = spp.signal_propagation(model, torch.randn(2, 3, 8, 8))
    assert np.isfinite(df["avg_var"]).all()


@pytest.mark.parametrize("broken, message", [
    (nn.Sequential(nn.Conv2d(3, 4, 3)), "no `stem`"),
    ("no_stage", "integer `stage`"),
    ("no_residual_out", "residual_out"),
])
def test_contract_errors(broken, message):
    if broken == "no_stage":
        broken = TinyNet()
        del broken.blocks[1].stage
    elif broken == "no_residual_out":
        broken = TinyNet()
        del broken.blocks[0].residual_out
    with pytest.raises(TypeError, match=message):
        spp.signal_propagation(broken, torch.randn(1, 3, 8, 8))


def test_skipped_block_is_an_error():
    model = TinyNet()
    model.forward = lambda x: model.blocks[0](model.stem(x))
    with pytest.raises(RuntimeError, match="run once each"):
        spp.signal_propagation(model, torch.randn(1, 3, 8, 8))


def test_expected_variances_reads_model_alpha():
    series = spp.expected_variances(TinyNet(alpha=0.5))
    assert series.index.name == "index" and len(series) == 6
    assert series.tolist() == pytest.approx([1.0, 1.25, 1.5, 1.25, 1.5, 1.75])


def test_tiny_nf_net_tracks_theory():
    """Scaled WS + gamma + beta: the variance follows 1 + k alpha^2 and the mean stays ~0.

    1 x 1 convs: zero padding at the borders of a small image would lower every 3 x 3 conv's
    output variance (by ~8% at 16 x 16) and bias the comparison.
    """
    torch.manual_seed(0)
    model = TinyNet(depths=(4, 4), widths=(64, 64), k=1)
    df = spp.signal_propagation(model, torch.randn(16, 3, 16, 16))
    theory = spp.expected_variances(model)
    assert np.max(np.abs(df["avg_var"] / theory - 1)) < 0.1
    assert df["avg_sq_mean"].max() < 0.1


def test_to_long_round_trips_through_plotting():
    from nfrepro.analysis.plotting import spp_frames

    torch.manual_seed(0)
    a, b = TinyNet(), TinyNet(bn=True)
    x = torch.randn(4, 3, 8, 8)
    frames = {"nf": spp.signal_propagation(a, x), "bn": spp.signal_propagation(b, x)}
    frames["nf"]["expected_var"] = spp.expected_variances(a).to_numpy()
    long = spp.to_long(frames)
    assert set(long.columns) == set(spp.ID_COLUMNS) | {"metric", "value"}
    assert long["value"].notna().all()
    back = spp_frames(long)
    assert list(back) == ["nf", "bn"]
    for name, df in frames.items():
        got = back[name].reset_index(drop=True)
        np.testing.assert_allclose(got["avg_var"], df["avg_var"])
        np.testing.assert_allclose(got["res_avg_var"], df["res_avg_var"])  # NaN at the stem
    assert "expected_var" not in back["bn"] or back["bn"]["expected_var"].isna().all()


def test_registry_models_follow_the_contract(short_nets):
    frames, models = short_nets
    for label, df in frames.items():
        assert len(df) == 17 and df["stage"].tolist() == [-1] + [0] * 8 + [1] * 8, label
        assert np.isfinite(df[["avg_sq_mean", "avg_var"]].to_numpy()).all(), label


def test_expected_variances_agree_with_resnet_bookkeeping(short_nets):
    _, models = short_nets
    model = models["nf_ws"]
    assert spp.expected_variances(model).tolist() == pytest.approx(model.expected_block_variances())
