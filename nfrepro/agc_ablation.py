r"""The AGC ablations of NFNets §4.1 (Fig. 2a, Fig. 2b, which layers to clip), at small scale.

What the paper did (arXiv:2102.06171, §4.1, Fig. 2): NF-ResNet-50 and -200 against their
BatchNorm twins on ImageNet, 90 epochs, batch 256 to 4096 with the learning rate scaled as
:math:`\eta = 0.1 \cdot B / 256` (warmup, cosine), AGC with
:math:`\lambda \in \{0.01, 0.02, 0.04, 0.08, 0.16\}`; every point is the mean of the best 4 of 5
runs. What it claims:

* Fig. 2a: without clipping the NF nets fall behind BN, or become unstable, at large batch; with
  AGC they keep up with BN up to batch 4096;
* Fig. 2b: "smaller clipping thresholds are needed at larger batch";
* text: never clip the final linear layer; the first convolution can often be left unclipped;
  at batch 4096 every stage must be clipped.

Notebooks 02 and 03 share everything here: the scale of each profile (:data:`SCALES`), the
variants (literal tables), the planned runs (``plan_*``), running them in one resumable sweep
folder (:func:`run_plan`: a run that already finished is read back, so 03 reuses the runs of
02; several runs at a time on a multi-core CPU), and the numbers behind the verdicts. Figures live in :mod:`nfrepro.plotting`.

Departure, on purpose: with a few hundred steps, clipping the zero-initialised skip gains freezes
them (their norm is floored at ``eps``), so a small-lambda run trains as a shallow net
(``/work/shared/paper-facts.md``, small-scale notes). The engine cannot yet leave the skip gains
out of the clipped set, so the labelled variants ``"..., no skip gain"`` build the same NF net
without the SkipInit gain (``skip_gain_init=None``: each block is ``x + alpha * f(x)``) to show
what the frozen gains cost; both are reported.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from .run_config import TrainConfig
from .sweep import apply_overrides, tidy_rows
from .training import RunResult, train

# ----------------------------------------------------------------------------- the variants
BN, NF, AGC = "BN", "NF", "NF + AGC"
NF_NO_GAIN, AGC_NO_GAIN = "NF, no skip gain", "NF + AGC, no skip gain"
_NO_GAIN = {"model_kwargs.skip_gain_init": None}  # blocks are x + alpha f(x): nothing to freeze
# label -> TrainConfig overrides ("model_kwargs.<name>" sets one model argument)
VARIANTS: dict[str, dict[str, Any]] = {
    BN: {"model": "bn_resnet_small"},
    NF: {"model": "nf_resnet_small"},
    AGC: {"model": "nf_resnet_small"},
    NF_NO_GAIN: {"model": "nf_resnet_small", **_NO_GAIN},
    AGC_NO_GAIN: {"model": "nf_resnet_small", **_NO_GAIN},
}
UNCLIPPED = (BN, NF, NF_NO_GAIN)
CLIPPED = (AGC, AGC_NO_GAIN)  # swept over lambda

# §4.1: which parameters AGC clips. Label -> TrainConfig overrides (LAST_STAGE: the net's last).
PAPER_LAYERS = "all but the classifier (paper)"
LAST_STAGE = -1
LAYERS: dict[str, dict[str, Any]] = {
    PAPER_LAYERS: {},
    "also the classifier": {"clip_classifier": True},
    "first conv unclipped": {"clip_exclude_first_conv": True},
    "first stage unclipped": {"clip_exclude_stages": [0]},
    "last stage unclipped": {"clip_exclude_stages": [LAST_STAGE]},
}

TOLERANCE = 1.0  # points of top-1: smaller differences count as "no difference" in the verdicts
CHANCE_TOP1 = 10.0  # 10 classes (Fashion-MNIST, CIFAR-10): how a diverged run is scored
PLAN_COLUMNS = ["variant", "layers", "batch_size", "clipping", "seed"]


# ----------------------------------------------------------------------------- the scale
@dataclass(frozen=True)
class Scale:
    """How big a profile's runs are; every setting not named here is the paper's recipe
    (:class:`~nfrepro.run_config.TrainConfig` defaults: SGD-Nesterov, lr 0.1 B/256, warmup then
    cosine, weight decay 2e-5, label smoothing 0.1)."""
    dataset: str
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    epochs: int
    warmup_epochs: float
    batch_sizes: tuple[int, ...]
    clippings: tuple[float, ...]          # notebook 03: the paper's grid (part of it at smoke scale)
    extra_clippings: tuple[float, ...]    # notebook 03: beyond the paper's grid
    batch_clippings: tuple[float, ...]    # notebook 02: the lambdas searched per batch size
    seeds: tuple[int, ...]
    small_stem: bool = True               # False: the ImageNet stem (7x7/2 conv, 3x3/2 max-pool)
    train_subset: int | None = None
    test_subset: int | None = None
    crop_padding: int = 0
    flip: bool = False
    ema_decay: float | None = 0.999
    workers: int = 1                      # runs at a time (run_plan); 1 thread each when > 1
    threads: int | None = None            # torch threads of a single run (None: torch's default)
    extra: dict[str, Any] = field(default_factory=dict)  # any other TrainConfig field

    @property
    def num_stages(self) -> int:
        return len(self.widths)

    def base_config(self, **overrides: Any) -> TrainConfig:
        """The TrainConfig every run of this scale starts from (variants override the model)."""
        values = dict(dataset=self.dataset, train_subset=self.train_subset,
                      test_subset=self.test_subset, epochs=self.epochs,
                      warmup_epochs=self.warmup_epochs, crop_padding=self.crop_padding,
                      flip=self.flip, ema_decay=self.ema_decay,
                      model_kwargs={"widths": list(self.widths), "depths": list(self.depths),
                                    "small_stem": self.small_stem},
                      eval_every=self.epochs, progress=False)  # evaluate at the end only
        values.update(self.extra)
        values.update(overrides)
        return TrainConfig(**values)


PAPER_CLIPPINGS = (0.01, 0.02, 0.04, 0.08, 0.16)  # §4.1, also in results/paper_reference.csv

SCALES: dict[str, Scale] = {
    # toy: a synthetic data set, two batch sizes, the ends of the lambda grid, one seed, one
    # thread (for nets this small two threads cost more than they save, far more on a busy CPU)
    "smoke": Scale(dataset="synthetic", widths=(4, 8, 16), depths=(1, 1, 1), epochs=2,
                   warmup_epochs=0.5, batch_sizes=(32, 128), clippings=(0.01, 0.16),
                   extra_clippings=(0.64,), batch_clippings=(0.01, 0.16), seeds=(0,),
                   ema_decay=None, threads=1),
    # 2-core CPU, about 20 minutes per notebook: Fashion-MNIST, the small nets with the ImageNet
    # stem (28 px -> 7 px before the first block: 4x cheaper than the 3x3 stride-1 stem), 2 epochs,
    # two runs at a time. Batch 4096 would get 14 steps per epoch, so the range is the paper's
    # 16x span moved down one octave; notebook 02 searches every other lambda of the paper's grid.
    "cpu": Scale(dataset="fashion_mnist", widths=(16, 32, 64), depths=(2, 2, 2), small_stem=False,
                 epochs=2, warmup_epochs=0.5, batch_sizes=(128, 512, 2048),
                 clippings=PAPER_CLIPPINGS, extra_clippings=(0.32, 0.64),
                 batch_clippings=PAPER_CLIPPINGS[::2], seeds=(0, 1), workers=2),
    # one GPU: CIFAR-10, the small nets four times wider, the paper's five batch sizes and grid
    "gpu": Scale(dataset="cifar10", widths=(64, 128, 256), depths=(2, 2, 2), epochs=15,
                 warmup_epochs=1.0, batch_sizes=(256, 512, 1024, 2048, 4096),
                 clippings=PAPER_CLIPPINGS, extra_clippings=(0.32, 0.64),
                 batch_clippings=PAPER_CLIPPINGS, seeds=(0, 1), crop_padding=4, flip=True),
}


# ----------------------------------------------------------------------------- plans
def _plan(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(list(rows), columns=PLAN_COLUMNS)
    df["clipping"] = df["clipping"].astype(float)  # NaN: not clipped
    return df


def plan_batch_size(scale: Scale, variants: Iterable[str] = (*UNCLIPPED, *CLIPPED)) -> pd.DataFrame:
    """Fig. 2a: every variant at every batch size and seed; the clipped ones at each ``batch_clippings``."""
    return _plan({"variant": v, "layers": PAPER_LAYERS if v in CLIPPED else "", "batch_size": b,
                  "clipping": c, "seed": s}
                 for v in variants for b in scale.batch_sizes
                 for c in (scale.batch_clippings if v in CLIPPED else [np.nan]) for s in scale.seeds)


def plan_clipping(scale: Scale, variants: Iterable[str] = CLIPPED) -> pd.DataFrame:
    """Fig. 2b: the clipped variants over the paper's grid and its extension, every batch size."""
    return _plan({"variant": v, "layers": PAPER_LAYERS, "batch_size": b, "clipping": c, "seed": s}
                 for v in variants for b in scale.batch_sizes
                 for c in (*scale.clippings, *scale.extra_clippings) for s in scale.seeds)


