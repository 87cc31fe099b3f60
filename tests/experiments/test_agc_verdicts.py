"""nfrepro.experiments.agc_verdicts: every verdict with its setting and a reading, and the words under it."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from nfrepro.analysis import verdicts as V
from nfrepro.experiments import agc_ablation as A
from nfrepro.experiments import agc_analysis as N
from nfrepro.experiments import agc_verdicts as W
from nfrepro.experiments import sweep_plan

CPU = A.SCALES["cpu"]


def _runs(rows):
    """A per-run table from (spec, top1 or None = diverged) pairs."""
    out = []
    for i, (spec, top1) in enumerate(rows):
        spec = {"layers": A.PAPER_LAYERS if A.split_length(spec["variant"])[0] in A.CLIPPED else "",
                "clipping": np.nan, "seed": 0, **spec}
        for metric, value in (("final_test_top1", np.nan if top1 is None else top1),
                              ("diverged", float(top1 is None)), ("steps", 10.0)):
            out.append({**spec, "run": f"r{i}", "status": "completed" if top1 is not None else "diverged",
                        "metric": metric, "value": value})
    return sweep_plan.per_run(pd.DataFrame(out))


def _fig2a():
    rows = []
    for b, (bn, nf, agc, free) in {32: (84.0, 83.8, 80.0, 83.5), 512: (80.0, None, 60.0, 79.5)}.items():
        for s in range(5):
            jitter = 0.2 * (s - 2)
            rows += [({"variant": A.BN, "batch_size": b, "seed": s}, bn + jitter),
                     ({"variant": A.NF, "batch_size": b, "seed": s}, None if nf is None else nf + jitter),
                     ({"variant": A.AGC, "batch_size": b, "clipping": 0.02, "seed": s}, agc + jitter),
                     ({"variant": A.AGC_FREE_GAINS, "batch_size": b, "clipping": 0.01, "seed": s},
                      free + jitter)]
    return N.fig2a_points(_runs(rows))


def test_every_fig2a_verdict_carries_its_setting_and_a_reading():
    gains = pd.DataFrame({"variant": [A.AGC, A.AGC_FREE_GAINS] * 2, "batch_size": 512,
                          "clipping": [0.02, 0.01] * 2, "seed": 0, "layers": A.PAPER_LAYERS,
                          "block": [0, 0, 1, 1], "skip_gain": [0.003, 0.3, -0.003, 0.2]})
    gaps = pd.DataFrame({"arm": A.AGC, "batch_size": 512, "steps": [29, 58, 116, 232],
                         "estimate": [-30.0, -20.0, -8.0, -0.5], "ci_low": [-32.0, -22.0, -9.0, -0.9],
                         "ci_high": [-28.0, -18.0, -7.0, -0.1],
                         "verdict": ["contradicted"] * 3 + ["reproduced"]})
    table = W.verdict_table(W.fig2a_claims(_fig2a(), CPU, gains, gaps, blowup="; its loss blew up at step 9"))
    assert list(table.columns) == [*V.COLUMNS[:7], *W.EXTRA, *V.COLUMNS[7:]]
    assert table[[*V.SETTING_COLUMNS, "reading"]].notna().all().all()
    rows = table.set_index("claim")
    behind = rows.loc[[c for c in rows.index if "falls behind" in c][0]]
    assert behind["verdict"] == "reproduced" and behind["n"] == 0 and behind["diverged"] == "0/5 vs 5/5"
    assert "diverged in 5 of 5" in behind["reading"] and "blew up at step 9" in behind["reading"]
    assert (behind["steps"], behind["batch_size"], behind["peak_lr"]) == (58, 512, 0.8)
    assert behind["train_images"] == 15_000 and behind["warmup_steps"] == 14 and behind["seeds"] == 5
    keeps = rows.loc["Fig. 2a: at batch 512, NF + AGC at its best λ keeps up with BN "
                     "(NF + AGC - BN > -1, top-1 points)"]
    assert keeps["verdict"] == "contradicted" and keeps["clipping"] == "AGC λ=0.02 | none"
    assert "have not opened" in keeps["reading"] and "0.003" in keeps["reading"]  # the measured reason
    assert "at this budget" in keeps["reading"] and "232 steps" in keeps["reading"]
    small = rows.loc[[c for c in rows.index if "at batch 32, NF without clipping matches" in c][0]]
    assert small["verdict"] == "reproduced" and small["steps"] == 936
    assert "at this budget" not in small["reading"]
    assert "NF without clipping trails BN by 0.2 points" in small["reading"]


def test_layer_verdicts_name_their_setting_and_reason():
    rows = []
    for b, lam in ((512, 0.02), (128, 0.04)):
        for s in range(5):
            spec = {"variant": A.AGC, "batch_size": b, "clipping": lam, "seed": s}
            rows += [({**spec, "layers": A.PAPER_LAYERS}, 70 + s / 5),
                     ({**spec, "layers": A.FIRST_CONV}, None if b == 512 else 70.1 + s / 5)]
    claims = W.verdict_table(W.layer_claims(_runs(rows), CPU, "; its ratio reached 300 λ")).set_index("claim")
    big = claims.loc[[c for c in claims.index if "batch 512" in c][0]]
    control = claims.loc[[c for c in claims.index if "batch 128" in c][0]]
    assert big["verdict"] == "contradicted" and "300 λ" in big["reading"] and big["batch_size"] == 512
    assert control["verdict"] == "reproduced" and "300 λ" not in control["reading"]
    assert "λ = 0.04, batch 128" in control.name and control["clipping"] == "AGC λ=0.04"


def test_fig2b_and_theory_verdicts_from_per_seed_slopes():
    rows = []
    for b, best in {32: 0.16, 128: 0.04, 512: 0.01}.items():
        for lam in A.PAPER_CLIPPINGS:
            for s in range(5):
                rows.append(({"variant": A.AGC_FREE_GAINS, "batch_size": b, "clipping": lam, "seed": s},
                             80 - 5 * abs(np.log2(lam / best)) + 0.01 * s))
    claims = W.verdict_table(W.fig2b_claims(_runs(rows), CPU)).set_index("claim")
    falls = claims.loc[[c for c in claims.index if c.startswith("Fig. 2b")][0]]
    theory = claims.loc[[c for c in claims.index if c.startswith("Theory")][0]]
    assert falls["verdict"] == "reproduced" and falls["estimate"] == pytest.approx(1.0)
    assert theory["verdict"] == "reproduced" and theory["estimate"] == pytest.approx(0.0)
    assert "fell by 4.0 octaves" in falls["reading"] and "at the edge" in falls["reading"]
    assert falls["batch_size"] == "32-512" and falls["seeds"] == 5


def test_length_answers_read_as_steps_or_not_within():
    rows = []
    for e, g in {1: -20.0, 2: -10.0, 4: -3.0, 8: 0.0}.items():
        for s in range(3):
            rows += [({"variant": A.length_variant(A.BN, e), "batch_size": 512, "seed": s}, 80.0 + s),
                     ({"variant": A.length_variant(A.AGC, e), "batch_size": 512, "clipping": 0.01, "seed": s},
                      80.0 + s + g + 0.3 * (s - 1)),
                     ({"variant": A.length_variant(A.AGC_FREE_GAINS, e), "batch_size": 512, "clipping": 0.01,
                       "seed": s}, 60.0 + 0.3 * s)]
    runs = N.length_runs(_runs(rows))
    steps = W.steps_of(runs, CPU)
    assert steps[(512, 8)] == 232 and steps[(512, 1)] == 29
    gaps = N.length_gaps(runs, steps)
    claims = W.verdict_table(W.length_claims(runs, gaps, N.keep_up_steps(gaps), CPU)).set_index("claim")
    answers = claims[claims.index.str.startswith("Training length: steps after which")]
    agc, free = answers.iloc[0], answers.iloc[1]
    assert agc["verdict"] == "reproduced" and 116 < agc["estimate"] < 232
    assert "keeps up with BN (within 1 point) after about" in agc["reading"]
    assert free["verdict"] == "contradicted" and math.isinf(free["estimate"])
    assert "does not keep up with BN within 232 steps" in free["reading"] and free["steps"] == "29-232"
    text = W.findings_02(claims.reset_index())
    assert "How the verdicts move with training length" in text and "232 steps" in text


def test_findings_say_the_blowup_once():
    """The mechanism sentence is not repeated when the largest-batch reading already carries it."""
    blowup = "NF blew up in 5 of 5 runs (median step 12)"
    claims = pd.DataFrame([
        {"claim": "Fig. 2a: at batch 32, NF without clipping matches BN (NF - BN, top-1 points)",
         "verdict": "not resolved", "reading": "At 936 steps NF trails BN by 0.9 points."},
        {"claim": "Fig. 2a: at batch 512, NF without clipping falls behind BN (BN - NF, top-1 points)",
         "verdict": "reproduced", "reading": f"At 58 steps NF diverged in 5 of 5 runs; {blowup}."}])
    text = W.findings_02(claims, blowup)
    assert text.count(blowup) == 1 and "Nothing bounds a unit's step" in text
    claims.loc[1, "reading"] = "At 58 steps NF diverged in 5 of 5 runs."
    assert W.findings_02(claims, blowup).count(blowup) == 1  # said once, by the mechanism clause
