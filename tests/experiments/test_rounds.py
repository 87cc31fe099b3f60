"""``nfrepro.experiments.rounds``: sides timed in alternating rounds and summarised with their spread.
The summaries are checked on made-up times; nothing here asserts on a measured time."""
from __future__ import annotations

import pandas as pd
import pytest

from nfrepro.experiments import rounds


def _times(**ms: list[float]) -> pd.DataFrame:
    return pd.DataFrame([{"side": side, "round": r, "step_ms": v} for side, vs in ms.items()
                         for r, v in enumerate(vs)])


def test_round_times_runs_every_side_once_per_round_after_the_warmup():
    calls = []
    steps = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    df = rounds.round_times(steps, rounds=4, warmup=1)
    assert len(calls) == 2 * 5 and calls[:2] == ["a", "b"] and calls[2:4] == ["b", "a"]  # round-robin
    assert set(df.columns) == {"side", "round", "step_ms"} and len(df) == 8
    assert df.groupby("side")["round"].apply(list).tolist() == [[0, 1, 2, 3]] * 2
    assert (df["step_ms"] >= 0).all()


def test_summary_pairs_the_rounds():
    # b is a's time x 2 in every round, although both drift a lot from round to round
    times = _times(a=[10, 20, 30, 40, 50], b=[20, 40, 60, 80, 100])
    s = rounds.round_summary(times, "a").set_index("side")
    assert s.loc["a", "median_ms"] == 30 and (s.loc["a", "q25_ms"], s.loc["a", "q75_ms"]) == (20, 40)
    assert s.loc["b", "ratio_median"] == pytest.approx(2.0)
    assert s.loc["b", "ratio_q25"] == pytest.approx(2.0) and s.loc["b", "ratio_ci_high"] == pytest.approx(2.0)
    assert rounds.direction(s.loc["b"]) == "slower" and rounds.direction(s.loc["a"]) == "not distinguishable"
    # the time IQRs overlap (20-40 and 40-80) although every round says b takes twice as long
    assert rounds.iqrs_overlap(s.loc["a"], s.loc["b"])
    assert rounds.direction(rounds.pair_ratio(times, "a", "b")) == "faster"


def test_round_differences_are_per_round():
    times = _times(full=[110, 120, 130], mid=[100, 100, 100], base=[50, 60, 70])
    d = rounds.round_differences(times, {"top": ("full", "mid"), "rest": ("mid", "base")}).set_index("part")
    assert d.loc["top", "median_ms"] == 20 and d.loc["rest", "median_ms"] == 40
    assert d.loc["top", "minus"] == "full - mid" and d.loc["rest", "q25_ms"] == 35