def plan_layers(scale: Scale, clipping: Mapping[str, float], layers: Iterable[str] = LAYERS) -> pd.DataFrame:
    """§4.1 layer choice: at the largest batch size, each clipped variant at its ``clipping[variant]``."""
    return _plan({"variant": v, "layers": layer, "batch_size": max(scale.batch_sizes),
                  "clipping": lam, "seed": s}
                 for v, lam in clipping.items() for layer in layers for s in scale.seeds)


def run_overrides(spec: Mapping[str, Any], scale: Scale) -> dict[str, Any]:
    """The TrainConfig overrides of one planned run (a row of a plan)."""
    out = dict(VARIANTS[spec["variant"]])
    for key, value in LAYERS.get(spec["layers"], {}).items():
        out[key] = [scale.num_stages - 1 if s == LAST_STAGE else s for s in value] \
            if key == "clip_exclude_stages" else value
    clipping = spec["clipping"]
    out.update(batch_size=int(spec["batch_size"]), seed=int(spec["seed"]),
               clipping=None if clipping is None or np.isnan(clipping) else float(clipping))
    return out


# ----------------------------------------------------------------------------- running
def sweep_dir(profile: str) -> Path:
    """The run folders notebooks 02 and 03 share: ``runs/agc_sweep/<profile>`` (git-ignored);
    for "smoke", ``.scratch/smoke/runs/agc_sweep/smoke``, beside the other smoke outputs."""
    from .profiles import output_dirs

    return output_dirs(profile)[1].parent / "runs" / "agc_sweep" / profile


