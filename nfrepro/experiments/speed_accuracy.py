"""Fig. 1 and Tables 3 and 6 of NFNets: which models are compared, and the paper's numbers beside ours.

:data:`CONTENDERS` names every model of the speed/accuracy comparison (NFNet-F0..F7, the BatchNorm
NFNets of Table 6, ResNet-50, EfficientNet-B0..B7), its training resolution and its name in
``nfrepro/analysis/paper_reference.csv``. :func:`speed_accuracy_table` joins measured step times
(:func:`train_step_latency`) with the paper's top-1 and step times;
:func:`speed_ratios` sets the speed-ups the paper claims (F1 vs EfficientNet-B7; NF vs BN) beside ours.
:func:`train_step_latency` times each contender's training step, one model after the other;
:func:`pair_latency` times the two models of each speed pair alternately, step by step, and gives
the ratio with its interquartile range and a bootstrap interval. :func:`nf_bn_attribution` prices
the parts of the NF step that the BN step lacks (WS, AGC) in alternating rounds, and
:func:`attribution_reading` / :func:`findings` write the notebook's sentences from the numbers.
:func:`committed_results` reads what ``make gpu-check`` measured on a GPU (``results/gpu``);
:func:`beside` sets it beside the rest.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import pandas as pd
import torch
import torch.nn as nn

from nfrepro.analysis.reference import paper_reference, paper_value
from nfrepro.bench.harness import (
    NUM_CLASSES,
    RATIO_METRICS,
    compare,
    import_timm,
    make_batch,
    place,
    release,
    tidy_rows,
    train_step_fn,
)
from nfrepro.engine.device import resolve_device
from nfrepro.engine.profiles import project_root
from nfrepro.experiments.rounds import direction, pair_ratio, round_differences, round_times
from nfrepro.models import create_model, list_models
from nfrepro.models.folding import fold_weight_standardization
from nfrepro.models.nfnet import VARIANTS

# EfficientNet-B0..B7 train (and test) at these resolutions (Tan & Le 2019, the compound scaling
# of Table 1 / the released configs); the NFNets paper times them "at their training resolution".
EFFNET_TRAIN_PX = {"b0": 224, "b1": 240, "b2": 260, "b3": 300, "b4": 380, "b5": 456, "b6": 528, "b7": 600}
RESNET_TRAIN_PX = 224


@dataclass(frozen=True)
class Contender:
    """A model of the speed/accuracy comparison and the name the paper gives it.

    ``label`` is the model's name in ``nfrepro/analysis/paper_reference.csv`` (``NFNet-F1``, ``EffNet-B7``,
    ``NFNet-F0 -NF +BN``); ``agc`` says whether its training step clips gradients (the
    normalizer-free models do; the BatchNorm models and the baselines train without AGC).
    """
    name: str
    label: str
    family: str
    library: str
    train_px: int
    agc: bool


def _contenders() -> dict[str, Contender]:
    table = {}
    for key, v in VARIANTS.items():
        if key.endswith("+"):
            continue
        k = key[1:]
        table[f"nfnet_f{k}"] = Contender(f"nfnet_f{k}", f"NFNet-F{k}", "NFNet", "nfrepro", v.train_px, True)
        if int(k) <= 3:  # Table 6 has BatchNorm versions of F0..F3 (nfnet.nfnet_bn_f0..f3)
            table[f"nfnet_bn_f{k}"] = Contender(f"nfnet_bn_f{k}", f"NFNet-F{k} -NF +BN", "NFNet -NF +BN",
                                                "nfrepro", v.train_px, False)
    table["resnet50"] = Contender("resnet50", "ResNet-50", "ResNet", "timm", RESNET_TRAIN_PX, False)
    for b, px in EFFNET_TRAIN_PX.items():
        table[f"efficientnet_{b}"] = Contender(f"efficientnet_{b}", f"EffNet-{b.upper()}", "EfficientNet",
                                               "timm", px, False)
    return table


CONTENDERS: dict[str, Contender] = _contenders()


def contender(name: str) -> Contender:
    if name not in CONTENDERS:
        raise ValueError(f"unknown model {name!r} for the speed comparison: choose from {sorted(CONTENDERS)}")
    return CONTENDERS[name]


def scaled_px(px: int, res_scale: float, multiple: int = 8) -> int:
    """``px * res_scale`` rounded to a multiple of ``multiple`` (at least 32: total stride 32)."""
    return max(32, int(round(px * res_scale / multiple)) * multiple)


# ---------------------------------------------------------------- beside the paper (Fig. 1, T3, T6)
def _paper(quantity: str, label: str) -> float:
    return paper_value(quantity, label, missing=float("nan"))  # NaN: the paper gives no number


def trained_with_sam(label: str) -> bool:
    """Whether the paper's top-1 for ``label`` was reached with SAM (App. A.4: only F5/F6 may use
    it; Table 3 marks F6's 86.5% "with SAM"), read from the reference table's note."""
    rows = paper_reference(quantity="imagenet_top1", model=label)
    return bool(rows["note"].str.contains("SAM").any())


def family_rank(label: str) -> float:
    """Position of ``label`` among the models of its family that the paper gives a top-1 for
    (NFNet-F0..F6; EffNet-B0, B3..B7: B1 and B2 are not in Table 3); NaN if the paper gives none.

    Two points of a family are joined by a line in Fig. 1 only when their ranks are consecutive,
    so a line never bridges a model the paper reports but this run did not measure."""
    family = contender_by_label(label).family
    ranked = [c.label for c in CONTENDERS.values()
              if c.family == family and _paper("imagenet_top1", c.label) == _paper("imagenet_top1", c.label)]
    return float(ranked.index(label)) if label in ranked else float("nan")


def contender_by_label(label: str) -> Contender:
    for c in CONTENDERS.values():
        if c.label == label:
            return c
    raise ValueError(f"no contender is labelled {label!r}")


def speed_accuracy_table(latency: pd.DataFrame) -> pd.DataFrame:
    """One row per measured model: measured median step time beside the paper's top-1 and step times.

    ``latency``: the tidy output of :func:`train_step_latency` (or its CSV). ``paper_top1`` is
    Table 3's ImageNet top-1 (Table 6's for the BatchNorm NFNets; F6's is with SAM), NaN where the
    paper gives none (EffNet-B1, B2); ``paper_tpuv3_ms`` / ``paper_v100_ms`` are its step times.
    """
    wide = (latency[latency["metric"] == "median_ms"]
            .rename(columns={"value": "measured_ms"})
            .drop(columns=["metric"]).reset_index(drop=True))
    wide["paper_top1"] = [_paper("imagenet_top1", lab) for lab in wide["label"]]
    wide["paper_tpuv3_ms"] = [_paper("train_step_tpuv3", lab) for lab in wide["label"]]
    wide["paper_v100_ms"] = [_paper("train_step_v100", lab) for lab in wide["label"]]
    wide["sam"] = [trained_with_sam(lab) for lab in wide["label"]]
    wide["rank"] = [family_rank(lab) for lab in wide["label"]]
    return wide


def paper_speed_accuracy(families: Iterable[str] = ("NFNet", "NFNet -NF +BN", "ResNet", "EfficientNet"),
                         ) -> pd.DataFrame:
    """The paper's own Fig. 1 points: TPUv3 step time and top-1 of every contender it reports,
    with ``sam`` (top-1 reached with SAM, :func:`trained_with_sam`) and ``rank`` (:func:`family_rank`)."""
    rows = []
    for c in CONTENDERS.values():
        if c.family in families:
            ms, top1 = _paper("train_step_tpuv3", c.label), _paper("imagenet_top1", c.label)
            if ms == ms and top1 == top1:  # both present (not NaN)
                rows.append({"model": c.name, "label": c.label, "family": c.family,
                             "latency_ms": ms, "top1": top1, "sam": trained_with_sam(c.label),
                             "rank": family_rank(c.label)})
    return pd.DataFrame(rows)


# (faster model, slower model, what the paper says): F1 vs B7 is the abstract's 8.7x; NF vs BN is
# Table 6 ("20 to 40% faster to train" than the same nets with BatchNorm).
SPEED_PAIRS = (("NFNet-F1", "EffNet-B7"),
               ("NFNet-F0", "NFNet-F0 -NF +BN"), ("NFNet-F1", "NFNet-F1 -NF +BN"),
               ("NFNet-F2", "NFNet-F2 -NF +BN"), ("NFNet-F3", "NFNet-F3 -NF +BN"))


def speed_ratios(table: pd.DataFrame, pairs: Iterable[tuple[str, str]] = SPEED_PAIRS,
                 paired: pd.DataFrame | None = None) -> pd.DataFrame:
    """Speed-up ``slow / fast`` (step time) measured here beside the paper's, for each pair.

    ``table``: :func:`speed_accuracy_table`. ``paper_tpuv3`` is the ratio of the paper's TPUv3 step
    times (Tables 3 and 6); ``paper_claim`` the abstract's 8.7x where it applies. A pair whose two
    models were not both measured gets NaN in ``measured``. ``measured_time_saved`` = 1 - fast/slow
    (the form of the paper's "20 to 40%").

    ``paired``: the tidy rows of :func:`pair_latency` (other rows are ignored). Where a pair was timed
    there, ``measured`` is its median per-round ratio, with ``measured_q25`` / ``measured_q75`` (the
    interquartile range of the per-round ratios), ``measured_ci_low`` / ``measured_ci_high`` (95%
    bootstrap interval of the median) and ``rounds``; otherwise the ratio of the two separately
    timed medians in ``table``, without a spread (NaN).
    """
    ms = dict(zip(table["label"], table["measured_ms"], strict=True))
    spread: dict[tuple[str, str], dict[str, float]] = {}
    if paired is not None and "fast" in paired.columns:
        rows_p = paired[paired["metric"].isin(RATIO_METRICS) & paired["fast"].notna()]
        for (fast, slow), g in rows_p.groupby(["fast", "slow"]):
            spread[(fast, slow)] = dict(zip(g["metric"], g["value"], strict=True))
    nan = float("nan")
    rows = []
    for fast, slow in pairs:
        measured = ms[slow] / ms[fast] if fast in ms and slow in ms else nan
        s = spread.get((fast, slow), {})
        measured = s.get("ratio_median", measured)
        paper = _paper("train_step_tpuv3", slow) / _paper("train_step_tpuv3", fast)
        claim = _paper("train_speedup_vs_effnet_b7", fast) if slow == "EffNet-B7" else nan
        rows.append({"fast": fast, "slow": slow, "measured": measured,
                     "measured_q25": s.get("ratio_q25", nan), "measured_q75": s.get("ratio_q75", nan),
                     "measured_ci_low": s.get("ratio_ci_low", nan),
                     "measured_ci_high": s.get("ratio_ci_high", nan),
                     "rounds": s.get("rounds", nan), "paper_tpuv3": paper,
                     "paper_v100": _paper("train_step_v100", slow) / _paper("train_step_v100", fast),
                     "paper_claim": claim, "measured_time_saved": 1 - 1 / measured,
                     "paper_tpuv3_time_saved": 1 - 1 / paper})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- measured (Fig. 1, notebook 05)
def build_model(name: str, **overrides: Any) -> nn.Module:
    """A randomly initialised model: a contender from its library, else nfrepro's registry first,
    else timm (never downloads)."""
    library = CONTENDERS[name].library if name in CONTENDERS else None
    if library == "nfrepro" or (library is None and name in list_models()):
        return create_model(name, num_classes=NUM_CLASSES, **overrides)
    timm = import_timm()  # the baselines come from timm (the bench extra)
    return timm.create_model(name, pretrained=False, num_classes=NUM_CLASSES, **overrides)


def train_step_latency(names: list[str], device: Any = None, batch_size: int = 32, res_scale: float = 1.0,
                       repeats: int = 5, warmup: int = 2, amp: str | bool | None = "auto",
                       channels_last: bool | None = None, progress: Callable[[str], None] | None = print,
                       overrides: Mapping[str, Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """Median training-step time of each model at its training resolution (times ``res_scale``).

    Models are built, warmed up and timed one after the other (one model in memory at a time, so
    that EfficientNet-B7 at 600 px fits beside nothing else); compare ratios of rows measured in
    the same run only. Tidy result: one row per model and metric (``median_ms``, ``q25_ms``,
    ``q75_ms``, ``min_ms``, ``images_per_s``, ``repeats``), with the model's paper label, family,
    resolution and batch size. ``overrides[name]``: keyword arguments for that model's constructor
    (the smoke profile shrinks the NFNets with them; they are recorded in an ``overrides`` column).
    A model that runs out of GPU memory gets NaN values and ``note = "out of memory"``.
    """
    device = resolve_device(device)
    rows = []
    for name in names:
        c = contender(name)
        px = scaled_px(c.train_px, res_scale)
        if progress:
            progress(f"{name}: {batch_size} x {px} px, {warmup} warm-up + {repeats} timed steps")
        kwargs = dict((overrides or {}).get(name, {}))
        ids = {"model": name, "label": c.label, "family": c.family, "library": c.library, "agc": c.agc,
               "resolution": px, "batch_size": batch_size, "overrides": str(kwargs) if kwargs else "",
               "note": ""}
        try:
            rows += _time_one(name, c, kwargs, ids, device, batch_size, px, repeats, warmup, amp,
                              channels_last)
        except torch.cuda.OutOfMemoryError:  # e.g. EfficientNet-B7 at 600 px, 32 images: record it, go on
            release(device)
            if progress:
                progress(f"{name}: out of GPU memory at {batch_size} x {px} px; recorded as NaN")
            rows += [{**ids, "metric": m, "value": float("nan"), "note": "out of memory"} for m in _METRICS]
        release(device)
    out = pd.DataFrame(rows)
    out["device"] = str(device)
    return out


_METRICS = ("median_ms", "q25_ms", "q75_ms", "min_ms", "images_per_s", "repeats")


def _time_one(name: str, c: Contender, kwargs: dict[str, Any], ids: dict[str, Any], device: torch.device,
              batch_size: int, px: int, repeats: int, warmup: int, amp: bool | None,
              channels_last: bool | None) -> list[dict[str, Any]]:
    model = place(build_model(name, **kwargs), device, channels_last)
    x, y = make_batch(batch_size, px, device, channels_last)
    step = train_step_fn(model, x, y, clip="nfrepro" if c.agc else None, amp=amp)
    df = compare({name: step}, name, repeats=repeats, warmup=warmup, device=device)
    return [{k: v for k, v in r.items() if k not in ("side", "baseline")}
            for r in tidy_rows(df, batch_size, ids) if r["metric"] in _METRICS]


def pair_latency(names: list[str], pairs: Iterable[tuple[str, str]] = SPEED_PAIRS, device: Any = None,
                 batch_size: int = 32, res_scale: float = 1.0, rounds: int = 15, warmup: int = 2,
                 amp: str | bool | None = "auto", channels_last: bool | None = None,
                 progress: Callable[[str], None] | None = print,
                 overrides: Mapping[str, Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """The speed-up ``slow / fast`` of each pair of :data:`SPEED_PAIRS` (paper labels) whose two models
    are both in ``names``, with its spread (NFNets Fig. 1 / abstract: F1 vs EffNet-B7; Table 6: NF vs BN).

    The two models of a pair are built together and their training steps alternate, one step each
    per round (:func:`nfrepro.bench.harness.step_times`), ``warmup`` untimed rounds then ``rounds``
    timed ones; the statistic is the per-round ratio ``slow step / fast step``
    (:func:`nfrepro.bench.harness.paired_ratio`): its median, its interquartile range
    (``ratio_q25``, ``ratio_q75``) and a 95% bootstrap interval of the median over rounds
    (``ratio_ci_low``, ``ratio_ci_high``). Also each side's median step (``fast_median_ms``,
    ``slow_median_ms``). Tidy rows: ``fast``, ``slow`` (labels), ``family`` "pair", ``metric``,
    ``value``. A pair that runs out of GPU memory gets NaN and ``note = "out of memory"``.
    """
    device = resolve_device(device)
    by_label = {contender(n).label: n for n in names}
    rows = []
    for fast, slow in pairs:
        if fast not in by_label or slow not in by_label:
            continue
        ids = {"model": f"{by_label[fast]} | {by_label[slow]}", "label": f"{slow} / {fast}", "family": "pair",
               "fast": fast, "slow": slow, "batch_size": batch_size, "note": ""}
        if progress:
            progress(f"{slow} / {fast}: {warmup} warm-up + {rounds} timed rounds, alternating")
        try:
            stats, pxs = _time_pair(fast, slow, by_label, overrides, device, batch_size, res_scale, rounds,
                                    warmup, amp, channels_last)
            stats.update(fast_px=float(pxs[0]), slow_px=float(pxs[1]))  # resolution stays per model
            rows += [{**ids, "metric": k, "value": v} for k, v in stats.items()]
        except torch.cuda.OutOfMemoryError:
            if progress:
                progress(f"{slow} / {fast}: out of GPU memory; recorded as NaN")
            rows += [{**ids, "metric": m, "value": float("nan"), "note": "out of memory"}
                     for m in (*RATIO_METRICS, "fast_median_ms", "slow_median_ms")]
        release(device)  # both models went out of scope with _time_pair's frame
    out = pd.DataFrame(rows)
    if len(out):
        out["device"] = str(device)
    return out


def _time_pair(fast: str, slow: str, by_label: Mapping[str, str], overrides, device: torch.device,
               batch_size: int, res_scale: float, rounds: int, warmup: int, amp, channels_last,
               ) -> tuple[dict[str, float], tuple[int, int]]:
    steps, pxs = {}, []
    for label in (fast, slow):
        name = by_label[label]
        c = contender(name)
        pxs.append(scaled_px(c.train_px, res_scale))
        model = place(build_model(name, **dict((overrides or {}).get(name, {}))), device, channels_last)
        x, y = make_batch(batch_size, pxs[-1], device, channels_last)
        steps[label] = train_step_fn(model, x, y, clip="nfrepro" if c.agc else None, amp=amp)
    times = round_times(steps, rounds, warmup, device)
    stats = pair_ratio(times, slow, fast)
    median = times.groupby("side")["step_ms"].median()
    stats["fast_median_ms"], stats["slow_median_ms"] = float(median[fast]), float(median[slow])
    return stats, (pxs[0], pxs[1])


# ---------------------------------------------------------------- where the NF-vs-BN gap goes (Table 6)
FULL, NO_AGC, WS_FOLDED, BN = "NF: WS + AGC", "NF: WS, no AGC", "NF: WS folded, no AGC", "BN"
ATTRIBUTION_PARTS = {"AGC": (FULL, NO_AGC), "weight standardization": (NO_AGC, WS_FOLDED),
                     "rest: NF without WS or AGC vs BN": (WS_FOLDED, BN)}


def nf_bn_attribution(variant: str = "f0", device: Any = None, batch_size: int = 2, res_scale: float = 1.0,
                      rounds: int = 15, warmup: int = 2, amp: str | bool | None = "auto",
                      channels_last: bool | None = None,
                      overrides: Mapping[str, Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """What the NF net's training step spends beside the BN net's (NFNets Table 6), one change per side,
    all four timed in the same alternating rounds (:func:`round_times`) on the same batch:

    * ``FULL``: the NF net's step as notebook 05 times it (Scaled WS in every conv, AGC);
    * ``NO_AGC``: the same weights, AGC off;
    * ``WS_FOLDED``: the same weights with every standardised weight computed once and held by a plain
      conv (:func:`nfrepro.models.folding.fold_weight_standardization`): no WS work in the forward or
      backward pass, AGC off (training it would not train an NF net; here it only prices WS);
    * ``BN``: the "-NF +BN" net's step (no AGC, as in the survey).

    ``FULL - NO_AGC`` prices AGC, ``NO_AGC - WS_FOLDED`` weight standardization and ``WS_FOLDED - BN``
    what is left (:data:`ATTRIBUTION_PARTS`). Tidy :func:`round_times` rows with ``model``,
    ``batch_size``, ``resolution`` and ``device``.
    """
    device = resolve_device(device)
    nf_name, bn_name = f"nfnet_{variant}", f"nfnet_bn_{variant}"
    px = scaled_px(contender(nf_name).train_px, res_scale)
    x, y = make_batch(batch_size, px, device, channels_last)
    nf = place(build_model(nf_name, **dict((overrides or {}).get(nf_name, {}))), device, channels_last)
    bn = build_model(bn_name, **dict((overrides or {}).get(bn_name, {})))
    models = {FULL: nf, NO_AGC: copy.deepcopy(nf), WS_FOLDED: fold_weight_standardization(nf),
              BN: place(bn, device, channels_last)}
    steps = {side: train_step_fn(m, x, y, clip="nfrepro" if side == FULL else None, amp=amp)
             for side, m in models.items()}
    out = round_times(steps, rounds, warmup, device)
    del steps, models, nf, bn
    release(device)
    return out.assign(model=nf_name, batch_size=batch_size, resolution=px, device=str(device))


def attribution_reading(times: pd.DataFrame) -> str:
    """The NF-vs-BN gap of :func:`nf_bn_attribution` in sentences written from its rounds: each side's
    per-round ratio to the BN step, and the per-round milliseconds of each part."""
    ratio = {side: pair_ratio(times, side, BN) for side in (FULL, WS_FOLDED)}
    parts = round_differences(times, {"gap": (FULL, BN), **ATTRIBUTION_PARTS}).set_index("part")
    ms = lambda p: (f"{parts.loc[p, 'median_ms']:.0f} ms (IQR {parts.loc[p, 'q25_ms']:.0f} to "  # noqa: E731
                    f"{parts.loc[p, 'q75_ms']:.0f})")
    r = lambda side: (f"{ratio[side]['ratio_median']:.2f}x (95% interval {ratio[side]['ratio_ci_low']:.2f}"  # noqa: E731
                      f"-{ratio[side]['ratio_ci_high']:.2f})")
    gap = parts.loc["gap", "median_ms"]
    share = lambda p: f", {parts.loc[p, 'median_ms'] / gap:.0%} of the gap" if gap > 0 else ""  # noqa: E731
    rest = direction(ratio[WS_FOLDED], "slower than the BN step", "faster than the BN step",
                     "not distinguishable from the BN step")
    return (f"The NF training step took {r(FULL)} the BN step's time, a gap of {ms('gap')} per round. "
            f"AGC accounts for {ms('AGC')}{share('AGC')}; weight standardization for "
            f"{ms('weight standardization')}{share('weight standardization')}. "
            f"With both removed the NF step took {r(WS_FOLDED)} the BN step's time ({rest}); per round it "
            f"differs from the BN step by {ms('rest: NF without WS or AGC vs BN')}. (Medians over "
            f"{int(times['round'].nunique())} "
            f"rounds of per-round differences; they need not add up exactly.)")


def findings(ratios: pd.DataFrame, attribution: pd.DataFrame | None, setting: str) -> str:
    """Notebook 05's "What we found" in Markdown, from the numbers: each measured speed pair of
    :func:`speed_ratios` (faster or slower only where its 95% interval excludes 1) beside the
    paper's TPUv3 ratio, then :func:`attribution_reading`."""
    lines = [f"Measured here: {setting}. The paper's ratios are TPUv3 step times at 32 images per core."]
    for r in ratios.dropna(subset=["measured"]).itertuples():
        ci = (f"95% interval {r.measured_ci_low:.2f}-{r.measured_ci_high:.2f}"
              if r.measured_ci_low == r.measured_ci_low else "one median each, no interval")
        word = direction({"ratio_ci_low": r.measured_ci_low, "ratio_ci_high": r.measured_ci_high},
                         f"{r.fast} trained faster than {r.slow}", f"{r.fast} trained slower than {r.slow}",
                         f"no clear difference between {r.fast} and {r.slow}")
        lines.append(f"* **{r.fast} vs {r.slow}.** {r.slow} / {r.fast} step time: {r.measured:.2f}x ({ci}): "
                     f"{word} here; the paper's TPUv3 ratio is {r.paper_tpuv3:.2f}x.")
    if attribution is not None:
        lines.append(f"* **Where the NF-vs-BN gap goes ({attribution['model'].iloc[0]}).** "
                     f"{attribution_reading(attribution)}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- a GPU's measurements
def committed_results(results_dir: str | Path | None = None) -> dict[str, Any] | None:
    """What ``make gpu-check`` (``tools/gpu_check.py``) committed to ``results/gpu``: its tables and
    the device they were measured on (from the run record); None when none has been committed yet."""
    folder = Path(results_dir) if results_dir is not None else project_root() / "results" / "gpu"
    if not (folder / "survey.csv").exists():
        return None
    record = json.loads((folder / "survey.json").read_text())
    tables = {p.stem: pd.read_csv(p) for p in sorted(folder.glob("*.csv"))}
    return {"device": record.get("device", "unknown GPU"), "driver": record.get("gpu_driver", "unknown"),
            "commit": record.get("git_commit", "unknown"), "tables": tables}


def beside(ratios: pd.DataFrame, gpu: dict[str, Any] | None) -> pd.DataFrame:
    """Notebook 05's speed ratios (:func:`speed_ratios`, measured
    on this machine) with the paper's and, when a device check was committed, the GPU's beside them."""
    spread = [c for c in ("measured_q25", "measured_q75") if c in ratios.columns]  # the IQR, if paired
    out = ratios[["fast", "slow", "paper_tpuv3", "paper_v100", "paper_claim", "measured", *spread]].rename(
        columns={"measured": "measured_here", "measured_q25": "here_q25", "measured_q75": "here_q75"})
    if gpu is not None:
        r = gpu["tables"]["survey"]
        r = r[(r["table"] == "ratios") & (r["metric"] == "measured")][["fast", "slow", "value"]]
        out = out.merge(r.rename(columns={"value": f"measured on {gpu['device']}"}), on=["fast", "slow"],
                        how="left")
    return out
