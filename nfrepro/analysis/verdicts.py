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
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import pandas as pd

# Two-sided 95% quantiles of Student's t, t_{0.975, df}, from the standard tables.
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
        10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110,
        18: 2.101, 19: 2.093, 20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}
Z975 = 1.959964
COLUMNS = ["claim", "estimate", "ci_low", "ci_high", "n", "verdict", "rule"]
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
              tolerance: float = 1.0) -> dict:
    """One row of a verdict table (:data:`COLUMNS`) for per-seed ``differences``."""
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
            "verdict": verdict, "rule": rule}


def table(rows: Iterable[dict]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=COLUMNS)
