"""Alternating rounds of training steps, summarised with their spread (notebooks 04 and 05).

A CPU shared with other work, and even an idle one, times the same step differently from one run
to the next, so one median over a handful of steps says little. Here every side is timed once per
round, round-robin, for many rounds (:func:`round_times`, on :func:`nfrepro.bench.harness.step_times`),
and reported as the median and interquartile range of its step over the rounds, beside the
per-round ratio to a baseline timed in the same rounds (:func:`pair_ratio`, on
:func:`nfrepro.bench.harness.paired_ratio`: its median, IQR and a 95% bootstrap interval of the
median) or the per-round difference of two sides (:func:`round_differences`). The words a notebook
prints about a comparison come from these numbers (:func:`direction`, :func:`iqrs_overlap`).
Benchmarks are not tests: nothing here asserts on a time.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from nfrepro.bench.harness import paired_ratio, step_times


def round_times(steps: Mapping[str, Callable[[], Any]], rounds: int, warmup: int = 2,
                device: Any = None) -> pd.DataFrame:
    """Every side of ``steps`` timed once per round, ``warmup`` untimed rounds then ``rounds`` timed
    ones, round-robin (:func:`nfrepro.bench.harness.step_times`), so that a busy spell of a shared
    machine falls on every side of a round. Tidy: ``side``, ``round``, ``step_ms``."""
    times = step_times(dict(steps), repeats=rounds, warmup=warmup, device=device)
    return pd.DataFrame([{"side": side, "round": r, "step_ms": 1e3 * t}
                         for side, ts in times.items() for r, t in enumerate(ts)])


def quartiles(values: Iterable[float]) -> tuple[float, float, float]:
    """``(q25, median, q75)``, linear interpolation (numpy's default)."""
    q25, med, q75 = np.percentile(np.asarray(list(values), dtype=float), [25, 50, 75])
    return float(q25), float(med), float(q75)


def pair_ratio(times: pd.DataFrame, numerator: str, denominator: str) -> dict[str, float]:
    """:func:`nfrepro.bench.harness.paired_ratio` of two sides of :func:`round_times`: the per-round
    ratio ``numerator / denominator``, its median, IQR and 95% bootstrap interval of the median."""
    wide = times.pivot(index="round", columns="side", values="step_ms")
    return paired_ratio(wide[numerator].tolist(), wide[denominator].tolist())


def round_summary(times: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Per side of :func:`round_times` (in order): its step's median and IQR over rounds (``median_ms``,
    ``q25_ms``, ``q75_ms``) and its per-round ratio to ``baseline`` (:func:`pair_ratio`'s
    ``ratio_median``, ``ratio_q25``, ``ratio_q75``, ``ratio_ci_low``, ``ratio_ci_high``, ``rounds``)."""
    rows = []
    for side, g in times.groupby("side", sort=False):
        q25, med, q75 = quartiles(g["step_ms"])
        rows.append({"side": side, "median_ms": med, "q25_ms": q25, "q75_ms": q75,
                     **pair_ratio(times, side, baseline)})
    return pd.DataFrame(rows)


def round_differences(times: pd.DataFrame, parts: Mapping[str, tuple[str, str]]) -> pd.DataFrame:
    """The per-round difference ``a - b`` in ms of each part ``name -> (a, b)`` (two sides of
    :func:`round_times`, timed in the same rounds): its median and IQR over rounds."""
    wide = times.pivot(index="round", columns="side", values="step_ms")
    rows = []
    for name, (a, b) in parts.items():
        q25, med, q75 = quartiles(wide[a] - wide[b])
        rows.append({"part": name, "minus": f"{a} - {b}", "median_ms": med, "q25_ms": q25, "q75_ms": q75})
    return pd.DataFrame(rows)


def iqrs_overlap(a: Mapping[str, float], b: Mapping[str, float]) -> bool:
    """Whether two sides' step-time IQRs (``q25_ms``..``q75_ms``) overlap."""
    return a["q25_ms"] <= b["q75_ms"] and b["q25_ms"] <= a["q75_ms"]


def direction(ratio: Mapping[str, float], slower: str = "slower", faster: str = "faster",
              neither: str = "not distinguishable") -> str:
    """A per-round ratio in words: ``slower`` where its 95% interval lies above 1, ``faster`` below."""
    return slower if ratio["ratio_ci_low"] > 1 else faster if ratio["ratio_ci_high"] < 1 else neither
