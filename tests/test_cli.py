"""python -m nfrepro: help, the four commands, and bad input -> one line, exit status 2."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from nfrepro import cli

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--model", "nf_resnet_small", "--model-arg", "depths=[1]", "--model-arg", "widths=[4]",
        "--dataset", "synthetic", "--train-subset", "32", "--test-subset", "16",
        "--batch-size", "16", "--epochs", "1", "--no-progress"]


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})}
    full_env.pop("NFREPRO_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "nfrepro", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=300)


def test_help_lists_the_commands():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for command in ("train", "eval", "bench", "sweep"):
        assert command in proc.stdout


@pytest.mark.parametrize("command", ["train", "eval", "bench", "sweep"])
def test_each_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0 and "usage" in capsys.readouterr().out


BAD_INPUT = {
    "unknown model": (["train", "--model", "nf_resnet_smal"], {}, "nf_resnet_small"),
    "lambda <= 0": (["train", *TINY, "--clipping", "0"], {}, "clipping"),
    "batch vs processes": (["train", *TINY, "--batch-size", "15"],
                           {"WORLD_SIZE": "2", "RANK": "0"}, "multiple of 2"),
    "missing data": (["train", "--dataset", "fashion_mnist"], {"NFREPRO_DATA": "/nonexistent"},
                     "apt-get install dataset-fashion-mnist"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_line_and_exit_2(case):
    args, env, expected = BAD_INPUT[case]
    proc = run_cli(*args, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], proc.stderr


def test_corrupt_checkpoint_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"\x00garbage")
    proc = run_cli("train", *TINY, "--run-dir", str(tmp_path / "run"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "corrupt" in proc.stderr and "delete" in proc.stderr


def test_train_and_sweep_in_process(tmp_path, capsys):
    assert cli.main(["train", *TINY, "--run-dir", str(tmp_path / "run")]) == 0
    assert "completed" in capsys.readouterr().out
    csv = tmp_path / "sweep.csv"
    assert cli.main(["sweep", "--grid", '{"seed": [0, 1]}', "--results", str(csv),
                     "--runs-dir", str(tmp_path / "runs"), *TINY]) == 0
    assert pd.read_csv(csv)["run"].nunique() == 2
    assert cli.main(["sweep", "--grid", "{seed: [0]}", *TINY]) == 2  # not JSON
    assert "not JSON" in capsys.readouterr().err


def test_eval_on_an_image_folder(tmp_path, capsys):
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / "val" / cls).mkdir(parents=True)
        Image.new("RGB", (40, 36), (200, 10, 10)).save(tmp_path / "val" / cls / "0.png")
    args = ["eval", "--model", "nf_resnet_small", "--num-classes", "2", "--data",
            str(tmp_path / "val"), "--workers", "0", "--device", "cpu"]
    assert cli.main(args) == 2  # a ResNet has no variant test resolution
    assert "--image-size" in capsys.readouterr().err
    assert cli.main([*args, "--image-size", "28"]) == 0
    out = capsys.readouterr().out
    assert "top-1" in out and "2 images" in out and "60x60" in out
    assert cli.main(["eval", "--model", "nf_resnet_small", "--data", str(tmp_path / "nope"),
                     "--image-size", "28"]) == 2


def test_bench_dispatches(monkeypatch, tmp_path, capsys):
    import nfrepro.bench.runner

    calls = {}
    monkeypatch.setattr(nfrepro.bench.runner, "run_benchmarks",
                        lambda **kw: calls.setdefault("bench", kw) and {"agc": tmp_path / "a.csv"})
    assert cli.main(["bench", "--which", "agc", "throughput", "--device", "cpu",
                     "--out-dir", str(tmp_path)]) == 0
    assert calls["bench"]["which"] == ["agc", "throughput"] and calls["bench"]["device"] == "cpu"
    assert calls["bench"]["out_dir"] == str(tmp_path)


def test_every_option_has_help_and_lists_its_choices():
    import argparse
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        for action in command._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help and action.help.strip(), f"{name} {action.option_strings} has no help"
            for choice in action.choices or ():
                assert str(choice) in action.help, f"{name} {action.option_strings}: {choice} not listed"


def test_config_reruns_a_saved_configuration(tmp_path):
    assert cli.main(["train", *TINY, "--seed", "3", "--model-arg", "alpha=0.5",
                     "--run-dir", str(tmp_path / "run")]) == 0
    saved = tmp_path / "run" / "config.json"
    args = cli.build_parser().parse_args(["train", "--config", str(saved), "--epochs", "2"])
    config = cli.config_from_args(args)
    assert config.seed == 3 and config.model_kwargs["alpha"] == 0.5 and config.epochs == 2
    args = cli.build_parser().parse_args(["train", "--epochs", "2", "--config", str(saved)])
    assert cli.config_from_args(args).epochs == 2   # the command line wins, before or after


def test_train_logs_steps_to_csv(tmp_path):
    assert cli.main(["train", *TINY, "--log-every", "1", "--run-dir", str(tmp_path / "run")]) == 0
    steps = pd.read_csv(tmp_path / "run" / "steps.csv")
    assert list(steps.columns) == ["step", "epoch", "loss", "lr", "frac_clipped"]
    assert steps["step"].tolist() == [1, 2] and steps["loss"].notna().all()


@pytest.mark.slow
def test_bench_prints_its_table_and_nothing_else(tmp_path):
    """A real smoke benchmark in a fresh process: the table, and no profiler log lines (fd level)."""
    proc = run_cli("bench", "--which", "agc", "--device", "cpu", "--profile", "smoke",
                   "--out-dir", str(tmp_path), env={"NFREPRO_PROFILE": "smoke"})
    assert proc.returncode == 0, proc.stderr
    assert "USDT" not in proc.stdout + proc.stderr and "gpuGetDeviceCount" not in proc.stdout + proc.stderr
    assert proc.stdout.startswith("agc (") and len(proc.stdout.splitlines()) > 2
