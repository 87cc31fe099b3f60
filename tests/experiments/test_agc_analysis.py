"""nfrepro.experiments.agc_analysis: per-run table, best lambda, the Fig. 2a / 2b / §4.1 verdict numbers."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nfrepro.experiments import agc_ablation as A
from nfrepro.experiments import agc_analysis as N


def _tidy(rows):
    """A run table as run_plan returns it, from (spec, top1 or None = diverged) pairs."""
    out = []
    for i, (spec, top1) in enumerate(rows):
        spec = {"layers": A.PAPER_LAYERS if spec["variant"] in A.CLIPPED else "",
                "clipping": np.nan, "seed": 0, **spec}
        status = "completed" if top1 is not None else "diverged"
        for metric, value in (("final_test_top1", np.nan if top1 is None else top1),
                              ("diverged", float(top1 is None)), ("steps", 10.0)):
            out.append({**spec, "run": f"r{i}", "status": status, "metric": metric, "value": value})
    return pd.DataFrame(out)


def test_best_clipping_scores_diverged_runs_at_chance_and_breaks_ties_low():
    rows = []
    for seed in (0, 1):
        rows += [({"variant": A.AGC, "batch_size": 128, "clipping": 0.01, "seed": seed}, 80.0),
                 ({"variant": A.AGC, "batch_size": 128, "clipping": 0.04, "seed": seed}, 80.0),
                 ({"variant": A.AGC, "batch_size": 2048, "clipping": 0.01, "seed": seed}, 70.0)]
    rows += [({"variant": A.AGC, "batch_size": 2048, "clipping": 0.04, "seed": 0}, 90.0),
             ({"variant": A.AGC, "batch_size": 2048, "clipping": 0.04, "seed": 1}, None)]
    runs = N.per_run(_tidy(rows))
    assert runs["diverged"].sum() == 1 and runs["score"].min() == N.CHANCE_TOP1
    best = N.best_clipping(runs).set_index("batch_size")
    assert best.loc[128, "clipping"] == 0.01          # a tie goes to the smaller lambda
    assert best.loc[2048, "clipping"] == 0.01         # (90 + 10) / 2 = 50 < 70
    assert not best.loc[2048, "at_top"]
    assert N.best_clipping(runs, clippings=[0.04]).set_index("batch_size").loc[2048, "at_top"]


def _fig2a_runs(nf_big, agc_big, bn_big=85.0):
    rows = []
    for batch, (bn, nf, agc) in {128: (88.0, 88.0, 87.0), 2048: (bn_big, nf_big, agc_big)}.items():
        rows += [({"variant": A.BN, "batch_size": batch}, bn), ({"variant": A.NF, "batch_size": batch}, nf),
                 ({"variant": A.AGC, "batch_size": batch, "clipping": 0.01}, agc),
                 ({"variant": A.AGC, "batch_size": batch, "clipping": 0.16}, agc - 5)]
    return N.per_run(_tidy(rows))


@pytest.mark.parametrize("nf_big, agc_big, verdict", [
    (None, 84.5, "reproduced"),             # NF diverges, AGC within a point of BN
    (60.0, 75.0, "partly reproduced"),      # AGC helps but stays behind BN
    (84.8, 84.9, "not reproduced"),         # no problem to fix, no gain
])
def test_verdict_fig2a(nf_big, agc_big, verdict):
    points = N.fig2a_points(_fig2a_runs(nf_big, agc_big))
    assert set(points.loc[points["line"] == A.AGC, "clipping"]) == {0.01}
    v = N.verdict_fig2a(points)
    assert v["verdict"] == verdict and v["batch_size"] == 2048
    assert "Verdict" in N.describe_fig2a(v)
    summary = N.line_summary(points)
    assert len(summary) == 6 and summary["diverged"].sum() == (nf_big is None)


@pytest.mark.parametrize("lams, verdict", [((0.16, 0.04, 0.01), "reproduced"),
                                           ((0.04, 0.08, 0.01), "partly reproduced"),
                                           ((0.04, 0.04, 0.04), "not reproduced")])
def test_verdict_fig2b(lams, verdict):
    best = pd.DataFrame({"variant": A.AGC, "batch_size": [128, 512, 2048], "clipping": lams,
                         "at_top": [False, False, True]})
    v = N.verdict_fig2b(best)
    assert v["verdict"] == verdict and v["censored"] == 1 and "Verdict" in N.describe_fig2b(v)


def test_layer_effects_and_verdict():
    top1 = {A.PAPER_LAYERS: 80.0, "also the classifier": 70.0, "first conv unclipped": 80.5,
            "first stage unclipped": None, "last stage unclipped": 79.8}
    rows = [({"variant": A.AGC, "layers": k, "batch_size": 2048, "clipping": 0.01}, v)
            for k, v in top1.items()]
    effects = N.layer_effects(N.per_run(_tidy(rows))).set_index("layers")
    assert list(effects.index) == list(A.LAYERS)
    assert effects.loc["also the classifier", "effect"] == "hurts"
    assert effects.loc["first stage unclipped", "effect"] == "hurts"   # diverged: chance
    assert effects.loc["last stage unclipped", "effect"] == "no difference"
    v = N.verdict_layers(effects.reset_index())
    assert v["verdict"] == "partly reproduced"
    assert v["holds"] == {"never clip the final linear layer": True,
                          "the first conv can be left unclipped": True,
                          "every stage must be clipped (first)": True,
                          "every stage must be clipped (last)": False}
