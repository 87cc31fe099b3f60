"""What a training run is: :class:`TrainConfig`, its folder name, and when two configs match.

One dataclass holds every setting of a run (nanoGPT style), with the reason for each default
that is not the paper's. ``config.json`` in a run folder is ``TrainConfig.to_dict()``; a run
resumes only under a config with the same *trajectory* fields (all but :data:`NOT_TRAJECTORY`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nfrepro.data.augment import MIX_MODES, MIXUP_ALPHA
from nfrepro.engine.device import AMP_MODES
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
                  "log_every", "tensorboard")


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
    amp: str = "auto"                 # "auto": bf16 on CUDA (the paper's bf16 activations and
    #                                   gradients, fp32 params), off on the CPU (bf16 is slow there)
    channels_last: bool | None = None  # None: on for CUDA (faster convs), off on the CPU
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

    def validate(self) -> None:
        checks = [
            (self.batch_size > 0, f"batch_size must be positive, got {self.batch_size}"),
            (self.epochs > 0 and (self.steps is None or self.steps > 0),
             "epochs and steps must be positive"),
            (self.clipping is None or self.clipping > 0,
             f"clipping (AGC lambda) must be > 0, got {self.clipping}; use None to turn AGC off"),
            (self.amp in AMP_MODES, f"amp must be one of {', '.join(AMP_MODES)}, got {self.amp!r}"),
            (self.mix in MIX_MODES, f"mix must be one of {MIX_MODES}, got {self.mix!r}"),
            (self.ema_decay is None or 0 <= self.ema_decay < 1, "ema_decay must be in [0, 1)"),
            (self.eval_every > 0 and self.check_every > 0, "eval_every, check_every must be > 0"),
            (self.optimizer in OPTIMIZERS,
             f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"),
            (self.clip_norm is None or 0 < self.clip_norm < float("inf"),
             f"clip_norm must be a finite number > 0, got {self.clip_norm}; use None to turn it off"),
            (self.clip_norm is None or self.clipping is None,
             "clip_norm (ordinary clipping) and clipping (AGC) exclude each other: set one of them"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))  # tuples -> lists, as in config.json

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ConfigError(f"unknown TrainConfig field(s): {', '.join(sorted(unknown))}")
        return cls(**values)


# Fields added after run folders existed, with the value that reproduces the earlier behaviour:
# at that value they are left out of the trajectory, so the earlier folders keep their names.
ADDED_LATER = {"clip_exclude_skip_gains": False, "optimizer": "sgd", "clip_norm": None}


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
