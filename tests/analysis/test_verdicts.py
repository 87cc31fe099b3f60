"""Verdicts from intervals (``nfrepro.analysis.verdicts``): the t interval, Wilson's interval, the rule."""
import math

import pytest

from nfrepro.analysis import verdicts


def test_t_interval_matches_the_textbook():
    # values 1..5: mean 3, s = sqrt(2.5), t_{0.975,4} = 2.776
    mean, low, high, n = verdicts.mean_ci([1, 2, 3, 4, 5])
    half = 2.776 * math.sqrt(2.5) / math.sqrt(5)
    assert (mean, n) == (3.0, 5) and low == pytest.approx(3 - half) and high == pytest.approx(3 + half)
    assert verdicts.mean_ci([7.0])[1:3] == (-math.inf, math.inf)  # one value: no interval
    assert verdicts.mean_ci([1.0, float("nan"), 3.0])[3] == 2  # a missing run is left out
    assert verdicts.t975(22) == verdicts.T975[20] and verdicts.t975(500) == pytest.approx(1.96, abs=1e-3)


def test_wilson_interval():
    rate, low, high = verdicts.rate_ci(0, 10)
    assert rate == 0 and low == 0 and high == pytest.approx(0.2775, abs=1e-3)
    rate, low, high = verdicts.rate_ci(5, 10)
    assert rate == 0.5 and low == pytest.approx(0.2366, abs=1e-3) and high == pytest.approx(0.7634, abs=1e-3)


def test_the_rule():
    assert verdicts.greater(0.5, 2.0) == "reproduced"
    assert verdicts.greater(-2.0, -0.5) == "contradicted"
    assert verdicts.greater(-0.5, 2.0) == "not resolved"
    assert verdicts.level(-0.4, 0.6, tolerance=1.0) == "reproduced"
    assert verdicts.level(1.5, 3.0, tolerance=1.0) == "contradicted"
    assert verdicts.level(0.5, 3.0, tolerance=1.0) == "not resolved"
    row = verdicts.claim_row("NF ahead", [2.0, 2.5, 3.0], "greater")
    assert row["verdict"] == "reproduced" and row["n"] == 3 and row["ci_low"] > 0
    assert verdicts.claim_row("one seed", [5.0], "greater")["verdict"] == "not resolved"
    with pytest.raises(ValueError, match="kind"):
        verdicts.claim_row("x", [1, 2], "less")
    assert list(verdicts.table([row]).columns) == verdicts.COLUMNS
