"""Data parallelism: ``torchrun --nproc_per_node=2 -m nfrepro train`` on the CPU (gloo) ends with
the same weights in both processes, and the same weights (to float tolerance) as one process
with the same global batch."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from nfrepro import cli
from nfrepro.engine.distributed import ranks_from_env
from nfrepro.engine.training import train

ROOT = Path(__file__).resolve().parents[2]

# no BatchNorm (per-process statistics would differ), no dropout / stochastic depth (per-process
# masks); crop + flip are drawn for the global batch, so they match one process exactly
ARGS = ["train", "--model", "nf_resnet_small", "--model-arg", "depths=[1,1]",
        "--model-arg", "widths=[4,8]", "--dataset", "synthetic", "--train-subset", "64",
        "--test-subset", "32", "--batch-size", "16", "--epochs", "2", "--base-lr", "0.4",
        "--warmup-epochs", "0.5", "--clipping", "0.05", "--crop-padding", "2", "--flip",
        "--ema-decay", "0.9", "--device", "cpu", "--amp", "off", "--no-progress"]
    # fp32 (--amp off): rank-sum vs single-process rounding

# runs the CLI under torchrun and saves each process's final weights
LAUNCHER = textwrap.dedent("""
    import os, sys, torch
    import nfrepro.cli, nfrepro.engine.training
    plain_train = nfrepro.engine.training.train
    def train(config, **kw):
        result = plain_train(config, **kw)
        torch.save(result.model.state_dict(), f"{sys.argv[1]}/rank{os.environ['RANK']}.pt")
        return result
    nfrepro.cli.train = train  # the CLI calls the train it imported
    sys.exit(nfrepro.cli.main(sys.argv[2:]))
""")


def test_two_gloo_processes_match_each_other_and_one_process(tmp_path):
    script = tmp_path / "launch.py"
    script.write_text(LAUNCHER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("WORLD_SIZE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(script), str(tmp_path), *ARGS, "--run-dir", str(tmp_path / "ddp")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "completed" in proc.stdout and proc.stdout.count("completed") == 1  # rank 0 prints
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key

    config = cli.config_from_args(cli.build_parser().parse_args(ARGS))
    config.run_dir = str(tmp_path / "single")
    single = train(config).model.state_dict()
    for key in rank0:
        torch.testing.assert_close(rank0[key], single[key], rtol=1e-4, atol=1e-5, msg=key)
    ddp_metrics = (tmp_path / "ddp" / "metrics.csv").read_text().splitlines()
    assert len(ddp_metrics) == 3  # header + 2 epochs, written once (by rank 0)


@pytest.mark.parametrize("env, message", [
    ({"RANK": "1"}, "RANK=1 but WORLD_SIZE=1"),
    ({"RANK": "2", "WORLD_SIZE": "2"}, "RANK=2 but WORLD_SIZE=2"),
    ({"WORLD_SIZE": "2"}, "no RANK"),
    ({"WORLD_SIZE": "0"}, "WORLD_SIZE='0'"),
    ({"RANK": "one"}, "RANK='one'"),
])
def test_a_stale_or_inconsistent_torchrun_environment_is_refused(env, message):
    with pytest.raises(ValueError, match=message):
        ranks_from_env(env)


def test_consistent_torchrun_environments():
    assert ranks_from_env({}) == (0, 1, 0)
    assert ranks_from_env({"RANK": "0"}) == (0, 1, 0)
    assert ranks_from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}) == (1, 2, 1)


def test_train_refuses_a_stale_rank_before_any_work(tmp_path, monkeypatch):
    from nfrepro.engine.config import TrainConfig
    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    config = TrainConfig(model="nf_resnet_small", dataset="synthetic", run_dir=str(tmp_path / "run"))
    with pytest.raises(ValueError, match="RANK=1 but WORLD_SIZE=1"):
        train(config)
    assert not (tmp_path / "run").exists()
