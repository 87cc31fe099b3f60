"""Notebook 00's synthesis (``nfrepro.analysis.synthesis``): every verdict of every notebook, read back."""
import math

import pandas as pd
import pytest

from nfrepro.analysis import synthesis, verdicts
from nfrepro.engine.config import TrainConfig
from nfrepro.engine.profiles import project_root


def _write(folder, name, rows):
    verdicts.table(rows, require_setting=False).to_csv(folder / name, index=False)


def _rows():
    s = verdicts.setting_of([TrainConfig(batch_size=2048, epochs=2)], seeds=5)
    return [verdicts.claim_row("AGC keeps up", [-3.0, -4.0, -5.0], margin=-1, setting=s,
                               reading="at 58 steps AGC trails BN: the skip gains have not opened"),
            verdicts.claim_row("BN costs", [4.0, 4.5, 3.5], setting=s, reading="BN loses 4 points",
                               paper="+1.4 (Table 4)")]


def test_every_claim_of_every_verdict_file_is_in_the_table(tmp_path):
    _write(tmp_path, "agc_verdicts.csv", _rows())
    _write(tmp_path, "transfer_verdicts.csv", _rows()[1:])
    v = synthesis.read_verdicts(tmp_path)
    t = synthesis.synthesis_table(v)
    assert list(t.columns) == synthesis.TABLE_COLUMNS and len(t) == 3
    assert list(t["notebook"]) == ["02, 03", "02, 03", "09"]
    first = t.iloc[0]
    assert first["ours"] == "-4 [-6.48, -1.52] (n=3)" and first["verdict"] == "contradicted"
    assert first["setting"] == "60,000 fashion_mnist images, 58 steps, batch 2048, 5 seeds"
    assert t.iloc[1]["paper"] == "+1.4 (Table 4)" and t.iloc[0]["paper"] == ""
    text = synthesis.summary(v)
    assert text.startswith("Of 3 claims tested, 2 reproduced, 1 were contradicted")
    assert "the skip gains have not opened" in text


def test_an_unknown_verdict_file_is_named(tmp_path):
    _write(tmp_path, "mystery_verdicts.csv", _rows())
    with pytest.raises(KeyError, match="mystery_verdicts.csv"):
        synthesis.read_verdicts(tmp_path)


def test_budgets_span_each_notebook_and_add_its_minutes(tmp_path):
    s = verdicts.setting_of([TrainConfig(batch_size=b, epochs=2) for b in (128, 2048)], seeds=5)
    _write(tmp_path, "agc_verdicts.csv", [verdicts.claim_row("a", [1.0, 2.0], setting=s, reading="r")])
    times = pd.DataFrame({"notebook": ["02_agc_batch_size", "03_clipping_threshold", "benchmarks"],
                          "seconds": [600, 300, 60]})
    b = synthesis.budgets(synthesis.read_verdicts(tmp_path), times)
    row = b.iloc[0]
    assert b["notebook"].tolist() == ["02, 03", "benchmarks"] and b.iloc[1]["minutes"] == 1.0
    assert (row["notebook"], row["batch_size"], row["steps"], row["minutes"]) == ("02, 03", "128-2048",
                                                                                "58-936", 15.0)
    total = synthesis.all_times(times)
    assert total.iloc[-1].tolist() == ["total", 16.0]
    missing = synthesis.budgets(synthesis.read_verdicts(tmp_path), times.iloc[:1])
    assert math.isnan(missing.iloc[0]["minutes"])  # 03's time missing: no sum pretending to be 02 + 03


def test_the_committed_verdict_files_are_all_known():
    v = synthesis.read_verdicts(project_root() / "results")
    assert len(synthesis.synthesis_table(v)) == len(v) > 0


def test_markdown_table_escapes_pipes_and_blanks_missing_values():
    df = pd.DataFrame({"a": ["x|y", "z"], "b": [1.5, math.nan]})
    lines = synthesis.markdown_table(df).splitlines()
    assert lines == ["| a | b |", "|---|---|", "| x\\|y | 1.5 |", "| z |  |"]
