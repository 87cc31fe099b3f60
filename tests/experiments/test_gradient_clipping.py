"""Notebook 07 (``nfrepro.experiments.gradient_clipping``): the clipping census and the verdicts."""
import numpy as np
import pandas as pd
import pytest
import torch
from contract_nets import TinyNet, backward

from nfrepro.experiments import gradient_clipping as gc
from nfrepro.experiments import sweep_plan
from nfrepro.optim.agc import clip_parameters, unitwise_norm


def test_census_counts_what_each_rule_would_clip():
    torch.manual_seed(0)
    model = TinyNet()
    backward(model)
    df = gc.census(model, clipping=0.01)
    params = clip_parameters(model)
    assert df["units"].sum() == sum(p.shape[0] if p.ndim > 1 else 1 for p in params)
    conv = dict(model.named_parameters())["stem.0.weight"]
    ratios = unitwise_norm(conv.grad) / unitwise_norm(conv).clamp_min(1e-3)
    row = df.set_index("parameter").loc["stem.0.weight"]
    assert row["unit"] == int((ratios > 0.01).sum()) and row["tensor"] in (0, row["units"])
    assert set(df["global"] // df["units"]) <= {0, 1} and (df["unit"] <= df["units"]).all()
    assert "fc.weight" not in set(df["parameter"])  # the classifier weight is never clipped


def test_track_clipping_is_tidy():
    df = gc.track_clipping(gc.SCALES["smoke"], batch_size=16, every=2, max_steps=4)
    assert set(df["rule"]) == {"unit", "tensor", "global"} and sorted(df["step"].unique()) == [0, 2]
    assert df["fraction"].between(0, 1).all()


def _tidy(scores):
    rows = []
    for (variant, batch, thr, seed), top1 in scores.items():
        base = {"variant": variant, "layers": "", "batch_size": batch, "clipping": thr, "seed": seed,
                "run": f"{variant}-{batch}-{thr}-{seed}", "status": "completed"}
        rows += [{**base, "metric": "final_test_top1", "value": top1},
                 {**base, "metric": "diverged", "value": 0.0}, {**base, "metric": "steps", "value": 10}]
    return pd.DataFrame(rows)


def test_transfer_loss_and_claims():
    scores = {}
    for seed in (0, 1, 2):
        e = 0.1 * seed
        # AGC: the same lambda is best at both batch sizes; clip norm: the best threshold moves
        scores.update({(gc.AGC_SGD, 128, 0.01, seed): 80 + e, (gc.AGC_SGD, 128, 0.16, seed): 70 + e,
                       (gc.AGC_SGD, 1024, 0.01, seed): 78 + e, (gc.AGC_SGD, 1024, 0.16, seed): 60 + e,
                       (gc.NORM_SGD, 128, 0.25, seed): 70 + e, (gc.NORM_SGD, 128, 4.0, seed): 80 + e,
                       (gc.NORM_SGD, 1024, 0.25, seed): 77 + e, (gc.NORM_SGD, 1024, 4.0, seed): 10 + 3 * e,
                       (gc.AGC_ADAMW, 1024, 0.001, seed): 75 + e,
                       (gc.AGC_ADAMW, 1024, 0.01, seed): 40 + 2 * e})
    runs = sweep_plan.per_run(_tidy(scores))
    best = gc.best_thresholds(runs)
    picks = best[best["best"]].set_index(["variant", "batch_size"])["clipping"]
    assert picks[(gc.AGC_SGD, 128)] == picks[(gc.AGC_SGD, 1024)] == 0.01
    assert picks[(gc.NORM_SGD, 128)] == 4.0 and picks[(gc.NORM_SGD, 1024)] == 0.25
    assert gc.transfer_loss(runs, gc.AGC_SGD, best).tolist() == [0.0, 0.0, 0.0]
    assert gc.transfer_loss(runs, gc.NORM_SGD, best).mean() > 30
    rows = gc.claims(runs, best)
    assert [r["verdict"] for r in rows] == ["reproduced", "reproduced"]
    assert rows[1]["estimate"] == pytest.approx(np.log2(0.01 / 0.001))


def test_plan_sweeps_each_method_and_adamw_at_the_large_batch():
    scale = gc.SCALES["cpu"]
    plan = gc.plan(scale, "cpu")
    counts = plan.groupby("variant").size()
    assert counts[gc.AGC_SGD] == counts[gc.NORM_SGD] == 3 * 2 * 3
    assert counts[gc.AGC_ADAMW] == 5 * 3 and counts[gc.ADAMW] == 3
    assert set(plan.loc[plan["variant"].isin([gc.AGC_ADAMW, gc.ADAMW]), "batch_size"]) == {1024}
    assert np.isnan(plan.loc[plan["variant"] == gc.ADAMW, "clipping"]).all()
