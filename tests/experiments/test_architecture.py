"""Notebook 04 (``nfrepro.experiments.architecture``): Table 2 steps, sizes, the step-by-step shapes."""
import pytest
import torch

from nfrepro.experiments import architecture
from nfrepro.models import create_model

TINY = {"depths": (1, 1, 1, 1), "channels": (32, 64, 96, 96), "group_size": 16}


def test_table2_steps_and_complexity():
    sizes = architecture.table2_complexity().pivot_table(index="label", columns="metric", values="value")
    f0 = sizes.loc["NFNet-F0 (+ second conv)"]
    assert f0["params"] == 71_489_284  # = NFNet-F0, Table 3's 71.49M
    base = sizes.loc["NFNet-F0 (baseline SE-ResNeXt-D NF)"]
    assert base["macs"] < sizes.loc["NFNet-F0 (+ modified width)", "macs"] < f0["macs"]
    df = architecture.complexity_table(["F0"])
    assert df.set_index("metric")["value"]["macs"] == pytest.approx(12.38e9, rel=1e-3)


def test_module_shapes_lists_children_in_call_order():
    stem = create_model("nfnet_f0", **TINY).stem
    df = architecture.module_shapes(stem, torch.randn(1, 3, 32, 32))
    assert df["module"].tolist() == ["conv0", "act0", "conv1", "act1", "conv2", "act2", "conv3"]
    assert df["output_shape"].iloc[-1] == (1, 16, 8, 8)


def test_scaling_rule_and_recipe_tables_read_the_code_and_the_paper():
    scaling = architecture.scaling_table()
    mult = scaling[scaling["quantity"] == "depth_multiplier"].set_index("variant")["ours"]
    assert mult.tolist() == [1, 2, 3, 4, 5, 6, 7, 8]  # Fn: (n + 1) x F0's depths
    assert (scaling["agree"].dropna()).all() and scaling["agree"].notna().sum() == 72
    recipe = architecture.recipe_table().set_index("setting")
    smoothing = recipe.loc["label smoothing"]
    assert smoothing["paper (App. A)"] == smoothing["nfrepro constant"] == 0.1
    assert recipe.loc["AGC lambda (batch 1024-4096)", "paper (App. A)"] == 0.01
    differs = recipe[recipe["paper (App. A)"] != recipe["TrainConfig default"]]
    assert (differs["why the default differs"] != "").all()  # every departure says why


def _rounds(**ms):
    import pandas as pd
    return pd.DataFrame([{"side": side, "round": r, "step_ms": v} for side, vs in ms.items()
                         for r, v in enumerate(vs)])


def test_table2_reading_says_only_what_the_numbers_show():
    import pandas as pd
    base, width, f0, default = architecture.TABLE2_STEPS
    sizes = pd.DataFrame({"params": [60.8, 62.8, 71.5, 68.6], "macs": [7.7, 9.6, 12.4, 10.0]},
                         index=[base, width, f0, default])
    # the modified widths run faster in every round (more counts, less time); the second conv is
    # slower in some rounds and faster in others
    times = _rounds(**{base: [500, 520, 480, 510, 505, 495], width: [440, 460, 430, 450, 445, 440],
                       f0: [420, 480, 470, 430, 500, 410], default: [700, 720, 690, 710, 705, 700]})
    texts = architecture.table2_reading(sizes, times)
    assert len(texts) == len(architecture.TABLE2_CHANGES) == 4
    widths, second = texts[0], texts[1]
    assert widths.startswith("**The modified widths**") and "+3.3% parameters" in widths
    assert ": faster." in widths and "which do not overlap" in widths and "does not measure why" in widths
    assert "no clear difference" in second and "which overlap" in second and "measure why" not in second
    assert "The paper's TPUv3 step: +10.5%" in widths  # 64.1 / 58.0 ms, Table 2


def test_table2_rounds_times_every_network_in_every_round(monkeypatch):
    small = {label: create_model("nfnet_f0", **TINY) for label in architecture.TABLE2_STEPS}  # 1000 classes
    monkeypatch.setattr(architecture, "table2_models", lambda **_: small)
    df = architecture.table2_rounds(batch_size=1, px=32, device="cpu", rounds=2, warmup=0)
    assert set(df["side"]) == set(architecture.TABLE2_STEPS) and len(df) == 4 * 2
    assert (df["step_ms"] > 0).all() and set(df["resolution"]) == {32}
