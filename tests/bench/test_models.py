"""Whole-model latency benchmarks (P1, P3), the speed tables of notebooks 04 and 05
(``bench_models``, ``speed_accuracy``, ``architecture``) and their two plots.

Benchmarks are not tests: nothing here asserts on a timing. The tests check that each function
runs at a tiny setting (narrow, shallow NFNets; 32 px; one timed step), returns the documented
tidy columns and positive, finite numbers, and that the paper's numbers are read correctly.
"""
from __future__ import annotations

import math

import matplotlib
import pandas as pd
import pytest
import torch

matplotlib.use("Agg")

from nfrepro.analysis import plotting  # noqa: E402
from nfrepro.bench import harness as bench  # noqa: E402
from nfrepro.bench import models as bench_models  # noqa: E402
from nfrepro.bench import runner  # noqa: E402
from nfrepro.experiments import (
    architecture,  # noqa: E402
    speed_accuracy,  # noqa: E402
)
from nfrepro.models.nfnet import VARIANTS  # noqa: E402

# A tiny NFNet-F0 on both sides: one block per stage, 32..96 channels, group width 16.
TINY = {"depths": (1, 1, 1, 1), "channels": (32, 64, 96, 96), "group_size": 16}
TINY_TIMM = {**TINY, "stem_chs": 16}
TIDY = ["benchmark", "scenario", "model", "side", "metric", "value", "batch_size", "resolution", "threads"]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _check_benchmark(df: pd.DataFrame, name: str, goal: float, sides=("nfrepro", "timm")) -> None:
    assert list(df.columns) == TIDY
    assert set(df["benchmark"]) == {name} and set(df["side"]) == set(sides)
    tm = df[df["side"] == "timm"].set_index("metric")["value"]
    for side in sides:
        got = df[df["side"] == side].set_index("metric")["value"]
        assert {"median_ms", "q25_ms", "q75_ms", "min_ms", "images_per_s", "repeats"} <= set(got.index)
        assert got["median_ms"] > 0 and got["images_per_s"] > 0
        if side != "timm":
            ratio = got["ratio_vs_timm"]
            assert math.isfinite(ratio) and ratio == pytest.approx(got["median_ms"] / tm["median_ms"])
    assert len(df[df["metric"] == "ratio_vs_timm"]) == len(sides) - 1
    goal_rows = df[df["metric"] == "goal_ratio_vs_timm"]
    assert goal_rows["value"].tolist() == [goal] and goal_rows["side"].tolist() == ["nfrepro"]


def test_bench_train_step_tiny():
    df = bench_models.bench_train_step("cpu", batch_size=2, px=32, repeats=1, warmup=0,
                                       nfrepro_overrides=TINY, timm_overrides=TINY_TIMM)
    _check_benchmark(df, "train_step", bench_models.GOAL_TRAIN_STEP)


def test_bench_inference_tiny():
    df = bench_models.bench_inference("cpu", batch_size=2, px=32, repeats=1, warmup=0,
                                      nfrepro_overrides=TINY, timm_overrides=TINY_TIMM)
    _check_benchmark(df, "inference", bench_models.GOAL_INFERENCE,
                     sides=("nfrepro", "nfrepro_ws_folded", "timm"))


def test_benchmarks_are_registered_and_saved(tmp_path):
    assert {"agc", "train_step", "inference"} <= set(runner.BENCHMARKS)
    paths = runner.run_benchmarks(["inference"], device="cpu", out_dir=tmp_path, batch_size=1, px=32,
                                 repeats=1, warmup=0, nfrepro_overrides=TINY, timm_overrides=TINY_TIMM)
    csv = paths["inference"]
    assert csv == tmp_path / "bench_inference.csv" and csv.with_suffix(".json").exists()
    assert list(pd.read_csv(csv).columns) == TIDY


def test_train_step_fn_updates_weights_and_clips():
    model = speed_accuracy.build_model("nfnet_f0", **TINY)
    x, y = bench.make_batch(2, 32, "cpu")
    before = [p.detach().clone() for p in model.parameters()]
    for clip in ("nfrepro", "timm", None):
        bench.train_step_fn(model, x, y, clip=clip)()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    with pytest.raises(ValueError, match="clip"):
        bench.train_step_fn(model, x, y, clip="global_norm")


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


