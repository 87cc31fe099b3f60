"""Notebook 07 (``nfrepro.experiments.gradient_clipping``): plan, best thresholds, paired verdicts."""
import numpy as np
import pandas as pd
import pytest
import torch

from nfrepro.analysis import verdicts
from nfrepro.engine.checkpoint import save_checkpoint
from nfrepro.experiments import agc_ablation, sweep_plan
from nfrepro.experiments import gradient_clipping as gc


def _tidy(scores):
    """A tidy table as run_plan writes it; a score of None is a diverged run."""
    rows = []
    for (variant, batch, thr, seed), top1 in scores.items():
        base = {"variant": variant, "layers": "", "batch_size": batch, "clipping": thr, "seed": seed,
                "run": f"{variant}-{batch}-{thr}-{seed}",
                "status": "diverged" if top1 is None else "completed"}
        rows += [{**base, "metric": "final_test_top1", "value": np.nan if top1 is None else top1},
                 {**base, "metric": "diverged", "value": float(top1 is None)},
                 {**base, "metric": "steps", "value": 10},
                 {**base, "metric": "mean_frac_clipped", "value": 0.5}]
    return pd.DataFrame(rows)


def _scores():
    scores = {}
    for seed in (0, 1, 2):
        e = 0.1 * seed
        for b in (16, 64):  # the smoke scale's batch sizes
            # unit-wise AGC: 0.01 best at both; layer-wise: 2 points behind; clip_grad_norm_: its best moves
            scores.update({(gc.AGC_SGD, b, 0.01, seed): 80 + e, (gc.AGC_SGD, b, 0.16, seed): 70 + e,
                           (gc.AGC_TENSOR, b, 0.01, seed): 78 + 2 * e, (gc.AGC_TENSOR, b, 0.16, seed): 70})
        scores.update({(gc.NORM_SGD, 16, 0.25, seed): 70 + e, (gc.NORM_SGD, 16, 4.0, seed): 90 + e,
                       (gc.NORM_SGD, 64, 0.25, seed): 77 + e, (gc.NORM_SGD, 64, 4.0, seed): 10 + 3 * e,
                       (gc.AGC_ADAMW, 64, 0.001, seed): 75 + e, (gc.AGC_ADAMW, 64, 0.16, seed): 75.2 + e,
                       (gc.ADAMW, 64, np.nan, seed): 75 + 1.5 * e})
    return scores


def test_best_thresholds_prefer_no_divergence_and_mark_grid_edges():
    scores = _scores()
    scores[(gc.AGC_SGD, 16, 0.01, 2)] = None  # one diverged seed at the otherwise best lambda
    best = gc.best_thresholds(sweep_plan.per_run(_tidy(scores)))
    pick = best[best["best"]].set_index(["variant", "batch_size"])
    assert pick.loc[(gc.AGC_SGD, 16), "clipping"] == 0.16  # fewer divergences first
    assert pick.loc[(gc.AGC_SGD, 16), "edge"] == "at least"
    assert pick.loc[(gc.AGC_SGD, 64), "edge"] == "at most"
    row = best.set_index(["variant", "batch_size", "clipping"]).loc[(gc.AGC_SGD, 16, 0.01)]
    assert row["diverged"] == 1 and row["trained"] == 2 and row["mean_top1"] == pytest.approx(80.05)
    assert (row["divergence_rate"], row["divergence_ci_low"], row["divergence_ci_high"]) == \
        pytest.approx(verdicts.rate_ci(1, 3))
    assert any("at least 0.16" in line and "1/3" in line for line in gc.describe(best))


def test_a_diverged_seed_is_left_out_of_a_paired_difference():
    scores = _scores()
    scores[(gc.AGC_TENSOR, 64, 0.01, 2)] = scores[(gc.AGC_TENSOR, 64, 0.16, 2)] = None  # seed 2, both
    runs = sweep_plan.per_run(_tidy(scores))
    best = gc.best_thresholds(runs)
    diffs = gc.paired(runs, best, gc.AGC_SGD, gc.AGC_TENSOR, 64)
    assert list(diffs.index) == [0, 1] and diffs.tolist() == pytest.approx([2.0, 1.9])


