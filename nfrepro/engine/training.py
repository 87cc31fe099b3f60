"""The run engine: one model, the paper's recipe (App. A), a self-describing run folder.

``train(TrainConfig(...))`` writes to its run folder:

- ``config.json``: the configuration, so a run can be repeated;
- ``metrics.csv``: one row per epoch (epoch, step, train_loss, test_top1, test_top1_ema, lr,
  frac_clipped, wall_time_s, status), test accuracies in percent, and beside it ``metrics.json``,
  the run record of :func:`nfrepro.engine.records.save_results` (git commit, device, status);
- ``checkpoint.pt``: written atomically after every epoch (:mod:`nfrepro.engine.checkpoint`).

Calling ``train`` again on the same folder continues where the checkpoint left off and ends with
the same weights, bit for bit on the CPU, as an uninterrupted run; a finished run is read back,
not retrained. A loss that is not finite or exceeds ``max_loss`` ends the run as ``diverged``
(recorded, no exception): diverging *is* a result when studying batch size and clipping (§4.1).
"""
from __future__ import annotations

import contextlib
import functools
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from nfrepro.data import folder
from nfrepro.data.augment import Augment
from nfrepro.data.datasets import load_dataset
from nfrepro.data.loader import TensorLoader
from nfrepro.engine import distributed as dist
from nfrepro.engine import finetune
from nfrepro.engine.checkpoint import (
    CheckpointError,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from nfrepro.engine.config import (
    FOLDER,
    ConfigError,
    TrainConfig,
    check_same_config,
    run_name,
)
from nfrepro.engine.device import autocast, check_device, memory_format
from nfrepro.engine.faults import (
    atomic_write,
    check_output_dir,
    error_line,
    exclusive_lock,
    remove_temp_files,
)
from nfrepro.engine.profiles import project_root
from nfrepro.engine.progress import progress_bar
from nfrepro.engine.run_folder import (
    METRIC_COLUMNS,
    RunResult,
    finished_run,
    refuse_foreign_files,
    write_metrics,
)
from nfrepro.engine.step_log import StepLogger, tensorboard_writer
from nfrepro.models.factory import create_model
from nfrepro.optim.agc import clip_parameters
from nfrepro.optim.norm_clipping import GradNormClip, TensorwiseAGC
from nfrepro.optim.recipe import (
    EMA,
    LABEL_SMOOTHING,
    cross_entropy,
    make_optimizer,
    make_scheduler,
    sam_backward,
    scaled_lr,
)

__all__ = ["TrainConfig", "ConfigError", "RunResult", "run_name", "train", "evaluate"]

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


@dataclass
class _Parts:
    """Everything one run steps: built fresh, then filled from the checkpoint when resuming."""
    model: nn.Module                  # the user's model (EMA, checkpoints, evaluation)
    net: nn.Module                    # what the step calls: the model, DDP- or compile-wrapped
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    ema: EMA | None
    train_loader: TensorLoader
    test_loader: TensorLoader
    autocast: Callable[[], Any]
    total_steps: int
    n_epochs: int
    norm_clip: GradNormClip | TensorwiseAGC | None = None  # clip_norm, or layer-wise AGC: before each step


def _build(config: TrainConfig, info: dist.DistInfo) -> _Parts:
    device = info.device
    if config.dataset == FOLDER:
        classes, channels = folder.num_classes(config.data_root), 3
    else:
        train_data = load_dataset(config.dataset, True, config.data_root, config.download,
                                  config.train_subset)
        test_data = load_dataset(config.dataset, False, config.data_root, config.download,
                                 config.test_subset).select_classes(config.classes)
        train_data = train_data.select_classes(config.classes, config.per_class)
        classes, channels = train_data.num_classes, train_data.images.shape[1]
    torch.manual_seed(config.seed)  # same initial weights in every process
    random.seed(config.seed)
    np.random.seed(config.seed)
    model = create_model(config.model, **{"num_classes": classes, "in_chans": channels,
                                          **config.model_kwargs})
    if config.pretrained is not None:
        finetune.load_weights(model, config.pretrained)
    if config.freeze_backbone:
        finetune.freeze_backbone(model)
    if config.bn_reestimate:  # the unaugmented training images, in order: no generator is drawn from
        finetune.reestimate_bn_statistics(model, TensorLoader(train_data, config.eval_batch_size))
    channels_last = memory_format(device, config.channels_last, model) == torch.channels_last
    model = model.to(device, memory_format=torch.channels_last if channels_last
                     else torch.preserve_format)
    if info.rank > 0:  # own dropout / stochastic-depth masks per process
        torch.manual_seed(config.seed * 100_003 + info.rank)
    augment = None
    if config.crop_padding or config.flip or config.mix or config.randaugment:
        augment = Augment(classes, config.crop_padding, config.flip, config.mix,
                          config.mixup_alpha, tuple(config.randaugment) if config.randaugment
                          else None, seed=config.seed)
    if config.dataset == FOLDER:  # decoded and cropped from the files every epoch (data.folder)
        size = config.image_size or model.pretrained_cfg["input_size"][-1]
        common = dict(image_size=size, device=device, rank=info.rank, world_size=info.world_size,
                      channels_last=channels_last, workers=config.loader_workers)
        train_loader = folder.FolderLoader(config.data_root, train=True, batch_size=config.batch_size,
                                           seed=config.seed, augment=augment, subset=config.train_subset,
                                           **common)
        test_loader = folder.FolderLoader(config.data_root, train=False,
                                          batch_size=config.eval_batch_size * info.world_size,
                                          subset=config.test_subset, **common)
    else:
        train_loader = TensorLoader(train_data, config.batch_size, shuffle=True, seed=config.seed,
                                    device=device, augment=augment, rank=info.rank,
                                    world_size=info.world_size, channels_last=channels_last)
        test_loader = TensorLoader(test_data, config.eval_batch_size * info.world_size, False,
                                   device=device, rank=info.rank, world_size=info.world_size,
                                   channels_last=channels_last)
    per_epoch = len(train_loader)
    total = config.steps or config.epochs * per_epoch
    tensorwise = config.clipping is not None and config.agc_granularity == "tensor"
    opt = make_optimizer(model, scaled_lr(config.base_lr, config.batch_size),
                         weight_decay=config.weight_decay, momentum=config.momentum,
                         nesterov=config.nesterov, optimizer=config.optimizer,
                         clipping=None if tensorwise else config.clipping, selection=config.agc,
                         warn_nonfinite=False)  # the engine stops a run whose loss is not finite
    norm_clip = GradNormClip(model.parameters(), config.clip_norm) if config.clip_norm else \
        TensorwiseAGC(clip_parameters(model, config.agc), config.clipping, eps=config.agc.eps) if tensorwise \
        else None
    sched = make_scheduler(opt, min(round(config.warmup_epochs * per_epoch), total), total)
    ema = EMA(model, config.ema_decay) if config.ema_decay is not None else None
    net: nn.Module = model
    if info.enabled:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None)
    if config.compile:
        net = torch.compile(net)
    return _Parts(model, net, opt, sched, ema, train_loader, test_loader,
                  functools.partial(autocast, device, config.amp), total, math.ceil(total / per_epoch),
                  norm_clip)


