"""The GELU benchmark (``nfrepro.bench.gelu``) runs at a tiny size and returns its tidy rows; timings
are not checked (benchmarks are not tests)."""
import math

import pytest
import torch

import nfrepro
from nfrepro.bench import gelu, runner
from nfrepro.models.gelu import gelu_tanh, gelu_tanh_reference

TINY = {"depths": (1, 1, 1, 1), "channels": (32, 64, 96, 96), "group_size": 16}


def test_bench_gelu_tiny():
    df = gelu.bench_gelu("cpu", shape=(2, 8, 4, 4), repeats=2, warmup=0)
    assert set(df["side"]) == {"tanh_native", "erf_native", "nfrepro"} and "gelu" in runner.BENCHMARKS
    values = df.set_index(["side", "metric"])["value"]
    for side in ("erf_native", "nfrepro"):
        assert math.isfinite(values[(side, "ratio_median")]) and values[(side, "ratio_median")] > 0
    assert ("tanh_native", "ratio_median") not in values.index and (values.xs("median_ms", level=1) > 0).all()


def test_gelu_train_steps_tiny():
    pytest.importorskip("timm")
    df = gelu.gelu_train_steps("cpu", batch_size=1, px=32, repeats=1, warmup=0, overrides=TINY)
    assert set(df["side"]) == {"nfrepro", "nfrepro_native_gelu", "timm"}
    ratio = df[df["metric"] == "ratio_vs_baseline"].set_index("side")["value"]
    assert ratio["timm"] == 1.0 and (ratio > 0).all()


def test_with_native_gelu_swaps_the_function_only():
    model = gelu.with_native_gelu(nfrepro.create_model("nfnet_f0", **TINY))
    fns = {m.fn for m in model.modules() if hasattr(m, "fn")}
    assert gelu_tanh_reference in fns and gelu_tanh not in fns
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 1000)
