"""The device check kit (``tools/gpu_check.py``, ``make gpu-check``), run end to end on the
CPU at toy sizes (``DRY=1``), as CI does, so it cannot rot between the sessions that have a GPU."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from nfrepro.experiments import speed_accuracy
from tools import gpu_check

ROOT = Path(__file__).resolve().parents[2]


def test_make_gpu_check_dry_runs_every_part_and_records_it(tmp_path):
    out = subprocess.run(["make", "-s", "gpu-check", "DRY=1", f"GPU_PYTHON={sys.executable}",
                          f"GPU_CHECK_ARGS=--out-dir {tmp_path}"], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    for part in gpu_check.PARTS:
        assert (tmp_path / f"{part}.csv").exists() and (tmp_path / f"{part}.json").exists(), part
        record = json.loads((tmp_path / f"{part}.json").read_text())
        assert record["dry"] is True and record["git_commit"] != "unknown"
    tests = pd.read_csv(tmp_path / "tests.csv")
    assert len(tests) >= 10 and set(tests["outcome"]) <= {"passed", "skipped"}  # skipped: no CUDA here
    assert "== summary" in out.stdout and "F0 train_step batch 2" in out.stdout
    assert "EffNet-B7 / NFNet-F1 step time" in out.stdout
    # notebook 05 reads such a folder and sets the GPU's ratios beside the paper's
    gpu = speed_accuracy.committed_results(tmp_path)
    ratios = gpu["tables"]["survey"]
    ratios = ratios[ratios["table"] == "ratios"].pivot_table(index=["fast", "slow"], columns="metric",
                                                             values="value").reset_index()
    table = speed_accuracy.beside(ratios, gpu)
    assert f"measured on {gpu['device']}" in table.columns and len(table) == 5


def test_budget_skips_parts_visibly(tmp_path):
    lines = []
    tables = gpu_check.run(tmp_path, dry=True, budget_s=-1, parts=("inference",), log=lines.append)
    assert tables == {} and any("inference: skipped" in line for line in lines)
    assert speed_accuracy.committed_results(tmp_path) is None


def test_without_cuda_the_real_check_refuses_to_start(tmp_path):
    import pytest
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is present: the real check would run")
    with pytest.raises(RuntimeError, match="DRY=1"):
        gpu_check.run(tmp_path, dry=False)
    assert gpu_check.main(["--out-dir", str(tmp_path)]) == 2  # one line on stderr, no traceback
