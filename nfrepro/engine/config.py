"""What a training run is: :class:`TrainConfig`, its folder name, and when two configs match.

One dataclass holds every setting of a run (nanoGPT style), with the reason for each default
that is not the paper's. ``config.json`` in a run folder is ``TrainConfig.to_dict()``; a run
resumes only under a config with the same *trajectory* fields (all but :data:`NOT_TRAJECTORY`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from nfrepro.data import folder
from nfrepro.data.augment import MIX_MODES, MIXUP_ALPHA
from nfrepro.data.datasets import DATASET_SHAPES, DataNotFoundError
from nfrepro.engine.device import AMP_MODES, check_device
from nfrepro.engine.faults import error_line
from nfrepro.models.factory import create_model
from nfrepro.models.registry import model_parameters
from nfrepro.optim.agc import EPS
from nfrepro.optim.recipe import (
    BASE_LR,
    LABEL_SMOOTHING,
    MOMENTUM,
    OPTIMIZERS,
    SAM_FRACTION,
    WEIGHT_DECAY,
)

# fields that do not change the numbers a run produces: free to differ when resuming
NOT_TRAJECTORY = ("run_dir", "progress", "device", "eval_batch_size", "data_root", "download",
                  "log_every", "tensorboard", "loader_workers")
FOLDER = "folder"  # an ImageNet-style folder: data_root/train/<class>/*, data_root/val/<class>/*


class ConfigError(ValueError):
    """A configuration that cannot run, or that does not match the run folder it points to."""


@dataclass
class TrainConfig:
    model: str = "nf_resnet_small"
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # drop_rate, alpha, use_ws, ...
    dataset: str = "fashion_mnist"
    data_root: str | None = None      # None: $NFREPRO_DATA, else /usr/share/datasets
    download: bool = False            # CIFAR-10 only, needs network access
    train_subset: int | None = None   # first N training images: quick runs on the CPU
    test_subset: int | None = None
    batch_size: int = 256             # the *global* batch, split evenly over processes
    epochs: int = 10
    steps: int | None = None          # if set, the run length in updates (overrides epochs)
    base_lr: float = BASE_LR          # per 256 images: lr = base_lr * batch_size / 256 (App. A)
    warmup_epochs: float = 1.0        # paper: 5 of 360 epochs; a 10-epoch run warms up for 1
    weight_decay: float = WEIGHT_DECAY  # coupled, not on gains / biases / skip gains
    momentum: float = MOMENTUM
    nesterov: bool = True
    label_smoothing: float = LABEL_SMOOTHING
    clipping: float | None = None     # AGC lambda; None = no clipping (the baselines)
    clip_eps: float = EPS
    clip_classifier: bool = False     # §4.1: never clip the final linear layer
    clip_exclude_first_conv: bool = False
    clip_exclude_stages: list[int] = field(default_factory=list)
    clip_exclude_skip_gains: bool = False  # a departure for short runs (agc.clip_parameters)
    ema_decay: float | None = 0.999   # paper 0.99999 over 112k steps; over a few thousand steps
    #                                   that EMA would still be mostly the initial weights
    sam_rho: float | None = None      # SAM (App. A.4) off unless set
    sam_fraction: float = SAM_FRACTION
    crop_padding: int = 0             # augmentation is off by default: the small-scale
    flip: bool = False                # experiments study clipping and normalisation, and
    mix: str | None = None            # augmentation would blur that comparison
    mixup_alpha: float = MIXUP_ALPHA
    randaugment: list[int] | None = None  # [layers, level on the official 0-10 scale]
    seed: int = 0
    device: str = "auto"              # "auto": this process's GPU if any, else the CPU
    amp: str = "auto"                 # "auto": bf16 where native (CUDA, AVX512-BF16/AMX CPUs: the
    #                                   paper's bf16 activations, fp32 params), fp32 elsewhere
    channels_last: bool | None = None  # None: on wherever "auto" picks bf16, off elsewhere
    compile: bool = False             # torch.compile: worth it only for long GPU runs
    eval_every: int = 1               # epochs between test evaluations (the last one always)
    eval_batch_size: int = 1024
    max_loss: float = 100.0           # chance is ln(10) = 2.3; 40x that is a blow-up, not noise
    check_every: int = 20             # steps between divergence checks (each one syncs the GPU)
    run_dir: str | None = None        # None: runs/<run_name(config)> under the project root
    progress: bool = True             # tqdm bars (rank 0 only)
    optimizer: str = "sgd"            # the paper's SGD; "adamw" for notebook 07's AGC-with-Adam study
    clip_norm: float | None = None    # ordinary global-norm clipping (notebook 07's baseline), not with AGC
    log_every: int | None = None      # steps between rows of RUN/steps.csv (each read syncs the GPU)
    tensorboard: bool = False         # the same scalars to RUN/tensorboard (the tensorboard package)
    image_size: int | None = None     # dataset "folder": training crop / test size (None: the model's
    #                                   pretrained_cfg train resolution, e.g. 192 for nfnet_f0)
    loader_workers: int = 0           # dataset "folder": image-decoding processes (the crops do not depend on it)

    def validate(self) -> None:
        """Refuse, with a :class:`ConfigError` naming the field, any setting that cannot run or
        would run silently wrong: types first (a sweep grid may hold anything), then ranges
        (finite, positive ...), the device, and the model built once on the meta device with
        the data set's channels and classes (no memory, no weights, no data read)."""
        _check_types(self)
        finite = math.isfinite
        checks = [
            (self.batch_size > 0, f"batch_size must be positive, got {self.batch_size}"),
            (self.eval_batch_size > 0, f"eval_batch_size must be positive, got {self.eval_batch_size}"),
            (self.epochs > 0 and (self.steps is None or self.steps > 0),
             "epochs and steps must be positive"),
            (all(n is None or n > 0 for n in (self.train_subset, self.test_subset)),
             f"train_subset and test_subset must be positive (or None for all), got "
             f"{self.train_subset}, {self.test_subset}"),
            (finite(self.base_lr) and self.base_lr > 0, f"base_lr must be finite and > 0, got {self.base_lr}"),
            (finite(self.warmup_epochs) and self.warmup_epochs >= 0,
             f"warmup_epochs must be finite and >= 0, got {self.warmup_epochs}"),
            (finite(self.weight_decay) and self.weight_decay >= 0,
             f"weight_decay must be finite and >= 0, got {self.weight_decay}"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}"),
            (0 <= self.label_smoothing < 1, f"label_smoothing must be in [0, 1), got {self.label_smoothing}"),
            (self.clipping is None or (finite(self.clipping) and self.clipping > 0),
             f"clipping (AGC lambda) must be finite and > 0, got {self.clipping}; use None to turn AGC off"),
            (finite(self.clip_eps) and self.clip_eps > 0, f"clip_eps must be finite and > 0, got {self.clip_eps}"),
            (all(s >= 0 for s in self.clip_exclude_stages),
             f"clip_exclude_stages are 0-based stage indices, got {self.clip_exclude_stages}"),
            (self.amp in AMP_MODES, f"amp must be one of {', '.join(AMP_MODES)}, got {self.amp!r}"),
            (self.mix in MIX_MODES, f"mix must be one of {MIX_MODES}, got {self.mix!r}"),
            (finite(self.mixup_alpha) and self.mixup_alpha > 0, f"mixup_alpha must be > 0, got {self.mixup_alpha}"),
            (self.crop_padding >= 0, f"crop_padding must be >= 0, got {self.crop_padding}"),
            (self.randaugment is None or (len(self.randaugment) == 2 and self.randaugment[0] >= 1
                                          and 0 <= self.randaugment[1] <= 10),
             f"randaugment takes two numbers, [layers >= 1, level 0-10], got {self.randaugment}"),
            (self.ema_decay is None or 0 <= self.ema_decay < 1, "ema_decay must be in [0, 1)"),
            (self.sam_rho is None or (finite(self.sam_rho) and self.sam_rho > 0),
             f"sam_rho must be finite and > 0 (None turns SAM off), got {self.sam_rho}"),
            (0 < self.sam_fraction <= 1, f"sam_fraction must be in (0, 1], got {self.sam_fraction}"),
            (self.max_loss > 0, f"max_loss must be > 0, got {self.max_loss}"),
            (self.seed >= 0, f"seed must be >= 0, got {self.seed}"),
            (self.eval_every > 0 and self.check_every > 0, "eval_every, check_every must be > 0"),
            (self.optimizer in OPTIMIZERS,
             f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"),
            (self.clip_norm is None or 0 < self.clip_norm < float("inf"),
             f"clip_norm must be a finite number > 0, got {self.clip_norm}; use None to turn it off"),
            (self.clip_norm is None or self.clipping is None,
             "clip_norm (ordinary clipping) and clipping (AGC) exclude each other: set one of them"),
            (self.dataset in DATASET_SHAPES or self.dataset == FOLDER,
             f"unknown dataset {self.dataset!r}: choose one of {', '.join([*DATASET_SHAPES, FOLDER])}"),
            (self.image_size is None or self.image_size >= 8, f"image_size must be >= 8, got {self.image_size}"),
            (self.loader_workers >= 0, f"loader_workers must be >= 0, got {self.loader_workers}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        try:
            check_device(self.device)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        check_model(self.model, self.model_kwargs, self.dataset, self.data_root)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))  # tuples -> lists, as in config.json

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ConfigError(f"unknown TrainConfig field(s): {', '.join(sorted(unknown))}")
        return cls(**values)


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` has the annotated type (ints count as floats; bools are not numbers)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin in (list, tuple):
        return isinstance(value, (list, tuple)) and all(_fits(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _check_types(config: TrainConfig) -> None:
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if not _fits(value, hints[f.name]):
            hint = hints[f.name]
            wanted = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
            wanted = wanted.replace("NoneType", "None")
            raise ConfigError(f"{f.name} must be {wanted}, got {value!r} ({type(value).__name__})")


def check_model(name: str, kwargs: dict[str, Any], dataset: str, data_root: str | None = None) -> None:
    """The model ``name`` with ``kwargs`` can be built for ``dataset``: else a ConfigError that
    names the argument. Builds it once on the meta device (shapes only, no memory). A folder data
    set's classes are its class sub-folders (a missing folder is an error here, before any work)."""
    if dataset == FOLDER:
        try:
            channels, classes = 3, folder.num_classes(data_root)
        except DataNotFoundError as err:
            raise ConfigError(error_line(err)) from None
    else:
        channels, classes = DATASET_SHAPES[dataset]
    for key, data_value in (("num_classes", classes), ("in_chans", channels)):
        if key in kwargs and kwargs[key] != data_value:
            raise ConfigError(f"model argument {key}={kwargs[key]!r} disagrees with {dataset}, which "
                              f"has {data_value}: drop it (it is taken from the data)")
    try:
        accepted = model_parameters(name)
    except ValueError as err:  # an unknown model, with close matches
        raise ConfigError(error_line(err)) from None
    unknown = sorted(set(kwargs) - set(accepted)) if accepted is not None else []
    if unknown:
        raise ConfigError(f"model {name} takes no argument {', '.join(unknown)}; it takes "
                          f"{', '.join(sorted(accepted))}")
    try:
        with torch.device("meta"):
            create_model(name, **{"num_classes": classes, "in_chans": channels, **kwargs})
    except (TypeError, ValueError, RuntimeError, IndexError, KeyError) as err:
        args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) or "no arguments"
        raise ConfigError(f"model {name} cannot be built with {args}: {error_line(err)}") from None


# Fields added after run folders existed, with the value that reproduces the earlier behaviour:
# at that value they are left out of the trajectory, so the earlier folders keep their names.
ADDED_LATER = {"clip_exclude_skip_gains": False, "optimizer": "sgd", "clip_norm": None, "image_size": None}


def trajectory(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items()
            if k not in NOT_TRAJECTORY and not (k in ADDED_LATER and v == ADDED_LATER[k])}


def run_name(config: TrainConfig) -> str:
    """A readable, deterministic folder name: the main settings plus a hash of all of them."""
    digest = hashlib.sha1(json.dumps(trajectory(config.to_dict()), sort_keys=True).encode())
    clip = "off" if config.clipping is None else f"{config.clipping:g}"
    return (f"{config.model}-{config.dataset}-b{config.batch_size}-clip{clip}-s{config.seed}-"
            f"{digest.hexdigest()[:8]}")


def check_same_config(stored: dict[str, Any], config: TrainConfig, where: Path) -> None:
    ours, theirs = trajectory(config.to_dict()), trajectory(stored)
    differ = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
    if differ:
        raise ConfigError(f"{where} holds a run with a different configuration ({', '.join(differ)}):"
                          f" use another run_dir, or delete that folder to start afresh")
