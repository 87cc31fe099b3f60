"""Smoke tests of the figures: they draw from DataFrames alone, under the Agg backend."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from nfrepro import plotting  # noqa: E402


def _spp_frame(growth: float, sq_mean: float = 0.0) -> pd.DataFrame:
    """A fake SPP: stem + two stages of three blocks."""
    stage = [-1, 0, 0, 0, 1, 1, 1]
    k = np.array([0, 1, 2, 3, 1, 2, 3])
    return pd.DataFrame({"index": range(7), "block": ["stem"] + [f"blocks.{i}" for i in range(6)],
                         "stage": stage, "block_in_stage": [-1, 0, 1, 2, 0, 1, 2],
                         "avg_sq_mean": sq_mean * k, "avg_var": growth ** np.arange(7),
                         "res_avg_var": [np.nan] + [1.0] * 6})


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


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
