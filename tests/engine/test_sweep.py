"""nfrepro.engine.sweep: grid expansion, deterministic run folders, skip / resume, one tidy CSV."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from nfrepro.engine.faults import FolderInUseError, OutputLocationError, exclusive_lock
from nfrepro.engine.records import ResultsError
from nfrepro.engine.sweep import METRICS, apply_overrides, expand_grid, run_sweep
from nfrepro.engine.training import ConfigError, TrainConfig, train

BASE = TrainConfig(model="nf_resnet_small", model_kwargs={"depths": [1], "widths": [4]},
                   dataset="synthetic", train_subset=32, test_subset=32, batch_size=16, epochs=1,
                   warmup_epochs=0.5, ema_decay=None, progress=False)


def test_expand_grid_and_overrides(tmp_path):
    combos = expand_grid({"batch_size": [8, 16], "clipping": [None, 0.01]})
    assert combos == [{"batch_size": 8, "clipping": None}, {"batch_size": 8, "clipping": 0.01},
                      {"batch_size": 16, "clipping": None}, {"batch_size": 16, "clipping": 0.01}]
    config = apply_overrides(BASE, {"clipping": 0.02, "model_kwargs.alpha": 0.5}, tmp_path)
    assert config.clipping == 0.02 and config.model_kwargs == {"depths": [1], "widths": [4],
                                                               "alpha": 0.5}
    assert config.run_dir == str(apply_overrides(BASE, {"clipping": 0.02,
                                                        "model_kwargs.alpha": 0.5}, tmp_path).run_dir)
    assert BASE.model_kwargs == {"depths": [1], "widths": [4]}  # base untouched
    with pytest.raises(ConfigError, match="not a TrainConfig field"):
        apply_overrides(BASE, {"lamda": 0.1})
    with pytest.raises(ConfigError, match="clipping"):
        apply_overrides(BASE, {"clipping": -0.1})
    with pytest.raises(ConfigError, match="list"):
        expand_grid({"seed": 0})


def test_sweep_writes_tidy_rows_skips_finished_and_keeps_other_rows(tmp_path):
    csv = tmp_path / "results" / "sweep.csv"
    calls = []

    def counting_train(config):
        calls.append(config.run_dir)
        return train(config)

    grid = {"clipping": [None, 0.04], "seed": [0]}
    df = run_sweep(grid, BASE, csv, runs_dir=tmp_path / "runs", progress=False,
                   train_fn=counting_train)
    assert len(calls) == 2 and len(df) == 2 * len(METRICS) and set(df["metric"]) == set(METRICS)
    assert {"run", "model", "batch_size", "clipping", "seed", "status", "metric", "value"} <= set(df)
    assert (df["status"] == "completed").all()
    on_disk = pd.read_csv(csv)
    assert len(on_disk) == len(df)
    assert json.loads(csv.with_suffix(".json").read_text())["parameters"]["runs"] == 2
    # second sweep: the same two runs are read back (no training), one new run is added
    before = {r: (tmp_path / "runs" / r / "checkpoint.pt").stat().st_mtime for r in set(df["run"])}
    df2 = run_sweep({"clipping": [None, 0.04, 0.08], "seed": [0]}, BASE, csv,
                    runs_dir=tmp_path / "runs", progress=False)
    assert len(df2) == 3 * len(METRICS)
    assert all((tmp_path / "runs" / r / "checkpoint.pt").stat().st_mtime == t for r, t in before.items())
    # a sweep over a different grid keeps the rows of the runs it does not touch
    df3 = run_sweep({"clipping": [0.08], "seed": [0]}, BASE, csv, runs_dir=tmp_path / "runs",
                    progress=False)
    assert len(df3) == len(pd.read_csv(csv)) == 3 * len(METRICS)


def _never_train(config):
    raise AssertionError(f"trained {config.run_dir} although the sweep should have refused")


@pytest.mark.parametrize("grid, message", [
    ({}, "non-empty mapping"),
    ({"batch_size": ["16"]}, "batch_size must be int, got '16'"),
    ({"clipping": [0.01, "0.04"]}, "clipping must be float | None"),
    ({"model": ["nf_resnet_small", "nf_resnet_smal"]}, "unknown model 'nf_resnet_smal'"),
    ({"dataset": ["synthetic", "mnist"]}, "unknown dataset 'mnist'"),
    ({"model_kwargs.alpha": [0.2, float("inf")]}, "alpha must be finite"),
    ({"model_kwargs.colour": ["red"]}, "takes no argument colour"),
    ({"seed": [0, 1], "label_smoothing": [0.1, 2.0]}, "label_smoothing must be in"),
])
def test_every_grid_point_is_validated_before_the_first_run(tmp_path, grid, message):
    with pytest.raises(ConfigError, match=message) as info:
        run_sweep(grid, BASE, tmp_path / "s.csv", runs_dir=tmp_path / "runs", progress=False,
                  train_fn=_never_train)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "s.csv").exists() and not (tmp_path / "runs").exists()


def test_a_cut_short_table_is_refused_not_trusted(tmp_path):
    csv = tmp_path / "s.csv"
    run_sweep({"seed": [0]}, BASE, csv, runs_dir=tmp_path / "runs", progress=False)
    full = csv.read_text()
    for broken in ("", full[: len(full) // 2]):  # 0 bytes ("No columns to parse"), half the rows
        csv.write_text(broken)
        with pytest.raises(ResultsError, match="s.json says"):
            run_sweep({"seed": [0, 1]}, BASE, csv, runs_dir=tmp_path / "runs", progress=False,
                      train_fn=_never_train)
    csv.write_text(full)  # restored, the sweep goes on and keeps every row
    assert len(run_sweep({"seed": [0, 1]}, BASE, csv, runs_dir=tmp_path / "runs",
                         progress=False)) == 2 * len(METRICS)


def test_output_locations_are_checked_before_the_first_run(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder.csv").mkdir()
    for csv, runs in ((tmp_path / "file" / "s.csv", tmp_path / "runs"),
                      (tmp_path / "s.csv", tmp_path / "file"),
                      (tmp_path / "folder.csv", tmp_path / "runs")):
        with pytest.raises(OutputLocationError, match="is a f"):
            run_sweep({"seed": [0]}, BASE, csv, runs_dir=runs, progress=False, train_fn=_never_train)


def test_a_results_table_in_use_by_another_sweep_is_refused(tmp_path):
    csv = tmp_path / "s.csv"
    with exclusive_lock(tmp_path / "s.csv.lock", "results table"):
        with pytest.raises(FolderInUseError, match="in use by pid"):
            run_sweep({"seed": [0]}, BASE, csv, runs_dir=tmp_path / "runs", progress=False,
                      train_fn=_never_train)


@pytest.mark.parametrize("grid, message", [
    ({"seed": [0, 1, 0]}, r"lists 0 twice"),
    ({"clipping": [0.01, None, 0.01]}, r"lists 0.01 twice"),
    ({"run_dir": ["a", "b"]}, r"set by the sweep .* runs_dir"),
])
def test_grids_whose_values_would_be_ignored_or_counted_twice_are_refused(grid, message):
    with pytest.raises(ConfigError, match=message):
        expand_grid(grid)


def test_a_huge_grid_is_a_warning_before_anything_is_built():
    grid = {"seed": list(range(100)), "batch_size": list(range(1, 101))}  # 10,000 runs
    with pytest.warns(UserWarning, match="10,000 runs \\(100 x 100\\)"):
        assert len(expand_grid(grid)) == 10_000
