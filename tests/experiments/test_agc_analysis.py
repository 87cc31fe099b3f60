"""nfrepro.experiments.agc_analysis: per-run table, best lambda, the Fig. 2a / 2b / §4.1 verdict numbers."""
from __future__ import annotations

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
    runs = sweep_plan.per_run(_tidy(rows))
    assert runs["diverged"].sum() == 1 and runs["score"].min() == sweep_plan.CHANCE_TOP1
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
    return sweep_plan.per_run(_tidy(rows))


def _seeded(line_scores, batch=2048, variant_col=True):
    """A per-run table (as per_run returns it) from {variant: [score per seed]}."""
    rows = []
    for v, scores in line_scores.items():
        for seed, sc in enumerate(scores):
            rows.append({"variant": v, "line": v, "layers": A.PAPER_LAYERS if v in A.CLIPPED else "",
                         "batch_size": batch, "clipping": 0.01 if v in A.CLIPPED else np.nan,
                         "seed": seed, "diverged": sc is None, "top1": sc,
                         "score": sweep_plan.CHANCE_TOP1 if sc is None else sc, "steps": 10.0})
    return pd.DataFrame(rows)


def test_best_k_mean_is_the_papers_best_4_of_5():
    assert N.best_k_mean([70, 80, 90, 10, 60]) == pytest.approx(75.0)
    assert N.best_k_mean([70, float("nan")]) == 70.0


def test_fig2a_claims_from_intervals():
    small = _seeded({A.BN: [80, 81, 79, 80, 80], A.NF: [80, 80.5, 79.5, 80, 80],
                     A.AGC: [80, 81, 80, 80, 79]}, batch=128)
    big = _seeded({A.BN: [75, 76, 74, 75, 75], A.NF: [None, 60, None, 62, 61],
                   A.AGC: [75, 75.5, 74.5, 75, 76]})
    claims = N.verdict_table(N.fig2a_claims(pd.concat([small, big], ignore_index=True)))
    assert list(claims.columns) == N.VERDICT_COLUMNS
    v = claims.set_index("claim")["verdict"]
    assert v[[c for c in v.index if "128, NF without clipping matches" in c][0]] == "reproduced"
    assert v[[c for c in v.index if "2048, NF without clipping falls behind" in c][0]] == "reproduced"
    assert v[[c for c in v.index if "diverges in some runs" in c][0]] == "reproduced"  # 2 of 5
    keep = claims[claims["claim"].str.contains("2048, NF \\+ AGC at its best λ keeps up")].iloc[0]
    assert keep["verdict"] == "reproduced" and keep["n"] == 5
    assert keep["estimate_best_4_of_5"] == pytest.approx(75.375 - 75.25)


def test_a_noisy_difference_is_not_resolved_and_a_clear_one_contradicted():
    noisy = _seeded({A.BN: [70, 85, 60, 90, 75], A.NF: [80, 70, 85, 65, 75]})
    row = N.difference_row("x", N._scores(noisy, line=A.NF), N._scores(noisy, line=A.BN))
    assert row["verdict"] == "not resolved" and row["ci_low"] < 0 < row["ci_high"]
    behind = _seeded({A.BN: [80, 81, 80, 79, 80], A.NF: [70, 71, 70, 69, 70]})
    row = N.difference_row("x", N._scores(behind, line=A.NF), N._scores(behind, line=A.BN))
    assert row["verdict"] == "contradicted"
    assert N.rate_row("r", [False] * 5)["verdict"] == "not resolved"  # 0 of 5 cannot prove a rate of 0


def _grid(best_by_batch, seeds=5, noise=0.0):
    rng = np.random.default_rng(1)
    rows = []
    for b, best in best_by_batch.items():
        for lam in (0.01, 0.04, 0.16):
            for s in range(seeds):
                score = 80 - 5 * abs(np.log2(lam / best)) + noise * rng.standard_normal()
                rows.append({"variant": A.AGC, "layers": A.PAPER_LAYERS, "batch_size": b,
                             "clipping": lam, "seed": s, "score": score, "diverged": False})
    return pd.DataFrame(rows)


def test_fig2b_claim_bootstrap_is_deterministic_and_reads_the_drop():
    falls = _grid({128: 0.16, 2048: 0.01}, noise=0.5)
    a, b = N.fig2b_claims(falls), N.fig2b_claims(falls)
    assert pd.DataFrame(a).equals(pd.DataFrame(b))  # a fixed generator: the same interval
    assert a[0]["estimate"] == pytest.approx(4.0) and a[0]["verdict"] == "reproduced"
    rises = N.fig2b_claims(_grid({128: 0.01, 2048: 0.16}, noise=0.5))[0]
    assert rises["verdict"] == "contradicted" and rises["estimate"] == pytest.approx(-4.0)
    flat = N.fig2b_claims(_grid({128: 0.04, 2048: 0.04}, noise=20.0))[0]
    assert flat["verdict"] == "not resolved"


def test_lambda_ties_names_every_lambda_within_the_interval():
    clear = N.lambda_ties(_grid({128: 0.04}, noise=0.1)).iloc[0]
    assert clear["best"] == 0.04 and clear["tied"] == "0.04"
    noisy = N.lambda_ties(_grid({128: 0.04}, noise=30.0)).iloc[0]
    assert noisy["tied"].count(",") >= 1


def test_gain_growth_extrapolates_geometrically():
    g = lambda v: pd.DataFrame({"skip_gain": [v, -v]})  # noqa: E731
    out = N.gain_growth(g(0.001), g(0.004), g(0.064), 10, 30)
    assert out["growth per step"] == pytest.approx(4 ** (1 / 20))
    assert out["steps to target"] == pytest.approx(30 + 40)
    assert N.gain_growth(g(0.01), g(0.01), g(1.0), 10, 30)["steps to target"] == float("inf")


def test_layer_effects_and_verdict():
    top1 = {A.PAPER_LAYERS: 80.0, "also the classifier": 70.0, "first conv unclipped": 80.5,
            "first stage unclipped": None, "last stage unclipped": 79.8}
    rows = [({"variant": A.AGC, "layers": k, "batch_size": 2048, "clipping": 0.01}, v)
            for k, v in top1.items()]
    effects = N.layer_effects(sweep_plan.per_run(_tidy(rows))).set_index("layers")
    assert list(effects.index) == list(A.LAYERS)
    assert effects.loc["also the classifier", "effect"] == "hurts"
    assert effects.loc["first stage unclipped", "effect"] == "hurts"   # diverged: chance
    assert effects.loc["last stage unclipped", "effect"] == "no difference"

    layer_runs = pd.concat([_seeded({A.AGC: [80, 80.5, 79.5, 80, 80]}).assign(layers=k)
                            for k in A.LAYERS if k != "first conv unclipped"]
                           + [_seeded({A.AGC: [None] * 5}).assign(layers="first conv unclipped")],
                           ignore_index=True)
    layer_runs.loc[layer_runs["layers"] == "also the classifier", "score"] -= 5
    claims = N.verdict_table(N.layer_claims(layer_runs)).set_index("claim")["verdict"]
    found = {c.split(",")[0]: v for c, v in claims.items()}
    assert found["§4.1: never clip the final linear layer"] == "reproduced"
    assert found["§4.1: the first conv can be left unclipped"] == "contradicted"  # diverged: chance
    assert found["§4.1: every stage must be clipped (first)"] == "not resolved"   # no difference at all
