"""nfrepro.experiments.sweep_plan: the plan, scale and run folders every training notebook shares."""
from __future__ import annotations

import numpy as np

from nfrepro.experiments import sweep_plan as S

TINY = S.Scale(dataset="synthetic", widths=(4, 8), depths=(1, 1), epochs=2, warmup_epochs=0.5,
               batch_sizes=(16,), seeds=(0,), small_stem=False, extra={"momentum": 0.8})


def test_make_plan_has_the_columns_and_float_thresholds():
    plan = S.make_plan([{"variant": "a", "layers": "", "batch_size": 8, "clipping": np.nan, "seed": 0},
                        {"variant": "b", "layers": "x", "batch_size": 8, "clipping": 1, "seed": 1}])
    assert list(plan.columns) == S.PLAN_COLUMNS and plan["clipping"].dtype == float
    assert S.make_plan([]).empty and list(S.make_plan([]).columns) == S.PLAN_COLUMNS


def test_base_config_carries_the_scale():
    config = TINY.base_config(model="nf_resnet_small")
    assert (config.dataset, config.epochs, config.eval_every, config.model) == ("synthetic", 2, 2,
                                                                                 "nf_resnet_small")
    assert config.model_kwargs == {"widths": [4, 8], "depths": [1, 1], "small_stem": False}
    assert TINY.num_stages == 2 and config.momentum == 0.8


def test_run_overrides_threshold_field_and_layers():
    arms = {"agc": {"model": "nf_resnet_small"},
            "norm": {"model": "nf_resnet_small", "threshold_field": "clip_norm"}}
    spec = {"variant": "norm", "layers": "", "batch_size": 32, "clipping": 0.5, "seed": 2}
    assert S.run_overrides(spec, arms) == {"model": "nf_resnet_small", "batch_size": 32, "seed": 2,
                                           "clip_norm": 0.5}
    o = S.run_overrides({**spec, "variant": "agc", "layers": "cls", "clipping": np.nan}, arms,
                        {"cls": {"clip_classifier": True}})
    assert o["clipping"] is None and o["clip_classifier"] is True and "threshold_field" not in o


def test_runs_dir_is_per_sweep_and_profile():
    assert S.runs_dir("x", "cpu").parts[-3:] == ("runs", "x", "cpu")
    assert ".scratch" in S.runs_dir("x", "smoke").parts


def test_workers_start_the_longest_runs_first():
    base = S.Scale(dataset="synthetic", widths=(4, 8, 16), depths=(1, 1, 1), epochs=2,
                   warmup_epochs=0.5, batch_sizes=(2, 512), seeds=(0,), train_subset=1000)
    cfgs = [base.base_config(batch_size=512), base.base_config(batch_size=2),
            base.base_config(batch_size=512, epochs=8), base.base_config(batch_size=512)]
    # batch 2: 500 steps an epoch, most of them per-step overhead; 8 epochs: four times the images
    assert S.longest_first(cfgs) == [1, 2, 0, 3]
    assert S.expected_cost(base.base_config(batch_size=32, steps=10)) == 320 * (1 + 30 / 32)
