"""The throughput benchmark (``nfrepro.bench.throughput``) runs the engine's step on the small nets."""
import torch

from nfrepro.bench.throughput import BASELINE, FP32, PRECISIONS, _same_step, measure_throughput
from nfrepro.engine.device import compute_dtype, native_bf16


def test_measure_throughput_tidy_ratios_and_precisions():
    threads = torch.get_num_threads()
    df = measure_throughput(batch_sizes=(16,), steps=1, warmup=0, repeats=1, dataset="synthetic",
                            subset=64)
    assert torch.get_num_threads() == threads  # the benchmark's one thread is given back
    assert set(df["metric"]) == {"ms_per_step", "images_per_s", "images_per_s_per_core",
                                 f"step_time_ratio_vs_{BASELINE}", "speedup_vs_fp32"}
    ratio = df[(df["model"] == BASELINE) & (df["metric"] == f"step_time_ratio_vs_{BASELINE}")]["value"]
    assert ratio.tolist() == [1.0, 1.0]  # one per precision
    fp32 = df[df["precision"] == FP32[0]]
    assert (fp32["dtype"] == "float32").all() and not fp32["channels_last"].any()
    assert fp32[fp32["metric"] == "speedup_vs_fp32"]["value"].tolist() == [1.0] * 3
    default = df[df["precision"] != FP32[0]]
    assert (default["dtype"] == compute_dtype("cpu")).all()
    assert (df["value"] > 0).all() and set(df["model"]) == {"nf_resnet_small", "bn_resnet_small",
                                                             "plain_resnet_small"}
    assert df.attrs["threads_per_worker"] == 1


def test_a_precision_that_runs_the_same_step_is_timed_once():
    again = ("float32 again", "off", False)
    df = measure_throughput(models=("bn_resnet_small",), batch_sizes=(16,), steps=1, warmup=0, repeats=2,
                            dataset="synthetic", subset=64, precisions=(FP32, again))
    ms = df[df["metric"] == "ms_per_step"].set_index("precision")["value"]
    assert ms[again[0]] == ms[FP32[0]]  # the same timings, not a second measurement
    assert df[df["metric"] == "speedup_vs_fp32"]["value"].tolist() == [1.0, 1.0]
    cpu = torch.device("cpu")
    assert not _same_step(cpu, ("float32, channels-last", "off", True), FP32)  # another layout
    assert _same_step(cpu, PRECISIONS[1], FP32) == (not native_bf16(cpu))  # the CPU default


class _Outside:
    """An outside side that takes a fixed time per step (what ``tools/throughput_before.py`` plugs in)."""
    label, model = "outside", "nf_resnet_small"

    def __init__(self):
        self.closed = False

    def time_steps(self, steps: int) -> float:
        return 0.5 * steps

    def close(self) -> None:
        self.closed = True


def test_an_outside_side_joins_the_round_robin():
    made = []

    def before(batch_size):
        made.append(_Outside())
        return made[-1]

    df = measure_throughput(models=("nf_resnet_small",), batch_sizes=(16,), steps=1, warmup=1, repeats=2,
                            dataset="synthetic", subset=64, before=before)
    assert len(made) == 1 and made[0].closed
    old = df[df["precision"] == "outside"]
    assert old[old["metric"] == "ms_per_step"]["value"].tolist() == [500.0]
    assert old[old["metric"] == "speedup_vs_before"]["value"].tolist() == [1.0]
    assert len(df[df["metric"] == "speedup_vs_before"]) == 3  # fp32, default and the outside one
