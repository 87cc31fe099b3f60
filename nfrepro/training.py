"""The run engine: one model, the paper's recipe (App. A), a self-describing run folder.

``train(TrainConfig(...))`` writes to its run folder:

- ``config.json``: the configuration, so a run can be repeated;
- ``metrics.csv``: one row per epoch (epoch, step, train_loss, test_top1, test_top1_ema, lr,
  frac_clipped, wall_time_s, status), test accuracies in percent, and beside it ``metrics.json``,
  the run record of :func:`nfrepro.records.save_results` (git commit, device, status);
- ``checkpoint.pt``: written atomically after every epoch (:mod:`nfrepro.checkpoint`).

Calling ``train`` again on the same folder continues where the checkpoint left off and ends with
the same weights, bit for bit on the CPU, as an uninterrupted run; a finished run is read back,
not retrained. A loss that is not finite or exceeds ``max_loss`` ends the run as ``diverged``
(recorded, no exception): diverging *is* a result when studying batch size and clipping (§4.1).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from . import distributed as dist
from .augment import Augment
from .checkpoint import CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .data import TensorLoader, load_dataset
from .recipe import EMA, cross_entropy, make_optimizer, make_scheduler, sam_backward, scaled_lr
from .records import save_results
from .registry import create_model
from .run_config import ConfigError, TrainConfig, check_same_config, run_name

__all__ = ["TrainConfig", "ConfigError", "RunResult", "run_name", "train", "evaluate"]

METRIC_COLUMNS = ["epoch", "step", "train_loss", "test_top1", "test_top1_ema", "lr",
                  "frac_clipped", "wall_time_s", "status"]
FINISHED = ("completed", "diverged")


@dataclass
class RunResult:
    run_dir: Path
    status: str                       # "completed" or "diverged"
    config: TrainConfig
    metrics: pd.DataFrame             # the rows of metrics.csv
    wall_time_s: float
    model: nn.Module | None = None    # trained model (None when read back from a finished run)
    ema_model: nn.Module | None = None

    def final(self, column: str) -> float:
        values = self.metrics[column].dropna()
        return float(values.iloc[-1]) if len(values) else float("nan")


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
             autocast: Callable[[], Any] = contextlib.nullcontext) -> float:
    """Top-1 accuracy in percent over ``batches`` of (images, labels), summed across processes.

    Batches may come from a :class:`TensorLoader` (already on the device) or a DataLoader.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    counts = torch.zeros(2, device=device, dtype=torch.float64)  # correct, total
    for x, y in batches:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast():
            pred = model(x).argmax(dim=1)
        counts += torch.stack([(pred == y).sum(), torch.tensor(y.numel(), device=y.device)])
    model.train(was_training)
    correct, total = dist.all_reduce_(counts).tolist()
    return 100.0 * correct / max(total, 1)


def _finished(run_dir: Path, config: TrainConfig) -> RunResult | None:
    """The result of a run that already completed or diverged in ``run_dir``, else None."""
    try:
        record = json.loads((run_dir / "metrics.json").read_text())
        metrics = pd.read_csv(run_dir / "metrics.csv")
    except (OSError, ValueError):
        return None
    if record.get("status") not in FINISHED:
        return None
    check_same_config(record.get("parameters", {}), config, run_dir)
    return RunResult(run_dir, record["status"], config, metrics, record.get("wall_time_s", 0.0))


def _write_metrics(run_dir: Path, rows: list[dict], config: TrainConfig, wall: float,
                   status: str, device: torch.device, world_size: int) -> None:
    df = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    tmp = save_results(df, run_dir / "metrics.tmp.csv", params=config.to_dict(), wall_time_s=wall,
                       device=device, status=status, world_size=world_size)
    os.replace(tmp.with_suffix(".json"), run_dir / "metrics.json")
    os.replace(tmp, run_dir / "metrics.csv")


