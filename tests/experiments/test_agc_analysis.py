"""nfrepro.experiments.agc_analysis: best lambda, ties, per-seed slopes, the step bound, the length study."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from nfrepro.experiments import agc_ablation as A
from nfrepro.experiments import agc_analysis as N
from nfrepro.experiments import sweep_plan


def _tidy(rows):
    """A run table as run_plan returns it, from (spec, top1 or None = diverged) pairs."""
    out = []
    for i, (spec, top1) in enumerate(rows):
        spec = {"layers": A.PAPER_LAYERS if A.split_length(spec["variant"])[0] in A.CLIPPED else "",
                "clipping": np.nan, "seed": 0, **spec}
        status = "completed" if top1 is not None else "diverged"
        for metric, value in (("final_test_top1", np.nan if top1 is None else top1),
                              ("diverged", float(top1 is None)), ("steps", 10.0)):
            out.append({**spec, "run": f"r{i}", "status": status, "metric": metric, "value": value})
    return pd.DataFrame(out)


def _grid(best_by_batch, seeds=5, noise=0.0, diverged=()):
    """Per-run rows of a lambda grid peaking at ``best_by_batch[b]``; ``diverged``: (b, lam, seed)."""
    rng = np.random.default_rng(1)
    rows = []
    for b, best in best_by_batch.items():
        for lam in A.PAPER_CLIPPINGS:
            for s in range(seeds):
                top1 = 80 - 5 * abs(np.log2(lam / best)) + noise * rng.standard_normal()
                rows.append(({"variant": A.AGC, "batch_size": b, "clipping": lam, "seed": s},
                             None if (b, lam, s) in diverged else top1))
    return sweep_plan.per_run(_tidy(rows))


def test_best_clipping_scores_diverged_runs_at_chance_and_marks_grid_edges():
    rows = []
    for seed in (0, 1):
        rows += [({"variant": A.AGC, "batch_size": 128, "clipping": 0.01, "seed": seed}, 80.0),
                 ({"variant": A.AGC, "batch_size": 128, "clipping": 0.04, "seed": seed}, 80.0),
                 ({"variant": A.AGC, "batch_size": 2048, "clipping": 0.01, "seed": seed}, 70.0)]
    rows += [({"variant": A.AGC, "batch_size": 2048, "clipping": 0.04, "seed": 0}, 90.0),
             ({"variant": A.AGC, "batch_size": 2048, "clipping": 0.04, "seed": 1}, None)]
    runs = sweep_plan.per_run(_tidy(rows))
    best = N.best_clipping(runs).set_index("batch_size")
    assert best.loc[128, "clipping"] == 0.01 and best.loc[128, "edge"] == "at most"  # a tie goes low
    assert best.loc[2048, "clipping"] == 0.01  # (90 + 10) / 2 = 50 < 70: a lambda that diverges is not picked
    assert N.best_clipping(runs, clippings=[0.04]).set_index("batch_size").loc[2048, "edge"] == ""


def test_one_diverged_seed_does_not_make_a_worse_lambda_tie():
    """The issue's case: lambda 0.16 with one diverged seed against the best; 0.04 clearly worse too."""
    runs = _grid({512: 0.02}, noise=0.3, diverged=[(512, 0.16, 3)])
    ties = N.lambda_ties(runs).iloc[0]
    assert ties["best"] == 0.02 and ties["tied"] == "0.02" and ties["edge"] == ""
    assert N.lambda_ties(_grid({512: 0.16})).iloc[0]["edge"] == "at least"
    assert N.lambda_ties(_grid({512: 0.04}, noise=30.0)).iloc[0]["tied"].count(",") >= 1


def test_per_seed_best_and_the_slope_of_log_lambda_on_log_batch():
    runs = _grid({32: 0.16, 128: 0.04, 512: 0.01}, noise=0.2)  # the theory's slope -1
    best = N.per_seed_best(runs)
    assert len(best) == 15 and set(best.loc[best["batch_size"] == 32, "best"]) == {0.16}
    slope = N.lambda_slope(best).iloc[0]
    assert slope["slope"] == pytest.approx(-1.0) and slope["seeds"] == 5
    assert slope["at_edge"] == 10  # 0.16 at the smallest batch, 0.01 at the largest: the fall may be larger
    flat = N.lambda_slope(N.per_seed_best(_grid({32: 0.04, 512: 0.04}, noise=0.2))).iloc[0]
    assert flat["slope"] == pytest.approx(0.0) and flat["at_edge"] == 0


