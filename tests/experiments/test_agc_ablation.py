"""nfrepro.experiments.agc_ablation: the plans of notebooks 02 / 03, their run overrides, running them."""
from __future__ import annotations

import numpy as np
import pytest

from nfrepro.engine.training import train
from nfrepro.experiments import agc_ablation as A
from nfrepro.experiments import agc_analysis as N
from nfrepro.experiments import sweep_plan

TINY = A.AgcScale(dataset="synthetic", widths=(4, 4), depths=(1, 1), epochs=1, warmup_epochs=0.5,
               batch_sizes=(16,), clippings=(0.04,), extra_clippings=(), batch_clippings=(0.04,), seeds=(0,),
               train_subset=32, test_subset=32, ema_decay=None)


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
    big, control = max(cpu.batch_sizes), sorted(cpu.batch_sizes)[-2]
    layers = A.plan_layers(cpu, {(v, b): 0.04 for v in A.CLIPPED for b in (big, control)})
    assert set(layers["batch_size"]) == {big, control} and set(layers["layers"]) == set(A.LAYERS)
    at_control = layers[layers["batch_size"] == control]
    assert set(at_control["layers"]) == {A.PAPER_LAYERS, A.FIRST_CONV}  # the first conv's control
    assert set(at_control["variant"]) == set(A.CLIPPED)  # ... on both bases
    free = layers[(layers["variant"] == A.AGC_FREE_GAINS) & (layers["batch_size"] == big)]
    assert {"first stage unclipped", "last stage unclipped", A.FIRST_CONV} <= set(free["layers"])
    assert A.SCALES["cpu"].clippings == A.PAPER_CLIPPINGS == A.SCALES["gpu"].clippings
    assert len(A.SCALES["cpu"].seeds) >= 2 and len(A.SCALES["gpu"].seeds) >= 2


def test_run_overrides_resolve_variants_and_layers():
    spec = {"variant": A.AGC_FREE_GAINS, "layers": "last stage unclipped", "batch_size": 512,
            "clipping": 0.02, "seed": 1}
    o = A.run_overrides(spec, A.SCALES["cpu"])
    assert o["clip_exclude_stages"] == [A.SCALES["cpu"].num_stages - 1]
    assert o["clip_exclude_skip_gains"] is True and o["model"] == "nf_resnet_small"
    # one change per arm: the stage left unclipped keeps its skip gains clipped on the paper's base
    paper_base = A.run_config({**spec, "variant": A.AGC}, A.SCALES["cpu"])
    assert paper_base.agc.exclude_stages == (2,) and not paper_base.agc.exclude_stage_skip_gains
    assert not paper_base.agc.exclude_skip_gains
    assert (o["batch_size"], o["clipping"], o["seed"]) == (512, 0.02, 1)
    o = A.run_overrides({"variant": A.BN, "layers": "", "batch_size": 128, "clipping": np.nan,
                         "seed": 0}, A.SCALES["cpu"])
    assert o["clipping"] is None and o["model"] == "bn_resnet_small"
    assert A.run_overrides({**spec, "layers": "also the classifier"}, TINY)["clip_classifier"]


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
    runs = sweep_plan.per_run(tidy)
    assert N.missing_runs(plan, runs).empty
    assert len(N.missing_runs(A.plan_clipping(A.AgcScale(**{**TINY.__dict__, "clippings": (0.08,)}),
                                               variants=[A.AGC]), runs)) == 1
    # notebook 03's plan holds the AGC run of notebook 02's: read back, not retrained
    again = A.run_plan(A.plan_clipping(TINY, variants=[A.AGC]), TINY, tmp_path, progress=False,
                       train_fn=counting_train)
    assert len(calls) == 2 and set(again["run"]) <= set(tidy["run"])
    gains = N.skip_gains(runs, tmp_path)
    assert len(gains) == 2 * sum(TINY.depths) and set(gains["variant"]) == {A.NF, A.AGC}


