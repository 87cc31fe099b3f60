"""``tools/gelu_speed.py`` runs end to end on a tiny F0 and writes its three tables with run records
(a smoke run: its timings mean nothing and are not checked)."""
import pandas as pd
import pytest
import torch

from tools import gelu_speed


def test_tiny_run_writes_three_tables(tmp_path, capsys):
    pytest.importorskip("timm")
    threads = str(torch.get_num_threads())   # the script's default is 1: leave this process as it was
    args = ["--tiny", "--repeats", "1", "--threads", threads, "--out-dir", str(tmp_path)]
    assert gelu_speed.main(args) == 0
    for name in ("bench_gelu", "bench_train_step_1thread", "bench_gelu_train_steps"):
        assert not pd.read_csv(tmp_path / f"{name}.csv").empty and (tmp_path / f"{name}.json").exists()
    assert "gelu_train_steps" in capsys.readouterr().out