def test_the_step_bound_collapses_a_lambda_rule_of_one_over_b():
    runs = _grid({32: 0.16, 128: 0.04, 512: 0.01}, noise=0.0)
    scale = A.SCALES["cpu"]
    table = N.collapse(runs, scale)
    lr = scale.base_config().base_lr
    row = table[(table["batch_size"] == 512) & (table["clipping"] == 0.01)].iloc[0]
    assert row["step_bound"] == pytest.approx(lr * 512 / 256 * 0.01) and row["best"]
    spread = N.collapse_spread(table).iloc[0]
    assert spread["octaves_of_batch"] == pytest.approx(4)
    assert spread["octaves_of_best_lambda"] == pytest.approx(4)
    assert spread["octaves_of_best_step"] == pytest.approx(0)  # one eta * lambda for every batch


def test_length_gaps_and_when_an_arm_keeps_up():
    rows = []
    gap = {1: -20.0, 2: -10.0, 4: -3.0, 8: 0.0}  # AGC - BN by epochs
    for e, g in gap.items():
        for s in range(3):
            rows += [({"variant": A.length_variant(A.BN, e), "batch_size": 512, "seed": s}, 80.0 + s),
                     ({"variant": A.length_variant(A.AGC, e), "batch_size": 512, "seed": s,
                       "clipping": 0.01}, 80.0 + s + g + 0.3 * (s - 1))]
    runs = N.length_runs(sweep_plan.per_run(_tidy(rows)))
    steps = {(512, e): 29 * e for e in gap}
    gaps = N.length_gaps(runs, steps)
    assert list(gaps["steps"]) == [29, 58, 116, 232]
    assert gaps["estimate"].tolist() == pytest.approx(list(gap.values()))
    assert list(gaps["verdict"]) == ["contradicted"] * 3 + ["reproduced"]
    keep = N.keep_up_steps(gaps).iloc[0]
    assert 116 < keep["steps"] < 232 and keep["earliest"] <= keep["steps"] <= keep["latest"] <= 232
    never = N.keep_up_steps(gaps.assign(estimate=-10.0, ci_low=-11.0, ci_high=-9.0)).iloc[0]
    assert math.isinf(never["steps"]) and never["gap_at_longest"] == -10.0


def test_gain_growth_per_step():
    gains = pd.DataFrame({"variant": A.AGC, "epochs": [1, 1, 2, 2],
                          "skip_gain": [0.001, -0.001, 0.004, -0.004]})
    g = N.gain_growth(gains, pd.Series({1: 10, 2: 30})).set_index("epochs")
    assert g.loc[2, "growth_per_step"] == pytest.approx(4 ** (1 / 20))
    assert np.isnan(g.loc[1, "growth_per_step"])


def test_layer_effects_come_from_the_interval():
    rows = []
    top1 = {A.PAPER_LAYERS: [80, 80.5, 79.5, 80, 80], "also the classifier": [70, 71, 70.5, 69, 70],
            A.FIRST_CONV: [None] * 5, "first stage unclipped": [85, 60, 90, 70, 75],
            "last stage unclipped": [80.2, 80.4, 79.6, 80.1, 79.9]}
    for layers, values in top1.items():
        rows += [({"variant": A.AGC, "layers": layers, "batch_size": 512, "clipping": 0.01, "seed": s}, v)
                 for s, v in enumerate(values)]
    effects = N.layer_effects(sweep_plan.per_run(_tidy(rows))).set_index("layers")
    assert effects.loc["also the classifier", "effect"] == "hurts"
    assert effects.loc[A.FIRST_CONV, "effect"] == "hurts" and effects.loc[A.FIRST_CONV, "diverged"] == "5/5"
    assert effects.loc["first stage unclipped", "effect"] == "not resolved"  # no "hurts" on a wide interval
    assert effects.loc["last stage unclipped", "effect"] == "no difference"
    assert effects.loc[A.PAPER_LAYERS, "effect"] == "(reference)"


def test_nf_trains_batch_and_line_summary():
    diverged = {(512, 0), (512, 1), (128, 1)}
    rows = [({"variant": A.NF, "batch_size": b, "seed": s}, None if (b, s) in diverged else 80.0)
            for b in (32, 128, 512) for s in (0, 1)]
    runs = sweep_plan.per_run(_tidy(rows))
    assert N.nf_trains_batch(runs) == 32
    summary = N.line_summary(runs.assign(line=runs["variant"])).set_index("batch_size")
    assert summary.loc[128, "diverged"] == "1/2" and summary.loc[128, "mean_top1"] == 80.0
    assert summary.loc[512, "best_4_of_5"] == sweep_plan.CHANCE_TOP1
    assert N.best_k_mean([70, 80, 90, 10, 60]) == pytest.approx(75.0)
