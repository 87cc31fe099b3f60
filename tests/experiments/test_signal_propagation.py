"""Notebook 01's claims (``nfrepro.experiments.signal_propagation``): the SPP shapes of the NF-ResNet
paper (Fig. 1 and 2) hold on the project's own nets at small width and resolution (``slow``: the
600-layer nets); an NFNet-F0 passes its own checks."""
import pandas as pd
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


def test_correlated_images_share_the_noise_moments_but_not_its_independence():
    images = torch.zeros(6, 1, 8, 8, dtype=torch.uint8)
    images[:, :, 2:6, 2:6] = 200                     # a bright square on black, like a garment
    images[3:, :, :, :4] = 90
    x = claims.correlated_images(images, batch=4, resolution=64, seed=0)
    assert x.shape == (4, 3, 64, 64) and torch.equal(x[:, 0], x[:, 2])
    assert abs(float(x.mean())) < 1e-5 and float(x.var(unbiased=False)) == pytest.approx(1.0, rel=1e-4)
    assert claims.neighbour_correlation(x) > 0.9
    assert abs(claims.neighbour_correlation(torch.randn(4, 3, 64, 64))) < 0.05
    again = claims.correlated_images(images, batch=4, resolution=64, seed=0)
    assert torch.equal(x, again)                     # the seed picks the images


def test_nfnet_on_images_and_noise_one_net_and_a_reading_from_the_numbers():
    images = (torch.rand(20, 1, 8, 8) * 255).to(torch.uint8)
    images = torch.nn.functional.avg_pool2d(images.float(), 3, 1, 1).to(torch.uint8)  # smoother
    per_seed = claims.nfnet_inputs_over_seeds(images, [0, 1], batch=2, resolution=64, width=0.0625)
    names = set(per_seed["name"])
    assert {"stem_var", "kept_stage1", "kept_stage3", "final_var", "pixel_correlation", "first_conv_var",
            "first_conv_var_uncentred"} <= names
    assert set(per_seed["input"]) == {claims.NOISE, claims.IMAGES} and set(per_seed["seed"]) == {0, 1}
    noise = per_seed[(per_seed["input"] == claims.NOISE) & per_seed["name"].str.startswith("kept")]
    assert noise["value"].between(0.1, 0.35).all()   # a 2 x 2 pool of uncorrelated pixels: ~ a quarter
    text = claims.input_reading(per_seed)
    kept = per_seed[per_seed["name"].str.startswith("kept")].groupby("input")["value"].mean()
    assert f"{kept[claims.NOISE]:.0%}" in text and f"{kept[claims.IMAGES]:.0%}" in text
    assert ("more on the images" in text) == (kept[claims.IMAGES] > kept[claims.NOISE])
    first = per_seed[per_seed["name"].str.startswith("first_conv")].pivot_table(
        index="input", columns="name", values="value")
    ratio = first["first_conv_var"] / first["first_conv_var_uncentred"]
    assert ratio[claims.IMAGES] < 0.5 < ratio[claims.NOISE]  # zero-sum WS rows drop a smooth input
    assert "Scaled WS makes every filter's weights sum to zero" in text


def test_input_reading_says_whether_the_ranges_over_seeds_overlap():
    def rows(noise_kept, image_kept):
        out = []
        for seed, (n, i) in enumerate(zip(noise_kept, image_kept, strict=True)):
            for label, k in ((claims.NOISE, n), (claims.IMAGES, i)):
                out += [{"seed": seed, "input": label, "name": "kept_stage1", "value": k},
                        {"seed": seed, "input": label, "name": "stem_var", "value": 1.0},
                        {"seed": seed, "input": label, "name": "final_var", "value": 0.01}]
        return pd.DataFrame(out)

    apart = claims.input_reading(rows([0.24, 0.25], [0.5, 0.6]))
    assert "more on the images (the ranges over seeds do not overlap)" in apart
    close = claims.input_reading(rows([0.24, 0.30], [0.27, 0.29]))
    assert "more on the images (the ranges over seeds overlap)" in close


def test_findings_quote_the_numbers_and_how_many_seeds_met_each_bound():
    checks = pd.DataFrame({"check": ["nf_ws_variance_vs_theory"], "op": ["<"], "bound": [0.1]})
    per_seed = pd.DataFrame({"seed": [0, 1, 2], "name": "nf_ws_variance_vs_theory",
                             "value": [0.02, 0.05, 0.2]})
    assert claims.held_at(per_seed, checks)["nf_ws_variance_vs_theory"] == "2 of 3"
