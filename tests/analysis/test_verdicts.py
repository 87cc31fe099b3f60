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


def test_setting_follows_the_engine_and_spans_the_compared_runs():
    from nfrepro.engine.config import TrainConfig

    one = verdicts.setting_of([TrainConfig(batch_size=2048, epochs=2, warmup_epochs=1)], seeds=5)
    # 60,000 // 2048 = 29 steps an epoch (the last partial batch is dropped): 58 steps, warmup 29
    assert (one.train_images, one.steps, one.warmup_steps, one.batch_size) == (60_000, 58, 29, 2048)
    assert one.peak_lr == pytest.approx(0.8) and one.clipping == "none" and one.seeds == 5
    assert one.describe() == "60,000 images, 58 steps at batch 2048"
    two = verdicts.setting_of([TrainConfig(batch_size=b, epochs=8, clipping=0.01, train_subset=20_000)
                               for b in (128, 1024)], seeds=3)
    assert (two.train_images, two.batch_size, two.steps, two.clipping) == (20_000, "128-1024", "152-1248",
                                                                          "AGC λ=0.01")
    assert verdicts.setting_of([TrainConfig(steps=100, batch_size=256)], 1).steps == 100
    with pytest.raises(ValueError, match="train_images"):
        verdicts.setting_of([TrainConfig(dataset="synthetic")], 1)
    with pytest.raises(ValueError, match="at least one"):
        verdicts.setting_of([], 1)


def test_a_table_can_require_every_row_to_say_its_setting_and_reading():
    from nfrepro.engine.config import TrainConfig

    setting = verdicts.setting_of([TrainConfig()], seeds=3)
    good = verdicts.claim_row("c", [1.0, 2.0, 3.0], setting=setting, reading="at this budget, c holds",
                              paper="+1.0 (Table 2)")
    df = verdicts.table([good], require_setting=True)
    assert list(df.columns) == verdicts.COLUMNS and df.loc[0, "steps"] == 2340 and df.loc[0, "paper"]
    with pytest.raises(ValueError, match="reading"):
        verdicts.table([verdicts.claim_row("c", [1.0, 2.0], setting=setting)], require_setting=True)
    with pytest.raises(ValueError, match="setting"):
        verdicts.table([verdicts.claim_row("c", [1.0, 2.0], reading="r")], require_setting=True)
