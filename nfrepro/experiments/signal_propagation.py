r"""Notebook 01: the shapes the SPPs of the NF-ResNet paper (Fig. 1 and 2) describe, as numbers.

:func:`spp_checks` turns each claim about a signal-propagation plot (variance on the
``1 + k alpha^2`` line with Scaled WS, mean shift without it, exponential growth when unnormalised,
the two BatchNorm orders) into a measured value and a bound; :func:`nfnet_checks` does the same for
an NFNet-F0, whose ResNet-D shortcuts do not follow that line; :func:`nfnet_prediction` computes
the curve they follow instead. :func:`run_spps` measures the notebook's nets for one seed and
:func:`evidence_over_seeds` / :func:`spread` give every number the notebook quotes as evidence
with its spread over seeds (input noise and initialisation). :func:`correlated_images` and
:func:`nfnet_input_evidence` set NFNet-F0's SPP on real images (whose neighbouring pixels are
correlated) beside its SPP on white noise. The statistics themselves are
:func:`nfrepro.analysis.spp.signal_propagation`.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping

import pandas as pd
import torch
import torch.nn.functional as F

from nfrepro.analysis import spp
from nfrepro.layers.gains import activation_variance
from nfrepro.models import create_model
from nfrepro.models.folding import fold_conv
from nfrepro.models.utils import first_conv
from nfrepro.models.variance import propagated_variances

RELU_SQ_MEAN_RATIO = 1.0 / (math.pi - 1.0)  # (1/pi) / (1 - 1/pi): squared mean over variance of a
#   He-init conv fed by BN -> ReLU: E[relu(z)] = 1/sqrt(2 pi) and weights N(0, 2/fan_in) give channel
#   means with E[m^2] = 1/pi and variance 1 - 1/pi per residual branch.


def _blocks(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["index"] >= 1]


def _r2(x, y) -> tuple[float, float]:
    """Least-squares slope and coefficient of determination of ``y`` on ``x``."""
    x, y = pd.Series(x, dtype=float).to_numpy(), pd.Series(y, dtype=float).to_numpy()
    xc, yc = x - x.mean(), y - y.mean()
    slope = float((xc * yc).sum() / (xc * xc).sum())
    ss_res = float(((yc - slope * xc) ** 2).sum())
    return slope, 1.0 - ss_res / float((yc * yc).sum())


def max_relative_deviation(df: pd.DataFrame, expected: pd.Series) -> float:
    """max over blocks (index >= 1) of ``|avg_var / expected - 1|``; the stem is not compared
    (its output is a max-pool of a conv, not a unit-variance signal)."""
    b = _blocks(df)
    return float(abs(b["avg_var"].to_numpy() / expected.loc[b["index"]].to_numpy() - 1.0).max())


def log_linear_growth(df: pd.DataFrame, column: str = "avg_var") -> tuple[float, float]:
    """``(growth factor per block, R^2)`` of a straight-line fit of ``ln(column)`` on the block
    index over all blocks: exponential growth is a straight line on a log axis."""
    b = _blocks(df)
    slope, r2 = _r2(b["index"], b[column].map(math.log))
    return math.exp(slope), r2


def per_stage(df: pd.DataFrame, fn) -> list[float]:
    """``fn(stage_frame)`` for every stage of at least three blocks."""
    return [fn(g) for _, g in _blocks(df).groupby("stage") if len(g) >= 3]


def spp_checks(frames: Mapping[str, pd.DataFrame], expected: pd.Series) -> pd.DataFrame:
    """The paper's SPP claims (Fig. 1 and 2), each measured and compared with a bound.

    ``frames`` holds the SPPs of ``nf_ws`` (NF-ResNet, Scaled WS, skip gains 1), ``nf_he`` (the
    same without WS), ``plain`` (unnormalised), ``bn_relu_conv`` and ``relu_bn_conv``;
    ``expected`` the NF theory (:func:`expected_variances`). One row per check: ``value``,
    ``bound``, ``ok`` and the ``claim`` in words.
    """
    ws, he, plain = frames["nf_ws"], frames["nf_he"], frames["plain"]
    brc, rbc = frames["bn_relu_conv"], frames["relu_bn_conv"]
    ratio = lambda d: _blocks(d)["avg_sq_mean"] / _blocks(d)["avg_var"]  # noqa: E731
    last = lambda d: d.groupby("stage").tail(1)  # noqa: E731  last block of each stage
    first = lambda d: _blocks(d).groupby("stage").head(1)  # noqa: E731  transition blocks
    growth, r2 = log_linear_growth(plain)
    rows = [
        ("nf_ws_variance_vs_theory", "NF + Scaled WS: avg_var within 10% of 1 + k alpha^2 at every block",
         max_relative_deviation(ws, expected), "<", 0.10),
        ("nf_ws_no_mean_shift", "NF + Scaled WS: squared channel means stay below 0.1 (vs ~1 variance)",
         float(_blocks(ws)["avg_sq_mean"].max()), "<", 0.1),
        ("nf_he_mean_grows_in_stage", "NF without WS: squared mean at the end of every stage / "
         "at its transition block (min over stages)",
         min(per_stage(he, lambda g: g["avg_sq_mean"].iloc[-1] / g["avg_sq_mean"].iloc[0])), ">", 1.0),
        ("nf_he_mean_dominates", "NF without WS: squared mean / variance at every stage end (min)",
         float((last(_blocks(he))["avg_sq_mean"] / last(_blocks(he))["avg_var"]).min()), ">", 1.0),
        ("nf_he_mean_vs_ws", "NF without WS: final squared mean / that of NF + Scaled WS",
         float(he["avg_sq_mean"].iloc[-1] / ws["avg_sq_mean"].iloc[-1]), ">", 10.0),
        ("plain_log_linear_r2", "unnormalised: ln(avg_var) is a straight line in depth (R^2)",
         r2, ">", 0.95),
        ("plain_growth_per_block", "unnormalised: variance growth factor per block (He init: ~2)",
         growth, ">", 1.5),
        ("relu_bn_conv_no_mean_shift", "ReLU-BN-Conv: squared mean / variance, max over blocks",
         float(ratio(rbc).max()), "<", 0.01),
        ("bn_relu_conv_mean_shift", "BN-ReLU-Conv: squared mean / variance at each stage end, min "
         f"(theory 1/(pi-1) = {RELU_SQ_MEAN_RATIO:.3f})",
         float((last(_blocks(brc))["avg_sq_mean"] / last(_blocks(brc))["avg_var"]).min()), ">", 0.25),
    ]
    for name, d in (("bn_relu_conv", brc), ("relu_bn_conv", rbc)):
        rows.append((f"{name}_linear_in_stage", f"{name}: avg_var linear in depth within each stage "
                     "(min R^2)", min(per_stage(d, lambda g: _r2(g["index"], g["avg_var"])[1])), ">", 0.95))
        f = first(d)["avg_var"]
        rows.append((f"{name}_resets", f"{name}: variance at every transition within 25% of the "
                     "first block's (max relative gap)", float((f / f.iloc[0] - 1).abs().max()), "<", 0.25))
    return _table(rows)


def _table(rows: list[tuple]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["check", "claim", "value", "op", "bound"])
    df["ok"] = [(v < b) if op == "<" else (v > b)
                for v, op, b in zip(df["value"], df["op"], df["bound"], strict=True)]
    return df


def nfnet_checks(df: pd.DataFrame, alpha: float, predicted: pd.Series | None = None) -> pd.DataFrame:
    """Checks for an NFNet SPP (skip gains 1), whose ResNet-D shortcuts break the 1 + k alpha^2 line.

    * no mean shift: squared channel means below 0.01 at every block;
    * the bookkeeping inside a stage: each non-transition block adds ``alpha^2`` times its residual
      variance, ``sum(diff(avg_var)) / (alpha^2 * sum(res_avg_var))`` within 20% of 1 per stage;
    * the strided transitions: a 2 x 2 average pool of spatially uncorrelated N(0, 1) noise divides
      the variance by 4, so the variance falls across every strided transition (ratio < 0.5),
      where the theory (written for a strided 1 x 1 conv shortcut) resets it to 1 + alpha^2;
    * with ``predicted`` (:func:`nfnet_prediction`'s ``predicted_var``): the variance within 20% of
      that prediction at every block.
    """
    b = _blocks(df).set_index("index")
    var = df.set_index("index")["avg_var"]
    b = b.assign(added=var.diff(), after_before=var / var.shift(1))
    inner = b[b["block_in_stage"] >= 1]
    per = [g["added"].sum() / (alpha ** 2 * g["res_avg_var"].sum()) for _, g in inner.groupby("stage")
           if len(g) >= 2]
    drop = b.loc[(b["block_in_stage"] == 0) & (b["stage"] > 0), "after_before"]
    extra = [] if predicted is None else [
        ("nfnet_var_vs_prediction", "NFNet: avg_var within 20% of the ResNet-D prediction at every block "
         "(max relative deviation)", max_deviation_from(df, predicted), "<", 0.2)]
    return _table(extra + [
        ("nfnet_no_mean_shift", "NFNet: squared channel means stay below 0.01",
         float(b["avg_sq_mean"].max()), "<", 0.01),
        ("nfnet_increments", "NFNet: variance added per block / (alpha^2 x residual variance), "
         "max |ratio - 1| over stages", float(max(abs(r - 1) for r in per)), "<", 0.2),
        ("nfnet_transition_drop", "NFNet: variance after / before each strided transition (max)",
         float(drop.max()), "<", 0.5),
    ])


def nfnet_prediction(model: Any) -> pd.DataFrame:
    """The variance an NFNet (skip gains 1) should carry on N(0, 1) input, block by block.

    :func:`nfrepro.models.variance.propagated_variances` read off the model: each block's beta, its
    shortcut (identity; 1x1 conv for the 128 -> 256 first block; 2 x 2 average pool then 1x1 conv at
    the strided ResNet-D transitions, which keeps a quarter of the variance of uncorrelated pixels)
    and its activation, whose variance at a non-unit input is computed by quadrature
    (:func:`nfrepro.layers.gains.activation_variance`: GELU is not homogeneous). The branch has one
    activation at its input and one after each conv but the last (4 with the second 3x3 conv of
    NFNets §5.1, 3 without). Indexed like an SPP (``index`` 0 = the stem, taken as variance 1):
    ``predicted_var`` (block output) and ``predicted_res_var`` (residual branch, before alpha).
    """
    _, blocks = spp.check_contract(model)
    shortcuts = ["pool_conv" if getattr(b, "pool", None) is not None
                 else "conv" if getattr(b, "conv_shortcut", None) is not None else "identity" for b in blocks]
    act = blocks[0].act
    acts = 1 + (3 if getattr(blocks[0], "conv1b", None) is not None else 2)
    stream, residual = propagated_variances(
        shortcuts, [b.beta for b in blocks], spp.model_alpha(model),
        lambda v: activation_variance(act.name, round(v, 12), blocks[0].gamma), acts)
    return pd.DataFrame({"predicted_var": [1.0] + stream, "predicted_res_var": [math.nan] + residual},
                        index=pd.RangeIndex(len(blocks) + 1, name="index"))


def max_deviation_from(df: pd.DataFrame, predicted: pd.Series, column: str = "avg_var") -> float:
    """max over blocks (index >= 1) of ``|column / predicted - 1|``."""
    b = _blocks(df)
    return float(abs(b[column].to_numpy() / predicted.loc[b["index"]].to_numpy() - 1.0).max())


# ------------------------------------------------------------------ seeds: the evidence with its spread
def run_spps(nets: Mapping[str, tuple[str, dict]], depths, widths, batch: int, resolution: int, seed: int,
             device: Any = "cpu", nfnet_width: float | None = None) -> dict[str, pd.DataFrame]:
    """SPP frames of every net of ``nets`` (label -> (registered constructor, keyword switches)) for one
    ``seed``: the N(0, 1) input batch and every net's initialisation are drawn from it. NF nets get
    their ``expected_var`` (1 + k alpha^2). With ``nfnet_width``, an ``"NFNet-F0"`` frame (skip gains
    1, that width fraction) is added, with :func:`nfnet_prediction`'s columns."""
    x = torch.randn(batch, 3, resolution, resolution, generator=torch.Generator().manual_seed(seed))
    frames = {}
    for label, (name, switches) in nets.items():
        torch.manual_seed(seed)
        model = create_model(name, depths=depths, widths=widths, **switches).to(device)
        frames[label] = spp.signal_propagation(model, x)
        if name.startswith("nf_"):
            frames[label]["expected_var"] = spp.expected_variances(model).to_numpy()
    if nfnet_width is not None:
        torch.manual_seed(seed)
        nfnet = create_model("nfnet_f0", skip_gain_init=1.0, width=nfnet_width).to(device)
        f0 = spp.signal_propagation(nfnet, x)
        frames["NFNet-F0"] = f0.join(nfnet_prediction(nfnet), on="index")
    return frames


def evidence(frames: Mapping[str, pd.DataFrame], alpha: float) -> pd.Series:
    """Every number notebook 01 quotes as evidence, from one seed's :func:`run_spps` frames (labels
    of the notebook: "NF, Scaled WS", "NF, He init (no WS)", "unnormalised", "BN-ReLU-Conv",
    "ReLU-BN-Conv", "NFNet-F0"): the values of :func:`spp_checks` and :func:`nfnet_checks`, and the
    descriptive numbers of the verdict table."""
    ws, he, plain = frames["NF, Scaled WS"], frames["NF, He init (no WS)"], frames["unnormalised"]
    brc, rbc, f0 = frames["BN-ReLU-Conv"], frames["ReLU-BN-Conv"], frames["NFNet-F0"]
    checks = pd.concat([spp_checks({"nf_ws": ws, "nf_he": he, "plain": plain, "bn_relu_conv": brc,
                                    "relu_bn_conv": rbc}, expected=ws.set_index("index")["expected_var"]),
                        nfnet_checks(f0, alpha, f0.set_index("index")["predicted_var"])], ignore_index=True)
    out = dict(zip(checks["check"], checks["value"], strict=True))
    growth, r2 = log_linear_growth(plain)
    last = lambda d: _blocks(d).groupby("stage")["avg_var"].last()  # noqa: E731
    out.update({
        "nf_he_sq_mean_block1": float(_blocks(he)["avg_sq_mean"].iloc[0]),
        "nf_he_sq_mean_last": float(he["avg_sq_mean"].iloc[-1]),
        "nf_he_var_last": float(he["avg_var"].iloc[-1]),
        "plain_final_var": float(plain["avg_var"].iloc[-1]),
        "relu_bn_conv_res_var_median": float(_blocks(rbc)["res_avg_var"].median()),
        "bn_relu_conv_res_var_median": float(_blocks(brc)["res_avg_var"].median()),
        **{f"relu_bn_conv_var_stage{int(s)}_end": float(v) for s, v in last(rbc).items()},
        "nfnet_res_var_vs_prediction": max_deviation_from(f0, f0.set_index("index")["predicted_res_var"],
                                                          "res_avg_var"),
    })
    return pd.Series(out, name="value")


def evidence_over_seeds(run: Callable[[int], Mapping[str, pd.DataFrame]], seeds: Iterable[int], alpha: float,
                        known: Mapping[int, Mapping[str, pd.DataFrame]] | None = None) -> pd.DataFrame:
    """:func:`evidence` for every seed (``run(seed)`` -> frames; seeds in ``known`` are not re-run):
    tidy, one row per seed and number (``seed``, ``name``, ``value``)."""
    rows = []
    for seed in seeds:
        frames = (known or {}).get(seed) or run(seed)
        rows += [{"seed": seed, "name": k, "value": v} for k, v in evidence(frames, alpha).items()]
    return pd.DataFrame(rows)


def spread(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Mean, min, max and the number of seeds of each number of :func:`evidence_over_seeds`
    (the min-max range: with 3 to 5 seeds, a t interval would rest on too few draws to trust its width)."""
    return per_seed.groupby("name", sort=False)["value"].agg(["mean", "min", "max", "count"])


def with_spread(summary: pd.DataFrame, name: str, fmt: str = ".2f") -> str:
    """``"mean [min, max]"`` of one number of :func:`spread`, each formatted with ``fmt``."""
    r = summary.loc[name]
    return f"{r['mean']:{fmt}} [{r['min']:{fmt}}, {r['max']:{fmt}}]"


# ------------------------------------------------------------------ NFNet-F0 on correlated input
NOISE, IMAGES = "N(0, 1) noise", "Fashion-MNIST, upsampled"  # the two inputs' labels


def correlated_images(images: torch.Tensor, batch: int, resolution: int, seed: int) -> torch.Tensor:
    """``batch`` images drawn by ``seed`` from ``images`` (uint8 ``N x 1 x H x W``, e.g. Fashion-MNIST's
    test split), bilinearly upsampled to ``resolution`` px, repeated to 3 channels and standardised
    over the whole batch to mean 0 and variance 1, so that they share N(0, 1) noise's first two
    moments; what differs is the correlation of neighbouring pixels (and of the three channels)."""
    pick = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))[:batch]
    x = F.interpolate(images[pick].to(torch.float32), size=(resolution, resolution), mode="bilinear",
                      align_corners=False).repeat(1, 3, 1, 1)
    return (x - x.mean()) / x.std(unbiased=False)


def nfnet_spps(inputs: Mapping[str, torch.Tensor], width: float, seed: int, device: Any = "cpu",
               ) -> tuple[Any, dict[str, pd.DataFrame]]:
    """One NFNet-F0 (skip gains 1, ``width`` fraction, initialised from ``seed``) and its SPP on each
    input of ``inputs`` (label -> batch), each joined with :func:`nfnet_prediction` (which assumes
    uncorrelated pixels): the same weights see every input, so the input is the only change."""
    torch.manual_seed(seed)
    model = create_model("nfnet_f0", skip_gain_init=1.0, width=width).to(device)
    prediction = nfnet_prediction(model)
    return model, {label: spp.signal_propagation(model, x.to(device)).join(prediction, on="index")
                   for label, x in inputs.items()}


def neighbour_correlation(x: torch.Tensor) -> float:
    """Pearson correlation of horizontally adjacent pixels of ``x`` (``N x C x H x W``), pooled over
    images and channels: about 0 for white noise, near 1 for a smooth image."""
    a, b = x[..., :, :-1].flatten().double(), x[..., :, 1:].flatten().double()
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


def first_conv_variances(model: Any, x: torch.Tensor) -> dict[str, float]:
    """Average channel variance of the stem's first conv output on ``x``: with its Scaled-WS weight
    (``first_conv_var``), and with the same weight scaled alike but not centred
    (``first_conv_var_uncentred``: ``gain * W / sqrt(N var)``, each row keeping its mean). Scaled WS
    gives every filter weights that sum to zero, so it passes nothing of an input that is constant
    across its window; the pair measures what that does to a given input."""
    conv = first_conv(model)
    plain = fold_conv(conv)  # the same conv (padding, stride) holding the standardised weight
    w = conv.weight.detach()
    var = w.var(dim=(1, 2, 3), unbiased=False, keepdim=True)
    with torch.no_grad():
        standardised = spp.channel_stats(plain(x))[1]
        scale = (conv.gain * conv.input_scale).view(-1, 1, 1, 1) / torch.sqrt(w[0].numel() * var)
        plain.weight.copy_(w * scale)
        uncentred = spp.channel_stats(plain(x))[1]
    return {"first_conv_var": standardised, "first_conv_var_uncentred": uncentred}


def nfnet_input_evidence(frames: Mapping[str, pd.DataFrame], inputs: Mapping[str, torch.Tensor] | None = None,
                         model: Any = None) -> pd.DataFrame:
    """Per input (label of ``frames``, :func:`nfnet_spps`): the stem output's variance (``stem_var``),
    the fraction of the variance each strided transition keeps (``kept_stage{s}``: variance after
    the stage's first block / before it; a 2 x 2 pool of uncorrelated pixels keeps about a
    quarter), the last block's variance, the largest squared channel mean, the largest deviation
    from the uncorrelated-pixel prediction and, given the ``inputs``, their
    :func:`neighbour_correlation` and (with the ``model``) :func:`first_conv_variances`.
    Tidy: ``input``, ``name``, ``value``."""
    rows = []
    for label, df in frames.items():
        var = df.set_index("index")["avg_var"]
        b = _blocks(df).set_index("index")
        out = {"stem_var": float(var.loc[0])}
        out.update({f"kept_stage{int(r.stage)}": float(var[i] / var[i - 1])
                    for i, r in b.iterrows() if r.block_in_stage == 0 and r.stage > 0})
        out.update(final_var=float(var.iloc[-1]), max_sq_mean=float(b["avg_sq_mean"].max()),
                   vs_prediction=max_deviation_from(df, df.set_index("index")["predicted_var"]))
        if inputs is not None:
            out["pixel_correlation"] = neighbour_correlation(inputs[label])
            if model is not None:
                out.update(first_conv_variances(model, inputs[label]))
        rows += [{"input": label, "name": k, "value": v} for k, v in out.items()]
    return pd.DataFrame(rows)


def nfnet_inputs_over_seeds(images: torch.Tensor, seeds: Iterable[int], batch: int, resolution: int,
                            width: float, device: Any = "cpu",
                            known: Mapping[int, tuple[Any, Mapping[str, pd.DataFrame]]] | None = None,
                            ) -> pd.DataFrame:
    """:func:`nfnet_input_evidence` for every seed, on N(0, 1) noise and on :func:`correlated_images`
    drawn from ``images``, both drawn by the seed that initialises the net (as in :func:`run_spps`);
    seeds in ``known`` (what :func:`nfnet_spps` returned for them) are not re-run. Tidy, with a
    ``seed`` column."""
    rows = []
    for seed in seeds:
        inputs = {NOISE: torch.randn(batch, 3, resolution, resolution,
                                     generator=torch.Generator().manual_seed(seed)),
                  IMAGES: correlated_images(images, batch, resolution, seed)}
        model, frames = (known or {}).get(seed) or nfnet_spps(inputs, width, seed, device)
        rows.append(nfnet_input_evidence(frames, {k: x.to(device) for k, x in inputs.items()}, model)
                    .assign(seed=seed))
    return pd.concat(rows, ignore_index=True)


def _range(per_seed: pd.DataFrame, name: str) -> pd.DataFrame:
    """Mean, min and max over seeds of one quantity, per input (``name`` "kept": the mean over
    the strided transitions of each seed first)."""
    if name == "kept":
        rows = per_seed[per_seed["name"].str.startswith("kept_stage")]
        per = rows.groupby(["input", "seed"])["value"].mean()
    else:
        per = per_seed[per_seed["name"] == name].set_index(["input", "seed"])["value"]
    return per.groupby("input").agg(["mean", "min", "max"])


def _apart(a: pd.Series, b: pd.Series) -> str:
    """Whether two min-max ranges over seeds overlap, in words."""
    return "the ranges over seeds do not overlap" if a["min"] > b["max"] or a["max"] < b["min"] \
        else "the ranges over seeds overlap"


def input_reading(per_seed: pd.DataFrame, noise: str = NOISE, images: str = IMAGES) -> str:
    """What changes on NFNet-F0's SPP when real images replace white noise, in sentences written from
    :func:`nfnet_input_evidence` rows over seeds (``seed``, ``input``, ``name``, ``value``): the stem's
    output variance, the fraction of variance the strided transitions keep and the last block's
    variance on each input (mean [min, max] over seeds), and the inputs' pixel correlation."""
    fmt = lambda r, f: f"{r['mean']:{f}} [{r['min']:{f}}, {r['max']:{f}}]"  # noqa: E731
    stem, kept, final = _range(per_seed, "stem_var"), _range(per_seed, "kept"), _range(per_seed, "final_var")
    more = "more" if kept.loc[images, "mean"] > kept.loc[noise, "mean"] else "less"
    fn, fi = final.loc[noise, "mean"], final.loc[images, "mean"]
    size = f"{fn / fi:.0f} times smaller" if fi < fn else f"{fi / fn:.1f} times larger"
    text = (f"On {noise} the stem's output has variance {fmt(stem.loc[noise], '.3g')}; on {images} "
            f"{fmt(stem.loc[images], '.2g')} ({_apart(stem.loc[noise], stem.loc[images])}). Across the "
            f"strided transitions the ResNet-D shortcut keeps on average {fmt(kept.loc[noise], '.0%')} of "
            f"the variance on noise and {fmt(kept.loc[images], '.0%')} on the images: {more} on the images "
            f"({_apart(kept.loc[noise], kept.loc[images])}). The last block's variance is "
            f"{fn:.3g} on noise and {fi:.3g} on the images, {size} (means over "
            f"{per_seed['seed'].nunique()} seeds, [min, max] in brackets).")
    mean = per_seed.groupby(["name", "input"])["value"].mean()
    if "first_conv_var" in mean:
        ws, raw, corr = mean["first_conv_var"], mean["first_conv_var_uncentred"], mean["pixel_correlation"]
        text += (f" Where the images lose it: the stem's first convolution alone leaves them variance "
                 f"{ws[images]:.2g} with its Scaled-WS weights and {raw[images]:.2g} with the same weights "
                 f"left uncentred (noise: {ws[noise]:.2g} and {raw[noise]:.2g}). Scaled WS makes every "
                 f"filter's weights sum to zero, so a filter passes nothing of an input that is constant "
                 f"across its window, and adjacent pixels of the upsampled images correlate at "
                 f"{corr[images]:.3f} (noise: {corr[noise]:.3f}).")
    return text


# ------------------------------------------------------------------ the notebook's closing summary
def held_at(per_seed: pd.DataFrame, checks: pd.DataFrame) -> pd.Series:
    """For each check of :func:`spp_checks` / :func:`nfnet_checks` (its ``op`` and ``bound``), at how
    many of the seeds of :func:`evidence_over_seeds` its value meets the bound: ``"k of n"``."""
    out = {}
    for r in checks.itertuples():
        v = per_seed.loc[per_seed["name"] == r.check, "value"]
        ok = (v < r.bound) if r.op == "<" else (v > r.bound)
        out[r.check] = f"{int(ok.sum())} of {len(v)}"
    return pd.Series(out)


def findings(per_seed: pd.DataFrame, checks: pd.DataFrame, f0_inputs: pd.DataFrame, setting: str,
             theory_last: float) -> str:
    """Notebook 01's "What we found", in Markdown written from the numbers: each figure's shape with
    its value over seeds (mean [min, max]) and at how many seeds its check held, then what changes
    for NFNet-F0 on images (:func:`input_reading`). ``theory_last``: 1 + k alpha^2 at the last block."""
    ev, held = spread(per_seed), held_at(per_seed, checks)
    q = lambda name, fmt=".2f": with_spread(ev, name, fmt)  # noqa: E731
    n = int(per_seed["seed"].nunique())
    return "\n".join([
        f"Setting: {setting}; every number is the mean over {n} seeds of input noise and initialisation, "
        "with the [min, max] over them.",
        "",
        f"* **NF-ResNet with Scaled WS (Fig. 2).** Its variance stays within "
        f"{q('nf_ws_variance_vs_theory', '.1%')} of the line 1 + k alpha^2 and its squared channel means "
        f"stay at or below "
        f"{q('nf_ws_no_mean_shift', '.3f')} (both bounds held at {held['nf_ws_variance_vs_theory']} and "
        f"{held['nf_ws_no_mean_shift']} seeds).",
        f"* **The same net without WS.** Its squared channel mean reaches {q('nf_he_sq_mean_last')} at the "
        f"last block, {q('nf_he_mean_vs_ws', '.0f')} times the WS net's, and exceeds its variance at every "
        f"stage end (held at {held['nf_he_mean_dominates']} seeds): the mean shift that WS removes. "
        f"Its variance ends at {q('nf_he_var_last')}, against {theory_last:.2f} on the 1 + k alpha^2 line "
        "that the paper describes it following.",
        f"* **Unnormalised.** The variance grows {q('plain_growth_per_block')} times per block, a straight "
        f"line on a log axis (R^2 {q('plain_log_linear_r2', '.3f')}).",
        f"* **BatchNorm (Fig. 1).** In ReLU-BN-Conv order the squared mean stays below "
        f"{q('relu_bn_conv_no_mean_shift', '.1e')} of the variance; in BN-ReLU-Conv order it is at least "
        f"{q('bn_relu_conv_mean_shift')} of it at every stage end (theory {RELU_SQ_MEAN_RATIO:.2f}).",
        f"* **NFNet-F0 on noise.** It does not follow 1 + k alpha^2: its variance stays within "
        f"{q('nfnet_var_vs_prediction', '.1%')} of the prediction for uncorrelated pixels, in which each "
        "ResNet-D transition keeps about a quarter of the variance.",
        f"* **NFNet-F0 on images.** {input_reading(f0_inputs)}",
    ])
