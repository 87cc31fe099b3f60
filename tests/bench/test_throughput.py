"""The throughput benchmark (``nfrepro.bench.throughput``) runs the engine's step on the small nets."""
from nfrepro.bench.throughput import BASELINE, measure_throughput


def test_measure_throughput_tidy_and_ratio_to_the_baseline():
    df = measure_throughput(batch_sizes=(16,), steps=1, warmup=0, repeats=1, dataset="synthetic")
    assert set(df["metric"]) == {"ms_per_step", "images_per_s", f"step_time_ratio_vs_{BASELINE}"}
    ratio = df[(df["model"] == BASELINE) & (df["metric"] == f"step_time_ratio_vs_{BASELINE}")]["value"]
    assert ratio.tolist() == [1.0]
    assert (df["value"] > 0).all() and set(df["model"]) == {"nf_resnet_small", "bn_resnet_small",
                                                             "plain_resnet_small"}
