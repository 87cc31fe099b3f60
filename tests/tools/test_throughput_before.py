"""The earlier-commit comparison (``tools/throughput_before.py``): a commit's own nfrepro steps in a
worker process inside the round-robin. The test builds its own git repository (this checkout's
``nfrepro`` committed once), so it needs no history of the project's."""
import shutil
import subprocess
from pathlib import Path

import pytest

from tools import throughput_before

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    if shutil.which("git") is None:
        pytest.skip("needs git")
    repo = tmp_path_factory.mktemp("repo")
    shutil.copytree(ROOT / "nfrepro", repo / "nfrepro", ignore=shutil.ignore_patterns("__pycache__"))
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git[:3] + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "snapshot"], check=True)
    return repo


def test_an_earlier_commit_is_timed_in_the_same_run(repo):
    df = throughput_before.compare("HEAD", batch_sizes=(16,), dataset="synthetic", subset=64, repo=repo,
                                   models=("nf_resnet_small",), steps=1, warmup=1, repeats=2)
    old = df[df["precision"] == "float32, NCHW at HEAD"]
    assert set(old["metric"]) >= {"ms_per_step", "speedup_vs_before"} and (old["value"] > 0).all()
    assert old[old["metric"] == "speedup_vs_before"]["value"].tolist() == [1.0]
    assert len(df[df["metric"] == "speedup_vs_before"]) == 3  # fp32, default and the commit's own


def test_an_unknown_commit_is_left_out_with_a_warning(repo):
    with pytest.warns(UserWarning, match="cannot step commit"):
        df = throughput_before.compare("0" * 40, batch_sizes=(16,), dataset="synthetic", subset=64,
                                       repo=repo, models=("nf_resnet_small",), steps=1, warmup=0, repeats=1)
    assert "speedup_vs_before" not in set(df["metric"])