def test_every_arm_and_layer_choice_becomes_a_run_config(tmp_path):
    """Arms that carry an AGC selection (skip gains unclipped) and every layer choice reach the
    engine as config.json's flat keys (one run each, not trained here)."""
    seen = []

    def record(config):
        seen.append(config)
        raise StopIteration  # stop before training: the config is what is checked

    free_gains = A.plan_batch_size(TINY, variants=[A.AGC_FREE_GAINS]).head(1)
    layers = A.plan_layers(TINY, {(A.AGC, 16): 0.01})
    last_stage = layers[layers["layers"] == "last stage unclipped"].head(1)
    for plan in (free_gains, last_stage):
        with pytest.raises(StopIteration):
            A.run_plan(plan, TINY, tmp_path, progress=False, train_fn=record)
    assert seen[0].agc.exclude_skip_gains and seen[1].agc.exclude_stages == (TINY.num_stages - 1,)


def test_departures_table_sets_each_setting_beside_the_paper():
    table = A.departures(A.SCALES["cpu"])
    assert list(table.index) == list(A.PAPER_SETUP) and table.notna().all().all()
    assert "Fashion-MNIST" in table.loc["data set", "here"]


@pytest.mark.slow
def test_run_plan_in_worker_processes_matches_the_plan(tmp_path):
    plan = A.plan_batch_size(TINY, variants=[A.BN, A.AGC])
    tidy = A.run_plan(plan, TINY, tmp_path, progress=False, workers=2)
    runs = sweep_plan.per_run(tidy)
    assert N.missing_runs(plan, runs).empty and list(runs["variant"]) == [A.BN, A.AGC]
    assert (tmp_path / runs["run"][0] / "metrics.csv").exists()


def test_smoke_runs_stay_in_the_scratch_folder():
    assert ".scratch" in A.sweep_dir("smoke").parts
    assert A.sweep_dir("cpu").parts[-3:] == ("runs", "agc_sweep", "cpu")


def test_the_same_plan_run_twice_gives_identical_csvs(tmp_path):
    """A results table depends only on the plan (and the recorded environment), so two
    executions into two run folders write byte-identical CSVs; the wall time is in the run folders."""
    from nfrepro.engine.records import save_results

    plan = A.plan_batch_size(TINY, variants=(A.NF, A.AGC))
    csvs = []
    for attempt in ("a", "b"):
        tidy = A.run_plan(plan, TINY, tmp_path / f"runs_{attempt}", progress=False)
        csvs.append(save_results(tidy, tmp_path / f"{attempt}.csv", params={}, wall_time_s=0.0).read_bytes())
        assert sweep_plan.training_seconds(tidy, tmp_path / f"runs_{attempt}") > 0
    assert csvs[0] == csvs[1] and b"wall_time_s" not in csvs[0]


def test_length_and_fp32_plans():
    scale = A.SCALES["cpu"]
    plan = A.plan_length(scale, nf_batch=128)
    big = max(scale.batch_sizes)
    labels = plan["variant"].map(A.split_length)
    assert set(labels.str[1]) == set(scale.lengths) and max(scale.lengths) >= 8 * min(scale.lengths)
    assert set(plan.loc[labels.str[0] == A.NF, "batch_size"]) == {128}
    assert set(plan.loc[labels.str[0].isin(A.CLIPPED), "batch_size"]) == {big}
    assert set(plan.loc[labels.str[0].isin(A.CLIPPED), "clipping"]) == {scale.long_clipping}
    longest = plan[labels.str[1] == max(scale.lengths)]
    assert (longest.groupby(["variant", "batch_size"])["seed"].nunique() >= 3).all()
    methods = A.length_methods(scale)
    assert set(plan["variant"]) <= set(methods)
    # at the batch-size study's length, a length run is that very run (same folder, read back)
    base = {"layers": A.PAPER_LAYERS, "batch_size": big, "clipping": 0.01, "seed": 0}
    same = A.run_config({**base, "variant": A.length_variant(A.AGC, scale.epochs)}, scale, methods)
    assert same == A.run_config({**base, "variant": A.AGC}, scale)
    assert A.split_length("NF + AGC, skip gains unclipped, 1 epoch") == (A.AGC_FREE_GAINS, 1)
    assert A.split_length(A.AGC_FREE_GAINS) == (A.AGC_FREE_GAINS, None)
    fp32 = A.plan_fp32(plan.assign(variant=labels.str[0]).head(2))
    assert all(v.endswith(A.FP32_SUFFIX) for v in fp32["variant"])
    assert all(o["amp"] == "off" and o["channels_last"] is False for o in A.fp32_methods().values())
    assert len(scale.seeds) >= 5  # the paper's runs per point