def test_compare_train_steps_alternates_models():
    models = {"a": speed_accuracy.build_model("nfnet_f0", **TINY),
              "b": speed_accuracy.build_model("nfnet_f0", extra_conv=False, **TINY)}
    df = bench_models.compare_train_steps(models, "a", batch_size=1, px=32, device="cpu", repeats=2, warmup=0)
    ratio = df[df["metric"] == "ratio_vs_baseline"].set_index("side")["value"]
    assert ratio["a"] == 1.0 and ratio["b"] > 0
    assert set(df["side"]) == {"a", "b"} and (df["resolution"] == 32).all()


def _latency(**ms):
    return pd.DataFrame([{"model": m, "label": speed_accuracy.CONTENDERS[m].label,
                          "family": speed_accuracy.CONTENDERS[m].family, "metric": "median_ms", "value": v}
                         for m, v in ms.items()])


def test_speed_tables_read_the_paper():
    table = speed_accuracy.speed_accuracy_table(_latency(nfnet_f1=100.0, efficientnet_b7=900.0,
                                                       nfnet_f0=50.0, nfnet_bn_f0=80.0, efficientnet_b1=70.0))
    row = table.set_index("label")
    assert row.loc["NFNet-F1", "paper_top1"] == 84.7 and row.loc["EffNet-B7", "paper_tpuv3_ms"] == 1397.0
    assert row.loc["NFNet-F0 -NF +BN", "paper_top1"] == 83.4 and math.isnan(row.loc["EffNet-B1", "paper_top1"])
    ratios = speed_accuracy.speed_ratios(table).set_index("slow")
    assert ratios.loc["EffNet-B7", "measured"] == pytest.approx(9.0)
    assert ratios.loc["EffNet-B7", "paper_claim"] == 8.7
    assert ratios.loc["EffNet-B7", "paper_tpuv3"] == pytest.approx(1397.0 / 158.5)
    assert ratios.loc["NFNet-F0 -NF +BN", "measured_time_saved"] == pytest.approx(1 - 50 / 80)
    assert math.isnan(ratios.loc["NFNet-F3 -NF +BN", "measured"])  # not measured: NaN, no error
    paper = speed_accuracy.paper_speed_accuracy()
    assert {"NFNet-F0", "EffNet-B7", "ResNet-50", "NFNet-F3 -NF +BN"} <= set(paper["label"])


def test_plots_draw_from_frames():
    table = speed_accuracy.speed_accuracy_table(_latency(nfnet_f0=50.0, nfnet_bn_f0=80.0, efficientnet_b0=20.0))
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


def test_table2_steps_and_complexity():
    sizes = architecture.table2_complexity().pivot_table(index="label", columns="metric", values="value")
    f0 = sizes.loc["NFNet-F0 (+ second conv)"]
    assert f0["params"] == 71_489_284  # = NFNet-F0, Table 3's 71.49M
    base = sizes.loc["NFNet-F0 (baseline SE-ResNeXt-D NF)"]
    assert base["macs"] < sizes.loc["NFNet-F0 (+ modified width)", "macs"] < f0["macs"]
    df = architecture.complexity_table(["F0"])
    assert df.set_index("metric")["value"]["macs"] == pytest.approx(12.38e9, rel=1e-3)


def test_module_shapes_lists_children_in_call_order():
    stem = speed_accuracy.build_model("nfnet_f0", **TINY).stem
    df = architecture.module_shapes(stem, torch.randn(1, 3, 32, 32))
    assert df["module"].tolist() == ["conv0", "act0", "conv1", "act1", "conv2", "act2", "conv3"]
    assert df["output_shape"].iloc[-1] == (1, 16, 8, 8)


def test_out_of_memory_is_recorded_not_raised(monkeypatch):
    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(speed_accuracy, "_time_one", oom)
    df = speed_accuracy.train_step_latency(["efficientnet_b7"], device="cpu", progress=None)
    assert df["value"].isna().all() and set(df["note"]) == {"out of memory"}
    assert set(df["metric"]) == set(speed_accuracy._METRICS)
