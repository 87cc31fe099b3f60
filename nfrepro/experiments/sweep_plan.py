"""The sweep layer of the training notebooks (02, 03, 06, 07): a scale, a plan, one resumable run folder.

A notebook's runs are a *plan*: a table with one row per run (:data:`PLAN_COLUMNS`: the arm
``variant``, the ``layers`` choice, ``batch_size``, the threshold ``clipping`` and ``seed``). A
:class:`Scale` says how big a profile's runs are (data, net widths and depths, epochs, seeds, how
many run at a time); every setting it does not name is the paper's recipe, the
:class:`~nfrepro.engine.config.TrainConfig` defaults. :func:`run_plan` trains (or reads back) every
planned run in its own folder, so plans that share runs share them on disk, and returns one tidy
table, one row per run and metric; :func:`per_run` reads it back as one row per run. An
experiment module keeps only its own arms (label -> TrainConfig overrides), its sizes and its
claims.

An arm may name ``threshold_field``: the TrainConfig field the plan's ``clipping`` column sets
(default ``"clipping"``, AGC's lambda; ordinary norm clipping sets ``"clip_norm"``).
"""
from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd
import torch

from nfrepro.engine.config import TrainConfig
from nfrepro.engine.profiles import output_dirs
from nfrepro.engine.progress import progress_bar
from nfrepro.engine.sweep import apply_overrides, tidy_rows
from nfrepro.engine.training import RunResult, train

PLAN_COLUMNS = ["variant", "layers", "batch_size", "clipping", "seed"]
CHANCE_TOP1 = 10.0  # 10 classes (Fashion-MNIST, CIFAR-10): how a diverged run is scored
Arms = Mapping[str, Mapping[str, Any]]  # label -> TrainConfig overrides ("model_kwargs.<name>": one argument)


@dataclass(frozen=True)
class Scale:
    """How big a profile's runs are; every setting not named here is the paper's recipe
    (:class:`~nfrepro.engine.config.TrainConfig` defaults: SGD-Nesterov, lr 0.1 B/256, warmup then
    cosine, weight decay 2e-5, label smoothing 0.1)."""
    dataset: str
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    epochs: int
    warmup_epochs: float
    batch_sizes: tuple[int, ...]
    seeds: tuple[int, ...]
    small_stem: bool = True               # False: the ImageNet stem (7x7/2 conv, 3x3/2 max-pool)
    train_subset: int | None = None
    test_subset: int | None = None
    crop_padding: int = 0
    flip: bool = False
    ema_decay: float | None = 0.999
    log_every: int = 2                    # steps between rows of RUN/steps.csv (frac clipped over training)
    workers: int = 1                      # runs at a time (run_plan); 1 thread each when > 1
    threads: int | None = None            # torch threads of a single run (None: torch's default)
    extra: dict[str, Any] = field(default_factory=dict)  # any other TrainConfig field

    @property
    def num_stages(self) -> int:
        return len(self.widths)

    def base_config(self, **overrides: Any) -> TrainConfig:
        """The TrainConfig every run of this scale starts from (arms override the model)."""
        values = dict(dataset=self.dataset, train_subset=self.train_subset,
                      test_subset=self.test_subset, epochs=self.epochs,
                      warmup_epochs=self.warmup_epochs, crop_padding=self.crop_padding,
                      flip=self.flip, ema_decay=self.ema_decay,
                      model_kwargs={"widths": list(self.widths), "depths": list(self.depths),
                                    "small_stem": self.small_stem},
                      eval_every=self.epochs, progress=False,  # evaluate at the end only
                      log_every=self.log_every)
        values.update(self.extra)
        values.update(overrides)
        return TrainConfig(**values)


