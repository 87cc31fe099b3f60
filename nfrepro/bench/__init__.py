"""Benchmarks (not tests): each a ratio against a baseline timed alternately in the same run.

``harness`` (the alternating timing loop, batches on the device, the engine's training step),
then ``agc`` (AGC vs timm and a read-only floor), ``models`` (NFNet-F0 training step and folded
inference vs timm; Table 2 steps) and ``throughput`` (small nets' images per second);
``runner`` saves each as ``results/bench_<name>.csv`` with its run record. timm is the ``bench``
extra.
"""
from nfrepro.bench.harness import compare
from nfrepro.bench.runner import BENCHMARKS, run_benchmarks

__all__ = ["compare", "BENCHMARKS", "run_benchmarks"]