def build_run(config: TrainConfig) -> _Parts:
    """Everything one single-process run of ``config`` steps (model, optimizer with AGC if on,
    schedule, loaders, autocast), freshly initialised exactly as :func:`train` builds it, for
    diagnostics that step a run by hand (``nfrepro.experiments.agc_diagnosis``); nothing is saved."""
    dev = check_device(config.device)
    return _build(config, dist.DistInfo(rank=0, world_size=1, local_rank=0, device=dev))


def _resume(parts: _Parts, path: Path, config: TrainConfig, info: dist.DistInfo) -> dict[str, Any]:
    """Load ``path`` into ``parts``; return its progress (epoch, step, rows, wall_time_s, status)."""
    ck = load_checkpoint(path, required=("config", "model", "optimizer", "scheduler", "loader",
                                         "rng", "epoch", "step", "rows", "wall_time_s"))
    check_same_config(ck["config"], config, path.parent)
    try:
        parts.model.load_state_dict(ck["model"])
        parts.opt.load_state_dict(ck["optimizer"])
        if parts.ema is not None:
            parts.ema.load_state_dict(ck["ema"])
        parts.sched.load_state_dict(ck["scheduler"])
        parts.train_loader.load_state_dict(ck["loader"])
    except (RuntimeError, KeyError, ValueError, TypeError) as err:
        raise CheckpointError(f"checkpoint {path} does not fit this model / optimizer "
                              f"({error_line(err, 120)}): delete it to start afresh") from err
    states = ck["rng"]  # one per process; a different process count reuses rank 0's
    set_rng_state(states[info.rank] if len(states) == info.world_size else states[0])
    return {k: ck[k] for k in ("epoch", "step", "rows", "wall_time_s")} | {
        "status": ck.get("status", "running")}


def _save(parts: _Parts, path: Path, config: TrainConfig, progress: dict[str, Any],
          main: bool) -> None:
    states = dist.all_gather_object(rng_state())  # every process takes part
    if main:
        save_checkpoint({"config": config.to_dict(), **progress,
                         "model": parts.model.state_dict(), "optimizer": parts.opt.state_dict(),
                         "ema": parts.ema.state_dict() if parts.ema is not None else None,
                         "scheduler": parts.sched.state_dict(),
                         "loader": parts.train_loader.state_dict(), "rng": states}, path)


