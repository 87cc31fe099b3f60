"""Notebook 06, part 5 (``nfrepro.experiments.batchnorm_cost``): BN's share and the NF / BN step times."""
import pandas as pd
import torch

from nfrepro.analysis import verdicts
from nfrepro.experiments import batchnorm_cost as cost
from nfrepro.models import create_model

TINY = {"depths": (1, 1), "widths": (4, 8), "num_classes": 10, "in_chans": 1}


def test_batchnorm_share_and_traffic():
    model = create_model("bn_resnet_small", **TINY)
    shares = cost.batchnorm_share(model, batch_size=8, px=28, in_chans=1, steps=1, repeats=2)
    assert len(shares) == 2 and shares["share"].between(0, 1).all() and (shares["bn_us"] > 0).all()
    traffic = cost.batchnorm_traffic(model, torch.randn(4, 1, 28, 28))
    bn_layers = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert int(traffic["bn_layers"].iloc[0]) == bn_layers


def test_step_times_pair_times_both_steps_and_the_weight_standardization_on_copies():
    nf, bn = create_model("nf_resnet_small", **TINY), create_model("bn_resnet_small", **TINY)
    before = [p.clone() for p in nf.parameters()]
    times = cost.step_times_pair(nf, bn, batch_size=4, rounds=3, warmup=1)
    assert len(times) == 3 and (times[["nf_ms", "bn_ms", "ws_ms"]] > 0).all().all()
    assert (times["ratio"] == times["bn_ms"] / times["nf_ms"]).all()
    assert all(torch.equal(a, b) for a, b in zip(before, nf.parameters(), strict=True))  # trained a copy


def test_cost_table_and_claims_reconcile_the_parts():
    times = pd.DataFrame({"round": [0, 1, 2] * 2, "batch_size": [2] * 3 + [64] * 3, "threads": 1,
                          "nf_ms": [10.0, 11, 10.5, 20, 21, 20.5], "bn_ms": [8.0, 8.5, 8.2, 30, 31, 30.5],
                          "ws_ms": [4.0, 4.1, 4.0, 4.0, 4.2, 4.1]})
    times["ratio"] = times["bn_ms"] / times["nf_ms"]
    shares = pd.DataFrame({"batch_size": [2, 2, 64, 64], "share": [0.05, 0.06, 0.30, 0.32]})
    table = cost.cost_table(times, shares).set_index("batch_size")
    assert table.loc[64, "bn_ops_ms"] == 0.31 * 30.5 and table.loc[2, "nf_without_ws_ms"] == 10.5 - 4.0
    assert table.loc[2, "bn_over_nf"] < 1 < table.loc[64, "bn_over_nf"]
    claims = verdicts.table(cost.compute_claims(times, shares))
    assert list(claims["verdict"]) == ["reproduced", "contradicted", "reproduced"]
    assert "batch 64" in claims.loc[0, "claim"]
    assert "weight standardization 4.0 ms" in claims.loc[1, "reading"]
