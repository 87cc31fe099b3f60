"""nfrepro.agc_ablation: the plans of notebooks 02 / 03, the run table and the verdict numbers."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nfrepro import agc_ablation as A
from nfrepro.training import train

TINY = A.Scale(dataset="synthetic", widths=(4, 4), depths=(1, 1), epochs=1, warmup_epochs=0.5,
               batch_sizes=(16,), clippings=(0.04,), extra_clippings=(), batch_clippings=(0.04,), seeds=(0,),
               train_subset=32, test_subset=32, ema_decay=None)


def _tidy(rows):
    """A run table as run_plan returns it, from (spec, top1 or None = diverged) pairs."""
    out = []
    for i, (spec, top1) in enumerate(rows):
        spec = {"layers": A.PAPER_LAYERS if spec["variant"] in A.CLIPPED else "",
                "clipping": np.nan, "seed": 0, **spec}
        status = "completed" if top1 is not None else "diverged"
        for metric, value in (("final_test_top1", np.nan if top1 is None else top1),
                              ("diverged", float(top1 is None)), ("steps", 10.0)):
            out.append({**spec, "run": f"r{i}", "status": status, "metric": metric, "value": value})
    return pd.DataFrame(out)


def test_plans_cover_the_grid():
    cpu = A.SCALES["cpu"]
    plan = A.plan_batch_size(cpu)
    per_batch_seed = len(A.UNCLIPPED) + len(A.CLIPPED) * len(cpu.batch_clippings)
    assert len(plan) == per_batch_seed * len(cpu.batch_sizes) * len(cpu.seeds)
    assert plan.loc[plan["variant"].isin(A.UNCLIPPED), "clipping"].isna().all()
    assert set(plan.loc[plan["variant"].isin(A.CLIPPED), "clipping"]) == set(cpu.batch_clippings)
    assert set(cpu.batch_clippings) <= set(cpu.clippings)
    grid = A.plan_clipping(cpu)
    assert set(grid["clipping"]) == set(cpu.clippings) | set(cpu.extra_clippings)
    layers = A.plan_layers(cpu, {A.AGC: 0.04})
    assert set(layers["batch_size"]) == {max(cpu.batch_sizes)} and set(layers["layers"]) == set(A.LAYERS)
    assert A.SCALES["cpu"].clippings == A.PAPER_CLIPPINGS == A.SCALES["gpu"].clippings
    assert len(A.SCALES["cpu"].seeds) >= 2 and len(A.SCALES["gpu"].seeds) >= 2


def test_run_overrides_resolve_variants_and_layers():
    spec = {"variant": A.AGC_NO_GAIN, "layers": "last stage unclipped", "batch_size": 512,
            "clipping": 0.02, "seed": 1}
    o = A.run_overrides(spec, A.SCALES["cpu"])
    assert o["clip_exclude_stages"] == [A.SCALES["cpu"].num_stages - 1]
    assert o["model_kwargs.skip_gain_init"] is None and o["model"] == "nf_resnet_small"
    assert (o["batch_size"], o["clipping"], o["seed"]) == (512, 0.02, 1)
    o = A.run_overrides({"variant": A.BN, "layers": "", "batch_size": 128, "clipping": np.nan,
                         "seed": 0}, A.SCALES["cpu"])
    assert o["clipping"] is None and o["model"] == "bn_resnet_small"
    assert A.run_overrides({**spec, "layers": "also the classifier"}, TINY)["clip_classifier"]


def test_best_clipping_scores_diverged_runs_at_chance_and_breaks_ties_low():
    rows = []
    for seed in (0, 1):
        rows += [({"variant": A.AGC, "batch_size": 128, "clipping": 0.01, "seed": seed}, 80.0),
                 ({"variant": A.AGC, "batch_size": 128, "clipping": 0.04, "seed": seed}, 80.0),
                 ({"variant": A.AGC, "batch_size": 2048, "clipping": 0.01, "seed": seed}, 70.0)]
    rows += [({"variant": A.AGC, "batch_size": 2048, "clipping": 0.04, "seed": 0}, 90.0),
             ({"variant": A.AGC, "batch_size": 2048, "clipping": 0.04, "seed": 1}, None)]
    runs = A.per_run(_tidy(rows))
    assert runs["diverged"].sum() == 1 and runs["score"].min() == A.CHANCE_TOP1
    best = A.best_clipping(runs).set_index("batch_size")
    assert best.loc[128, "clipping"] == 0.01          # a tie goes to the smaller lambda
    assert best.loc[2048, "clipping"] == 0.01         # (90 + 10) / 2 = 50 < 70
    assert not best.loc[2048, "at_top"]
    assert A.best_clipping(runs, clippings=[0.04]).set_index("batch_size").loc[2048, "at_top"]


def _fig2a_runs(nf_big, agc_big, bn_big=85.0):
    rows = []
    for batch, (bn, nf, agc) in {128: (88.0, 88.0, 87.0), 2048: (bn_big, nf_big, agc_big)}.items():
        rows += [({"variant": A.BN, "batch_size": batch}, bn), ({"variant": A.NF, "batch_size": batch}, nf),
                 ({"variant": A.AGC, "batch_size": batch, "clipping": 0.01}, agc),
                 ({"variant": A.AGC, "batch_size": batch, "clipping": 0.16}, agc - 5)]
    return A.per_run(_tidy(rows))


@pytest.mark.parametrize("nf_big, agc_big, verdict", [
    (None, 84.5, "reproduced"),             # NF diverges, AGC within a point of BN
    (60.0, 75.0, "partly reproduced"),      # AGC helps but stays behind BN
    (84.8, 84.9, "not reproduced"),         # no problem to fix, no gain
])
def test_verdict_fig2a(nf_big, agc_big, verdict):
    points = A.fig2a_points(_fig2a_runs(nf_big, agc_big))
    assert set(points.loc[points["line"] == A.AGC, "clipping"]) == {0.01}
    v = A.verdict_fig2a(points)
    assert v["verdict"] == verdict and v["batch_size"] == 2048
    assert "Verdict" in A.describe_fig2a(v)
    summary = A.line_summary(points)
    assert len(summary) == 6 and summary["diverged"].sum() == (nf_big is None)


@pytest.mark.parametrize("lams, verdict", [((0.16, 0.04, 0.01), "reproduced"),
                                           ((0.04, 0.08, 0.01), "partly reproduced"),
                                           ((0.04, 0.04, 0.04), "not reproduced")])
def test_verdict_fig2b(lams, verdict):
    best = pd.DataFrame({"variant": A.AGC, "batch_size": [128, 512, 2048], "clipping": lams,
                         "at_top": [False, False, True]})
    v = A.verdict_fig2b(best)
    assert v["verdict"] == verdict and v["censored"] == 1 and "Verdict" in A.describe_fig2b(v)


def test_layer_effects_and_verdict():
    top1 = {A.PAPER_LAYERS: 80.0, "also the classifier": 70.0, "first conv unclipped": 80.5,
            "first stage unclipped": None, "last stage unclipped": 79.8}
    rows = [({"variant": A.AGC, "layers": k, "batch_size": 2048, "clipping": 0.01}, v)
            for k, v in top1.items()]
    effects = A.layer_effects(A.per_run(_tidy(rows))).set_index("layers")
    assert list(effects.index) == list(A.LAYERS)
    assert effects.loc["also the classifier", "effect"] == "hurts"
    assert effects.loc["first stage unclipped", "effect"] == "hurts"   # diverged: chance
    assert effects.loc["last stage unclipped", "effect"] == "no difference"
    v = A.verdict_layers(effects.reset_index())
    assert v["verdict"] == "partly reproduced"
    assert v["holds"] == {"never clip the final linear layer": True,
                          "the first conv can be left unclipped": True,
                          "every stage must be clipped (first)": True,
                          "every stage must be clipped (last)": False}


def test_run_plan_shares_runs_between_plans_and_reads_skip_gains(tmp_path):
    calls = []

    def counting_train(config):
        result = train(config)
        if result.model is not None:  # None: a finished run read back from its folder
            calls.append(config.run_dir)
        return result

    plan = A.plan_batch_size(TINY, variants=[A.NF, A.AGC])
    tidy = A.run_plan(plan, TINY, tmp_path, progress=False, train_fn=counting_train)
    assert len(calls) == 2 and list(tidy.columns[:5]) == A.PLAN_COLUMNS
    runs = A.per_run(tidy)
    assert A.missing_runs(plan, runs).empty
    assert len(A.missing_runs(A.plan_clipping(A.Scale(**{**TINY.__dict__, "clippings": (0.08,)}),
                                               variants=[A.AGC]), runs)) == 1
    # notebook 03's plan holds the AGC run of notebook 02's: read back, not retrained
    again = A.run_plan(A.plan_clipping(TINY, variants=[A.AGC]), TINY, tmp_path, progress=False, train_fn=counting_train)
    assert len(calls) == 2 and set(again["run"]) <= set(tidy["run"])
    gains = A.skip_gains(runs, tmp_path)
    assert len(gains) == 2 * sum(TINY.depths) and set(gains["variant"]) == {A.NF, A.AGC}


def test_departures_table_sets_each_setting_beside_the_paper():
    table = A.departures(A.SCALES["cpu"])
    assert list(table.index) == list(A.PAPER_SETUP) and table.notna().all().all()
    assert "Fashion-MNIST" in table.loc["data set", "here"]


@pytest.mark.slow
def test_run_plan_in_worker_processes_matches_the_plan(tmp_path):
    plan = A.plan_batch_size(TINY, variants=[A.BN, A.AGC])
    tidy = A.run_plan(plan, TINY, tmp_path, progress=False, workers=2)
    runs = A.per_run(tidy)
    assert A.missing_runs(plan, runs).empty and list(runs["variant"]) == [A.BN, A.AGC]
    assert (tmp_path / runs["run"][0] / "metrics.csv").exists()


def test_smoke_runs_stay_in_the_scratch_folder():
    assert ".scratch" in A.sweep_dir("smoke").parts
    assert A.sweep_dir("cpu").parts[-3:] == ("runs", "agc_sweep", "cpu")
