r"""Verdicts from intervals: a claim is reproduced only when the interval over seeds says so.

Small-scale runs are noisy, so every verdict of the notebooks follows one rule, stated here once.
For a claim about a difference :math:`d` (for example NF top-1 minus BN top-1, paired by seed), the
estimate is the mean of the per-seed differences and the interval is Student's t interval at 95%:

.. math::  \bar d \pm t_{0.975,\,n-1}\, s / \sqrt n .

* a claim "``d > margin``" is *reproduced* when the whole interval lies above ``margin``,
  *contradicted* when it lies below, and *not resolved* otherwise;
* a claim "``|d| <= tolerance``" (level, no difference) is *reproduced* when the whole interval lies
  within ``[-tolerance, tolerance]``, *contradicted* when it lies wholly outside, and *not resolved*
  otherwise.

One value gives no interval: its verdict is *not resolved*. A rate (divergence) gets Wilson's
score interval (:func:`rate_ci`).

Runs that diverge are their own outcome, so that one diverged seed cannot turn two settings into a
tie (its chance-level score would widen the interval until it holds 0). :func:`paired_claim_row`
compares accuracy over the seeds where *both* sides trained and counts the diverged runs apart
(column ``diverged``): where the two divergence rates' Wilson intervals do not overlap, divergence
decides (the side that diverges more is the worse); otherwise the t rule decides on the trained
pairs, except that a side which diverged more often is never called ahead of, level with or
keeping up with the other (that verdict becomes *not resolved*). A best value at the edge of the
grid it was searched on is "at least" / "at most" (:func:`grid_edge`); a trend over seeds is the
t interval of the per-seed fitted slopes (:func:`per_seed_slope`); where a curve with an interval
band crosses a level, :func:`crossing` reads it.

A verdict holds for the setting its evidence comes from, so every row carries it
(:data:`SETTING_COLUMNS`: data set, training images, epochs, optimizer steps, batch size, peak learning
rate, warmup steps, clipping, seeds; :func:`setting_of` reads them from the runs' configurations) and a
``reading``: one plain sentence saying what the numbers mean. :func:`table` refuses a row without them.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable

import numpy as np
import pandas as pd

# Two-sided 95% quantiles of Student's t, t_{0.975, df}, from the standard tables.
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
        10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110,
        18: 2.101, 19: 2.093, 20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}
Z975 = 1.959964
SETTING_COLUMNS = ["dataset", "train_images", "epochs", "steps", "batch_size", "peak_lr", "warmup_steps",
                   "clipping", "seeds"]
COLUMNS = ["claim", "estimate", "ci_low", "ci_high", "n", "verdict", "rule", *SETTING_COLUMNS, "reading",
           "paper"]  # paper: the paper's number for the claim, where it gives one (text, with its source)
TRAIN_IMAGES = {"fashion_mnist": 60_000, "cifar10": 50_000,  # full training sets
                "synthetic": 512}  # the default size of nfrepro.data.datasets.synthetic (smoke runs)
REPRODUCED, CONTRADICTED, NOT_RESOLVED = "reproduced", "contradicted", "not resolved"


def t975(df: int) -> float:
    """t_{0.975, df}; between table rows the next smaller df's (wider) quantile, Z beyond 120."""
    if df < 1:
        raise ValueError(f"an interval needs at least 2 values (df >= 1), got df={df}")
    return T975[max(k for k in T975 if k <= df)] if df <= 120 else Z975


def mean_ci(values: Iterable[float]) -> tuple[float, float, float, int]:
    """``(mean, low, high, n)``: the 95% t interval of the mean; a single value gives (v, -inf, inf, 1)."""
    v = np.asarray([x for x in values if x == x], dtype=float)  # NaN (a missing run) is left out
    n = len(v)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    if n == 1:
        return float(v[0]), -math.inf, math.inf, 1
    half = t975(n - 1) * float(v.std(ddof=1)) / math.sqrt(n)
    return float(v.mean()), float(v.mean() - half), float(v.mean() + half), n


