"""Throughput before and after: an earlier commit's own training step timed beside today's.

Development tooling, not part of the package (``make throughput-before COMMIT=<rev>``). The
commit's ``nfrepro`` is exported with ``git archive`` into a temporary folder and stepped by a
one-thread worker process (fp32, NCHW, the commit's own ``nfrepro.bench.throughput._Stepper``),
which takes its turn in the round-robin of :func:`nfrepro.bench.throughput.measure_throughput`,
so that ``speedup_vs_before`` is a ratio within one run. Where git or the commit is missing, the
side is left out with a warning. The table goes to ``results/bench_throughput_before.csv`` with
its run record (``--out`` to change it).
"""
from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
from pathlib import Path

import torch

from nfrepro.bench.throughput import BATCH_SIZES, measure_throughput
from nfrepro.engine.device import resolve_device
from nfrepro.engine.records import save_results

ROOT = Path(__file__).resolve().parents[1]
MODEL = "nf_resnet_small"

# The worker: one line "model batch_size steps" in, the seconds those steps took out.
WORKER = Path(__file__).with_name("throughput_worker.py")


class CommitStepper:
    """Steps ``model`` with the ``nfrepro`` of ``commit`` (of the git repository ``repo``), in a
    one-thread worker process; an :class:`nfrepro.bench.throughput.OutsideStepper`."""

    def __init__(self, commit: str, model: str, batch_size: int, dataset: str, subset: int | None,
                 repo: str | Path = ROOT):
        self.model, self.batch_size = model, batch_size
        self.label = f"float32, NCHW at {commit}"
        self.tmp = tempfile.TemporaryDirectory(prefix="nfrepro-before-")
        archive = subprocess.run(["git", "-C", str(repo), "archive", commit, "nfrepro"],
                                 capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(self.tmp.name, filter="data")
        env = {**os.environ, "PYTHONPATH": self.tmp.name, "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([sys.executable, str(WORKER), dataset, str(subset)], env=env,
                                     cwd=self.tmp.name, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            self.close()
            raise RuntimeError(f"the worker for commit {commit} did not start")

    def time_steps(self, steps: int) -> float:
        """Seconds of ``steps`` steps (the worker's own clock; the pipe round trip is outside it)."""
        self.proc.stdin.write(f"{self.model} {self.batch_size} {steps}\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        self.tmp.cleanup()


def commit_stepper(commit: str, dataset: str, subset: int | None, repo: str | Path = ROOT):
    """``before=`` for :func:`measure_throughput`: a :class:`CommitStepper` per batch size, or None
    (with a warning) where the commit cannot be had."""
    def make(batch_size: int) -> CommitStepper | None:
        try:
            return CommitStepper(commit, MODEL, batch_size, dataset, subset, repo)
        except (OSError, subprocess.CalledProcessError, RuntimeError) as err:
            warnings.warn(f"throughput: cannot step commit {commit} ({err}); its side is left out "
                          f"(it needs git and that commit in the repository's history)", stacklevel=2)
            return None
    return make


def compare(commit: str, batch_sizes=BATCH_SIZES, dataset: str = "fashion_mnist", subset: int | None = 8192,
            repo: str | Path = ROOT, **kwargs):
    """:func:`measure_throughput` on the CPU with ``commit``'s own step of :data:`MODEL` beside it."""
    return measure_throughput(batch_sizes=batch_sizes, device="cpu", dataset=dataset, subset=subset,
                              before=commit_stepper(commit, dataset, subset, repo), **kwargs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/throughput_before.py",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("commit", help="the earlier commit (any git revision)")
    parser.add_argument("--out", default=str(ROOT / "results" / "bench_throughput_before.csv"))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=list(BATCH_SIZES))
    args = parser.parse_args(argv)
    start = time.perf_counter()
    df = compare(args.commit, tuple(args.batch_sizes))
    save_results(df, args.out, params={"commit": args.commit, "batch_sizes": args.batch_sizes},
                 wall_time_s=time.perf_counter() - start, device=resolve_device("cpu"),
                 threads_per_worker=df.attrs.get("threads_per_worker", torch.get_num_threads()))
    print(df.pivot_table(index=["model", "batch_size", "precision"], columns="metric", values="value"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
