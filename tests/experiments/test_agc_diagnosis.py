"""nfrepro.experiments.agc_diagnosis: the first updates stepped by hand, and their summary."""
import math

import pandas as pd

from nfrepro.engine.sweep import apply_overrides
from nfrepro.experiments import agc_ablation as A
from nfrepro.experiments import agc_diagnosis as D


def _config(tmp_path, layers, lam=0.01):
    scale = A.SCALES["smoke"]
    spec = {"variant": A.AGC, "layers": layers, "batch_size": 32, "clipping": lam, "seed": 0}
    return apply_overrides(scale.base_config(), A.run_overrides(spec, scale), tmp_path)


def test_trace_records_ratios_before_clipping(tmp_path):
    trace = D.trace_first_steps(_config(tmp_path, A.PAPER_LAYERS), steps=3)
    assert list(trace["step"]) == [1, 2, 3] and (trace["status"] == "finite").all()
    assert (trace[["first_conv_ratio", "others_ratio", "first_conv_weight_norm"]] > 0).all().all()
    # the ratios are read before AGC clips: above lambda is possible (and happens at init here)
    assert trace["others_ratio"].max() > 0.01
    facts = D.first_conv_facts(_config(tmp_path, A.PAPER_LAYERS))
    assert facts["input channels"] == 1 and facts["first conv fan-in"] == 9


def test_summary_finds_the_blow_up_step():
    rows = []
    for seed in (0, 1):
        for step, loss in enumerate([2.3, 2.2, 30.0, float("inf")], start=1):
            rows.append({"layers": "first conv unclipped", "seed": seed, "step": step, "loss": loss,
                         "first_conv_ratio": 0.5 * step, "others_ratio": 0.1,
                         "first_conv_weight_norm": float(step)})
            rows.append({"layers": "paper", "seed": seed, "step": step, "loss": 2.3 - 0.1 * step,
                         "first_conv_ratio": 0.2, "others_ratio": 0.1, "first_conv_weight_norm": 1.0})
    s = D.summarize(pd.DataFrame(rows), clipping=0.1).set_index("layers")
    assert s.loc["first conv unclipped", "blew_up"] == 2 and s.loc["first conv unclipped", "median_step"] == 3
    assert math.isclose(s.loc["first conv unclipped", "first_conv_ratio_over_lambda"], 15.0)
    assert s.loc["paper", "blew_up"] == 0 and s.loc["paper", "first_conv_weight_growth"] == 1.0
    text = D.describe(s.reset_index(), 0.1)
    assert "2 of 2 blew up" in text and "none of 2 blew up" in text


def test_trace_of_an_unclipped_run_and_the_blow_up_summary(tmp_path):
    scale = A.SCALES["smoke"]
    spec = {"variant": A.NF, "layers": "", "batch_size": 32, "clipping": float("nan"), "seed": 0}
    trace = D.trace_first_steps(A.run_config(spec, scale, runs_dir=tmp_path), steps=3)
    assert (trace["max_ratio"] == trace[["first_conv_ratio", "others_ratio"]].max(axis=1)).all()
    assert (trace["first_conv_above"] == 0).all()  # no clipping: lambda is infinite
    rows = []
    for seed in (0, 1):
        for step, (loss, ratio) in enumerate([(2.3, 0.1), (2.5, 0.4), (40.0, 3.2)], start=1):
            rows.append({"arm": "NF", "seed": seed, "step": step, "loss": loss, "max_ratio": ratio})
            rows.append({"arm": "NF + AGC", "seed": seed, "step": step, "loss": 2.3 - 0.1 * step,
                         "max_ratio": 0.05})
    s = D.blowup(pd.DataFrame(rows)).set_index("arm")
    assert s.loc["NF", "blew_up"] == 2 and s.loc["NF", "median_step"] == 3 and s.loc["NF", "growth"] == 32.0
    assert s.loc["NF + AGC", "blew_up"] == 0 and s.loc["NF + AGC", "growth"] == 1.0
    text = D.describe_blowup(s.reset_index(), 0.01)
    assert "blew up in 2 of 2 runs (median step 3)" in text and "32x" in text and "did not blow up" in text


def test_a_trace_steps_the_very_updates_of_its_run(tmp_path):
    from nfrepro.engine.training import train

    scale = A.SCALES["smoke"]
    (config,) = A.arm_configs(scale, A.AGC, 32, 0.01, runs_dir=tmp_path)
    train(config)  # the sweep's run, logging its loss every scale.log_every steps
    trace = D.trace_arms({A.AGC: [config]}, steps=6)
    assert D.logged_gap(trace, tmp_path / config.run_dir.split("/")[-1] / "steps.csv") < 1e-6
    assert D.logged_gap(trace.assign(loss=trace["loss"] * 1.01), f"{config.run_dir}/steps.csv") > 1e-3