def _step_hook(config: TrainConfig, run_dir: Path, main: bool,
               on_step: Callable[[int, dict], None] | None,
               resumed_step: int = 0) -> Callable[[int, dict], None] | None:
    """The user's ``on_step`` and, on rank 0, the CSV / TensorBoard logger of ``config.log_every``;
    a run resumed at ``resumed_step`` first drops what a killed run logged after it."""
    logger = None
    if main and (config.log_every or config.tensorboard):
        writer = tensorboard_writer(run_dir / "tensorboard", purge_step=resumed_step + 1 if resumed_step
                                    else None) if config.tensorboard else None
        logger = StepLogger(config.log_every or config.check_every,
                            run_dir / "steps.csv" if config.log_every else None, writer)
        logger.resume_at(resumed_step)
    if logger is None:
        return on_step

    def hook(step: int, metrics: dict) -> None:
        logger(step, metrics)
        if on_step is not None:
            on_step(step, metrics)
    hook.logger = logger  # type: ignore[attr-defined]
    return hook


def train_step(net: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               autocast: Callable[[], Any] = contextlib.nullcontext,
               label_smoothing: float = LABEL_SMOOTHING,
               before_step: Callable[[], Any] | None = None) -> torch.Tensor:
    """One update: zero the gradients, forward under ``autocast()``, cross-entropy (fp32, label
    smoothing), backward, ``before_step()`` if given, then ``opt.step()`` (AGC, if the optimizer is
    wrapped, clips first; SGD adds weight decay). Returns the loss, detached, on the device: reading
    it is the caller's choice of when to sync. The step the engine trains with and the benchmarks time.
    """
    opt.zero_grad(set_to_none=True)
    with autocast():
        loss = cross_entropy(net(x), y, label_smoothing)
    loss.backward()
    if before_step is not None:
        before_step()
    opt.step()
    return loss.detach()


@contextlib.contextmanager
def _onednn(enabled: bool):
    """oneDNN's CPU convolutions on or off for the block (``torch.backends.mkldnn.flags`` would also
    reset TF32 settings and warn about them on every call)."""
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = enabled
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before


