"""nfrepro.engine.training: run folder, exact resume, divergence, checkpoint errors, and one real
Fashion-MNIST run (slow)."""
from __future__ import annotations

import errno
import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import Killed, train_killed_after

from nfrepro.engine import faults
from nfrepro.engine.checkpoint import CheckpointError, load_checkpoint
from nfrepro.engine.faults import FolderInUseError, OutputLocationError, exclusive_lock
from nfrepro.engine.training import (
    METRIC_COLUMNS,
    ConfigError,
    TrainConfig,
    run_name,
    train,
)

TINY = {"depths": [1, 1], "widths": [4, 8]}


def tiny(tmp_path, name="run", **overrides) -> TrainConfig:
    """A seconds-long run: a 2-block NF net on 64 synthetic 28 x 28 images."""
    values = dict(model="nf_resnet_small", model_kwargs=dict(TINY), dataset="synthetic",
                  train_subset=64, test_subset=64, batch_size=16, epochs=2, base_lr=0.4,
                  warmup_epochs=0.5, ema_decay=0.9, run_dir=str(tmp_path / name), progress=False)
    values.update(overrides)
    return TrainConfig.from_dict(values)  # the flat keys of config.json


def test_config_defaults_validate_and_round_trip():
    config = TrainConfig()
    config.validate()
    assert TrainConfig.from_dict(config.to_dict()) == config
    for bad in (dict(clipping=0.0), dict(clipping=-1.0), dict(batch_size=0), dict(amp="fp8"),
                dict(mix="cutout"), dict(ema_decay=1.0)):
        with pytest.raises(ConfigError):
            TrainConfig(**bad).validate()
    with pytest.raises(ConfigError, match="unknown"):
        TrainConfig.from_dict({"lambda": 0.1})


def test_run_name_is_deterministic_and_ignores_non_trajectory_fields(tmp_path):
    a = run_name(tiny(tmp_path))
    assert a == run_name(tiny(tmp_path, name="elsewhere", progress=True))
    assert a != run_name(tiny(tmp_path, seed=1)) and "b16" in a and "clipoff" in a
    # a field added later is hashed only away from its old behaviour: existing folders keep their names
    assert a == run_name(tiny(tmp_path, clip_exclude_skip_gains=False)) == PINNED_NAME
    assert a != run_name(tiny(tmp_path, clip_exclude_skip_gains=True))


PINNED_NAME = "nf_resnet_small-synthetic-b16-clipoff-s0-cf07aa94"  # tiny()'s folder name, pinned


def test_unclipped_skip_gains_move_where_clipped_ones_cannot(tmp_path):
    """Clipped as published, a skip gain at 0 moves by at most about lr * lambda * eps a step."""
    moved = {}
    for exclude in (False, True):
        result = train(tiny(tmp_path, name=f"x{exclude}", clipping=0.01, clip_exclude_skip_gains=exclude))
        moved[exclude] = max(abs(b.skip_gain.item()) for b in result.model.blocks)
    assert moved[False] < 1e-5 and moved[True] > 10 * moved[False], moved


def test_run_folder_metrics_and_record(tmp_path):
    config = tiny(tmp_path, clipping=0.05, crop_padding=2, flip=True, mix="mixup_cutmix",
                  randaugment=[1, 3], sam_rho=0.05)
    result = train(config)
    assert result.status == "completed" and result.model is not None
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} >= {"config.json", "metrics.csv", "metrics.json",
                                               "checkpoint.pt"}
    metrics = pd.read_csv(run / "metrics.csv")
    assert list(metrics.columns) == METRIC_COLUMNS
    assert metrics["epoch"].tolist() == [1, 2] and metrics["step"].tolist() == [4, 8]
    assert metrics["status"].tolist() == ["running", "completed"]
    assert metrics["frac_clipped"].between(0, 1).all() and metrics["test_top1"].between(0, 100).all()
    record = json.loads((run / "metrics.json").read_text())
    assert record["status"] == "completed" and record["parameters"]["clipping"] == 0.05
    assert TrainConfig.from_dict(json.loads((run / "config.json").read_text())) == config
    again = train(config)  # a finished run is read back, not retrained
    assert again.model is None and again.metrics.equals(result.metrics)
    with pytest.raises(ConfigError, match="different configuration"):
        train(tiny(tmp_path, clipping=0.1))


