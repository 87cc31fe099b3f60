"""Ctrl-C and kill -9 during a real ``python -m nfrepro train``, synchronised on what the run does.

The child process runs the CLI with two hooks: after each checkpoint is written it prints
``checkpoint <epoch>``, after each logged step ``step <n>``, and waits for a line on its stdin.
The test reads those lines (no clock, no polling), signals the child while it waits, and checks
what the run left behind. A busy machine only makes the test slower, never different.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd

from nfrepro import cli

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--model", "nf_resnet_small", "--model-arg", "depths=[1]", "--model-arg", "widths=[4]",
        "--dataset", "synthetic", "--train-subset", "32", "--test-subset", "16",
        "--batch-size", "16", "--no-progress"]
# the CLI, with a pause after every checkpoint and logged step that the parent ends with a line
PAUSED_CLI = """
import sys
import nfrepro.engine.training as training
def pause(*event):
    print(*event, flush=True)
    sys.stdin.readline()
write, log = training.save_checkpoint, training.StepLogger.__call__
def save_checkpoint(state, path):
    out = write(state, path)
    pause("checkpoint", state["epoch"])
    return out
def logged(self, step, metrics):
    log(self, step, metrics)
    if self.csv_path is not None and step % self.every == 0:
        pause("step", step)
training.save_checkpoint, training.StepLogger.__call__ = save_checkpoint, logged
from nfrepro import cli
sys.exit(cli.main(sys.argv[1:]))
"""


def start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("NFREPRO_DEBUG", None)
    return subprocess.Popen([sys.executable, "-c", PAUSED_CLI, *args], cwd=ROOT, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_for(proc: subprocess.Popen, event: str, number: int) -> None:
    """Let the run go on until it pauses at ``event number`` ("checkpoint 2", "step 3")."""
    for line in proc.stdout:
        if line.split() == [event, str(number)]:
            return
        proc.stdin.write("\n")
        proc.stdin.flush()
    raise AssertionError(f"the run ended before {event} {number}: {proc.wait()} {proc.stderr.read()}")


def test_sigint_says_the_run_resumes_and_exits_130(tmp_path):
    run = tmp_path / "run"
    args = ["train", *TINY, "--epochs", "6", "--run-dir", str(run)]
    proc = start(args)
    wait_for(proc, "checkpoint", 2)
    proc.send_signal(signal.SIGINT)  # it is waiting on its stdin: the interrupt lands there
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert "same command resumes" in err and len(err.strip().splitlines()) <= 3
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    # the checkpoint of epoch 2 is written, its metrics (written next) not yet
    assert json.loads((run / "metrics.json").read_text())["epoch"] == 1
    assert cli.main(args) == 0  # the same command resumes and finishes
    assert pd.read_csv(run / "metrics.csv")["epoch"].tolist() == list(range(1, 7))


def test_kill_9_three_times_then_resume_logs_every_step_once(tmp_path):
    run = tmp_path / "run"
    args = ["train", *TINY, "--epochs", "5", "--log-every", "1", "--run-dir", str(run)]
    for step in (3, 5, 7):  # 2 steps an epoch: each kill falls one step past the last checkpoint
        proc = start(args)
        wait_for(proc, "step", step)
        proc.kill()
        proc.communicate(timeout=300)
    stale = run / f".checkpoint.pt.{2 ** 22 + 7}.0123abcd.tmp"  # what a writer killed mid-save leaves
    stale.write_bytes(b"half a checkpoint")
    assert cli.main(args) == 0
    steps = pd.read_csv(run / "steps.csv")["step"].tolist()
    assert steps == list(range(1, len(steps) + 1)) and len(steps) == 5 * 2  # 32 images, batch 16
    assert pd.read_csv(run / "metrics.csv")["epoch"].tolist() == list(range(1, 6))
    assert not stale.exists()