def _train_rows(values: dict[str, Any], threads: int | None) -> list[dict[str, Any]]:
    """Train one run in a worker process; its tidy rows (:func:`nfrepro.sweep.tidy_rows`)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    return tidy_rows(train(TrainConfig.from_dict(values)), {})


def run_plan(plan: pd.DataFrame, scale: Scale, runs_dir: str | Path, progress: bool = True,
             workers: int = 1, train_fn: Callable[[TrainConfig], RunResult] = train) -> pd.DataFrame:
    """Run (or read back) every planned run; the tidy table, one row per run and metric.

    Each run has its own folder in ``runs_dir``, named by :func:`nfrepro.training.run_name`
    (:func:`nfrepro.sweep.apply_overrides`), so plans that share runs share them on disk: a
    finished run (completed or diverged) is read back by :func:`~nfrepro.training.train`, a
    cut-off one resumes. ``workers > 1`` trains that many runs at a time in separate processes,
    one thread each: on a 2-core CPU two single-thread runs of these small nets finish sooner than
    one run on two threads. ``train_fn`` (tests) applies with ``workers=1`` only.
    """
    from tqdm.auto import tqdm

    runs_dir, base = Path(runs_dir), scale.base_config()
    specs = plan.drop_duplicates(PLAN_COLUMNS).to_dict("records")
    configs = [apply_overrides(base, run_overrides(spec, scale), runs_dir) for spec in specs]
    rows: list[list[dict[str, Any]]] = [[] for _ in specs]
    bar = tqdm(total=len(specs), desc="runs", disable=not progress, mininterval=30)  # a line / 30 s
    if workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # "spawn": a fresh interpreter per worker (forking a process that holds OpenMP threads can hang)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_train_rows, c.to_dict(), 1): i for i, c in enumerate(configs)}
            for future in as_completed(futures):
                rows[futures[future]] = future.result()
                bar.update()
    else:
        for i, config in enumerate(configs):
            rows[i] = tidy_rows(train_fn(config), {})
            bar.update()
    bar.close()
    frames = [pd.DataFrame(r)[["run", "status", "metric", "value"]].assign(**spec)
              for r, spec in zip(rows, specs)]
    tidy = pd.concat(frames, ignore_index=True)
    return tidy[[*PLAN_COLUMNS, "run", "status", "metric", "value"]]


# ----------------------------------------------------------------------------- analysis
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


def best_clipping(runs: pd.DataFrame, clippings: Iterable[float] | None = None) -> pd.DataFrame:
    """Best lambda per (clipped variant, batch size): the highest mean score over seeds.

    ``runs`` as :func:`per_run` returns (only runs with ``layers == PAPER_LAYERS`` count);
    ``clippings`` restricts the search (e.g. to the paper's grid). Ties go to the smaller lambda.
    Columns: variant, batch_size, clipping, mean_top1 (mean score), seeds, diverged (runs),
    at_top (the best is the largest lambda searched: the true best may lie above).
    """
    df = runs[runs["variant"].isin(CLIPPED) & (runs["layers"] == PAPER_LAYERS)]
    if clippings is not None:
        df = df[df["clipping"].round(6).isin([round(c, 6) for c in clippings])]
    grouped = (df.groupby(["variant", "batch_size", "clipping"])
               .agg(mean_top1=("score", "mean"), seeds=("seed", "nunique"),
                    diverged=("diverged", "sum")).reset_index())
    rows = []
    for (variant, batch), g in grouped.groupby(["variant", "batch_size"]):
        g = g.sort_values("clipping")
        best = g.loc[g["mean_top1"].idxmax()]  # idxmax keeps the first (smallest lambda) of ties
        rows.append({**best.to_dict(), "at_top": best["clipping"] == g["clipping"].max()})
    return pd.DataFrame(rows, columns=["variant", "batch_size", "clipping", "mean_top1", "seeds",
                                       "diverged", "at_top"])


def fig2a_points(runs: pd.DataFrame, clippings: Iterable[float] | None = None) -> pd.DataFrame:
    """The runs of Fig. 2a: the unclipped variants, and each clipped one at its best lambda per
    batch size (:func:`best_clipping` over ``clippings``). One row per run, ``line`` = variant."""
    best = best_clipping(runs, clippings)[["variant", "batch_size", "clipping"]]
    plain = runs[runs["variant"].isin(UNCLIPPED)]
    clipped = runs[runs["layers"] == PAPER_LAYERS].merge(best, on=["variant", "batch_size",
                                                                   "clipping"])
    out = pd.concat([plain, clipped], ignore_index=True)
    return out.assign(line=out["variant"]).sort_values(["line", "batch_size", "seed"],
                                                      ignore_index=True)


def _mean_score(points: pd.DataFrame, line: str, batch: int) -> float:
    sel = points[(points["line"] == line) & (points["batch_size"] == batch)]
    return float(sel["score"].mean()) if len(sel) else float("nan")


def verdict_fig2a(points: pd.DataFrame, agc: str = AGC, nf: str = NF,
                  tolerance: float = TOLERANCE) -> dict[str, Any]:
    """Fig. 2a's claim at the largest batch size, from :func:`fig2a_points`.

    Part 1 (the problem): NF without clipping falls behind BN by at least ``tolerance`` points
    (a diverged run scores chance). Part 2 (the fix): AGC gains at least ``tolerance`` over NF and
    ends within ``tolerance`` of BN. Both: "reproduced"; one, or AGC helping without catching BN:
    "partly"; neither: "not reproduced".
    """
    big, small = int(points["batch_size"].max()), int(points["batch_size"].min())
    bn, nf_, agc_ = (_mean_score(points, x, big) for x in (BN, nf, agc))
    numbers = {"batch_size": big, "BN": bn, nf: nf_, agc: agc_,
               "BN - NF (largest batch)": bn - nf_, "BN - NF (smallest batch)":
               _mean_score(points, BN, small) - _mean_score(points, nf, small),
               "AGC - NF": agc_ - nf_, "BN - AGC": bn - agc_}
    problem = bn - nf_ >= tolerance
    helps, catches_up = agc_ - nf_ >= tolerance, bn - agc_ <= tolerance
    if problem and helps and catches_up:
        verdict = "reproduced"
    elif problem or helps:
        verdict = "partly reproduced"
    else:
        verdict = "not reproduced"
    return {"verdict": verdict, "problem": problem, "agc_helps": helps,
            "agc_catches_up": catches_up, **numbers}


def verdict_fig2b(best: pd.DataFrame, variant: str = AGC) -> dict[str, Any]:
    """Fig. 2b's claim (the best lambda falls as the batch grows), from :func:`best_clipping`.

    "reproduced": the best lambda never rises from one batch size to the next and ends lower
    than it starts; "partly reproduced": it ends lower but rises somewhere; "not reproduced":
    it ends at or above where it starts. ``censored`` counts batch sizes whose best lambda is the
    top of the grid searched (the true best may be larger).
    """
    b = best[best["variant"] == variant].sort_values("batch_size")
    lam = b["clipping"].to_numpy()
    never_rises = bool(np.all(np.diff(lam) <= 0))
    falls = bool(len(lam) > 1 and lam[-1] < lam[0])
    verdict = ("reproduced" if falls and never_rises else
               "partly reproduced" if falls else "not reproduced")
    return {"verdict": verdict, "variant": variant, "best_clipping": dict(zip(b["batch_size"], lam)),
            "falls": falls, "never_rises": never_rises, "censored": int(b["at_top"].sum())}


def layer_effects(runs: pd.DataFrame, tolerance: float = TOLERANCE) -> pd.DataFrame:
    """§4.1 layer choice: each layer setting against the paper's (all but the classifier).

    One row per (variant, layers): mean score, its difference to the paper's setting, diverged
    runs, and ``effect``: "hurts" / "helps" (by at least ``tolerance``) or "no difference".
    """
    m = (runs.groupby(["variant", "layers"])
         .agg(mean_top1=("score", "mean"), seeds=("seed", "nunique"), diverged=("diverged", "sum"),
              clipping=("clipping", "first")).reset_index())
    ref = m[m["layers"] == PAPER_LAYERS].set_index("variant")["mean_top1"]
    m["vs_paper_setting"] = m["mean_top1"] - m["variant"].map(ref)
    m["effect"] = np.select([m["vs_paper_setting"] <= -tolerance, m["vs_paper_setting"] >= tolerance],
                            ["hurts", "helps"], "no difference")
    m.loc[m["layers"] == PAPER_LAYERS, "effect"] = "(reference)"
    order = {k: i for i, k in enumerate(LAYERS)}
    return m.sort_values(["variant", "layers"], key=lambda s: s.map(order) if s.name == "layers"
                         else s, ignore_index=True)


# claim -> (layer setting, what the paper's text expects of it)
LAYER_CLAIMS = {
    "never clip the final linear layer": ("also the classifier", "hurts"),
    "the first conv can be left unclipped": ("first conv unclipped", "no difference"),
    "every stage must be clipped (first)": ("first stage unclipped", "hurts"),
    "every stage must be clipped (last)": ("last stage unclipped", "hurts"),
}


def verdict_layers(effects: pd.DataFrame, variant: str = AGC) -> dict[str, Any]:
    """Which of §4.1's layer claims hold here for ``variant`` (see :data:`LAYER_CLAIMS`).

    A claim expecting "no difference" also holds when leaving the layer out helps. All hold:
    "reproduced"; some: "partly reproduced"; none: "not reproduced".
    """
    e = effects[effects["variant"] == variant].set_index("layers")["effect"]
    holds = {}
    for claim, (layers, expected) in LAYER_CLAIMS.items():
        if layers in e.index:
            found = e[layers]
            holds[claim] = found == expected or (expected == "no difference" and found == "helps")
    n = sum(holds.values())
    verdict = ("reproduced" if holds and n == len(holds) else
               "partly reproduced" if n else "not reproduced")
    return {"verdict": verdict, "variant": variant, "holds": holds}



def skip_gains(runs: pd.DataFrame, runs_dir: str | Path) -> pd.DataFrame:
    """The learned SkipInit gains of finished NF runs, read from their last checkpoints.

    One row per (run, block): the plan columns, ``block`` (its index in ``model.blocks``) and
    ``skip_gain``. With AGC as published the gains start at 0 and are clipped against
    ``max(|g|, eps)``, so over a short run they barely move (module docstring).
    """
    from .checkpoint import load_checkpoint

    rows = []
    nf = runs[runs["variant"].isin([NF, AGC]) & ~runs["diverged"]]
    for r in nf.to_dict("records"):
        path = Path(runs_dir) / r["run"] / "checkpoint.pt"
        if not path.exists():
            continue
        state = load_checkpoint(path, required=("model",))["model"]
        gains = [(k, float(v)) for k, v in state.items() if k.endswith("skip_gain")]
        rows += [{**{c: r[c] for c in PLAN_COLUMNS}, "block": int(k.split(".")[1]), "skip_gain": g}
                 for k, g in gains]
    return pd.DataFrame(rows, columns=[*PLAN_COLUMNS, "block", "skip_gain"])


def describe_fig2a(v: Mapping[str, Any], agc: str = AGC, nf: str = NF) -> str:
    """One paragraph, in words, of :func:`verdict_fig2a`'s numbers (for a Markdown cell)."""
    return (f"At batch {v['batch_size']}, BN reached {v['BN']:.1f}% and {nf} without clipping "
            f"{v[nf]:.1f}% (BN ahead by {v['BN - NF (largest batch)']:.1f} points; at the smallest "
            f"batch by {v['BN - NF (smallest batch)']:.1f}). {agc} at its best λ reached "
            f"{v[agc]:.1f}%: {v['AGC - NF']:+.1f} points over {nf}, {v['BN - AGC']:.1f} behind BN. "
            f"NF falls behind BN at the largest batch: {'yes' if v['problem'] else 'no'}; AGC gains "
            f"≥ {TOLERANCE:g} point: {'yes' if v['agc_helps'] else 'no'}; AGC within {TOLERANCE:g} "
            f"point of BN: {'yes' if v['agc_catches_up'] else 'no'}. Verdict: **{v['verdict']}**.")


def describe_fig2b(v: Mapping[str, Any]) -> str:
    """One sentence of :func:`verdict_fig2b`'s finding (for a Markdown cell)."""
    path = ", ".join(f"{b}: {lam:g}" for b, lam in v["best_clipping"].items())
    note = (f" At {v['censored']} batch size(s) the best λ is the largest one tried, so the true "
            f"best may lie higher." if v["censored"] else "")
    return (f"{v['variant']}: best λ by batch size {path}. It falls with the batch: "
            f"{'yes' if v['falls'] else 'no'}; never rises: {'yes' if v['never_rises'] else 'no'}."
            f"{note} Verdict: **{v['verdict']}**.")


def missing_runs(plan: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """The planned runs that :func:`per_run` does not hold as completed or diverged (empty: none)."""
    def keys(df: pd.DataFrame) -> pd.Series:
        d = df[PLAN_COLUMNS].fillna({"clipping": -1.0, "layers": ""})
        return d.astype(str).agg("|".join, axis=1)

    done = runs[runs["status"].isin(["completed", "diverged"])]
    return plan[~keys(plan).isin(set(keys(done)))].reset_index(drop=True)


def line_summary(points: pd.DataFrame) -> pd.DataFrame:
    """Per line and batch size: lambda, mean / min / max top-1 over completed seeds, diverged runs."""
    return (points.groupby(["line", "batch_size"], sort=False)
            .agg(clipping=("clipping", "first"), mean_top1=("top1", "mean"), min_top1=("top1", "min"),
                 max_top1=("top1", "max"), seeds=("seed", "nunique"), diverged=("diverged", "sum"))
            .reset_index().sort_values(["line", "batch_size"], ignore_index=True))


# the paper's side of the comparison (§4.1, Fig. 2; App. A), quoted, never measured
PAPER_SETUP = {
    "data set": "ImageNet (1.28M training images)",
    "networks": "NF-ResNet-50 / -200 and their BatchNorm twins",
    "training": "90 epochs, lr 0.1 B/256 with linear warmup, then cosine decay",
    "batch sizes": "256, 512, 1024, 2048, 4096",
    "clipping λ": "0.01, 0.02, 0.04, 0.08, 0.16",
    "runs per point": "5 seeds, mean of the best 4",
    "skip gains": "SkipInit gains (init 0), clipped like every other parameter",
}


def _join(values: Iterable[float]) -> str:
    return ", ".join(f"{v:g}" for v in values)


def departures(scale: Scale) -> pd.DataFrame:
    """The paper's setup (:data:`PAPER_SETUP`) beside this profile's, row by row."""
    data = "Fashion-MNIST (60k, 28 px)" if scale.dataset == "fashion_mnist" else \
        "CIFAR-10 (50k, 32 px)" if scale.dataset == "cifar10" else f"{scale.dataset} (toy)"
    if scale.train_subset:
        data += f", first {scale.train_subset} training images"
    stem = "3x3 stride-1 stem" if scale.small_stem else "ImageNet stem (7x7/2 conv, 3x3/2 max-pool)"
    aug = "crop + flip" if scale.crop_padding or scale.flip else "no augmentation"
    here = {
        "data set": data,
        "networks": f"small NF / BN ResNets: widths {scale.widths}, blocks per stage "
                    f"{scale.depths}, basic blocks, {stem}",
        "training": f"{scale.epochs} epochs, lr 0.1 B/256 with linear warmup "
                    f"({scale.warmup_epochs:g} epoch), then cosine decay; {aug}",
        "batch sizes": ", ".join(map(str, scale.batch_sizes)),
        "clipping λ": f"notebook 02: {_join(scale.batch_clippings)}; notebook 03: "
                      f"{_join(scale.clippings)}" + (f", and beyond: {_join(scale.extra_clippings)}"
                                                     if scale.extra_clippings else ""),
        "runs per point": f"{len(scale.seeds)} seed(s), mean of all (a diverged run scores "
                          f"{CHANCE_TOP1:g}%)",
        "skip gains": "as the paper, and a labelled variant without them ('no skip gain')",
    }
    return pd.DataFrame({"paper (§4.1)": PAPER_SETUP, "here": here})
