"""Notebook 05 (``nfrepro.experiments.speed_accuracy``): the Fig. 1 / T3 / T6 contenders, the survey
of training steps and the tables that set the paper's numbers beside ours, and their two plots.
Nothing here asserts on a timing."""
from __future__ import annotations

import math

import matplotlib
import pandas as pd
import pytest
import torch

matplotlib.use("Agg")

from nfrepro.analysis import plotting  # noqa: E402
from nfrepro.experiments import speed_accuracy  # noqa: E402
from nfrepro.models.nfnet import VARIANTS  # noqa: E402


def test_contenders_match_the_paper_tables():
    c = speed_accuracy.CONTENDERS
    assert c["nfnet_f1"].train_px == VARIANTS["F1"].train_px == 224 and c["nfnet_f1"].agc
    assert c["efficientnet_b7"].train_px == 600 and not c["efficientnet_b7"].agc
    assert set(k for k in c if k.startswith("nfnet_bn")) == {f"nfnet_bn_f{i}" for i in range(4)}
    assert speed_accuracy.scaled_px(192, 0.2) == 40 and speed_accuracy.scaled_px(192, 0.01) == 32
    with pytest.raises(ValueError, match="unknown model"):
        speed_accuracy.contender("efficientnet_b9")


def test_train_step_latency_tidy():
    # batch 2: BatchNorm cannot train on one value per channel (B0's last stage is 1 x 1 at 32 px)
    df = speed_accuracy.train_step_latency(["efficientnet_b0"], device="cpu", batch_size=2, res_scale=0.2,
                                         repeats=1, warmup=0, progress=None)
    assert set(df["metric"]) == {"median_ms", "q25_ms", "q75_ms", "min_ms", "images_per_s", "repeats"}
    row = df.iloc[0]
    assert (row["model"], row["label"], row["family"], row["resolution"]) == \
        ("efficientnet_b0", "EffNet-B0", "EfficientNet", 48)
    assert (df["value"] > 0).all()


def _latency(**ms):
    return pd.DataFrame([{"model": m, "label": speed_accuracy.CONTENDERS[m].label,
                          "family": speed_accuracy.CONTENDERS[m].family, "metric": "median_ms", "value": v}
                         for m, v in ms.items()])


def test_speed_tables_read_the_paper():
    table = speed_accuracy.speed_accuracy_table(_latency(nfnet_f1=100.0, efficientnet_b7=900.0,
                                                       nfnet_f0=50.0, nfnet_bn_f0=80.0, efficientnet_b1=70.0))
    row = table.set_index("label")
    assert row.loc["NFNet-F1", "paper_top1"] == 84.7 and row.loc["EffNet-B7", "paper_tpuv3_ms"] == 1397.0
    assert row.loc["NFNet-F0 -NF +BN", "paper_top1"] == 83.4
    assert math.isnan(row.loc["EffNet-B1", "paper_top1"])
    ratios = speed_accuracy.speed_ratios(table).set_index("slow")
    assert ratios.loc["EffNet-B7", "measured"] == pytest.approx(9.0)
    assert ratios.loc["EffNet-B7", "paper_claim"] == 8.7
    assert ratios.loc["EffNet-B7", "paper_tpuv3"] == pytest.approx(1397.0 / 158.5)
    assert ratios.loc["NFNet-F0 -NF +BN", "measured_time_saved"] == pytest.approx(1 - 50 / 80)
    assert math.isnan(ratios.loc["NFNet-F3 -NF +BN", "measured"])  # not measured: NaN, no error
    paper = speed_accuracy.paper_speed_accuracy()
    assert {"NFNet-F0", "EffNet-B7", "ResNet-50", "NFNet-F3 -NF +BN"} <= set(paper["label"])


def test_plots_draw_from_frames():
    latency = _latency(nfnet_f0=50.0, nfnet_bn_f0=80.0, efficientnet_b0=20.0)
    table = speed_accuracy.speed_accuracy_table(latency)
    points = pd.concat([speed_accuracy.paper_speed_accuracy().assign(panel="paper"),
                        table.rename(columns={"measured_ms": "latency_ms", "paper_top1": "top1"})
                        .assign(panel="measured")])
    fig = plotting.plot_speed_accuracy(points)
    assert [a.get_title() for a in fig.axes] == ["paper", "measured"]
    costs = pd.DataFrame({"step": ["base", "base", "new", "new"], "quantity": ["p", "q"] * 2,
                          "value": [1.0, 2.0, 1.5, 3.0]})
    fig = plotting.plot_relative_cost(costs, baseline="base")
    heights = sorted(round(p.get_height(), 6) for p in fig.axes[0].patches if p.get_height() > 0)
    assert heights == [1.0, 1.0, 1.5, 1.5]


def test_out_of_memory_is_recorded_not_raised(monkeypatch):
    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(speed_accuracy, "_time_one", oom)
    df = speed_accuracy.train_step_latency(["efficientnet_b7"], device="cpu", progress=None)
    assert df["value"].isna().all() and set(df["note"]) == {"out of memory"}
    assert set(df["metric"]) == set(speed_accuracy._METRICS)