def test_claims_carry_setting_and_reading_and_read_both_ways():
    scale = gc.SCALES["smoke"]
    runs = sweep_plan.per_run(_tidy(_scores()))
    best = gc.best_thresholds(runs)
    assert gc.transfer_loss(runs, gc.AGC_SGD, best).tolist() == [0.0, 0.0, 0.0]
    table = verdicts.table(gc.claims(runs, best, scale), require_setting=True)
    verdict = dict(zip(table["claim"].str[:60], table["verdict"], strict=True))
    rows = table.set_index(table["claim"].str.split(" at batch").str[0] + table["batch_size"].astype(str))
    assert rows.loc["§4: unit-wise AGC beats layer-wise AGC16", "verdict"] == "reproduced"
    norm = rows.loc["AGC beats clip_grad_norm_16"]  # clip_grad_norm_ wins: the reading says so
    assert norm["verdict"] == "contradicted" and "clip_grad_norm_ (threshold at least 4" in norm["reading"]
    assert norm["reading"].index("clip_grad_norm_") < norm["reading"].index("leads")
    assert norm["clipping"] == "AGC λ=0.01 | norm 4" and norm["steps"] == 8  # 128 images // 16
    assert "layer-wise AGC λ=0.01" in table.loc[0, "clipping"]
    adam = table[table["claim"].str.startswith("AGC changes nothing")].iloc[0]
    assert adam["verdict"] == "reproduced" and "λ=0.16" in adam["claim"] and adam["rule"].endswith("±1")
    assert len(verdict) == 6 and table["reading"].str.startswith("at 128 images").all()


def test_plan_sweeps_three_sgd_methods_and_adamw_at_the_large_batch():
    scale = gc.SCALES["cpu"]
    plan = gc.plan(scale, "cpu")
    counts = plan.groupby("variant").size()
    assert counts[gc.AGC_SGD] == counts[gc.AGC_TENSOR] == counts[gc.NORM_SGD] == 3 * 2 * 3
    assert counts[gc.AGC_ADAMW] == 3 * 3 and counts[gc.ADAMW] == 3
    assert set(plan.loc[plan["variant"].isin([gc.AGC_ADAMW, gc.ADAMW]), "batch_size"]) == {1024}
    assert gc.METHODS[gc.AGC_TENSOR]["agc_granularity"] == "tensor"


def test_warmup_follows_notebook_02_and_the_budget_is_stated():
    for profile in ("smoke", "cpu"):
        ours, theirs = gc.SCALES[profile], agc_ablation.SCALES[profile]
        assert ours.warmup_epochs / ours.epochs == theirs.warmup_epochs / theirs.epochs
    table = gc.budget_table("cpu").set_index("notebook")
    assert tuple(table.loc["07 (this one)", ["steps", "warmup steps"]]) == ("156 / 18", "39 / 4")
    assert table.loc["02 (AGC vs batch size)", "train images"] == agc_ablation.SCALES["cpu"].train_subset


def test_run_details_reads_skip_gains_and_the_clipped_fraction(tmp_path):
    tidy = _tidy({(gc.AGC_SGD, 16, 0.01, 0): 80.0, (gc.AGC_SGD, 16, 0.16, 0): None})
    runs = sweep_plan.per_run(tidy)
    folder = tmp_path / runs["run"].iloc[0]
    folder.mkdir()
    gains = {"blocks.0.skip_gain": torch.tensor(-0.2), "blocks.1.skip_gain": torch.tensor(0.4)}
    save_checkpoint({"model": {**gains, "fc.weight": torch.ones(2, 2)}}, folder / "checkpoint.pt")
    details = gc.run_details(tidy, runs, tmp_path)
    assert details["skip_gain"].iloc[0] == pytest.approx(0.3) and np.isnan(details["skip_gain"].iloc[1])
    assert (details["frac_clipped"] == 0.5).all()


def test_adam_undoes_a_constant_rescale_of_a_unit_and_agc_only_reweights_steps():
    check = gc.adam_rescale_check()
    assert check["constant"] < 1e-4 < check["agc"] < 1.0


def test_findings_name_each_verdict_and_the_measured_reasons():
    runs = sweep_plan.per_run(_tidy(_scores()))
    best = gc.best_thresholds(runs)
    table = verdicts.table(gc.claims(runs, best, gc.SCALES["smoke"]), require_setting=True)
    gains = {gc.AGC_SGD: 0.001, gc.AGC_TENSOR: 0.002, gc.NORM_SGD: 0.2, gc.AGC_ADAMW: 0.03, gc.ADAMW: 0.03}
    details = runs.assign(frac_clipped=0.25, skip_gain=runs["variant"].map(gains))
    facts = {"clipping": 0.01, "eps": 1e-3, "steps": 4, "global_fired": 3, "global_first": 2,
             "global_later": 3, "global_ratio_first": 0.003, "global_ratio_median": 0.02, "skip_w_max": 2e-4,
             "skip_g_min": 2e-5,
             "skip_threshold": 1e-5, "weight_unit": 0.11, "weight_tensor": 0.14}
    text = gc.findings(table, details, facts, {"constant": 1e-5, "agc": 0.26}, best,
                       other={"agc": 84.3, "free_gains": 86.4, "steps": 936})
    assert "*reproduced*: unit-wise AGC beats layer-wise AGC at batch 16" in text
    assert "*contradicted*: AGC beats clip_grad_norm_ at batch 16" in text  # clip_grad_norm_ leads there
    assert "0.001 with AGC" in text and "0.200 with clip_grad_norm_" in text and "stay nearly shut" in text
    assert "Notebook 02 trains 936 steps" in text and "84.3%" in text
    assert "below λ until census step 2" in text and "at most 1e-05" in text
