"""python -m nfrepro: help, the four commands, and bad input -> one line, exit status 2."""
from __future__ import annotations

import gzip
import io
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from nfrepro import cli
from nfrepro.engine.faults import exclusive_lock
from nfrepro.models.factory import create_model

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


def test_eval_picks_a_training_checkpoints_ema_weights(tmp_path, capsys, monkeypatch):
    """--use-ema / --no-use-ema reach load_pretrained (timm's use_ema); the default stays the raw weights."""
    import torch
    from PIL import Image

    import nfrepro.cli

    (tmp_path / "val" / "a").mkdir(parents=True)
    Image.new("RGB", (28, 28), (200, 10, 10)).save(tmp_path / "val" / "a" / "0.png")
    model = nfrepro.create_model("nf_resnet_small", num_classes=2)
    raw = model.state_dict()
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in raw.items()}
    torch.save({"state_dict": raw, "state_dict_ema": ema}, tmp_path / "ck.pth.tar")
    seen = {}
    real = nfrepro.cli.load_pretrained

    def spy(m, path, use_ema=None):
        return seen.setdefault(use_ema, real(m, path, use_ema=use_ema))

    monkeypatch.setattr(nfrepro.cli, "load_pretrained", spy)
    base = ["eval", "--model", "nf_resnet_small", "--num-classes", "2", "--data", str(tmp_path / "val"),
            "--workers", "0", "--device", "cpu", "--image-size", "28",
            "--weights", str(tmp_path / "ck.pth.tar")]
    for flag, key in (([], None), (["--use-ema"], True), (["--no-use-ema"], False)):
        assert cli.main([*base, *flag]) == 0
        assert key in seen
    first = next(iter(seen[True].state_dict().values()))
    assert torch.equal(first, next(iter(ema.values())))


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


