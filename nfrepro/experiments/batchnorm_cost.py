r"""Notebook 06, part 5: what BatchNorm costs in a training step (NFNets T6, §1-2).

The paper's speed claim (T6: the "-NF, +BN" NFNets are 20-40% slower to train) is about whole
training steps on accelerators. Here, on the CPU and on notebook 06's small nets, three things are
measured in one run: NF's and BN's training steps timed round-robin on the same batch
(:func:`nfrepro.bench.harness.step_times`, their ratio per round), NF's weight standardization
alone (the part of NF's step that grows with the parameters, not the batch), and BatchNorm's share
of BN's step (``torch.profiler``). Timed at notebook 05's batch of 2 and at the training batch, so
that the two notebooks' pairs can be read side by side: 05 times NFNet-F0 against its BatchNorm
twin (71M parameters at 192 px, AGC on), 06 the small ResNets (tens of thousands at 28 px,
unclipped, as notebook 06 trains them).
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from nfrepro.analysis import verdicts
from nfrepro.bench.harness import make_batch, paired_ratio, quiet_profile, step_times, train_step_fn
from nfrepro.layers.weight_standardization import WSConv2d
from nfrepro.optim.recipe import BASE_LR, scaled_lr


def _batch(model: nn.Module, batch_size: int, px: int, in_chans: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = make_batch(batch_size, px, "cpu", num_classes=model.get_classifier().out_features)
    return x[:, :in_chans].contiguous(), y


def _standardize_all(model: nn.Module):
    """One forward and backward of Scaled WS over every WS conv's weights: the part of NF's step
    that grows with the parameters, not with the batch."""
    convs = [m for m in model.modules() if isinstance(m, WSConv2d)]

    def run() -> None:
        weights = [m.standardized_weight() for m in convs]
        torch.autograd.backward(weights, [torch.ones_like(w) for w in weights])
    return run


def step_times_pair(nf_model: nn.Module, bn_model: nn.Module, batch_size: int, px: int = 28,
                    in_chans: int = 1, rounds: int = 20, warmup: int = 2) -> pd.DataFrame:
    """NF's and BN's training step (the engine's step, SGD without clipping, fp32), and NF's weight
    standardization alone, timed round-robin (:func:`nfrepro.bench.harness.step_times`) on the same
    batch on copies of the nets: one row per round, milliseconds, and ``ratio`` = BN / NF."""
    nf, bn = copy.deepcopy(nf_model), copy.deepcopy(bn_model)
    x, y = _batch(bn, batch_size, px, in_chans)
    sides = {"NF": train_step_fn(nf, x, y, clip=None, amp="off"),
             "BN": train_step_fn(bn, x, y, clip=None, amp="off"), "WS": _standardize_all(nf)}
    t = step_times(sides, repeats=rounds, warmup=warmup)
    out = pd.DataFrame({"round": range(rounds), "nf_ms": np.multiply(t["NF"], 1e3),
                        "bn_ms": np.multiply(t["BN"], 1e3), "ws_ms": np.multiply(t["WS"], 1e3)})
    return out.assign(batch_size=batch_size, ratio=out["bn_ms"] / out["nf_ms"],
                      threads=torch.get_num_threads())


def batchnorm_share(model: nn.Module, batch_size: int = 256, px: int = 28, in_chans: int = 1,
                    steps: int = 3, repeats: int = 5) -> pd.DataFrame:
    """The share of a training step's operator time spent in BatchNorm (forward and backward).

    ``torch.profiler`` over ``steps`` training steps (the engine's step, :func:`train_step_fn`,
    SGD without clipping), ``repeats`` times after one untimed step; self time of every operator
    whose name contains ``batch_norm``, over the self time of all operators. A profiler adds its
    own overhead to each op, so the share is an estimate; the repeats give its spread.
    """
    model = copy.deepcopy(model)
    x, y = _batch(model, batch_size, px, in_chans)
    step = train_step_fn(model, x, y, clip=None, amp="off")
    step()
    rows = []
    for r in range(repeats):
        with quiet_profile() as prof:  # no profiler log lines in the notebook
            for _ in range(steps):
                step()
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events)
        bn = sum(e.self_cpu_time_total for e in events if "batch_norm" in e.key)
        rows.append({"batch_size": batch_size, "repeat": r, "bn_us": bn / steps, "total_us": total / steps,
                     "share": bn / total})
    return pd.DataFrame(rows)


def cost_table(times: pd.DataFrame, shares: pd.DataFrame) -> pd.DataFrame:
    """Per batch size: median NF and BN steps, BN / NF (median of the per-round ratios with its 95%
    bootstrap interval, :func:`nfrepro.bench.harness.paired_ratio`), NF's weight standardization,
    BatchNorm's share of BN's step, and each step without its normaliser's own work."""
    rows = []
    for b, g in times.groupby("batch_size"):
        ratio = paired_ratio(list(g["bn_ms"]), list(g["nf_ms"]))
        share = float(shares.loc[shares["batch_size"] == b, "share"].mean())
        nf, bn, ws = (float(g[c].median()) for c in ("nf_ms", "bn_ms", "ws_ms"))
        rows.append({"batch_size": b, "nf_ms": nf, "bn_ms": bn, "bn_over_nf": ratio["ratio_median"],
                     "ci_low": ratio["ratio_ci_low"], "ci_high": ratio["ratio_ci_high"], "ws_ms": ws,
                     "bn_share": share, "bn_ops_ms": share * bn, "nf_without_ws_ms": nf - ws,
                     "bn_without_bn_ms": bn * (1 - share), "rounds": len(g),
                     "threads": int(g["threads"].iloc[0])})
    return pd.DataFrame(rows)


def _percent_ci(share: pd.Series) -> str:
    _, low, high, _ = verdicts.mean_ci(share)
    return f"[{low:.0%}, {high:.0%}]"


def timing_setting(batch_size: int, rounds: int, px: int = 28) -> verdicts.Setting:
    """The setting of a timing: random ``px`` px batches on this machine, no training."""
    return verdicts.Setting(dataset=f"random {px} px batches", train_images="none (timing)",
                            epochs="none", steps=f"{rounds} timed", batch_size=batch_size,
                            peak_lr=scaled_lr(BASE_LR, batch_size), warmup_steps="none", clipping="none",
                            seeds=1)


def compute_claims(times: pd.DataFrame, shares: pd.DataFrame, margin: float = 0.01) -> list[dict]:
    """BatchNorm's share of BN's step (> ``margin``) at the largest timed batch; NF's step faster
    than BN's (per-round BN / NF > 1) at every timed batch, with the weight standardization NF pays."""
    table = cost_table(times, shares).set_index("batch_size")
    big = int(table.index.max())
    s = shares.loc[shares["batch_size"] == big, "share"]
    bn_ops = table.loc[big, "bn_ops_ms"]
    rows = [verdicts.claim_row(f"BatchNorm's share of BN's training step at batch {big} (> {margin:g})", s,
                               "greater", margin=margin, setting=timing_setting(big, len(s)),
                               reading=f"at batch {big} BatchNorm's operators take {s.mean():.0%} "
                                       f"{_percent_ci(s)} of BN's step (about {bn_ops:.1f} ms of "
                                       f"{table.loc[big, 'bn_ms']:.1f})")]
    for b, r in table.iterrows():
        g = times.loc[times["batch_size"] == b, "ratio"]
        rows.append(verdicts.claim_row(
            f"NF's training step faster than BN's at batch {b} (BN / NF step time > 1)", g, "greater",
            margin=1.0, setting=timing_setting(int(b), len(g)),
            reading=f"at batch {b} BN's step takes {r.bn_over_nf:.2f}x NF's (NF {r.nf_ms:.1f} ms, of which "
                    f"weight standardization {r.ws_ms:.1f} ms; BN {r.bn_ms:.1f} ms, of which BatchNorm "
                    f"{r.bn_ops_ms:.1f} ms)"))
    return rows


def batchnorm_traffic(model: nn.Module, x: torch.Tensor) -> pd.DataFrame:
    """Each BatchNorm layer's input size for one batch, and the activation-sized passes it makes per
    training step: forward 3 (read for the statistics, read and write to normalise), backward 5
    (read the input and the output gradient for two reductions, read both again and write the input
    gradient). A lower bound: a fused kernel may merge some reads, an unfused one adds passes."""
    sizes = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: sizes.append(inp[0].numel()))
             for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(x)  # eval: the running averages are not touched
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    elements = int(np.sum(sizes))
    return pd.DataFrame([{"bn_layers": len(sizes), "elements_per_batch": elements,
                          "passes_per_step": 8, "bytes_per_step_fp32": elements * 8 * 4}])