def test_sam_and_family_rank_come_from_the_reference_table():
    assert speed_accuracy.trained_with_sam("NFNet-F6") and not speed_accuracy.trained_with_sam("NFNet-F5")
    assert not speed_accuracy.trained_with_sam("EffNet-B1")  # no top-1 at all
    # Table 3 has EffNet-B0, B3..B7: B3 follows B0 directly, B1 has no rank
    assert [speed_accuracy.family_rank(f"EffNet-B{i}") for i in (0, 3, 7)] == [0.0, 1.0, 5.0]
    assert math.isnan(speed_accuracy.family_rank("EffNet-B1"))
    assert speed_accuracy.family_rank("NFNet-F6") == 6.0
    assert math.isnan(speed_accuracy.family_rank("NFNet-F7"))
    paper = speed_accuracy.paper_speed_accuracy().set_index("label")
    assert paper.loc["NFNet-F6", "sam"] and paper["sam"].sum() == 1


def test_pair_latency_alternates_and_reports_the_ratio_with_its_spread():
    names = ["nfnet_f0", "nfnet_bn_f0", "efficientnet_b0"]
    small = {m: {"width": 0.125, "depths": (1, 1, 1, 1)} for m in names[:2]}
    pairs = speed_accuracy.pair_latency(names, device="cpu", batch_size=2, res_scale=0.2, rounds=3, warmup=0,
                                        progress=None, overrides=small)
    # only F0 vs BN-F0 has both models in `names`
    assert set(zip(pairs["fast"], pairs["slow"], strict=True)) == {("NFNet-F0", "NFNet-F0 -NF +BN")}
    v = pairs.set_index("metric")["value"]
    assert v["rounds"] == 3 and v["ratio_q25"] <= v["ratio_median"] <= v["ratio_q75"]
    assert v["ratio_ci_low"] <= v["ratio_median"] <= v["ratio_ci_high"] and v["fast_median_ms"] > 0
    table = speed_accuracy.speed_accuracy_table(_latency(nfnet_f0=50.0, nfnet_bn_f0=80.0))
    ratios = speed_accuracy.speed_ratios(table, paired=pairs).set_index("slow")
    assert ratios.loc["NFNet-F0 -NF +BN", "measured"] == pytest.approx(v["ratio_median"])  # paired wins
    assert ratios.loc["NFNet-F0 -NF +BN", "rounds"] == 3
    assert math.isnan(ratios.loc["EffNet-B7", "measured_q25"])


def test_nf_bn_attribution_times_four_sides_one_change_apart():
    small = {m: {"width": 0.125, "depths": (1, 1, 1, 1)} for m in ("nfnet_f0", "nfnet_bn_f0")}
    df = speed_accuracy.nf_bn_attribution("f0", device="cpu", batch_size=2, res_scale=0.2, rounds=2, warmup=0,
                                          overrides=small)
    sides = [speed_accuracy.FULL, speed_accuracy.NO_AGC, speed_accuracy.WS_FOLDED, speed_accuracy.BN]
    assert list(dict.fromkeys(df["side"])) == sides and len(df) == 4 * 2
    assert (df["step_ms"] > 0).all() and set(df["resolution"]) == {40} and set(df["model"]) == {"nfnet_f0"}
    assert set(speed_accuracy.ATTRIBUTION_PARTS) == {"AGC", "weight standardization",
                                                    "rest: NF without WS or AGC vs BN"}


def _attribution(full, no_agc, folded, bn):
    sides = (speed_accuracy.FULL, speed_accuracy.NO_AGC, speed_accuracy.WS_FOLDED, speed_accuracy.BN)
    return pd.DataFrame([{"side": side, "round": r, "step_ms": v}
                         for side, vs in zip(sides, (full, no_agc, folded, bn), strict=True)
                         for r, v in enumerate(vs)]).assign(model="nfnet_f0")


def test_attribution_reading_prices_each_part_from_the_rounds():
    # per round: AGC 20 ms, WS 100 ms, and the NF net without either 10 ms slower than BN
    bn = [300.0, 310.0, 290.0, 305.0, 295.0]
    df = _attribution([b + 130 for b in bn], [b + 110 for b in bn], [b + 10 for b in bn], bn)
    text = speed_accuracy.attribution_reading(df)
    assert "a gap of 130 ms (IQR 130 to 130) per round" in text
    assert "AGC accounts for 20 ms (IQR 20 to 20), 15% of the gap" in text
    assert "weight standardization for 100 ms (IQR 100 to 100), 77% of the gap" in text
    assert "(slower than the BN step); per round it differs from the BN step by 10 ms" in text
    jitter = (-5, 5, -3, 3, 0)
    same = _attribution([b + 130 for b in bn], [b + 110 for b in bn],
                        [b + d for b, d in zip(bn, jitter, strict=True)], bn)
    assert "not distinguishable from the BN step" in speed_accuracy.attribution_reading(same)


def test_findings_call_a_pair_faster_only_where_its_interval_says_so():
    ratios = pd.DataFrame({"fast": ["NFNet-F1", "NFNet-F0"], "slow": ["EffNet-B7", "NFNet-F0 -NF +BN"],
                           "measured": [5.5, 0.73], "measured_ci_low": [5.2, 0.70],
                           "measured_ci_high": [5.6, 0.73], "paper_tpuv3": [8.81, 1.52]})
    text = speed_accuracy.findings(ratios, None, "cpu")
    assert "NFNet-F1 trained faster than EffNet-B7 here" in text
    assert "NFNet-F0 trained slower than NFNet-F0 -NF +BN here" in text and "1.52x" in text