def test_help_states_the_real_defaults_and_what_auto_resolves_to_here(capsys):
    """The train help is read as a user reads it: every "(default: X" is TrainConfig's real default,
    every "here: Y" what this machine resolves it to, and every config.json key has its option."""
    from nfrepro.engine.config import AGC_KEYS, TrainConfig
    from nfrepro.engine.device import compute_dtype, memory_format, resolve_device

    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = capsys.readouterr().out
    stated = {}
    for chunk in re.split(r"\n  (?=--)", text.split("options:", 1)[1])[1:]:
        chunk = " ".join(chunk.split())  # argparse wraps the help text anywhere
        name = chunk.split()[0].rstrip(",").removeprefix("--").replace("-", "_")
        if found := re.search(r"\(default: (.*?)(?:; here: (.*?))?\)(?:;|$)", chunk):
            stated[name] = found.groups()
    config = TrainConfig()
    real = {**vars(config), **{key: getattr(config.agc, name) for name, key in AGC_KEYS.items()}}
    assert set(stated) == set(config.to_dict()) - {"model_kwargs"}
    for name, (default, _) in stated.items():
        assert default == str(real[name]), name
    here = {name: h for name, (_, h) in stated.items() if h is not None}
    layout = memory_format("auto", config.channels_last)
    assert here == {"device": str(resolve_device("auto")),
                    "amp": "bf16" if compute_dtype("auto", config.amp) == "bfloat16" else "off",
                    "channels_last": "on" if layout == torch.channels_last else "off"}


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
    """A real benchmark in a fresh process (the quickest: Scaled WS on F0's weights): the table, and
    no profiler log lines (fd level)."""
    proc = run_cli("bench", "--which", "weight_standardization", "--device", "cpu",
                   "--out-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "USDT" not in proc.stdout + proc.stderr and "gpuGetDeviceCount" not in proc.stdout + proc.stderr
    assert proc.stdout.startswith("weight_standardization (") and len(proc.stdout.splitlines()) > 2


# --- every bad input is one line and exit 2, before any work ----------------------------------
TINY2 = [*TINY[:2], "--model-arg", "depths=[1,1]", "--model-arg", "widths=[4,8]", *TINY[6:]]
OFFLINE = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
EVAL = ["eval", "--model", "nf_resnet_small", "--data", "{tmp}/images"]
BATTERY = {
    "model-arg unknown key": (["train", *TINY, "--model-arg", "colour=red"], {}, "takes no argument colour"),
    "model-arg bad value": (["train", *TINY, "--model-arg", "alpha=-5"], {}, "alpha must be finite"),
    "model-arg not KEY=VALUE": (["train", *TINY, "--model-arg", "alpha"], {}, "KEY=VALUE"),
    "num_classes vs data": (["train", *TINY, "--model-arg", "num_classes=3"], {}, "disagrees"),
    "label smoothing 2": (["train", *TINY, "--label-smoothing", "2"], {}, "label_smoothing"),
    "randaugment one number": (["train", *TINY, "--randaugment", "2"], {}, "randaugment takes two"),
    "randaugment three numbers": (["train", *TINY, "--randaugment", "2", "5", "1"], {},
                                  "randaugment takes two"),
    "device tpu": (["train", *TINY, "--device", "tpu"], {}, "device 'tpu'"),
    "eval device tpu": (["eval", "--model", "nf_resnet_small", "--data", "{tmp}", "--device", "tpu"],
                        {}, "device 'tpu'"),
    "base-lr nan": (["train", *TINY, "--base-lr", "nan"], {}, "base_lr"),
    "clipping inf": (["train", *TINY, "--clipping", "inf"], {}, "clipping"),
    "train-subset -1": (["train", *TINY, "--train-subset", "-1"], {}, "train_subset"),
    "warmup -3": (["train", *TINY, "--warmup-epochs", "-3"], {}, "warmup_epochs"),
    "eval-batch-size 0": (["train", *TINY, "--eval-batch-size", "0"], {}, "eval_batch_size"),
    "run dir is a file": (["train", *TINY, "--run-dir", "{tmp}/file"], {}, "is a file"),
    "run dir not writable": (["train", *TINY, "--run-dir", "/proc/1/nfrepro-run"], {},
                             "choose another location"),
    "sweep results under a file": (["sweep", *TINY, "--grid", '{"seed": [0]}', "--results",
                                    "{tmp}/file/s.csv", "--runs-dir", "{tmp}/runs"], {}, "is a file"),
    "download offline": (["train", *TINY, "--dataset", "cifar10", "--download", "--data-root", "{tmp}/data"],
                         OFFLINE, "could not download CIFAR-10"),
    "fashion-mnist not gzip": (["train", *TINY, "--dataset", "fashion_mnist"],
                               {"NFREPRO_DATA": "{tmp}/notgz"}, "not a gzip file"),
    "fashion-mnist truncated gzip": (["train", *TINY, "--dataset", "fashion_mnist"],
                                     {"NFREPRO_DATA": "{tmp}/cutgz"}, "truncated"),
    "weights empty": (["eval", "--model", "nf_resnet_small", "--weights", "{tmp}/empty.pth",
                       "--data", "{tmp}"],
                      {}, "empty, truncated or not a weights file"),
    "weights text": (["eval", "--model", "nf_resnet_small", "--weights", "{tmp}/text.pkl",
                      "--data", "{tmp}"],
                     {}, "empty, truncated or not a weights file"),
    "weights truncated": (["eval", "--model", "nf_resnet_small", "--weights", "{tmp}/cut.pth",
                           "--data", "{tmp}"],
                          {}, "empty, truncated or not a weights file"),
    "checkpoint empty": (["train", *TINY, "--run-dir", "{tmp}/ck_empty"], {}, "corrupt"),
    "checkpoint text": (["train", *TINY, "--run-dir", "{tmp}/ck_text"], {}, "corrupt"),
    "checkpoint truncated": (["train", *TINY, "--run-dir", "{tmp}/ck_cut"], {}, "corrupt"),
    "corrupt image, no workers": (["eval", "--model", "nf_resnet_small", "--num-classes", "2",
                                   "--image-size", "32", "--data", "{tmp}/images", "--workers", "0"], {},
                                  "not a readable image"),
    "corrupt image, in a worker": (["eval", "--model", "nf_resnet_small", "--num-classes", "2",
                                    "--image-size", "32", "--data", "{tmp}/images", "--workers", "1"], {},
                                   "not a readable image"),
    "sweep grid wrong type": (["sweep", *TINY, "--grid", '{"batch_size": ["16"]}', "--results", "{tmp}/s.csv",
                               "--runs-dir", "{tmp}/runs"], {}, "batch_size must be int"),
    "sweep grid empty": (["sweep", *TINY, "--grid", "{}", "--results", "{tmp}/s.csv"], {}, "non-empty"),
    "sweep typo in a later grid point": (["sweep", *TINY, "--grid",
                                          '{"model": ["nf_resnet_small", "nf_resnt"]}', "--results",
                                          "{tmp}/s.csv", "--runs-dir", "{tmp}/runs"], {},
                                         "unknown model 'nf_resnt'"),
    "bench profile and out-dir": (["bench", "--profile", "smoke", "--out-dir", "{tmp}/bench"], {},
                                  "give one of them"),
    "bench device tpu": (["bench", "--device", "tpu", "--out-dir", "{tmp}/bench"], {}, "device 'tpu'"),
    # values that would be ignored, or mean "default" by accident
    "eval image-size 0": ([*EVAL, "--image-size", "0"], {}, "--image-size must be >= 8"),
    "eval image-size -40": ([*EVAL, "--image-size", "-40"], {}, "--image-size must be >= 8"),
    "eval limit 0": ([*EVAL, "--limit", "0"], {}, "--limit must be >= 1"),
    "eval limit -1": ([*EVAL, "--limit", "-1"], {}, "--limit must be >= 1"),
    "eval a data set root": (["eval", "--model", "nf_resnet_small", "--data", "{tmp}/root", "--image-size",
                              "32"], {},
                             "holds train/ and val/"),
    "log-every 0": (["train", *TINY, "--log-every", "0"], {}, "log_every must be >= 1"),
    "image-size on tensors": (["train", *TINY, "--image-size", "32"], {}, "applies to --dataset folder"),
    "loader-workers on tensors": (["train", *TINY, "--loader-workers", "2"], {},
                                  "applies to --dataset folder"),
    "download for synthetic": (["train", *TINY, "--download"], {}, "download applies to --dataset cifar10"),
    "data-root for synthetic": (["train", *TINY, "--data-root", "{tmp}"], {},
                                "does not apply to --dataset synthetic"),
    "stage that does not exist": (["train", *TINY, "--clipping", "0.01", "--clip-exclude-stages", "7"], {},
                                  "no block has stage [7]"),
    "config a list": (["train", *TINY, "--config", "{tmp}/list.json"], {}, "holds a JSON list"),
    "config a number": (["train", *TINY, "--config", "{tmp}/number.json"], {}, "holds a JSON int"),
    "config model_kwargs a list": (["train", *TINY, "--config", "{tmp}/kwargs.json"], {},
                                   "model_kwargs must be an object of names"),
    "group_size 0": (["train", "--model", "nfnet_f0", "--model-arg", "group_size=0",
                      "--dataset", "synthetic"], {}, "group_size must be >= 1"),
    "stale RANK": (["train", *TINY, "--run-dir", "{tmp}/stale"], {"RANK": "1"}, "RANK=1 but WORLD_SIZE=1"),
    "run dir of another tool": (["train", *TINY, "--run-dir", "{tmp}/foreign"], {},
                                "that nfrepro did not write for this run"),
    "sweep results named .json": (["sweep", *TINY, "--grid", '{"seed": [0]}', "--results", "{tmp}/out.json",
                                   "--runs-dir", "{tmp}/runs"], {}, "name a .csv file"),
    "sweep results beside a foreign json": (["sweep", *TINY, "--grid", '{"seed": [0]}', "--results",
                                             "{tmp}/report.csv", "--runs-dir", "{tmp}/runs"], {},
                                            "report.json exists and is not an nfrepro run record"),
    "sweep grid duplicates": (["sweep", *TINY, "--grid", '{"seed": [0, 0]}', "--results", "{tmp}/d.csv",
                               "--runs-dir", "{tmp}/runs"], {}, "lists 0 twice"),
}
if not torch.cuda.is_available():
    BATTERY["device cuda absent"] = (["train", *TINY, "--device", "cuda"], {}, "CUDA is not available")


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    """The broken files of the battery, made once: data, weights, checkpoints, images."""
    tmp = tmp_path_factory.mktemp("battery")
    (tmp / "file").write_text("a file where a folder should be")
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte"]
    truncated = gzip.compress(np.random.default_rng(0).bytes(5000))[:100]
    for folder, content in (("notgz", b"plain text, not gzip"), ("cutgz", truncated)):
        (tmp / folder).mkdir()
        for name in names:
            (tmp / folder / f"{name}.gz").write_bytes(content)
    good = io.BytesIO()
    torch.save(create_model("nf_resnet_small").state_dict(), good)
    (tmp / "empty.pth").write_bytes(b"")
    (tmp / "text.pkl").write_text("these are not weights\n")
    (tmp / "cut.pth").write_bytes(good.getvalue()[:2000])
    run = tmp / "ckpt_source"
    assert cli.main(["train", *TINY, "--run-dir", str(run)]) == 0
    for name, content in (("ck_empty", b""), ("ck_text", b"hello\n"),
                          ("ck_cut", (run / "checkpoint.pt").read_bytes()[:3000])):
        (tmp / name).mkdir()
        (tmp / name / "checkpoint.pt").write_bytes(content)
    for label in ("a", "b"):
        (tmp / "images" / label).mkdir(parents=True)
        Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp / "images" / label / "ok.png")
    (tmp / "images" / "b" / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    for split in ("train", "val"):
        (tmp / "root" / split / "a").mkdir(parents=True)
    (tmp / "list.json").write_text("[1, 2]")
    (tmp / "number.json").write_text("3")
    (tmp / "kwargs.json").write_text('{"model_kwargs": [1]}')
    (tmp / "foreign").mkdir()
    (tmp / "foreign" / "config.json").write_text('{"tool": "not nfrepro"}')
    (tmp / "foreign" / "metrics.csv").write_text("a,b\n1,2\n")
    (tmp / "report.json").write_text('{"mine": true}')
    return tmp


def _fill(items, tmp):
    return [str(item).replace("{tmp}", str(tmp)) for item in items]


@pytest.mark.parametrize("case", list(BATTERY))
def test_battery_bad_input_is_one_line_and_exit_2(case, bad_files):
    args, env, expected = BATTERY[case]
    proc = run_cli(*_fill(args, bad_files), env=dict(zip(env, _fill(env.values(), bad_files), strict=True)))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert 1 <= len(lines) <= 3 and expected in lines[-1], proc.stderr


def test_a_busy_run_folder_is_one_line_and_exit_2(tmp_path):
    with exclusive_lock(tmp_path / "run" / ".lock", f"run folder {tmp_path / 'run'}"):
        proc = run_cli("train", *TINY, "--run-dir", str(tmp_path / "run"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "is in use by pid" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("stages", [["0"], ["0", "1"]])
def test_clip_exclude_stages_takes_one_or_more_indices(stages, tmp_path):
    args = ["train", *TINY2, "--clipping", "0.01", "--clip-exclude-stages", *stages]
    config = cli.config_from_args(cli.build_parser().parse_args(args))
    assert config.agc.exclude_stages == tuple(int(s) for s in stages)
    assert cli.main([*args, "--run-dir", str(tmp_path / "run")]) == 0

# --- Ctrl-C and kill -9 during a real `python -m nfrepro train`, synchronised on what the run does --
# The child process runs the CLI with two hooks: after each checkpoint is written it prints
# "checkpoint <epoch>", after each logged step "step <n>", and waits for a line on its stdin. The
# test reads those lines (no clock, no polling), signals the child while it waits, and checks what
# the run left behind. A busy machine only makes these tests slower, never different.
TINY_RUN = ["--model", "nf_resnet_small", "--model-arg", "depths=[1]", "--model-arg", "widths=[4]",
        "--dataset", "synthetic", "--train-subset", "32", "--test-subset", "16",
        "--batch-size", "16", "--no-progress"]
# the CLI, with a pause after every checkpoint and logged step that the parent ends with a line
PAUSED_CLI = """
import signal
import sys
# as in a terminal, whatever the test runner inherited (a background job ignores SIGINT)
signal.signal(signal.SIGINT, signal.default_int_handler)
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


def start_paused(args: list[str]) -> subprocess.Popen:
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
    args = ["train", *TINY_RUN, "--epochs", "6", "--run-dir", str(run)]
    proc = start_paused(args)
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
    args = ["train", *TINY_RUN, "--epochs", "5", "--log-every", "1", "--tensorboard", "--run-dir", str(run)]
    for step in (3, 5, 7):  # 2 steps an epoch: each kill falls one step past the last checkpoint
        proc = start_paused(args)
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
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()  # the resumed writers purged what the killed ones logged past the checkpoint
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 11))


def test_eval_without_weights_says_it_scores_an_untrained_net(tmp_path, capsys):
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / label / "x.png")
    assert cli.main(["eval", "--model", "nf_resnet_small", "--num-classes", "2", "--image-size", "32",
                     "--data", str(tmp_path), "--workers", "0", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "no --weights, so this scores nf_resnet_small as initialised (untrained)" in captured.err
    assert "top-1" in captured.out and "on 2 images" in captured.out
