"""Notebook 09 (``nfrepro.experiments.transfer``): the plans, the fine-tuning recipe, the verdicts on
made-up scores, and one tiny pre-train -> export -> fine-tune chain."""
import numpy as np
import pandas as pd
import pytest
import torch

from nfrepro.analysis import verdicts
from nfrepro.experiments import sweep_plan
from nfrepro.experiments import transfer as tr

SCALE = tr.SCALES["smoke"]


def test_the_cpu_plan_pairs_every_fine_tuning_seed_with_a_pre_training_seed():
    scale = tr.SCALES["cpu"]
    plan = tr.finetune_plan(scale)
    arms = {tr.NF: 3, tr.AGC: 2, tr.BN: 4}  # the re-estimated probe is BN's only; NF + AGC: no probe
    assert len(plan) == sum(arms.values()) * len(scale.per_class) * len(scale.finetune_seeds)
    clipped = plan[plan["variant"].str.startswith(tr.AGC)]
    assert np.allclose(clipped["clipping"], 0.16) and len(clipped) == 2 * 3 * len(scale.finetune_seeds)
    assert plan.loc[~plan["variant"].str.startswith(tr.AGC), "clipping"].isna().all()
    assert [tr.pretrain_seed(scale, s) for s in range(4)] == [0, 1, 0, 1]
    assert set(plan["batch_size"]) == {scale.finetune_batch}
    recipe = tr.finetune_overrides(scale)
    assert recipe["weight_decay"] == 0.0 and recipe["classes"] == list(tr.TARGET)
    assert recipe["base_lr"] * scale.finetune_batch / 256 == pytest.approx(tr.PAPER_LR)  # 0.1, not scaled
    for k in scale.per_class:  # the same warmup in steps at every target size
        per_epoch = len(tr.TARGET) * k // scale.finetune_batch
        warmup = tr.finetune_layers(scale)[f"{tr.FINE_TUNE}, {k} per class"]["warmup_epochs"]
        assert round(warmup * per_epoch) == scale.finetune_warmup_steps


def test_paper_gaps_are_table_4s():
    assert tr.paper_gaps()["gap"].round(1).tolist() == [1.4, 0.6, 0.9, 1.1]


def _runs(score):
    """A runs table as runs_table gives it, with made-up scores: score(family, arm, k, seed)."""
    rows = []
    for family, (_, _, arms) in tr.FINE_TUNED.items():
        for arm in arms:
            for k in (25, 100):
                for seed in range(4):
                    top1 = score(family, arm, k, seed)
                    rows.append({"family": family, "arm": arm, "per_class": k, "seed": seed, "top1": top1,
                                 "score": top1, "diverged": False, "run": f"{family}-{arm}-{k}-{seed}"})
    return pd.DataFrame(rows)


def test_claims_pair_nf_and_bn_by_seed():
    from nfrepro.engine.config import TrainConfig

    def score(family, arm, k, seed):
        base = 80.0 + 0.3 * seed + (5.0 if arm != tr.SCRATCH else 0.0)
        return base + (1.0 if family == tr.AGC and arm == tr.FINE_TUNE else 0.0) + (
            2.0 if arm == tr.PROBE_BN else 0.0)

    runs = _runs(score)
    cfgs = {r: TrainConfig(dataset="fashion_mnist", classes=list(tr.TARGET), per_class=int(r.split("-")[-2]),
                           batch_size=32, steps=200, base_lr=0.8, warmup_epochs=1.0) for r in runs["run"]}
    table = verdicts.table(tr.claims(runs, cfgs))
    first = table[table["claim"].str.startswith("25 per class: NF + AGC fine-tunes better than BN")].iloc[0]
    assert "paper T4: +0.6 to +1.4" in first["claim"]
    assert first["estimate"] == pytest.approx(1.0) and first["verdict"] == "reproduced"
    assert first["train_images"] == 100 and first["steps"] == 200 and first["peak_lr"] == pytest.approx(0.1)
    reest = table[table["claim"].str.contains("re-estimating BN's statistics")]
    assert np.allclose(reest["estimate"], 2.0)
    diverged = table[table["claim"].str.contains("NF without AGC diverges")]
    assert (diverged["estimate"] == 0).all() and set(diverged["verdict"]) == {"contradicted"}


@pytest.mark.slow
def test_pretrain_export_and_fine_tune_chain(tmp_path):
    scale = SCALE
    sweep_plan.run_plan(tr.pretrain_plan(scale), scale, tmp_path, tr.pretrain_arms(), progress=False)
    configs = tr.pretrain_configs(scale, tmp_path)
    weights = {key: tr.export_weights(c, tmp_path) for key, c in configs.items()}
    state = torch.load(next(iter(weights.values())), weights_only=True)
    assert state["fc.weight"].shape[0] == len(tr.SOURCE)
    plan = tr.finetune_plan(scale)
    plan = plan[plan["seed"] == 0]
    tidy = sweep_plan.run_plan(plan, tr.finetune_scale(scale), tmp_path, tr.finetune_arms(scale, weights),
                               tr.finetune_layers(scale), progress=False)
    runs = tr.runs_table(tidy, scale)
    assert set(runs["arm"]) == set(tr.ARMS) and (runs["steps"] == scale.finetune_steps).all()
    configs = tr.finetune_configs(plan, scale, tr.finetune_arms(scale, weights))
    check = tr.bn_statistics_check(runs, configs, tmp_path)
    assert len(check) == 1 and check[["left_by_fine_tuning", "re_estimated"]].notna().all().all()