def cost_notes(costs: pd.DataFrame) -> list[str]:
    """Lines for the notebook's findings: each timed batch's parts, and what they mean beside 05."""
    out = [f"- At batch {c.batch_size}: NF's step {c.nf_ms:.1f} ms, of which weight standardization "
           f"{c.ws_ms:.1f} ms; BN's {c.bn_ms:.1f} ms, of which BatchNorm {c.bn_ops_ms:.1f} ms; BN / NF = "
           f"{c.bn_over_nf:.2f} [{c.ci_low:.2f}, {c.ci_high:.2f}]." for c in costs.itertuples()]
    return out + ["- Weight standardization is a cost per step, BatchNorm a cost per image, so the batch "
                  "decides which net is faster: at notebook 05's batch of 2 (where NFNet-F0's 71M weights "
                  "and AGC weigh more still) the BN net can be the faster one on a CPU; the paper's 20-40% "
                  "is for large batches on accelerators."]


def notebook05_pair(results_dir: str | Path) -> pd.DataFrame:
    """Notebook 05's NF / BN pair (NFNet-F0 and its BatchNorm twin, Table 6), read from its results
    in ``results_dir``, beside this notebook's: slow (BN) / fast (NF) step time, medians in ms.
    Empty when notebook 05 has not written its table in this profile."""
    path = Path(results_dir) / "train_step_latency.csv"
    if not path.exists():
        return pd.DataFrame(columns=["pair", "batch_size", "bn_over_nf", "ci_low", "ci_high", "nf_ms",
                                     "bn_ms"])
    df = pd.read_csv(path)
    pairs = df[(df["family"] == "pair") & df["slow"].astype(str).str.endswith("+BN")]
    wide = pairs.pivot_table(index=["label", "batch_size"], values="value", columns="metric").reset_index()
    return pd.DataFrame({"pair": "notebook 05: " + wide["label"], "batch_size": wide["batch_size"],
                         "bn_over_nf": wide["ratio_median"], "ci_low": wide["ratio_ci_low"],
                         "ci_high": wide["ratio_ci_high"], "nf_ms": wide["fast_median_ms"],
                         "bn_ms": wide["slow_median_ms"]})
