"""Smoke tests of the figures: they draw from DataFrames alone, under the Agg backend."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from nfrepro.analysis import plotting  # noqa: E402


def _spp_frame(growth: float, sq_mean: float = 0.0) -> pd.DataFrame:
    """A fake SPP: stem + two stages of three blocks."""
    stage = [-1, 0, 0, 0, 1, 1, 1]
    k = np.array([0, 1, 2, 3, 1, 2, 3])
    return pd.DataFrame({"index": range(7), "block": ["stem"] + [f"blocks.{i}" for i in range(6)],
                         "stage": stage, "block_in_stage": [-1, 0, 1, 2, 0, 1, 2],
                         "avg_sq_mean": sq_mean * k, "avg_var": growth ** np.arange(7),
                         "res_avg_var": [np.nan] + [1.0] * 6})


def _unlabelled_axes() -> list[str]:
    """Axes of the open figures that show data but lack an x or a y label (colour bars and empty
    axes aside): every figure a reader sees says what each axis is, with its unit."""
    missing = []
    for num in plt.get_fignums():
        for ax in plt.figure(num).axes:
            if not (ax.lines or ax.collections or ax.patches or ax.images) or ax.get_label() == "<colorbar>":
                continue
            shared_y = ax.get_ylabel() or any(o.get_ylabel() for o in ax.get_shared_y_axes().get_siblings(ax))
            row_label = len(ax.get_yticklabels()) and all(t.get_text() and not t.get_text()[0].isdigit()
                                                          for t in ax.get_yticklabels() if t.get_text())
            column = [o for o in ax.figure.axes if o.get_xlim() == ax.get_xlim() and o.get_xlabel()]
            if not ax.get_xlabel() and not column and not ax.figure.get_supxlabel():
                missing.append(f"figure {num}, axes '{ax.get_title()}': no x label")
            if not (shared_y or row_label or ax.figure.get_supylabel()):
                missing.append(f"figure {num}, axes '{ax.get_title()}': no y label")
    return missing


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    missing = _unlabelled_axes()
    plt.close("all")
    assert not missing, missing


def test_plot_spp_draws_three_panels_with_theory_and_log_axis(tmp_path):
    frames = {"NF + WS": _spp_frame(1.04), "unnormalised": _spp_frame(4.0, 3.0)}
    theory = pd.Series([1.0, 1.04, 1.08, 1.12, 1.04, 1.08, 1.12], name="expected_var")
    fig = plotting.plot_spp(frames, theory=theory, title="test")
    axes = fig.axes
    assert len(axes) == 3
    assert [a.get_title() for a in axes] == [t for _, t in plotting.SPP_PANELS]
    assert axes[1].get_yscale() == "log"          # 4^6 spans more than LOG_SPAN
    assert axes[2].get_yscale() == "linear"       # residual variance all 1
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "NF + WS" in labels and "unnormalised" in labels and any("theory" in s for s in labels)
    fig.savefig(tmp_path / "spp.png", dpi=50)
    assert (tmp_path / "spp.png").stat().st_size > 0


def test_plot_spp_accepts_long_table_and_given_axes():
    wide = pd.concat({"a": _spp_frame(1.1), "b": _spp_frame(1.2)}, names=["net"]).reset_index(level=0)
    long = wide.melt(id_vars=["net", "index", "block", "stage", "block_in_stage"],
                     value_vars=["avg_sq_mean", "avg_var", "res_avg_var"], var_name="metric")
    frames = plotting.spp_frames(long)
    assert set(frames) == {"a", "b"}
    pd.testing.assert_series_equal(frames["a"]["avg_var"].reset_index(drop=True),
                                   _spp_frame(1.1)["avg_var"], check_names=False)
    fig, axes = plt.subplots(1, 3)
    assert plotting.plot_spp(long, ax=axes, logy=False) is fig
    assert all(a.get_yscale() == "linear" for a in axes)
    with pytest.raises(ValueError, match="three panels"):
        plotting.plot_spp(long, ax=axes[:2])


def test_plot_spp_single_frame():
    fig = plotting.plot_spp(_spp_frame(1.0), logy=[False, True, False])
    assert [a.get_yscale() for a in fig.axes[:3]] == ["linear", "log", "linear"]


def test_plot_spp_grid_one_row_per_group():
    rows = {"normalised": {"NF": _spp_frame(1.04)}, "unnormalised": {"plain": _spp_frame(4.0)}}
    theory = {"normalised": pd.Series([1.0, 1.04, 1.08, 1.12, 1.04, 1.08, 1.12])}
    fig = plotting.plot_spp_grid(rows, theory=theory, title="grid")
    assert len(fig.axes) == 6
    assert fig.axes[0].get_ylabel() == "normalised" and fig.axes[3].get_ylabel() == "unnormalised"
    assert fig.axes[1].get_yscale() == "linear" and fig.axes[4].get_yscale() == "log"
    assert any("theory" in t.get_text() for t in fig.axes[2].get_legend().get_texts())


def _agc_runs() -> pd.DataFrame:
    """Fake AGC runs: two lines over three batch sizes and two lambdas, one diverged run."""
    rows = []
    for line, base in (("BN", 85.0), ("NF + AGC", 83.0)):
        for b in (128, 512, 2048):
            for lam in (0.01, 0.16):
                for seed in (0, 1):
                    diverged = line == "NF + AGC" and b == 2048 and lam == 0.16 and seed == 1
                    rows.append({"line": line, "variant": line, "layers": "all", "batch_size": b,
                                 "clipping": lam if line != "BN" else np.nan, "seed": seed,
                                 "top1": np.nan if diverged else base - np.log2(b) + seed,
                                 "diverged": diverged})
    return pd.DataFrame(rows)


def _crosses(ax) -> int:
    return sum(len(line.get_xdata()) for line in ax.lines if line.get_marker() == "x")


def test_plot_agc_batch_size_marks_diverged_runs(tmp_path):
    runs = _agc_runs()
    points = runs[runs["clipping"].isna() | (runs["clipping"] == 0.16)]
    fig = plotting.plot_agc_batch_size(points, title="Fig. 2a")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["128", "512", "2048"]
    assert _crosses(ax) == 1
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:2] == ["BN", "NF + AGC"] and "diverged run" in labels
    assert any(t.get_text() == "λ=0.16" for t in ax.texts)
    fig.savefig(tmp_path / "fig2a.png", dpi=40)


def test_plot_clipping_threshold_one_panel_per_variant_with_extension_and_best():
    runs = _agc_runs()
    runs = runs[runs["line"] == "NF + AGC"]
    runs = pd.concat([runs, runs.assign(variant="other")], ignore_index=True)
    best = pd.DataFrame({"variant": ["NF + AGC"], "batch_size": [128], "clipping": [0.01]})
    fig = plotting.plot_clipping_threshold(runs, best=best, grid_top=0.08)
    assert [a.get_title() for a in fig.axes] == ["NF + AGC", "other"]
    assert fig.axes[0].get_xscale() == "log"
    assert _crosses(fig.axes[0]) == 1 and _crosses(fig.axes[1]) == 1
    assert any("paper" in t.get_text() for t in fig.axes[0].texts)  # 0.16 is beyond grid_top


def test_plot_clipping_threshold_draws_a_reference_line_in_its_panel():
    runs = _agc_runs()
    runs = runs[runs["line"] == "NF + AGC"]
    runs = pd.concat([runs, runs.assign(variant="AdamW + AGC")], ignore_index=True)
    fig = plotting.plot_clipping_threshold(runs, reference={"AdamW + AGC": ("AdamW, unclipped", 61.5)})
    dashed = [ln for a in fig.axes for ln in a.get_lines() if ln.get_linestyle() == "--"]
    assert len(dashed) == 1 and dashed[0].axes is fig.axes[1] and dashed[0].get_ydata()[0] == 61.5
    assert "AdamW, unclipped" in [t.get_text() for t in fig.legends[0].get_texts()]


def test_plot_clipping_census_has_a_legend_one_global_line_and_the_ratio_panel():
    rows = [{"step": s, "kind": k, "rule": r, "fraction": 0.5 if r != "global" else float(s > 0)}
            for s in (0, 2, 4) for k in ("bias", "skip gain", "weight (conv / linear)")
            for r in ("global", "tensor", "unit")]
    ratio = pd.DataFrame({"step": [0, 2, 4], "global_ratio": [0.004, 0.05, 0.03]})
    fig = plotting.plot_clipping_census(pd.DataFrame(rows), ratio=ratio, clipping=0.01)
    assert len(fig.axes) == 4 and len(fig.axes[2].get_lines()) == 1  # global: all kinds clip together
    assert fig.axes[0].get_title().startswith("unit-wise") and len(fig.axes[1].get_lines()) == 3
    assert fig.axes[3].get_yscale() == "log"
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"bias", "skip gain", "every kind (all or none)", "λ = 0.01"} <= set(labels)


def test_plot_agc_layers_orders_rows():
    runs = _agc_runs()
    runs = runs[(runs["line"] == "NF + AGC") & (runs["batch_size"] == 2048)]
    runs = runs.assign(layers=np.where(runs["clipping"] == 0.01, "paper", "other"))
    fig = plotting.plot_agc_layers(runs, order=["paper", "other"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["paper", "other"]
    assert _crosses(ax) == 1


def test_plot_agc_batch_size_takes_line_styles():
    runs = _agc_runs()
    points = runs[runs["clipping"].isna() | (runs["clipping"] == 0.01)]
    fig = plotting.plot_agc_batch_size(points, styles={"BN": {"color": "red", "ls": "--"}})
    styled = [line for line in fig.axes[0].lines
              if line.get_color() == "red" and line.get_linestyle() == "--"]
    assert len(styled) == 1  # BN's mean line; the other lines keep the palette's solid lines


def test_diverged_runs_sit_in_a_labelled_strip_below_every_result():
    pts = pd.DataFrame({"line": ["BN"] * 3 + ["NF"] * 3, "batch_size": [128, 512, 2048] * 2,
                        "seed": 0, "top1": [80.0, 78.0, 66.4, 80.0, 77.0, np.nan],
                        "diverged": [False] * 5 + [True]})
    fig = plotting.plot_agc_batch_size(pts)
    ax = fig.axes[0]
    lo, hi = ax.get_ylim()
    strip_top = lo + plotting.DIVERGED_BAND * (hi - lo)
    assert strip_top < 66.4  # no result inside the strip: a cross there reads as no value
    assert all(t >= strip_top - 1e-9 for t in ax.get_yticks())  # no tick labels the strip
    assert any(t.get_text() == "diverged" for t in ax.texts)
    plt.close(fig)


def test_plot_clip_fraction_and_first_steps():
    trace = pd.DataFrame({"variant": "NF + AGC", "batch_size": [128] * 4 + [2048] * 4,
                          "seed": [0, 0, 1, 1] * 2, "clipping": 0.01,
                          "progress": [0.1, 0.9] * 4, "frac_clipped": [0.3, 0.1, 0.2, 0.1] * 2})
    fig = plotting.plot_clip_fraction(trace)
    assert fig.axes[0].get_ylabel().startswith("fraction of units clipped")
    assert len(fig.axes[0].get_lines()) == 2
    plt.close(fig)
    steps = pd.DataFrame({"layers": ["a"] * 3 + ["b"] * 3, "seed": 0, "step": [1, 2, 3] * 2,
                          "loss": [2.3, 2.0, 1.9, 2.3, 50.0, 1e6], "first_conv_ratio": 0.5,
                          "others_ratio": 0.1})
    fig = plotting.plot_first_steps(steps, 0.01)
    assert [a.get_yscale() for a in fig.axes] == ["log", "log"]
    assert all(a.get_xlabel() and a.get_ylabel() for a in fig.axes)
    plt.close(fig)
    arms = steps.rename(columns={"layers": "arm"}).assign(max_ratio=0.5)
    fig = plotting.plot_first_steps(arms, 0.01, group="arm", ratios={"max_ratio": "largest unit"})
    assert len(fig.axes[1].get_lines()) == 2 + 1  # one ratio line per arm and seed, and lambda
    plt.close(fig)


def test_fig2a_counts_diverged_runs_and_shows_longer_runs():
    runs = _agc_runs()
    points = runs[runs["clipping"].isna() | (runs["clipping"] == 0.16)]
    longer = points[points["batch_size"] == 2048].assign(epochs=8, top1=lambda d: d["top1"] + 5)
    fig = plotting.plot_agc_batch_size(points, diverged_counts=True, longer=longer)
    ax = fig.axes[0]
    counts = [t.get_text() for t in ax.texts if "diverged" in t.get_text() and "/" in t.get_text()]
    assert counts == ["1/2 diverged"]
    assert any(t.get_text() == "8 ep" for t in ax.texts)
    assert "trained longer (mean; epochs beside)" in [t.get_text() for t in ax.get_legend().get_texts()]
    plt.close(fig)


def test_fig2b_says_which_runs_its_lines_average_and_takes_another_x():
    runs = _agc_runs()
    runs = runs[runs["line"] == "NF + AGC"].assign(step_bound=lambda d: d["clipping"] * d["batch_size"] / 256)
    fig = plotting.plot_clipping_threshold(runs, diverged_counts=True)
    assert any(t.get_text() == "1/2" for t in fig.axes[0].texts)
    assert any("trained" in t.get_text() for t in fig.legends[0].get_texts())
    plt.close(fig)
    fig = plotting.plot_clipping_threshold(runs, x="step_bound", xlabel="ηλ")
    assert fig.axes[0].get_xlabel() == "ηλ" and 0.16 * 2048 / 256 in fig.axes[0].get_xticks()
    plt.close(fig)


def test_plot_training_length_and_lambda_theory():
    gaps = pd.DataFrame({"series": ["NF + AGC - BN"] * 3 + ["NF - BN"] * 3,
                         "batch_size": [512] * 3 + [128] * 3,
                         "steps": [29, 58, 232] * 2, "estimate": [-30, -20, -2, -5, -3, -1],
                         "ci_low": [-32, -22, -4, -6, -4, -2], "ci_high": [-28, -18, 0, -4, -2, 0],
                         "diverged": ["0/3 vs 0/3"] * 5 + ["1/3 vs 0/3"]})
    fig = plotting.plot_training_length(gaps)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and [t.get_text() for t in ax.get_xticklabels()] == ["29", "58", "232"]
    assert any("diverged 1/3 vs 0/3" in t.get_text() for t in ax.texts)
    plt.close(fig)
    table = pd.DataFrame({"variant": "v", "batch_size": [32, 32, 512, 512],
                          "clipping": [0.04, 0.16, 0.01, 0.04],
                          "mean_top1": [80, 85, 84, 70], "best": [False, True, True, False]})
    table["step_bound"] = 0.4 * table["batch_size"] / 256 * table["clipping"]
    best = pd.DataFrame({"variant": "v", "seed": [0, 1, 0, 1], "batch_size": [32, 32, 512, 512],
                         "best": [0.16, 0.16, 0.01, 0.02]})
    fig = plotting.plot_lambda_theory(table, best, pd.DataFrame({"variant": ["v"], "slope": [-0.9]}))
    assert len(fig.axes) == 2 and fig.axes[0].get_xscale() == "log"
    labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert "theory: slope -1" in labels and any("-0.90" in t for t in labels)
    plt.close(fig)


def _fig1_points() -> pd.DataFrame:
    """Paper-like Fig. 1 points with two near-coincident labels (F3 / BN-F3) and a SAM point."""
    rows = [("NFNet", "NFNet-F0", 73.3, 83.6, 0, False), ("NFNet", "NFNet-F3", 532.2, 85.7, 3, False),
            ("NFNet", "NFNet-F6", 2774.1, 86.5, 6, True),
            ("NFNet -NF +BN", "NFNet-F3 -NF +BN", 540.0, 85.6, 3, False),
            ("EfficientNet", "EffNet-B0", 51.1, 77.1, 0, False),
            ("EfficientNet", "EffNet-B3", 129.5, 81.6, 1, False),
            ("EfficientNet", "EffNet-B7", 1397.0, 84.7, 5, False)]
    df = pd.DataFrame(rows, columns=["family", "label", "latency_ms", "top1", "rank", "sam"])
    return pd.concat([df.assign(panel="paper", source="paper"),
                      df.assign(panel="measured", source="measured", latency_ms=df["latency_ms"] * 3)],
                     ignore_index=True)


def test_plot_speed_accuracy_labels_do_not_overlap_and_sam_is_marked():
    fig = plotting.plot_speed_accuracy(_fig1_points())
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        labels = [t for t in ax.texts if t.get_text()]
        assert {t.get_text() for t in labels} >= {"F3", "BN-F3", "F6 (SAM)", "B0", "B7"}
        boxes = [t.get_window_extent(renderer) for t in labels]
        assert not any(boxes[i].overlaps(boxes[j]) for i in range(len(boxes)) for j in range(i))
        assert any("SAM" in t for t in ax.get_legend_handles_labels()[1])
        assert all(a.get_xlabel().startswith("training step latency (ms") for a in fig.axes)


def test_plot_speed_accuracy_breaks_lines_at_missing_models_and_styles_the_source():
    fig = plotting.plot_speed_accuracy(_fig1_points())
    for ax, hollow in zip(fig.axes, (True, False), strict=False):
        eff = [ln for ln in ax.get_lines() if ln.get_color() == ax.get_lines()[-1].get_color()
               and len(ln.get_xdata()) and 51.0 <= min(ln.get_xdata()) / (1 if hollow else 3) <= 52.0]
        # B0 -> B3 are consecutive ranks (B1, B2 are not in Table 3): one line; B3 -> B7 skip
        # B4..B6 (ranks 2..4): a separate one-point line, never a B3 - B7 segment
        xs = sorted(tuple(ln.get_xdata()) for ln in ax.get_lines() if ln.get_linestyle() != "None")
        assert not any(len(x) == 3 for x in xs), "a line bridged the missing B4..B6"
        assert eff and (eff[0].get_markerfacecolor() == "white") == hollow
        legend = ax.get_legend_handles_labels()[1]
        assert any(("paper (T3/T6)" if hollow else "measured here") in lab for lab in legend)


def test_plot_spp_log_panel_stops_at_the_floor_and_marks_values_below():
    tiny = _spp_frame(1.04).assign(avg_sq_mean=[1e-14] * 7)      # float-rounding "means" of a BN net
    big = _spp_frame(1.04, sq_mean=5.0)
    fig = plotting.plot_spp({"tiny": tiny, "big": big})
    a = fig.axes[0]
    assert a.get_yscale() == "log" and a.get_ylim()[0] == pytest.approx(plotting.LOG_FLOOR)
    floor_marks = [ln for ln in a.get_lines() if ln.get_marker() == "v"]
    assert floor_marks and np.allclose(floor_marks[0].get_ydata(), plotting.LOG_FLOOR)
    assert any("below" in t.get_text() for t in a.texts)


def test_plot_spp_draws_a_predicted_frame_on_both_variance_panels_with_its_label():
    pred = pd.DataFrame({"index": range(7), "predicted_var": np.linspace(1, 0.5, 7),
                         "predicted_res_var": [np.nan] + [0.9] * 6})
    fig = plotting.plot_spp({"net": _spp_frame(1.0)}, theory=pred, theory_label="ResNet-D prediction")
    dashed = [[ln for ln in a.get_lines() if ln.get_linestyle() == "--"] for a in fig.axes]
    assert [len(d) for d in dashed] == [0, 1, 1]
    assert np.allclose(dashed[2][0].get_ydata(), 0.9)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "ResNet-D prediction" in labels and not any("alpha" in s for s in labels)


def _spans(bbox) -> tuple[float, float]:
    return bbox.y0, bbox.y1


def test_spp_axis_labels_stay_beside_their_own_panel():
    """A rotated y label taller than its panel runs into the row above or below (the 600-layer grid
    is three rows of 3.9 inches; NFNet-F0's single row is 4.6 inches): every label fits its panel."""
    names = ("Fig. 1: BatchNorm", "Fig. 2: Normalizer-Free", "Unnormalised")
    rows = {name: {"net": _spp_frame(1.04, sq_mean=0.1)} for name in names}
    for fig in (plotting.plot_spp_grid(rows, title="grid"), plotting.plot_spp({"net": _spp_frame(1.04)})):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            low, high = _spans(ax.get_window_extent(renderer))
            label_low, label_high = _spans(ax.yaxis.label.get_window_extent(renderer))
            assert low - 1 <= label_low and label_high <= high + 1, (ax.get_ylabel(), ax.get_title())


def test_batch_mates_x_label_fits_the_figure():
    effects = pd.DataFrame({"family": ["BN", "NF"] * 2, "mode": ["train"] * 2 + ["eval"] * 2,
                            "relative_change": [0.5, 0.0, 0.0, 0.0]})
    fig = plotting.plot_batch_mates(effects)
    fig.canvas.draw()
    label = fig.axes[0].xaxis.label.get_window_extent(fig.canvas.get_renderer())
    page = fig.bbox
    assert page.x0 <= label.x0 and label.x1 <= page.x1, "the x label is cut off at the figure's edge"


def test_relative_cost_draws_a_measured_range_and_keeps_the_legend_off_the_bars():
    costs = pd.DataFrame({"step": ["base", "new"] * 2, "quantity": ["params"] * 2 + ["step, measured"] * 2,
                          "value": [1.0, 1.2, 1.0, 0.9], "low": [np.nan, np.nan, 0.95, 0.85],
                          "high": [np.nan, np.nan, 1.05, 0.95]})
    fig = plotting.plot_relative_cost(costs, baseline="base")
    ranges = [ln for ln in fig.axes[0].get_lines()
              if len(ln.get_ydata()) == 2 and np.isfinite(ln.get_ydata()).all()
              and ln.get_xdata()[0] == ln.get_xdata()[1]]  # vertical and drawn: not seaborn's NaN bars
    assert sorted(tuple(np.round(ln.get_ydata(), 3)) for ln in ranges) == [(0.85, 0.95), (0.95, 1.05)]
    assert fig.axes[0].get_legend() is None and len(fig.legends) == 1


def test_the_augmentation_and_transfer_figures_draw_from_tables():
    """Notebooks 08 and 09: top-1 per augmentation (diverged runs in the strip), the augmented
    images, the ratio trace, the curves, and top-1 against target size."""
    augs, nets = ["none", "all three"], ["NF", "BN"]
    runs = pd.DataFrame([{"batch_size": b, "net": n, "augmentation": a, "seed": s,
                          "top1": np.nan if (n, a, b) == ("NF", "all three", 512) else 80.0 + s,
                          "diverged": (n, a, b) == ("NF", "all three", 512)}
                         for b in (128, 512) for n in nets for a in augs for s in range(3)])
    fig = plotting.plot_augmentation_top1(runs, augs, nets)
    assert len(fig.axes) == 2
    images = {a: np.zeros((3, 8, 8), dtype=np.uint8) for a in augs}
    assert len(plotting.plot_augmented_examples(images).axes) == 6
    trace = pd.DataFrame([{"step": t, "augmentation": a, "seed": s, "max_ratio": 1.0 + t, "loss": 2.0,
                           "input_std": 1.0} for a in augs for s in range(2) for t in range(4)])
    assert plotting.plot_ratio_trace(trace, clipping=0.04).axes[0].get_yscale() == "log"
    curves = pd.DataFrame([{"net": n, "augmentation": a, "epoch": e, "test_top1": 70.0 + e}
                           for n in nets for a in augs for e in (10, 20)])
    assert len(plotting.plot_curves(curves, nets).axes) == 2
    summary = pd.DataFrame([{"arm": arm, "per_class": k, "family": f, "top1": 90.0, "ci_low": 85.0,
                             "ci_high": 120.0} for arm in ("fine-tune", "linear probe")
                            for k in (25, 100) for f in ("NF", "BN")])
    fig = plotting.plot_transfer(summary, ["fine-tune", "linear probe"], ["NF", "BN"])
    assert fig.axes[0].get_ylim()[1] < 110  # intervals drawn within 0-100