def rate_ci(events: int, n: int) -> tuple[float, float, float]:
    """``(rate, low, high)``: Wilson's 95% score interval of ``events`` out of ``n``."""
    if n == 0:
        return math.nan, math.nan, math.nan
    p, z2 = events / n, Z975 ** 2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z975 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return p, max(0.0, centre - half), min(1.0, centre + half)


def greater(low: float, high: float, margin: float = 0.0) -> str:
    """Verdict on "the difference exceeds ``margin``"."""
    if low > margin:
        return REPRODUCED
    if high < margin:
        return CONTRADICTED
    return NOT_RESOLVED


def level(low: float, high: float, tolerance: float) -> str:
    """Verdict on "no difference larger than ``tolerance``"."""
    if -tolerance <= low and high <= tolerance:
        return REPRODUCED
    if low > tolerance or high < -tolerance:
        return CONTRADICTED
    return NOT_RESOLVED


def claim_row(claim: str, differences: Iterable[float], kind: str = "greater", margin: float = 0.0,
              tolerance: float = 1.0, setting: Setting | None = None, reading: str = "",
              paper: str = "") -> dict:
    """One row of a verdict table (:data:`COLUMNS`) for per-seed ``differences``, with the
    ``setting`` of the runs, a one-sentence ``reading`` and the ``paper``'s number where it gives one."""
    estimate, low, high, n = mean_ci(differences)
    if kind == "greater":
        verdict = greater(low, high, margin) if n > 1 else NOT_RESOLVED
        rule = f"95% t interval > {margin:g}"
    elif kind == "level":
        verdict, rule = (level(low, high, tolerance) if n > 1 else NOT_RESOLVED), \
            f"95% t interval within ±{tolerance:g}"
    else:
        raise ValueError(f"kind must be 'greater' or 'level', got {kind!r}")
    return {"claim": claim, "estimate": estimate, "ci_low": low, "ci_high": high, "n": n,
            "verdict": verdict, "rule": rule, **(setting.row() if setting else {}), "reading": reading,
            "paper": paper}


