"""Whole-model latency benchmarks (``nfrepro.bench.models``: F0's training step and
folded inference against timm, the Table 2 steps).

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

from nfrepro.bench import models as bench_models  # noqa: E402
from nfrepro.bench import runner  # noqa: E402
from nfrepro.experiments import (
    speed_accuracy,  # noqa: E402
)

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


def test_compare_train_steps_alternates_models():
    models = {"a": speed_accuracy.build_model("nfnet_f0", **TINY),
              "b": speed_accuracy.build_model("nfnet_f0", extra_conv=False, **TINY)}
    df = bench_models.compare_train_steps(models, "a", batch_size=1, px=32, device="cpu", repeats=2, warmup=0)
    ratio = df[df["metric"] == "ratio_vs_baseline"].set_index("side")["value"]
    assert ratio["a"] == 1.0 and ratio["b"] > 0
    assert set(df["side"]) == {"a", "b"} and (df["resolution"] == 32).all()
