from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pandas as pd
import pytest
import torch

from nfrepro.engine import faults, records


def test_save_results_writes_csv_and_run_record(tmp_path):
    df = pd.DataFrame({"run": ["a", "b"], "metric": ["top1", "top1"], "value": [0.5, 0.75]})
    path = records.save_results(df, tmp_path / "sub" / "r.csv", params={"lr": 0.1}, wall_time_s=1.23456)
    assert pd.read_csv(path).equals(df)
    rec = json.loads(path.with_suffix(".json").read_text())
    assert rec["parameters"] == {"lr": 0.1}
    assert rec["wall_time_s"] == 1.235 and rec["rows"] == 2
    assert rec["torch_version"] == torch.__version__
    assert rec["device"].startswith("cpu") or torch.cuda.is_available()
    assert len(rec["git_commit"]) >= 7


def _table(n: int) -> pd.DataFrame:
    return pd.DataFrame({"run": [f"r{i}" for i in range(n)], "metric": "top1", "value": range(n)})


def test_read_results_trusts_only_a_table_that_matches_its_record(tmp_path):
    path = records.save_results(_table(50), tmp_path / "r.csv", params={}, wall_time_s=0)
    df, record = records.read_results(path)
    assert len(df) == record["rows"] == 50
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:14]))  # cut short: 13 of 50 rows
    with pytest.raises(records.ResultsError, match="has 13 rows but its record r.json says 50"):
        records.read_results(path)
    path.write_text("")  # 0 bytes: pandas' "No columns to parse"
    with pytest.raises(records.ResultsError, match="cannot be read"):
        records.read_results(path)
    path.with_suffix(".json").unlink()
    with pytest.raises(records.ResultsError, match="no readable run record"):
        records.read_results(path)


def test_a_full_disk_keeps_the_previous_table_and_record(tmp_path, monkeypatch):
    path = records.save_results(_table(3), tmp_path / "r.csv", params={"v": 1}, wall_time_s=0)
    before = path.read_text(), path.with_suffix(".json").read_text()
    calls = []

    def fsync(fd):  # the CSV is written, then the disk fills while writing the record
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(faults.os, "fsync", fsync)
    with pytest.raises(OSError, match="No space"):
        records.save_results(_table(5), path, params={"v": 2}, wall_time_s=0)
    assert (path.read_text(), path.with_suffix(".json").read_text()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv", "r.json"]  # no temporary left


def test_run_record_pins_what_the_numbers_depend_on():
    import torch

    from nfrepro.engine.records import run_record
    record = run_record({"threads_per_worker": 1}, wall_time_s=1.0)
    assert record["threads"] == torch.get_num_threads() and record["cpu_capability"]
    assert record["torch_version"] == torch.__version__ and record["parameters"]["threads_per_worker"] == 1


def test_save_figure_stores_the_commit_in_the_png(tmp_path, monkeypatch):
    """Every figure names the commit that drew it, as the run records of its tables do."""
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    monkeypatch.setenv("NFREPRO_COMMIT", "0123abc")
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1])
    assert records.save_figure(fig, tmp_path / "fig.png", dpi=40, bbox_inches="tight") is None
    plt.close(fig)
    text = Image.open(tmp_path / "fig.png").text
    assert text[records.FIGURE_COMMIT_KEY] == "0123abc"
    assert text["Software"].startswith("nfrepro ") and "matplotlib" in text["Software"]
    with pytest.raises(ValueError, match="PNG"):
        records.save_figure(fig, tmp_path / "fig.pdf")


@pytest.mark.parametrize("renamed", [0, 1, 2])
def test_any_kill_between_the_renames_leaves_a_readable_pair(tmp_path, monkeypatch, renamed):
    """A kill after ``renamed`` of the three renames (record copy, table, record): the old pair or
    the new pair is read back whole, never a refusal that would cost the table's rows."""
    path = records.save_results(_table(3), tmp_path / "r.csv", params={"v": 1}, wall_time_s=0)
    real_replace, calls = os.replace, []

    def killed(src, dst):
        if len(calls) == renamed:
            raise KeyboardInterrupt  # stands for the kill
        calls.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(faults.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        records.save_results(_table(5), path, params={"v": 2}, wall_time_s=0)
    monkeypatch.setattr(faults.os, "replace", real_replace)
    df, record = records.read_results(path)
    assert (len(df), record["parameters"]["v"]) == ((3, 1) if renamed < 2 else (5, 2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv", "r.json"]


def test_an_edited_table_is_refused_with_advice_that_keeps_every_row(tmp_path):
    path = records.save_results(_table(3), tmp_path / "r.csv", params={}, wall_time_s=0)
    path.write_text(path.read_text().replace("r1,top1,1", "r1,top1,7"))  # same rows, one value changed
    with pytest.raises(records.ResultsError, match="does not match its record .* rerun every sweep"):
        records.read_results(path)


@pytest.mark.parametrize("name, present, message", [
    ("out.json", {}, "name a .csv file"),
    ("report.csv", {"report.json": '{"mine": 1}'}, "report.json exists and is not an nfrepro run record"),
    ("report.csv", {"report.csv": "a,b\n1,2\n"}, "without an nfrepro run record beside it"),
])
def test_a_table_never_clobbers_a_file_nfrepro_did_not_write(tmp_path, name, present, message):
    for file, text in present.items():
        (tmp_path / file).write_text(text)
    with pytest.raises(ValueError, match=message):
        records.save_results(_table(2), tmp_path / name, params={}, wall_time_s=0)
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == present


def test_the_commit_is_the_code_checkout_s_wherever_the_outputs_go(tmp_path, monkeypatch):
    monkeypatch.delenv("NFREPRO_COMMIT", raising=False)
    monkeypatch.setenv("NFREPRO_ROOT", str(tmp_path))  # outputs outside any checkout
    root = Path(records.__file__).resolve().parents[2]
    if not (root / ".git").exists():
        pytest.skip("nfrepro is not imported from a git checkout here (an installed copy)")
    assert records.git_commit() != "unknown"