@dataclass(frozen=True)
class Setting:
    """The setting a verdict's evidence comes from. A field that differs between the compared runs
    holds the range ("128-2048"); ``clipping`` says what clips ("none", "AGC λ=0.01", "norm 1")."""
    dataset: str
    train_images: int | str
    epochs: float | str
    steps: int | str
    batch_size: int | str
    peak_lr: float | str
    warmup_steps: int | str
    clipping: str
    seeds: int

    def row(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """The setting in words, for a reading: "60,000 images, 232 steps at batch 2048"."""
        images = f"{self.train_images:,}" if isinstance(self.train_images, int) else self.train_images
        return f"{images} images, {self.steps} steps at batch {self.batch_size}"


def _span(values: Iterable[Any]) -> Any:
    """One value when all agree, else "low-high" (numbers) or "a | b" (words)."""
    distinct = sorted(set(values), key=lambda v: (isinstance(v, str), v))
    if len(distinct) == 1:
        return distinct[0]
    if all(isinstance(v, (int, float)) for v in distinct):
        return f"{distinct[0]:g}-{distinct[-1]:g}"
    return " | ".join(str(v) for v in distinct)


def _clipping(config: Any) -> str:
    if getattr(config, "clipping", None):
        layer_wise = getattr(config, "agc_granularity", "unit") == "tensor"
        return f"{'layer-wise AGC' if layer_wise else 'AGC'} λ={config.clipping:g}"
    if getattr(config, "clip_norm", None):
        return f"norm {config.clip_norm:g}"
    return "none"


def setting_of(configs: Iterable[Any], seeds: int, train_images: int | None = None) -> Setting:
    """The :class:`Setting` of the runs made from ``configs`` (:class:`~nfrepro.engine.config.TrainConfig`).

    Steps and warmup steps follow the engine: ``train_images // batch_size`` steps an epoch (the last
    partial batch is dropped), ``config.steps`` when given, warmup ``round(warmup_epochs * per_epoch)``;
    the peak learning rate is ``base_lr * batch_size / 256``. ``train_images`` overrides the size the
    data set name and ``train_subset`` imply (for data sets this table does not know)."""
    rows = []
    for c in configs:
        images = train_images or c.train_subset or TRAIN_IMAGES.get(c.dataset)
        if images is None:
            raise ValueError(f"setting_of: how many training images does {c.dataset!r} hold? "
                             "Pass train_images=N.")
        per_epoch = images // c.batch_size
        total = c.steps or c.epochs * per_epoch
        rows.append(dict(dataset=c.dataset, train_images=images, epochs=round(total / per_epoch, 2),
                         steps=total, batch_size=c.batch_size, peak_lr=c.base_lr * c.batch_size / 256,
                         warmup_steps=min(round(c.warmup_epochs * per_epoch), total), clipping=_clipping(c)))
    if not rows:
        raise ValueError("setting_of needs the configuration of at least one run")
    return Setting(**{k: _span(r[k] for r in rows) for k in rows[0]}, seeds=seeds)


def table(rows: Iterable[dict], extra: Iterable[str] = (), require_setting: bool = True) -> pd.DataFrame:
    """The verdict rows as a table with :data:`COLUMNS` (and the ``extra`` columns after ``rule``,
    e.g. ``diverged``). ``require_setting``: refuse a row without its setting and reading."""
    rows = list(rows)
    for r in rows if require_setting else []:
        missing = [k for k in [*SETTING_COLUMNS, "reading"] if r.get(k) in (None, "")]
        if missing:
            raise ValueError(f"verdict {r.get('claim')!r} lacks {missing}: pass setting=setting_of(...) "
                             "and a one-sentence reading to claim_row")
    at = COLUMNS.index("rule") + 1
    return pd.DataFrame(rows, columns=[*COLUMNS[:at], *extra, *COLUMNS[at:]])


# ----------------------------------------------------------------------------- divergence, edges, trends
def paired_claim_row(claim: str, a: pd.Series, b: pd.Series, kind: str = "greater", margin: float = 0.0,
                     tolerance: float = 1.0, setting: Setting | None = None, reading: str = "") -> dict:
    """A verdict row on ``a - b`` (values per seed, the index; NaN: the run diverged) by the rule of
    the module docstring: the t interval over the seeds where both trained, divergence apart.

    Adds ``diverged`` ("k_a/n vs k_b/n" over the ``n`` seeds both sides ran); ``n`` is the number of
    trained pairs. Seeds present on one side only are left out."""
    seeds = a.index.intersection(b.index)
    a, b = a[seeds].astype(float), b[seeds].astype(float)
    trained = a.notna() & b.notna()
    row = claim_row(claim, (a[trained] - b[trained]).tolist(), kind, margin, tolerance, setting, reading)
    k_a, k_b, n = int(a.isna().sum()), int(b.isna().sum()), len(seeds)
    _, lo_a, hi_a = rate_ci(k_a, n)
    _, lo_b, hi_b = rate_ci(k_b, n)
    verdict = row["verdict"]
    if n and (lo_a > hi_b or lo_b > hi_a):  # the divergence rates differ: the side that diverges is worse
        verdict = CONTRADICTED if kind == "level" or lo_a > hi_b else REPRODUCED
    elif k_a != k_b:  # never call the side that diverged more the better, or level
        favours_a = verdict == REPRODUCED  # "level" favours both sides
        favours_b = verdict == (CONTRADICTED if kind == "greater" else REPRODUCED)
        if (k_a > k_b and favours_a) or (k_b > k_a and favours_b):
            verdict = NOT_RESOLVED
    row.update(verdict=verdict, diverged=f"{k_a}/{n} vs {k_b}/{n}",
               rule=row["rule"].replace("95% t interval", "95% t interval over trained pairs")
               + "; divergence apart")
    return row


def rate_claim_row(claim: str, events: Iterable[bool], setting: Setting | None = None,
                   reading: str = "", contradicted_below: float | None = None) -> dict:
    """A verdict row on "this happens in some runs" (a rate above 0, e.g. divergence): Wilson's 95%
    interval; reproduced when its lower end is above 0, otherwise not resolved (no finite number of
    clean runs proves a rate of 0). ``contradicted_below``: for a claim that the event is the rule
    ("NF without AGC diverges"), contradicted when no run had it and the interval's upper end lies
    below this rate (most runs do not)."""
    e = [bool(x) for x in events]
    rate, low, high = rate_ci(sum(e), len(e))
    rule = "95% Wilson interval of the rate > 0"
    verdict = REPRODUCED if e and low > 0 else NOT_RESOLVED
    if contradicted_below is not None:
        rule += f"; contradicted: none happened, interval < {contradicted_below:g}"
        if e and not any(e) and high < contradicted_below:
            verdict = CONTRADICTED
    return {"claim": claim, "estimate": rate, "ci_low": low, "ci_high": high, "n": len(e),
            "verdict": verdict, "rule": rule, "diverged": f"{sum(e)}/{len(e)}",
            **(setting.row() if setting else {}), "reading": reading}


def grid_edge(value: float, grid: Iterable[float]) -> str:
    """"at least" when ``value`` is the largest of the ``grid`` searched, "at most" when the smallest
    (the best may lie beyond), else ""."""
    grid = sorted(grid)
    if len(grid) > 1 and math.isclose(value, grid[-1]):
        return "at least"
    return "at most" if len(grid) > 1 and math.isclose(value, grid[0]) else ""


def per_seed_slope(values: pd.DataFrame) -> tuple[float, float, float, int, pd.Series]:
    """The least-squares slope of y on x fitted per seed (``values``: one row per seed, one column
    per x, y in the cells; NaN cells left out, a seed needs two points), then the 95% t interval of
    the mean slope over seeds: ``(mean, low, high, n, slopes)``. Seeds are the replicates, so the
    interval respects how many there are (unlike a bootstrap of an argmax over a few seeds)."""
    x = np.asarray(values.columns, dtype=float)
    slopes = {}
    for seed, y in values.iterrows():
        ok = np.isfinite(y.to_numpy(dtype=float))
        if ok.sum() >= 2 and np.ptp(x[ok]) > 0:
            slopes[seed] = float(np.polyfit(x[ok], y.to_numpy(dtype=float)[ok], 1)[0])
    slopes = pd.Series(slopes, dtype=float, name="slope")
    return (*mean_ci(slopes), slopes)


def crossing(x: Iterable[float], estimate: Iterable[float], low: Iterable[float], high: Iterable[float],
             level: float) -> tuple[float, float, float]:
    """Where a curve measured at increasing ``x`` rises above ``level`` for good, with the band
    given by its interval: ``(at, earliest, latest)``, each linearly interpolated between the two
    points around the crossing; the earliest is where the band's top (``high``) crosses, the latest
    where its bottom (``low``) does. ``-inf``: above the level from the first point on; ``inf``:
    not above it at the last point (not within the range measured)."""
    x = np.asarray(list(x), dtype=float)

    def first(y: Iterable[float]) -> float:
        y = np.asarray(list(y), dtype=float)
        above = y > level
        if not above[-1]:
            return math.inf
        i = len(y) - 1
        while i > 0 and above[i - 1]:
            i -= 1
        if i == 0:
            return -math.inf
        return float(x[i - 1] + (level - y[i - 1]) * (x[i] - x[i - 1]) / (y[i] - y[i - 1]))

    return first(estimate), first(high), first(low)
