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
    with pytest.raises(ValueError, match="lacks"):  # a verdict without its setting and reading
        verdicts.table([row])
    setting = verdicts.Setting("fashion_mnist", 60_000, 2, 58, 2048, 0.8, 15, "none", 3)
    row = verdicts.claim_row("NF ahead", [2.0, 2.5, 3.0], setting=setting, reading="NF ahead by 2.5 points")
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
    unknown = TrainConfig()
    unknown.dataset = "an_image_folder"  # a data set of no known size
    with pytest.raises(ValueError, match="train_images"):
        verdicts.setting_of([unknown], 1)
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


def _s(values):
    import pandas as pd
    return pd.Series(values, index=range(len(values)), dtype=float)


def test_one_diverged_seed_cannot_make_a_tie():
    """The issue's case: a lambda with one diverged seed (mean score 51) against the best (81): a t
    interval over the scores holds 0, the paired comparison over trained seeds does not."""
    best = _s([80.21, 80.74, 81.69, 81.68, 80.69])
    other = _s([68.9, 62.48, 47.97, float("nan"), 66.69])
    scored = verdicts.claim_row("x", (best - other.fillna(10.0)).tolist())
    assert scored["verdict"] == "not resolved"  # what the old rule said: a "tie"
    row = verdicts.paired_claim_row("best ahead", best, other)
    assert row["verdict"] == "reproduced" and row["n"] == 4 and row["diverged"] == "0/5 vs 1/5"
    # the side that diverged more is never called ahead or level on its trained seeds alone
    nan = float("nan")
    ahead = verdicts.paired_claim_row("other ahead", _s([90, 90.5, 91, nan, 90]), _s([80, 81, 80, 80, 81]))
    assert ahead["ci_low"] > 0 and ahead["verdict"] == "not resolved"
    level = verdicts.paired_claim_row("level", _s([80, 80.1, 80, nan, 80]), _s([80, 80, 80.1, 80, 80]),
                                      "level", tolerance=1.0)
    assert level["verdict"] == "not resolved"


def test_divergence_decides_when_the_rates_separate():
    nan = float("nan")
    diverged, trained = _s([nan] * 5), _s([80, 81, 79, 80, 80])
    row = verdicts.paired_claim_row("trained ahead", trained, diverged)
    assert row["verdict"] == "reproduced" and row["n"] == 0 and row["diverged"] == "0/5 vs 5/5"
    assert verdicts.paired_claim_row("diverged ahead", diverged, trained)["verdict"] == "contradicted"
    assert verdicts.paired_claim_row("level", diverged, trained, "level")["verdict"] == "contradicted"
    both = verdicts.paired_claim_row("both", diverged, _s([nan] * 5))
    assert both["verdict"] == "not resolved"  # nothing trained, nothing to tell apart
    rate = verdicts.rate_claim_row("diverges", [True, True, False])
    assert rate["verdict"] == "reproduced" and rate["diverged"] == "2/3"
    assert verdicts.rate_claim_row("never", [False] * 5)["verdict"] == "not resolved"


def test_grid_edges_and_per_seed_slopes():
    import pandas as pd
    grid = (0.01, 0.02, 0.04)
    assert verdicts.grid_edge(0.04, grid) == "at least" and verdicts.grid_edge(0.01, grid) == "at most"
    assert verdicts.grid_edge(0.02, grid) == "" and verdicts.grid_edge(0.02, [0.02]) == ""
    # y = -x + seed-dependent noise: slope -1 per seed, except one seed at -2
    values = pd.DataFrame({5.0: [0.0, 0.0, 0.0], 7.0: [-2.0, -2.0, -4.0], 9.0: [-4.0, -4.0, -8.0]})
    mean, low, high, n, slopes = verdicts.per_seed_slope(values)
    assert list(slopes) == pytest.approx([-1.0, -1.0, -2.0]) and n == 3
    assert mean == pytest.approx(-4 / 3) and low < mean < high
    values.iloc[2, 1:] = float("nan")  # one point left: that seed has no slope
    assert verdicts.per_seed_slope(values)[3] == 2


def test_crossing_reads_where_a_band_rises_above_a_level():
    x = [1.0, 2.0, 3.0, 4.0]
    est, low, high = [-10.0, -5.0, 0.0, 1.0], [-12.0, -8.0, -2.0, 0.5], [-8.0, -2.0, 2.0, 1.5]
    at, earliest, latest = verdicts.crossing(x, est, low, high, level=-1.0)
    assert at == pytest.approx(2.8) and earliest == pytest.approx(2.25) and latest == pytest.approx(3.4)
    assert verdicts.crossing(x, [-5] * 4, [-6] * 4, [-4] * 4, -1.0) == (math.inf,) * 3
    assert verdicts.crossing(x, [0, 0, -5, 0], [0] * 4, [0] * 4, -1.0)[0] == pytest.approx(3.8)  # for good
    assert verdicts.crossing(x, [0] * 4, [0] * 4, [0] * 4, -1.0)[0] == -math.inf
    setting = verdicts.Setting("fashion_mnist", 60_000, 2, 58, 2048, 0.8, 15, "none", 2)
    row = verdicts.paired_claim_row("x", _s([1.0, 2.0]), _s([0.0, 0.0]), setting=setting, reading="r")
    assert list(verdicts.table([row], extra=["diverged"]).columns) == [
        *verdicts.COLUMNS[:7], "diverged", *verdicts.COLUMNS[7:]]