def train(config: TrainConfig, on_epoch_end: Callable[[int, dict], None] | None = None) -> RunResult:
    """Train (or resume, or read back) the run ``config`` describes; see the module docstring.

    ``on_epoch_end(epoch, row)`` is called after each epoch's checkpoint is written.
    """
    config.validate()
    world_size = dist.world_size_from_env()
    if config.batch_size % world_size:  # checked before joining the process group
        raise ConfigError(f"batch size {config.batch_size} is not divisible by the number of "
                          f"processes ({world_size}): use a multiple of {world_size}")
    info = dist.setup(config.device)
    from .profiles import project_root
    run_dir = Path(config.run_dir) if config.run_dir else project_root() / "runs" / run_name(config)
    done = _finished(run_dir, config)
    if done is not None:
        return done
    device, main = info.device, info.is_main
    use_amp = config.amp == "bf16" or (config.amp == "auto" and device.type == "cuda")
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if use_amp \
        else contextlib.nullcontext
    channels_last = device.type == "cuda" if config.channels_last is None else config.channels_last

    train_data = load_dataset(config.dataset, True, config.data_root, config.download,
                              config.train_subset)
    test_data = load_dataset(config.dataset, False, config.data_root, config.download,
                             config.test_subset)
    torch.manual_seed(config.seed)  # same initial weights in every process
    random.seed(config.seed)
    np.random.seed(config.seed)
    model = create_model(config.model, **{"num_classes": train_data.num_classes,
                                          "in_chans": train_data.images.shape[1],
                                          **config.model_kwargs})
    model = model.to(device, memory_format=torch.channels_last if channels_last
                     else torch.preserve_format)
    if info.rank > 0:  # own dropout / stochastic-depth masks per process
        torch.manual_seed(config.seed * 100_003 + info.rank)
    augment = None
    if config.crop_padding or config.flip or config.mix or config.randaugment:
        augment = Augment(train_data.num_classes, config.crop_padding, config.flip, config.mix,
                          config.mixup_alpha, tuple(config.randaugment) if config.randaugment
                          else None, seed=config.seed)
    train_loader = TensorLoader(train_data, config.batch_size, True, config.seed, device, augment,
                                info.rank, info.world_size, channels_last)
    test_loader = TensorLoader(test_data, config.eval_batch_size * info.world_size, False,
                               device=device, rank=info.rank, world_size=info.world_size,
                               channels_last=channels_last)
    per_epoch = len(train_loader)
    total = config.steps or config.epochs * per_epoch
    n_epochs = math.ceil(total / per_epoch)
    warmup = min(round(config.warmup_epochs * per_epoch), total)
    opt = make_optimizer(model, scaled_lr(config.base_lr, config.batch_size), config.weight_decay,
                         config.momentum, config.nesterov, config.clipping, config.clip_eps,
                         config.clip_classifier, config.clip_exclude_first_conv,
                         config.clip_exclude_stages)
    sched = make_scheduler(opt, warmup, total)
    ema = EMA(model, config.ema_decay) if config.ema_decay is not None else None
    net: nn.Module = model
    if info.enabled:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None)
    if config.compile:
        net = torch.compile(net)

    epoch, step, rows, wall_before = 0, 0, [], 0.0
    ckpt_path = run_dir / "checkpoint.pt"
    if ckpt_path.exists():
        ck = load_checkpoint(ckpt_path, required=("config", "model", "optimizer", "scheduler",
                                                  "loader", "rng", "epoch", "step", "rows"))
        check_same_config(ck["config"], config, run_dir)
        try:
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            if ema is not None:
                ema.load_state_dict(ck["ema"])
        except (RuntimeError, KeyError, ValueError, TypeError) as err:
            raise CheckpointError(f"checkpoint {ckpt_path} does not fit this model / optimizer "
                                  f"({str(err).splitlines()[0][:120]}): delete it to start afresh") from err
        sched.load_state_dict(ck["scheduler"])
        train_loader.load_state_dict(ck["loader"])
        states = ck["rng"]
        set_rng_state(states[info.rank] if len(states) == info.world_size else states[0])
        epoch, step, rows, wall_before = ck["epoch"], ck["step"], ck["rows"], ck["wall_time_s"]
        if ck.get("status") == "completed":  # killed between the last checkpoint and metrics
            if main:
                _write_metrics(run_dir, rows, config, wall_before, "completed", device,
                               info.world_size)
            return RunResult(run_dir, "completed", config, pd.DataFrame(rows, columns=METRIC_COLUMNS),
                             wall_before, model, ema.module if ema is not None else None)
    elif main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")

    def loss_of(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with autocast():
            return cross_entropy(net(x), y, config.label_smoothing)

    started = time.perf_counter()
    status = "running"
    bar = tqdm(total=total, initial=step, desc=run_dir.name, disable=not (config.progress and main),
               leave=False, dynamic_ncols=True)
    while epoch < n_epochs and status == "running":
        net.train()
        sums = torch.zeros(3, device=device)  # loss, fraction of units clipped, steps
        bad = torch.zeros((), device=device)  # 1 once a loss was non-finite or above max_loss
        todo, lr = min(per_epoch, total - step), float("nan")
        for i, (x, y) in enumerate(train_loader):
            if i == todo:
                break
            opt.zero_grad(set_to_none=True)
            if config.sam_rho is not None:
                loss = sam_backward(net, loss_of, x, y, config.sam_rho, config.sam_fraction)
            else:
                loss = loss_of(x, y)
                loss.backward()
            lr = opt.param_groups[0]["lr"]
            opt.step()
            sched.step()
            if ema is not None:
                ema.update(model, step)  # t = updates made before this one (official)
            step += 1
            loss = loss.detach().float()
            clipped = opt.last_stats["frac_units_clipped"] if config.clipping else 0.0
            sums += torch.stack([loss, torch.as_tensor(clipped, device=device, dtype=torch.float32),
                                 torch.ones((), device=device)])
            bad = torch.maximum(bad, (~torch.isfinite(loss) | (loss > config.max_loss)).float())
            bar.update()
            if step % config.check_every == 0 or i == todo - 1:
                if dist.all_reduce_(bad.clone(), "max").item() > 0:
                    status = "diverged"
                    break
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        epoch += 1
        sums = dist.all_reduce_(sums) / info.world_size
        n = max(sums[2].item(), 1.0)
        row = {"epoch": epoch, "step": step, "train_loss": sums[0].item() / n,
               "test_top1": float("nan"), "test_top1_ema": float("nan"), "lr": lr,
               "frac_clipped": sums[1].item() / n if config.clipping else float("nan"),
               "wall_time_s": 0.0, "status": status}
        if status == "running":
            if epoch % config.eval_every == 0 or epoch == n_epochs:
                row["test_top1"] = evaluate(model, test_loader, autocast)
                if ema is not None:
                    row["test_top1_ema"] = evaluate(ema.module, test_loader, autocast)
            if epoch == n_epochs:
                status = row["status"] = "completed"
        wall = wall_before + time.perf_counter() - started
        row["wall_time_s"] = round(wall, 3)
        rows.append(row)
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", top1=f"{row['test_top1']:.1f}")
        if status != "diverged":  # keep the last good checkpoint of a diverged run
            states = dist.all_gather_object(rng_state())
            if main:
                save_checkpoint({"config": config.to_dict(), "epoch": epoch, "step": step,
                                 "rows": rows, "wall_time_s": wall, "status": status,
                                 "model": model.state_dict(), "optimizer": opt.state_dict(),
                                 "ema": ema.state_dict() if ema is not None else None,
                                 "scheduler": sched.state_dict(),
                                 "loader": train_loader.state_dict(), "rng": states}, ckpt_path)
        if main:
            _write_metrics(run_dir, rows, config, wall, status, device, info.world_size)
        dist.barrier()
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)
    bar.close()
    return RunResult(run_dir, status, config, pd.DataFrame(rows, columns=METRIC_COLUMNS),
                     wall_before + time.perf_counter() - started, model,
                     ema.module if ema is not None else None)