def test_killed_and_resumed_run_is_bit_identical(tmp_path):
    # dropout, stochastic depth, crop/flip/MixUp, AGC and EMA: every RNG and state must resume
    kwargs = dict(model_kwargs={**TINY, "drop_rate": 0.3, "stochdepth_rate": 0.2},
                  clipping=0.05, crop_padding=2, flip=True, mix="mixup")
    whole = train(tiny(tmp_path, "whole", **kwargs))
    train_killed_after(tiny(tmp_path, "resumed", **kwargs), epoch=1)
    assert load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["epoch"] == 1
    resumed = train(tiny(tmp_path, "resumed", **kwargs))
    a = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    columns = [c for c in METRIC_COLUMNS if c != "wall_time_s"]
    pd.testing.assert_frame_equal(whole.metrics[columns], resumed.metrics[columns])


def test_divergence_is_recorded_not_raised(tmp_path):
    result = train(tiny(tmp_path, max_loss=1e-3, check_every=1))
    assert result.status == "diverged"
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert metrics["status"].tolist() == ["diverged"] and metrics["step"].tolist() == [1]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "diverged"
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    assert train(tiny(tmp_path, max_loss=1e-3, check_every=1)).status == "diverged"  # read back


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        train(tiny(tmp_path))


@pytest.mark.slow
def test_fashion_mnist_trains_well_above_chance(tmp_path):
    """A few hundred steps of a small NF-ResNet on real Fashion-MNIST: far above 10% chance."""
    from nfrepro.data.datasets import locate_fashion_mnist

    locate_fashion_mnist()  # missing data: DataNotFoundError naming the install command, no skip
    # 300 steps of batch 64 with AGC (lambda 0.16): ~72% measured (on a heavily loaded 2-core
    # CPU it took 110 s; quiet, ~30 s)
    config = TrainConfig(model="nf_resnet_small", model_kwargs={"depths": [1, 1], "widths": [16, 32]},
                         dataset="fashion_mnist", train_subset=6_400, test_subset=1_000,
                         batch_size=64, epochs=3, base_lr=0.8, clipping=0.16, warmup_epochs=0.3,
                         run_dir=str(tmp_path / "fmnist"), progress=False)
    result = train(config)
    assert result.status == "completed"
    assert result.final("test_top1") > 60.0, result.metrics


def test_ordinary_clipping_and_adamw_runs(tmp_path):
    """clip_norm records the fraction of steps it clipped; AdamW trains; neither renames old runs."""
    clipped = train(tiny(tmp_path, "norm", clip_norm=1e-3))
    assert clipped.status == "completed" and clipped.final("frac_clipped") == 1.0  # every step clipped
    adamw = train(tiny(tmp_path, "adamw", optimizer="adamw", base_lr=0.004))
    assert adamw.status == "completed" and math.isfinite(adamw.final("train_loss"))
    assert run_name(tiny(tmp_path)) == run_name(tiny(tmp_path, optimizer="sgd", clip_norm=None))
    with pytest.raises(ConfigError, match="exclude each other"):
        tiny(tmp_path, clipping=0.01, clip_norm=1.0).validate()
    with pytest.raises(ConfigError, match="optimizer must be one of"):
        tiny(tmp_path, optimizer="lamb").validate()


def test_on_step_callback_sees_every_update(tmp_path):
    seen = []
    train(tiny(tmp_path, epochs=1), on_step=lambda step, m: seen.append((step, float(m["loss"]))))
    assert [s for s, _ in seen] == [1, 2, 3, 4] and all(loss > 0 for _, loss in seen)


def test_onednn_off_holds_while_training_only_and_trains_the_same_function(tmp_path):
    seen = []
    off = train(tiny(tmp_path, "off", epochs=1, onednn=False),
                on_step=lambda step, m: seen.append(torch.backends.mkldnn.enabled))
    assert seen == [False] * 4 and torch.backends.mkldnn.enabled  # restored after the run
    on = train(tiny(tmp_path, "on", epochs=1))
    assert run_name(tiny(tmp_path, onednn=False)) != run_name(tiny(tmp_path)) == PINNED_NAME
    # other convolution kernels, the same function: the losses agree to float32 rounding
    losses = [r.metrics["train_loss"].to_numpy() for r in (off, on)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)


