"""Notebook 07, part 1 (``nfrepro.experiments.clipping_census``): what each rule would clip."""
import math

import pytest
import torch
from contract_nets import TinyNet, backward

from nfrepro.experiments import clipping_census as cc
from nfrepro.experiments import gradient_clipping as gc
from nfrepro.optim.agc import clip_parameters, unitwise_norm


def test_census_counts_what_each_rule_would_clip():
    torch.manual_seed(0)
    model = TinyNet()
    backward(model)
    df = cc.census(model, clipping=0.01)
    params = clip_parameters(model)
    assert df["units"].sum() == sum(p.shape[0] if p.ndim > 1 else 1 for p in params)
    conv = dict(model.named_parameters())["stem.0.weight"]
    ratios = unitwise_norm(conv.grad) / unitwise_norm(conv).clamp_min(1e-3)
    row = df.set_index("parameter").loc["stem.0.weight"]
    assert row["unit"] == int((ratios > 0.01).sum()) and row["tensor"] in (0, row["units"])
    assert row["tensor"] == row["units"] * (float(conv.grad.norm()) / float(conv.detach().norm()) > 0.01)
    g = math.sqrt(sum(float(p.grad.norm()) ** 2 for p in params))
    w = math.sqrt(sum(float(p.detach().norm()) ** 2 for p in params))
    assert df["global_ratio"].iloc[0] == pytest.approx(g / w, rel=1e-5)
    assert set(df["global"] // df["units"]) == {int(g / w > 0.01)} and (df["unit"] <= df["units"]).all()
    assert "fc.weight" not in set(df["parameter"])  # the classifier weight is never clipped


def test_track_clipping_fractions_and_facts():
    raw = cc.track_clipping(gc.SCALES["smoke"], batch_size=16, every=2, max_steps=4)
    assert sorted(raw["step"].unique()) == [0, 2] and {"w_norm", "g_norm", "global_ratio"} <= set(raw)
    frac = cc.census_fractions(raw)
    assert set(frac["rule"]) == {"unit", "tensor", "global"} and frac["fraction"].between(0, 1).all()
    # one unit each: the unit-wise and the whole-tensor rule agree on the skip gains
    skip = frac[frac["kind"] == "skip gain"].pivot_table(index="step", columns="rule", values="fraction")
    assert (skip["unit"] == skip["tensor"]).all()
    facts = cc.census_facts(raw, clipping=0.01)
    assert facts["steps"] == 2 and 0 <= facts["global_fired"] <= 2
    # a skip gain still below eps is held to lambda * eps
    assert facts["skip_w_max"] < 1e-3 and math.isclose(facts["skip_threshold"], 1e-5)
