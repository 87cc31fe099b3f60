"""Every figure of the project, drawn from DataFrames (or the CSVs in ``results/``) only.

This module imports no model, data or training code: a figure can always be redrawn from the
saved tables without recomputing anything. Functions return the ``matplotlib`` figure and never
call ``show()``, so they work under the non-interactive Agg backend; notebooks save them with
``nfrepro.engine.records.save_figure(fig, figures_dir / "<paper figure>.png")``, which stores the
commit in the PNG.

One module per family of figures: :mod:`~nfrepro.analysis.plotting.spp` (signal propagation),
:mod:`~nfrepro.analysis.plotting.speed` (speed against accuracy, step costs),
:mod:`~nfrepro.analysis.plotting.agc` (the AGC ablations and clipping over training),
:mod:`~nfrepro.analysis.plotting.batchnorm` (notebook 06),
:mod:`~nfrepro.analysis.plotting.augmentation` (notebooks 08 and 09), with the shared "diverged" strip in
:mod:`~nfrepro.analysis.plotting.style`. Every figure function is re-exported here, so notebooks
write ``from nfrepro.analysis import plotting`` and ``plotting.plot_spp(...)``.
"""
from nfrepro.analysis.plotting.agc import (
    plot_agc_batch_size,
    plot_agc_layers,
    plot_clip_fraction,
    plot_clipping_census,
    plot_clipping_threshold,
    plot_first_steps,
    plot_lambda_theory,
    plot_training_length,
)
from nfrepro.analysis.plotting.augmentation import (
    plot_augmentation_top1,
    plot_augmented_examples,
    plot_curves,
    plot_ratio_trace,
    plot_transfer,
)
from nfrepro.analysis.plotting.batchnorm import plot_batch_dependence, plot_batch_mates, plot_difference
from nfrepro.analysis.plotting.speed import plot_relative_cost, plot_speed_accuracy
from nfrepro.analysis.plotting.spp import LOG_FLOOR, SPP_PANELS, plot_spp, plot_spp_grid, spp_frames
from nfrepro.analysis.plotting.style import DIVERGED_BAND

__all__ = ["DIVERGED_BAND", "LOG_FLOOR", "SPP_PANELS", "plot_agc_batch_size", "plot_agc_layers",
           "plot_augmentation_top1", "plot_augmented_examples", "plot_curves", "plot_ratio_trace",
           "plot_transfer", "plot_batch_dependence", "plot_batch_mates", "plot_clip_fraction",
           "plot_clipping_census", "plot_clipping_threshold", "plot_difference", "plot_first_steps",
           "plot_lambda_theory", "plot_relative_cost", "plot_training_length",
           "plot_speed_accuracy", "plot_spp", "plot_spp_grid", "spp_frames"]
