"""Notebook 01's claims (``nfrepro.experiments.signal_propagation``): the SPP shapes of the NF-ResNet
paper (Fig. 1 and 2) hold on the project's own nets at small width and resolution (``slow``: the
600-layer nets); an NFNet-F0 passes its own checks."""
import pytest
import torch
from conftest import NETS, spp_of

import nfrepro
from nfrepro.analysis import spp
from nfrepro.experiments import signal_propagation as claims

pytestmark = pytest.mark.usefixtures("one_thread")


def test_spp_checks_hold_on_short_nets(short_nets):
    frames, models = short_nets
    checks = claims.spp_checks(frames, expected=spp.expected_variances(models["nf_ws"]))
    assert len(checks) == 13 and checks["check"].is_unique
    failed = checks.loc[~checks["ok"], ["check", "value", "op", "bound"]]
    assert failed.empty, failed.to_string()


def test_nfnet_f0_checks():
    torch.manual_seed(0)
    model = nfrepro.create_model("nfnet_f0", skip_gain_init=1.0, width=0.125)
    df = spp.signal_propagation(model, torch.randn(4, 3, 128, 128))
    assert len(df) == 1 + 12
    checks = claims.nfnet_checks(df, model.alpha)
    assert checks["ok"].all(), checks.to_string()


@pytest.mark.slow
def test_resnet600_checks():
    """The paper's 600-layer ResNets (depths 50, 50, 50, 50) at 1/16 width, 512 px, batch 2.

    512 px, as published: the last stage still has 16 x 16 maps, so zero padding costs its
    3 x 3 convs only ~8% of their variance (at 256 px the last stage is 8 x 8 and NF + WS ends
    ~11% under 1 + k alpha^2 for that reason alone).
    """
    frames, models = spp_of(NETS, depths=(50,) * 4, widths=(16, 32, 64, 128), resolution=512, batch=2)
    checks = claims.spp_checks(frames, expected=spp.expected_variances(models["nf_ws"]))
    assert checks["ok"].all(), checks.loc[~checks["ok"]].to_string()


def test_nfnet_prediction_follows_the_pooled_transitions():
    torch.manual_seed(0)
    model = nfrepro.create_model("nfnet_f0", skip_gain_init=1.0, width=0.125)
    pred = claims.nfnet_prediction(model)
    assert len(pred) == 1 + 12 and pred["predicted_var"].iloc[0] == 1.0
    var = pred["predicted_var"]
    # every strided transition (indices 2, 4, 10) keeps about a quarter of its beta-scaled input
    # (beta^2 = 1 / (1 + k alpha^2) < 1 after a long stage), never a reset to 1 + alpha^2
    assert all(0.15 < var[i] / var[i - 1] < 0.32 for i in (2, 4, 10))
    x = torch.randn(4, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    df = spp.signal_propagation(model, x)
    assert claims.max_deviation_from(df, var) < 0.15                       # measured vs predicted
    assert claims.max_deviation_from(df, spp.expected_variances(model)) > 0.9  # 1 + k alpha^2: ~100x too high


def test_evidence_over_seeds_gives_each_number_a_spread():
    nets = {k: NETS_BY_LABEL[k] for k in NETS_BY_LABEL}
    run = lambda s: claims.run_spps(nets, (3, 3, 3, 3), (16, 32, 64, 128), 2, 64, s,  # noqa: E731
                                    nfnet_width=0.0625)
    per_seed = claims.evidence_over_seeds(run, [0, 1], alpha=0.2)
    summary = claims.spread(per_seed)
    assert set(per_seed["seed"]) == {0, 1} and (summary["count"] == 2).all()
    assert (summary["min"] <= summary["mean"]).all() and (summary["mean"] <= summary["max"]).all()
    assert (summary["min"] < summary["max"]).loc["nf_ws_variance_vs_theory"]   # seeds do differ
    assert {"nfnet_var_vs_prediction", "plain_growth_per_block", "nf_he_sq_mean_last"} <= set(summary.index)
    text = claims.with_spread(summary, "plain_growth_per_block")
    assert text.count("[") == 1 and text.startswith(f"{summary.loc['plain_growth_per_block', 'mean']:.2f}")


NETS_BY_LABEL = {  # notebook 01's nets, by its labels
    "BN-ReLU-Conv": ("bn_resnet600", dict(order="bn_relu_conv")),
    "ReLU-BN-Conv": ("bn_resnet600", dict(order="relu_bn_conv")),
    "NF, He init (no WS)": ("nf_resnet600", dict(use_ws=False, skip_gain_init=1.0)),
    "NF, Scaled WS": ("nf_resnet600", dict(skip_gain_init=1.0)),
    "unnormalised": ("plain_resnet600", dict()),
}
