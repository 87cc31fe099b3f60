"""Notebook 06 (``nfrepro.experiments.why_no_batchnorm``): the BN costs measured on tiny nets."""
import dataclasses

import pandas as pd
import pytest
import torch

from nfrepro.analysis import verdicts
from nfrepro.experiments import agc_ablation
from nfrepro.experiments import why_no_batchnorm as nobn
from nfrepro.experiments.agc_ablation import BN, NF
from nfrepro.experiments.sweep_plan import Scale
from nfrepro.models import create_model

TINY = {"depths": (1, 1), "widths": (4, 8), "num_classes": 10, "in_chans": 1}
SMOKE = nobn.SCALES["smoke"]


def _tidy(scores, train_images=None, epochs=1):
    """Tidy run rows as run_plan writes them: {(variant, batch, seed): top-1}."""
    rows = []
    for (variant, batch, seed), top1 in scores.items():
        run = f"{variant}-{batch}-{seed}-{train_images}"
        base = {"variant": variant, "layers": "", "batch_size": batch, "clipping": float("nan"), "seed": seed,
                "run": run, "status": "completed"}
        rows += [{**base, "metric": "final_test_top1", "value": top1},
                 {**base, "metric": "diverged", "value": 0.0}, {**base, "metric": "steps", "value": 10}]
    out = pd.DataFrame(rows)
    return out if train_images is None else out.assign(train_images=train_images, epochs=epochs)


def _sweep(noise=(0.0, 0.3, -0.2, 0.1, -0.4)):
    """BN: best at 16, 4 points lower at batch 4 and 6 lower at 2; NF flat at 70 (its best: 16)."""
    scores = {}
    for seed, e in enumerate(noise):
        scores.update({(BN, 2, seed): 74 + e, (BN, 4, seed): 76 + e, (BN, 16, seed): 80 + e,
                       (NF, 2, seed): 69.9 + e / 2, (NF, 4, seed): 70 + e / 3, (NF, 16, seed): 70.2 + e / 2})
    return _tidy(scores)


def test_the_sweep_is_notebook_02s_recipe_on_fewer_images():
    """The budget ladder changes one thing: the training set (EMA never changes the scored weights)."""
    sweep, nb02 = nobn.SCALES["cpu"], agc_ablation.SCALES["cpu"]
    fields = {f.name for f in dataclasses.fields(Scale)} - {"train_subset", "batch_sizes", "seeds",
                                                              "ema_decay"}
    assert {f: getattr(sweep, f) for f in fields} == {f: getattr(nb02, f) for f in fields}
    assert sweep.train_subset < 60_000 and set(nobn.SMALL) <= set(sweep.batch_sizes) and len(sweep.seeds) >= 5
    budget = nobn.BUDGETS["cpu"]
    assert budget.scale is nb02 and budget.moderate in nb02.batch_sizes and budget.large in nb02.batch_sizes
    assert set(budget.seeds) <= set(nb02.seeds)  # 02's runs are read back, not trained again
    assert budget.shared == agc_ablation.sweep_dir("cpu").parent.name


def test_within_family_changes_and_their_difference():
    within = nobn.within_family(_sweep())
    assert within[4]["best"] == {BN: 16, NF: 16}
    assert within[4]["change"][BN].mean() == pytest.approx(-4.0)
    assert within[4]["did"].mean() == pytest.approx(4.0 + within[4]["change"][NF].mean())
    rows = nobn.within_claims(within, SMOKE)
    table = verdicts.table(rows)  # refuses rows without setting and reading
    assert len(table) == 3 * len(nobn.SMALL) and (table["n"] == 5).all()
    assert list(table["verdict"]) == ["reproduced"] * 6
    assert table.loc[5, "batch_size"] == "4-16" and "more than it costs NF" in table.loc[5, "reading"]
    wide = nobn.within_table(within)
    assert set(wide["line"]) == {BN, NF, "NF change - BN change"} and (wide["n"] == 5).all()


def test_a_family_that_does_not_depend_on_the_batch_is_not_called_dependent():
    """BN flat as well: its loss and the difference-in-differences are not reproduced."""
    scores = {(v, b, s): 80 + (0.3 if (s + b) % 2 else -0.3)
              for v in (BN, NF) for b in (2, 4, 16) for s in range(5)}
    table = verdicts.table(nobn.within_claims(nobn.within_family(_tidy(scores)), SMOKE))
    assert "reproduced" not in set(table.loc[table["claim"].str.startswith("BN loses"), "verdict"])
    assert "reproduced" not in set(table.loc[table["claim"].str.contains("difference-in"), "verdict"])


