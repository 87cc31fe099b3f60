"""The paper reference table: schema, and agreement with the second transcription in docs/paper_facts.md."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from nfrepro.analysis.reference import COLUMNS, paper_reference, paper_value

ROOT = Path(__file__).resolve().parents[2]
FACTS = ROOT / "docs" / "paper_facts.md"


def test_schema_and_uniqueness():
    df = paper_reference()
    assert list(df.columns) == COLUMNS
    single = df[~df["quantity"].str.endswith("_grid")]  # a grid quantity has one row per value
    assert not single.duplicated(["source", "quantity", "model"]).any()
    assert df["source"].ne("").all() and df["value"].notna().all()


def test_lookups():
    assert paper_value("imagenet_top1", "NFNet-F1") == paper_value("imagenet_top1", "EffNet-B7") == 84.7
    assert paper_value("params", "NFNet-F0") == 71.49
    with pytest.raises(KeyError):
        paper_value("imagenet_top1", "NFNet-F9")


def test_nfnet_rows_match_the_facts_file():
    """Cross-check the CSV against the independent transcription of Table 1 / Table 3 in docs/."""
    text = FACTS.read_text()
    rows = re.findall(r"^\| (F\d) \| ([\d,]+) \| (\d+) \| (\d+) \| ([\d.]+) \| ([\d.]+)M \| ([\d.]+)B \|",
                      text, flags=re.M)
    assert len(rows) == 8
    for v, depths, train, test, drop, params, flops in rows:
        m = f"NFNet-{v}"
        assert [paper_value(f"depth_stage{i}", m) for i in range(1, 5)] == [int(d) for d in depths.split(",")]
        assert paper_value("train_resolution", m) == int(train)
        assert paper_value("test_resolution", m) == int(test)
        assert paper_value("dropout", m) == float(drop)
        assert paper_value("params", m) == float(params)
        assert paper_value("flops", m) == float(flops)