def make_plan(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """A plan from its rows (dicts with :data:`PLAN_COLUMNS`); ``clipping`` NaN: not clipped."""
    df = pd.DataFrame(list(rows), columns=PLAN_COLUMNS)
    df["clipping"] = df["clipping"].astype(float)
    return df


def runs_dir(name: str, profile: str) -> Path:
    """The run folders of the sweep ``name``: ``runs/<name>/<profile>`` beside the profile's results
    (git-ignored); for "smoke", under ``.scratch/smoke/``, beside the other smoke outputs."""
    return output_dirs(profile)[1].parent / "runs" / name / profile


def run_overrides(spec: Mapping[str, Any], arms: Arms,
                  layers: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The TrainConfig overrides of one planned run (a row of a plan): its arm's, then its
    ``layers`` choice's (``layers[spec["layers"]]``, none when absent), then the row's batch size,
    seed and threshold (into the arm's ``threshold_field``, default ``"clipping"``)."""
    out = dict(arms[spec["variant"]])
    threshold = out.pop("threshold_field", "clipping")
    out.update((layers or {}).get(spec["layers"], {}))
    clipping = spec["clipping"]
    out.update({"batch_size": int(spec["batch_size"]), "seed": int(spec["seed"]),
                threshold: None if clipping is None or np.isnan(clipping) else float(clipping)})
    return out


def _train_rows(values: dict[str, Any], threads: int | None) -> list[dict[str, Any]]:
    """Train one run in a worker process; its tidy rows (:func:`nfrepro.engine.sweep.tidy_rows`)."""
    if threads:
        torch.set_num_threads(threads)
    return tidy_rows(train(TrainConfig.from_dict(values)), {})


def run_plan(plan: pd.DataFrame, scale: Scale, runs_dir: str | Path, arms: Arms,
             layers: Mapping[str, Mapping[str, Any]] | None = None, progress: bool = True,
             workers: int = 1, train_fn: Callable[[TrainConfig], RunResult] = train) -> pd.DataFrame:
    """Run (or read back) every planned run; the tidy table, one row per run and metric.

    Each run has its own folder in ``runs_dir``, named by :func:`nfrepro.engine.training.run_name`
    (:func:`nfrepro.engine.sweep.apply_overrides`), so plans that share runs share them on disk: a
    finished run (completed or diverged) is read back by :func:`~nfrepro.engine.training.train`, a
    cut-off one resumes. ``workers > 1`` trains that many runs at a time in separate processes,
    one thread each: on a 2-core CPU two single-thread runs of these small nets finish sooner than
    one run on two threads. A script that calls this with ``workers > 1`` needs the usual
    ``if __name__ == "__main__":`` guard (the workers are spawned); notebooks do not.
    ``train_fn`` (tests) applies with ``workers=1`` only.
    """
    runs_dir, base = Path(runs_dir), scale.base_config()
    specs = plan.drop_duplicates(PLAN_COLUMNS).to_dict("records")
    configs = [apply_overrides(base, run_overrides(spec, arms, layers), runs_dir) for spec in specs]
    rows: list[list[dict[str, Any]]] = [[] for _ in specs]
    bar = progress_bar(total=len(specs), desc="runs", disable=not progress)
    if workers > 1:
        # "spawn": a fresh interpreter per worker (forking a process that holds OpenMP threads can hang)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            # longest first, so that no worker is left with one long run at the end (the table keeps
            # the plan's order; every run is seeded on its own, so the order changes no result)
            futures = {pool.submit(_train_rows, configs[i].to_dict(), 1): i for i in longest_first(configs)}
            for future in as_completed(futures):
                rows[futures[future]] = future.result()
                bar.update()
    else:
        for i, config in enumerate(configs):
            rows[i] = tidy_rows(train_fn(config), {})
            bar.update()
    bar.close()
    frames = [pd.DataFrame(r)[["run", "status", "metric", "value"]].assign(**spec)
              for r, spec in zip(rows, specs, strict=True)]
    tidy = pd.concat(frames, ignore_index=True)
    return tidy[[*PLAN_COLUMNS, "run", "status", "metric", "value"]]


def expected_cost(config: TrainConfig) -> float:
    """A run's relative cost, for ordering work: the images it trains on, each weighted by ``1 + 30 / B``
    (on a 2-core CPU the small nets' step costs about 0.27 ms per image plus 8 ms per step). A full
    data set counts as 60,000 images, ``per_class`` as that many per class."""
    b = config.batch_size
    size = config.train_subset or (config.per_class * len(config.classes or range(10)) if config.per_class
                                   else 60_000)
    images = config.steps * b if config.steps else size * config.epochs
    return images * (1.0 + 30.0 / b)


def longest_first(configs: list[TrainConfig]) -> list[int]:
    """The indices of ``configs`` by :func:`expected_cost`, largest first (ties in plan order)."""
    return sorted(range(len(configs)), key=lambda i: -expected_cost(configs[i]))


def training_seconds(tidy: pd.DataFrame, runs_dir: str | Path) -> float:
    """The wall time the runs of a tidy table trained for, in all, read from their run folders'
    records (the tidy table itself holds no timing, so that the same plan gives the same table)."""
    total = 0.0
    for run in tidy["run"].unique():
        record = Path(runs_dir) / run / "metrics.json"
        total += float(json.loads(record.read_text()).get("wall_time_s", 0.0)) if record.exists() else 0.0
    return total


def per_run(tidy: pd.DataFrame, metric: str = "final_test_top1") -> pd.DataFrame:
    """One row per run: plan columns, ``status``, ``diverged``, ``top1`` (NaN when diverged),
    ``steps`` and ``score`` (top-1, with a diverged run scored at chance: 100 / 10 classes)."""
    keys = [*PLAN_COLUMNS, "run", "status"]
    tidy = tidy.assign(layers=tidy["layers"].fillna(""))  # a CSV reads the empty label as NaN
    wide = tidy.pivot_table(index="run", columns="metric", values="value", aggfunc="first")
    out = tidy.drop_duplicates("run")[keys].reset_index(drop=True)
    wide = wide.reindex(out["run"]).reset_index(drop=True)
    out["diverged"] = wide["diverged"].astype(bool).to_numpy() | (out["status"] == "diverged")
    out["top1"] = wide[metric].where(~out["diverged"])
    out["steps"] = wide["steps"]
    out["score"] = out["top1"].fillna(CHANCE_TOP1)
    return out


def train_losses(tidy: pd.DataFrame) -> pd.Series:
    """Each run's final training loss (NaN when it diverged), indexed by run: ``train_loss``."""
    return per_run(tidy, "final_train_loss").set_index("run")["top1"].rename("train_loss")