def test_gap_ladder_and_absolute_claims_read_each_budget():
    budget = nobn.Budget(dataclasses.replace(SMOKE, train_subset=256), shared=nobn.RUNS, moderate=16,
                         large=64, seeds=(0, 1, 2), small=4, rungs=(128,), rung_seeds=(0, 1, 2))
    full, rung, sweep = {}, {}, {}
    for s, e in enumerate((0.0, 0.2, -0.2)):
        full.update({(BN, 16, s): 88 + e, (NF, 16, s): 87.8 + e, (BN, 64, s): 87 + e,
                     (NF, 64, s): 84 - 2 * e})
        rung.update({(BN, 16, s): 86 + e, (NF, 16, s): 84 + e, (BN, 4, s): 82 + e,
                     (NF, 4, s): 84.5 - e})
        sweep.update({(BN, 16, s): 80 + e, (NF, 16, s): 70 + e})
    tidy = pd.concat([_tidy(full, 256, 1), _tidy(rung, 128, 1), _tidy(sweep, 64, 1)], ignore_index=True)
    ladder = nobn.gap_ladder(tidy, 16)
    assert list(ladder["train_images"]) == [64, 128, 256]
    assert list(ladder["NF - BN"].round(6)) == [-10.0, -2.0, -0.2]
    table = verdicts.table(nobn.absolute_claims(tidy, budget))
    assert table["train_images"].tolist() == [256, 256, 128, 128]
    assert table["batch_size"].tolist() == [16, 64, 4, 16]
    assert list(table["verdict"]) == ["reproduced", "contradicted", "reproduced", "contradicted"]
    assert table["claim"].is_unique and "on 128 training images" in table.loc[2, "claim"]
    assert "NF is 2.5 points" in table.loc[2, "reading"]


def test_batch_mates_change_a_bn_net_in_training_mode_only():
    torch.manual_seed(0)
    images = torch.randn(64, 1, 28, 28)
    bn = nobn.batch_mate_effect(create_model("bn_resnet_small", **TINY), images, batch=4, draws=5)
    nf = nobn.batch_mate_effect(create_model("nf_resnet_small", **TINY, skip_gain_init=1.0), images,
                                batch=4, draws=5)
    assert (bn.query("mode == 'train'")["relative_change"] > 1e-3).all()
    assert (bn.query("mode == 'eval'")["relative_change"] < 1e-5).all()
    assert (nf["relative_change"] < 1e-5).all()
    claims = nobn.independence_claims({BN: bn, NF: nf}, nobn.setting(SMOKE, [16], seeds=1))
    assert [c["verdict"] for c in verdicts.table(claims).to_dict("records")] == ["reproduced", "reproduced"]


def test_batch_statistics_change_a_bn_net_not_an_nf_net():
    torch.manual_seed(0)
    x, y = torch.randn(32, 1, 28, 28) * 3 + 1, torch.randint(0, 10, (32,))
    batches = [(x[i:i + 8], y[i:i + 8]) for i in range(0, 32, 8)]
    bn, nf = create_model("bn_resnet_small", **TINY), create_model("nf_resnet_small", **TINY)
    before = [b.clone() for b in bn.buffers()]
    assert nobn.top1(nf, batches, True) == nobn.top1(nf, batches, False)
    logits_eval = bn.eval()(x)
    nobn.top1(bn, batches, True)
    # running averages untouched
    assert all(torch.equal(a, b) for a, b in zip(before, bn.buffers(), strict=True))
    assert torch.equal(bn.eval()(x), logits_eval)


def test_mode_claims_at_test_batch_1_and_at_the_training_batch():
    rows = []
    for seed, e in enumerate((0.0, 0.5, -0.5)):
        for family, b, eval_mode, train_mode in ((BN, 1, 85 + e, 15), (BN, 128, 85 + e, 84.9 + e),
                                                  (NF, 1, 84 + e, 84 + e), (NF, 128, 84 + e, 84 + e)):
            rows += [{"family": family, "seed": seed, "test_batch": b, "statistics": "running (eval mode)",
                      "top1": eval_mode},
                     {"family": family, "seed": seed, "test_batch": b, "statistics": "batch (train mode)",
                      "top1": train_mode}]
    table = verdicts.table(nobn.mode_claims(pd.DataFrame(rows), nobn.setting(SMOKE, [16], seeds=3)))
    assert list(table["verdict"]) == ["reproduced"] * 3
    assert [c.split(":")[0] for c in table["claim"]] == [BN, BN, NF]
    assert "test batch 128" in table.loc[1, "claim"] and table.loc[0, "estimate"] == pytest.approx(70.0)