def _train_epoch(parts: _Parts, config: TrainConfig, step: int, bar,
                 on_step: Callable[[int, dict], None] | None = None,
                 epoch: int = 0) -> tuple[int, dict[str, Any]]:
    """Up to one epoch of updates; returns the new step count and the epoch's statistics."""
    p, device = parts, parts.train_loader.device

    def loss_of(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with p.autocast():
            return cross_entropy(p.net(x), y, config.label_smoothing)

    finetune.train_mode(p.net, config.freeze_backbone)
    sums = torch.zeros(3, device=device)  # loss, fraction of units clipped, steps
    bad = torch.zeros((), device=device)  # 1 once a loss was non-finite or above max_loss
    todo, lr, diverged = min(len(p.train_loader), p.total_steps - step), float("nan"), False
    for i, (x, y) in enumerate(p.train_loader):
        if i == todo:
            break
        lr = p.opt.param_groups[0]["lr"]
        if config.sam_rho is not None:
            p.opt.zero_grad(set_to_none=True)
            loss = sam_backward(p.net, loss_of, x, y, config.sam_rho, config.sam_fraction)
            if p.norm_clip is not None:
                p.norm_clip()
            p.opt.step()  # AGC (if on) clips, then SGD adds weight decay and steps
        else:
            loss = train_step(p.net, p.opt, x, y, p.autocast, config.label_smoothing, before_step=p.norm_clip)
        p.sched.step()
        if p.ema is not None:
            p.ema.update(p.model, step)  # t = updates made before this one (official)
        step += 1
        loss = loss.detach().float()
        clipper = p.norm_clip or (p.opt if config.clipping else None)  # units clipped; clip_norm: the step
        clipped = clipper.last_stats["frac_units_clipped"] if clipper is not None else 0.0
        sums += torch.stack([loss, torch.as_tensor(clipped, device=device, dtype=torch.float32),
                             torch.ones((), device=device)])
        bad = torch.maximum(bad, (~torch.isfinite(loss) | (loss > config.max_loss)).float())
        if on_step is not None:  # tensors stay on the device: the callback decides when to sync
            on_step(step, {"epoch": epoch, "loss": loss, "lr": lr, "frac_clipped": clipped})
        bar.update()
        if step % config.check_every == 0 or i == todo - 1:  # the only host syncs of the loop
            if dist.all_reduce_(bad.clone(), "max").item() > 0:
                diverged = True
                break
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    sums = (dist.all_reduce_(sums) / dist.world_size_from_env()).tolist()
    n = max(sums[2], 1.0)
    return step, {"train_loss": sums[0] / n, "lr": lr, "diverged": diverged,
                  "frac_clipped": sums[1] / n if config.clipping or config.clip_norm else float("nan")}


def train(config: TrainConfig, on_epoch_end: Callable[[int, dict], None] | None = None,
          on_step: Callable[[int, dict], None] | None = None) -> RunResult:
    """Train (or resume, or read back) the run ``config`` describes; see the module docstring.

    ``on_epoch_end(epoch, row)`` is called after each epoch's checkpoint is written;
    ``on_step(step, metrics)`` after every update (``nfrepro.engine.step_log``). The run
    folder is locked while this runs (``<run_dir>/.lock``): a second process aiming at the same
    folder gets a :class:`~nfrepro.engine.faults.FolderInUseError` instead of a collision.
    """
    config.validate()
    world_size = dist.world_size_from_env()
    if config.batch_size % world_size:  # checked before joining the process group
        raise ConfigError(f"batch size {config.batch_size} is not divisible by the number of "
                          f"processes ({world_size}): use a multiple of {world_size}")
    run_dir = Path(config.run_dir) if config.run_dir else project_root() / "runs" / run_name(config)
    check_output_dir(run_dir)
    info = dist.setup(config.device)
    with (exclusive_lock(run_dir / ".lock", f"run folder {run_dir}") if info.is_main
          else contextlib.nullcontext()):
        return _train_locked(config, on_epoch_end, on_step, run_dir, info, world_size)


def _train_locked(config: TrainConfig, on_epoch_end: Callable[[int, dict], None] | None,
                  on_step: Callable[[int, dict], None] | None, run_dir: Path, info: dist.DistInfo,
                  world_size: int) -> RunResult:
    done = finished_run(run_dir, config)
    if done is not None:
        return done
    parts, main, ckpt_path = _build(config, info), info.is_main, run_dir / "checkpoint.pt"
    progress = {"epoch": 0, "step": 0, "rows": [], "wall_time_s": 0.0, "status": "running"}
    if main:  # the folder is ours (locked): what a killed writer left goes
        remove_temp_files(run_dir)
    if ckpt_path.exists():
        progress = _resume(parts, ckpt_path, config, info)
    elif main:
        refuse_foreign_files(run_dir, config)
        atomic_write(run_dir / "config.json", json.dumps(config.to_dict(), indent=2) + "\n")
    rows, wall_before = progress["rows"], progress["wall_time_s"]
    started = time.perf_counter()
    bar = progress_bar(total=parts.total_steps, initial=progress["step"], desc=run_dir.name,
                       disable=not (config.progress and main), dynamic_ncols=True)
    step_hook = _step_hook(config, run_dir, main, on_step, progress["step"])
    if progress["status"] == "completed" and main:  # killed between checkpoint and metrics
        write_metrics(run_dir, rows, config, wall_before, "completed", info.device, world_size)
    while progress["epoch"] < parts.n_epochs and progress["status"] == "running":
        with _onednn(config.onednn):  # which library's CPU convolutions (TrainConfig.onednn)
            step, stats = _train_epoch(parts, config, progress["step"], bar, step_hook, progress["epoch"] + 1)
        epoch = progress["epoch"] + 1
        status = "diverged" if stats["diverged"] else (
            "completed" if epoch == parts.n_epochs else "running")
        row = {"epoch": epoch, "step": step, "train_loss": stats["train_loss"],
               "test_top1": float("nan"), "test_top1_ema": float("nan"), "lr": stats["lr"],
               "frac_clipped": stats["frac_clipped"], "wall_time_s": 0.0, "status": status}
        if status != "diverged" and (epoch % config.eval_every == 0 or status == "completed"):
            row["test_top1"] = evaluate(parts.model, parts.test_loader, parts.autocast)
            if parts.ema is not None:
                row["test_top1_ema"] = evaluate(parts.ema.module, parts.test_loader, parts.autocast)
        wall = wall_before + time.perf_counter() - started
        row["wall_time_s"] = round(wall, 3)
        rows.append(row)
        progress = {"epoch": epoch, "step": step, "rows": rows, "wall_time_s": wall,
                    "status": status}
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", top1=f"{row['test_top1']:.1f}")
        if status != "diverged":  # a diverged run keeps its last good checkpoint
            _save(parts, ckpt_path, config, progress, main)
        if main:
            write_metrics(run_dir, rows, config, wall, status, info.device, world_size)
        dist.barrier()
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)
    bar.close()
    if isinstance(getattr(step_hook, "logger", None), StepLogger):
        step_hook.logger.close()
    return RunResult(run_dir, progress["status"], config,
                     pd.DataFrame(rows, columns=METRIC_COLUMNS),
                     wall_before + time.perf_counter() - started, parts.model,
                     parts.ema.module if parts.ema is not None else None)