def test_run_name_knows_pretrained_weights_by_their_bytes_not_their_path(tmp_path):
    """The same weights in two checkouts give one run name (and so the same results tables)."""
    data = b"weights"
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "w.pt").write_bytes(data)
    names = [run_name(tiny(tmp_path, pretrained=str(tmp_path / f / "w.pt"))) for f in ("a", "b")]
    assert names[0] == names[1] != run_name(tiny(tmp_path))
    (tmp_path / "b" / "w.pt").write_bytes(b"other weights")
    assert run_name(tiny(tmp_path, pretrained=str(tmp_path / "b" / "w.pt"))) != names[0]


def test_tensorboard_needs_the_package_or_writes_events(tmp_path):
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install tensorboard"):
            train(tiny(tmp_path, epochs=1, tensorboard=True))
        return
    train(tiny(tmp_path, epochs=1, tensorboard=True, log_every=1))
    assert list((tmp_path / "run" / "tensorboard").glob("events.*"))


# --- faults: kill windows, a full disk, a second process -----------------------------------
def assert_same_weights(a_dir, b_dir):
    a, b = load_checkpoint(a_dir / "checkpoint.pt"), load_checkpoint(b_dir / "checkpoint.pt")
    for part in ("model", "ema"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)


def record_of(run):
    return json.loads((run / "metrics.json").read_text())


def test_killed_between_the_last_metrics_csv_and_its_record_resumes_correctly(tmp_path, monkeypatch):
    """The CSV is renamed first; a kill before the record is renamed must not freeze the run."""
    train(tiny(tmp_path, "whole"))
    real_replace, renamed = faults.os.replace, []

    def replace(src, dst):
        renamed.append(Path(dst).name)
        if renamed.count("metrics.csv") == 2 and Path(dst).name == "metrics.json":
            raise Killed  # epoch 2: metrics.csv (completed) is in place, metrics.json is epoch 1's
        real_replace(src, dst)

    monkeypatch.setattr(faults.os, "replace", replace)
    with pytest.raises(Killed):
        train(tiny(tmp_path, "run"))
    monkeypatch.setattr(faults.os, "replace", real_replace)
    run = tmp_path / "run"
    assert record_of(run)["status"] == "running" and len(pd.read_csv(run / "metrics.csv")) == 2
    result = train(tiny(tmp_path, "run"))
    assert result.status == "completed" and record_of(run)["rows"] == 2
    assert_same_weights(tmp_path / "whole", run)


@pytest.mark.parametrize("damage", ["record_ahead_of_csv", "truncated_csv", "empty_csv"])
def test_a_metrics_csv_that_disagrees_with_its_record_is_not_trusted(tmp_path, damage):
    """The issue's frozen run: a finished record over an epoch-1 CSV would report epoch 1."""
    whole = train(tiny(tmp_path))
    run = tmp_path / "run"
    csv = run / "metrics.csv"
    lines = csv.read_text().splitlines(keepends=True)
    csv.write_text({"record_ahead_of_csv": "".join(lines[:2]), "truncated_csv": "".join(lines)[:-30],
                    "empty_csv": ""}[damage])
    again = train(tiny(tmp_path))  # resumed from the completed checkpoint, files rewritten
    columns = [c for c in METRIC_COLUMNS if c != "wall_time_s"]
    pd.testing.assert_frame_equal(again.metrics[columns], whole.metrics[columns])
    pd.testing.assert_frame_equal(pd.read_csv(csv)[columns], whole.metrics[columns])


def test_killed_while_writing_a_checkpoint_resumes_bit_identical(tmp_path, monkeypatch):
    train(tiny(tmp_path, "whole"))
    real_save, saves = torch.save, []

    def save(obj, f, *args, **kwargs):
        saves.append(1)
        if len(saves) == 2:  # epoch 2's checkpoint, half written
            f.write(b"half a checkpoint")
            raise Killed
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(Killed):
        train(tiny(tmp_path, "run"))
    monkeypatch.setattr(torch, "save", real_save)
    run = tmp_path / "run"
    assert load_checkpoint(run / "checkpoint.pt")["epoch"] == 1  # the previous one, whole
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    assert train(tiny(tmp_path, "run")).status == "completed"
    assert_same_weights(tmp_path / "whole", run)


