from __future__ import annotations

import json

import pandas as pd
import torch

from nfrepro.engine import records


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
