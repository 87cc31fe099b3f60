"""The AGC benchmark (``nfrepro.bench.agc``) runs and reports what it claims to measure
(not a timing test)."""
import pytest

from nfrepro.bench.agc import bench_agc


def test_bench_agc_reports_every_side_and_the_share_of_a_step():
    pytest.importorskip("timm", reason="the bench extra (timm) is not installed")
    df = bench_agc("cpu", model_name="nf_resnet_small", repeats=1, warmup=0, step_batch=2, step_px=28,
                   step_repeats=1, step_warmup=0)
    sides = set(df.loc[df["metric"] == "median_ms", "side"])
    assert sides == {"timm", "reference", "nfrepro", "read_only", "train_step"}
    clipped = df[(df["metric"] == "frac_units_clipped")].set_index("scenario")["value"]
    assert clipped["all_clipped"] == 1.0 and clipped["none_clipped"] == 0.0
    share = df[df["metric"] == "share_of_train_step"]
    assert len(share) == 4 and (share["value"] > 0).all()
    assert (df.loc[df["metric"] == "median_ms", "value"] > 0).all()