def test_a_full_disk_stops_the_run_and_keeps_the_previous_files(tmp_path, monkeypatch):
    train(tiny(tmp_path, "whole"))
    real_fsync, calls = faults.os.fsync, []

    def fsync(fd):
        calls.append(fd)
        # config.json; epoch 1: checkpoint, metrics (record copy, .csv, .json); epoch 2: checkpoint
        if len(calls) == 6:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(faults.os, "fsync", fsync)
    with pytest.raises(OSError, match="No space"):
        train(tiny(tmp_path, "run"))
    monkeypatch.setattr(faults.os, "fsync", real_fsync)
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == [".lock", "checkpoint.pt", "config.json",
                                                      "metrics.csv", "metrics.json"]
    assert load_checkpoint(run / "checkpoint.pt")["epoch"] == 1 and record_of(run)["rows"] == 1
    assert train(tiny(tmp_path, "run")).status == "completed"  # space again: it resumes
    assert_same_weights(tmp_path / "whole", run)


def test_a_run_folder_in_use_is_refused(tmp_path):
    with exclusive_lock(tmp_path / "run" / ".lock", "run folder"):
        with pytest.raises(FolderInUseError, match="in use by pid"):
            train(tiny(tmp_path))
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_a_run_folder_that_is_a_file_is_refused_before_training(tmp_path):
    (tmp_path / "run").write_text("not a folder")
    with pytest.raises(OutputLocationError, match="is a file"):
        train(tiny(tmp_path))


def test_progress_bar_leaves_its_final_line(tmp_path, capsys):
    train(tiny(tmp_path, epochs=1, progress=True))
    err = capsys.readouterr().err
    final = err.replace("\r", "\n").strip().splitlines()[-1]
    assert "run" in final and "4/4" in final  # the finished bar stays on screen: steps done / total


def test_a_stale_checkpoint_makes_a_finished_run_resume(tmp_path):
    """Metrics and record say completed, but the checkpoint is epoch 1's: not trusted as finished;
    the run resumes from that checkpoint and ends where an uninterrupted run ends."""
    import shutil

    whole = train(tiny(tmp_path, "whole"))
    stale = tmp_path / "epoch1.pt"

    def keep(epoch, row):
        if epoch == 1:
            shutil.copy(tmp_path / "run" / "checkpoint.pt", stale)

    train(tiny(tmp_path), on_epoch_end=keep)
    shutil.copy(stale, tmp_path / "run" / "checkpoint.pt")
    again = train(tiny(tmp_path))
    assert again.model is not None  # trained, not read back
    assert_same_weights(tmp_path / "whole", tmp_path / "run")
    assert train(tiny(tmp_path)).model is None  # now everything agrees: read back
    assert whole.status == again.status == "completed"


def test_layer_wise_agc_runs_and_keeps_old_run_names(tmp_path):
    """agc_granularity="tensor" clips with one ratio per tensor before the step (the optimizer is not
    wrapped), records the fraction of units clipped; the default leaves run names as they were."""
    run = train(tiny(tmp_path, "tensor", clipping=1e-4, agc_granularity="tensor"))
    # at lambda 1e-4 every tensor with a gradient is clipped (behind a skip gain at 0 some have none)
    assert run.status == "completed" and run.final("frac_clipped") > 0.2
    never = train(tiny(tmp_path, "never", clipping=1e6, agc_granularity="tensor"))
    assert never.final("frac_clipped") == 0.0
    assert run_name(tiny(tmp_path, clipping=0.01)) == run_name(tiny(tmp_path, clipping=0.01,
                                                                    agc_granularity="unit"))
    assert run_name(tiny(tmp_path, clipping=0.01)) != run_name(tiny(tmp_path, clipping=0.01,
                                                                    agc_granularity="tensor"))
    for bad in (dict(agc_granularity="tensor"), dict(clipping=0.01, agc_granularity="row")):
        with pytest.raises(ConfigError, match="agc_granularity"):
            tiny(tmp_path, **bad).validate()
