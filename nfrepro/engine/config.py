"""What a training run is: :class:`TrainConfig`, its folder name, and when two configs match.

One dataclass holds every setting of a run (nanoGPT style); each field carries its meaning (the
command line's help and choices come from it, :func:`options`), with the reason for each default
that is not the paper's. ``config.json`` in a run folder is ``TrainConfig.to_dict()``; a run
resumes only under a config with the same *trajectory* fields (all but :data:`NOT_TRAJECTORY`).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import re
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from nfrepro.data import folder
from nfrepro.data.augment import MIX_MODES, MIXUP_ALPHA
from nfrepro.data.datasets import DATASET_SHAPES, DataNotFoundError
from nfrepro.engine.device import AMP_MODES, check_device, memory_format, resolve_device, use_bf16
from nfrepro.engine.faults import error_line
from nfrepro.models.factory import create_model
from nfrepro.models.registry import model_parameters
from nfrepro.optim.agc import AGCSelection, clip_parameters
from nfrepro.optim.norm_clipping import AGC_GRANULARITIES
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


def _about(default: Any, text: str, *, choices: tuple[Any, ...] | None = None,
           here: Callable[[], str] | None = None, factory: Callable[[], Any] | None = None) -> Any:
    """A TrainConfig field and its meaning, the one place the CLI's help text and choices come from.
    ``here``: what the default resolves to on this machine (the CLI shows it)."""
    metadata = {"help": text, "choices": choices, "here": here}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    """Every setting of a run; each field's help says what it means and why its default is what it is.

    ``agc`` (which parameters AGC clips, and its eps) is stored flat in ``config.json`` and on the
    command line, as the ``clip_*`` keys of :data:`AGC_KEYS`.
    """
    model: str = _about("nf_resnet_small", "registered model name (python -c 'import nfrepro; "
                        "print(nfrepro.list_models())')")
    model_kwargs: dict[str, Any] = _about(None, "model constructor arguments (drop_rate, alpha, use_ws, ...)",
                                          factory=dict)
    pretrained: str | None = _about(None, "weights file to start from (create_model(pretrained=...)): every "
                                    "tensor that fits is loaded, BatchNorm statistics included; a classifier "
                                    "of another size is re-initialised; none: random initialisation")
    freeze_backbone: bool = _about(False, "train the classifier only (a linear probe): every other parameter "
                                   "frozen and the backbone kept in eval mode (BatchNorm on its running "
                                   "statistics)")
    bn_reestimate: bool = _about(False, "before the first step, re-estimate every BatchNorm layer's running "
                                 "statistics on the training images (one pass in fixed order, no "
                                 "augmentation, a plain average over the batches)")
    dataset: str = _about("fashion_mnist", "data set; folder: an ImageNet-style --data-root with train/ "
                          "and val/", choices=(*DATASET_SHAPES, FOLDER))
    data_root: str | None = _about(None, "folder holding the data sets (none: $NFREPRO_DATA, else "
                                   "/usr/share/datasets); for --dataset folder: the folder with train/ "
                                   "and val/")
    download: bool = _about(False, "download CIFAR-10 if missing (needs network access)")
    train_subset: int | None = _about(None, "train on the first N training images only (quick runs on "
                                      "the CPU); none: all")
    test_subset: int | None = _about(None, "evaluate on the first N test images only; none: all")
    classes: list[int] | None = _about(None, "train and evaluate on these classes only, relabelled 0..k-1 in "
                                       "the order given (a source / target split of one data set; after "
                                       "train_subset / test_subset); none: all")
    per_class: int | None = _about(None, "train on the first N training images of each class only (a few "
                                   "labelled images per class); none: all")
    batch_size: int = _about(256, "the global batch size, split evenly over torchrun processes")
    epochs: int = _about(10, "number of epochs")
    steps: int | None = _about(None, "run length in updates, overriding epochs; none: use epochs")
    base_lr: float = _about(BASE_LR, "learning rate per 256 images: lr = base_lr * batch_size / 256 (App. A)")
    warmup_epochs: float = _about(1.0, "epochs of linear learning-rate warm-up before the cosine decay "
                                  "(the paper: 5 of 360 epochs; a 10-epoch run warms up for 1)")
    weight_decay: float = _about(WEIGHT_DECAY, "coupled L2 weight decay, not on gains, biases or skip gains")
    momentum: float = _about(MOMENTUM, "SGD momentum")
    nesterov: bool = _about(True, "Nesterov momentum (the paper's)")
    label_smoothing: float = _about(LABEL_SMOOTHING, "label smoothing of the cross-entropy")
    clipping: float | None = _about(None, "AGC lambda; none: no clipping (the baselines)")
    agc: AGCSelection = _about(None, "which parameters AGC clips, and its eps (flat: the clip_* keys)",
                               factory=AGCSelection)
    ema_decay: float | None = _about(0.999, "EMA decay of the weights; none: no EMA (the paper's 0.99999 "
                                     "suits 112k steps; after a few thousand, that EMA would still be "
                                     "mostly the initial weights)")
    sam_rho: float | None = _about(None, "SAM radius rho (App. A.4); none: no SAM")
    sam_fraction: float = _about(SAM_FRACTION, "fraction of the batch SAM's ascent step uses")
    crop_padding: int = _about(0, "random-crop padding in pixels (0: no crop). Augmentation is off by "
                               "default: the small-scale experiments study clipping and normalisation")
    flip: bool = _about(False, "random horizontal flips")
    mix: str | None = _about(None, "batch mixing: none, mixup, cutmix or mixup_cutmix")
    mixup_alpha: float = _about(MIXUP_ALPHA, "MixUp / CutMix Beta(alpha, alpha) parameter")
    randaugment: list[int] | None = _about(None, "RandAugment LAYERS LEVEL (level on the official 0-10 "
                                           "scale); none: no RandAugment")
    seed: int = _about(0, "random seed")
    device: str = _about("auto", "auto (this process's GPU if any, else the CPU), cpu, cuda or cuda:N",
                         here=lambda: str(resolve_device("auto")))
    amp: str = _about("auto", "mixed precision: auto (bf16 where the device computes it natively: CUDA, "
                      "CPUs with AVX512-BF16 or AMX; the paper's bf16 activations with fp32 weights; fp32 "
                      "elsewhere), bf16 or off", choices=AMP_MODES,
                      here=lambda: "bf16" if use_bf16("auto", "auto") else "off")
    channels_last: bool | None = _about(None, "channels-last memory format; none: on wherever amp auto "
                                        "picks bf16 (on the CPU only for nets whose convolutions have "
                                        "multiples of 16 channels), off elsewhere",
                                        here=lambda: "on" if memory_format("auto") == torch.channels_last
                                        else "off")
    compile: bool = _about(False, "torch.compile the model (worth it for long GPU runs only)")
    onednn: bool = _about(True, "oneDNN (mkldnn) convolutions on the CPU while training (evaluation keeps "
                          "them); off: PyTorch's own kernels, which cost less per call: for the small nets "
                          "at batch 2-8 a training step takes about 0.6-0.75x the time (notebook 06), at "
                          "batch 32 and above oneDNN is faster. No effect on a GPU")
    eval_every: int = _about(1, "epochs between test evaluations (the last epoch always)")
    eval_batch_size: int = _about(1024, "batch size of the test evaluations")
    max_loss: float = _about(100.0, "a loss above this counts as a divergence and stops the run (chance "
                             "is ln(10) = 2.3; 40x that is a blow-up, not noise)")
    check_every: int = _about(20, "steps between divergence checks (each syncs the GPU)")
    run_dir: str | None = _about(None, "run folder; none: runs/<name derived from the configuration>")
    progress: bool = _about(True, "progress bars (rank 0 only)")
    optimizer: str = _about("sgd", "sgd (the paper's, Nesterov) or adamw (notebook 07's AGC-with-Adam study)")
    clip_norm: float | None = _about(None, "ordinary global gradient-norm clipping threshold (notebook "
                                     "07's baseline); none: off. Not with clipping (AGC)")
    agc_granularity: str = _about("unit", "what AGC's ratio is taken over: unit (each output row, the "
                                  "paper's) or tensor (each whole parameter, layer-wise; notebook 07)",
                                  choices=AGC_GRANULARITIES)
    log_every: int | None = _about(None, "write step, loss, lr and fraction clipped to RUN/steps.csv "
                                   "every N steps (each read syncs the GPU); none: off")
    tensorboard: bool = _about(False, "write the per-step scalars to RUN/tensorboard (needs: pip install "
                               "tensorboard)")
    image_size: int | None = _about(None, "--dataset folder: training crop and test size in pixels; "
                                    "none: the model's training resolution (192 for nfnet_f0)")
    loader_workers: int = _about(0, "--dataset folder: image-decoding processes (the crops do not "
                                 "depend on it)")

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
            (finite(self.base_lr) and self.base_lr > 0,
             f"base_lr must be finite and > 0, got {self.base_lr}"),
            (finite(self.warmup_epochs) and self.warmup_epochs >= 0,
             f"warmup_epochs must be finite and >= 0, got {self.warmup_epochs}"),
            (finite(self.weight_decay) and self.weight_decay >= 0,
             f"weight_decay must be finite and >= 0, got {self.weight_decay}"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}"),
            (0 <= self.label_smoothing < 1, f"label_smoothing must be in [0, 1), got {self.label_smoothing}"),
            (self.clipping is None or (finite(self.clipping) and self.clipping > 0),
             f"clipping (AGC lambda) must be finite and > 0, got {self.clipping}; use None to turn AGC off"),
            (self.agc_granularity in AGC_GRANULARITIES and (self.agc_granularity == "unit"
                                                             or self.clipping is not None),
             f"agc_granularity must be one of {', '.join(AGC_GRANULARITIES)} (tensor with clipping, AGC's "
             f"lambda, set), got {self.agc_granularity!r}"),
            (self.amp in AMP_MODES, f"amp must be one of {', '.join(AMP_MODES)}, got {self.amp!r}"),
            (self.mix in MIX_MODES, f"mix must be one of {MIX_MODES}, got {self.mix!r}"),
            (finite(self.mixup_alpha) and self.mixup_alpha > 0,
             f"mixup_alpha must be > 0, got {self.mixup_alpha}"),
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
            (self.image_size is None or self.image_size >= 8,
             f"image_size must be >= 8, got {self.image_size}"),
            (self.image_size is None or self.dataset == FOLDER,
             f"image_size applies to --dataset {FOLDER} only ({self.dataset} images have a fixed size): "
             f"leave it out"),
            (self.log_every is None or self.log_every >= 1,
             f"log_every must be >= 1 step, got {self.log_every} (leave it out to log no steps)"),
            (isinstance(self.model_kwargs, dict),
             f"model_kwargs must be a mapping of argument names to values, got {self.model_kwargs!r}"),
            (self.classes is None or (len(self.classes) >= 1 and len(set(self.classes)) == len(self.classes)
                                      and all(0 <= c < _classes_of(self.dataset) for c in self.classes)),
             f"classes must be distinct labels of {self.dataset} (0..{_classes_of(self.dataset) - 1}), got "
             f"{self.classes}"),
            (self.per_class is None or self.per_class > 0, f"per_class must be > 0, got {self.per_class}"),
            (self.dataset != FOLDER or (self.classes is None and self.per_class is None
                                        and not self.bn_reestimate),
             f"classes, per_class and bn_reestimate apply to in-memory data sets, not --dataset {FOLDER}"),
            (self.pretrained is None or Path(self.pretrained).is_file(),
             f"pretrained: no weights file at {self.pretrained}"),
            (self.loader_workers >= 0, f"loader_workers must be >= 0, got {self.loader_workers}"),
            (self.loader_workers == 0 or self.dataset == FOLDER,
             f"loader_workers applies to --dataset {FOLDER} only ({self.dataset} is held in memory): "
             f"leave it out"),
            (not self.download or self.dataset == "cifar10",
             f"download applies to --dataset cifar10 only, not {self.dataset}: leave it out"),
            (self.data_root is None or self.dataset != "synthetic",
             "data_root does not apply to --dataset synthetic (its images are generated): leave it out"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        try:
            check_device(self.device)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        check_model(self.model, self.model_kwargs, self.dataset, self.data_root,
                    self.agc if self.clipping is not None else None,
                    classes=len(self.classes) if self.classes else None)

    def to_dict(self) -> dict[str, Any]:
        """The flat form of ``config.json``: ``agc``'s fields as the ``clip_*`` keys, in field order."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "agc":
                values.update({AGC_KEYS[k]: v for k, v in asdict(self.agc).items()})
            else:
                values[f.name] = getattr(self, f.name)
        return json.loads(json.dumps(values))  # tuples -> lists, as in config.json

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """The config of a flat dict (:meth:`to_dict`, ``config.json``); missing keys take their defaults."""
        values = dict(values)
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)} - set(AGC_KEYS.values())
        if unknown:
            raise ConfigError(f"unknown TrainConfig field(s): {', '.join(sorted(unknown))}")
        flat = {name: values.pop(key) for name, key in AGC_KEYS.items() if key in values}
        try:
            values["agc"] = dataclasses.replace(values.get("agc", AGCSelection()), **flat)
        except (TypeError, ValueError) as err:
            raise ConfigError(_flat_names(str(err))) from None
        return cls(**values)


# AGCSelection's fields as config.json and the command line name them: eps -> clip_eps, ...
AGC_KEYS = {f.name: f.name if f.name.startswith("clip_") else f"clip_{f.name}"
            for f in dataclasses.fields(AGCSelection)}


def agc_keys(selection: AGCSelection) -> dict[str, Any]:
    """The fields of ``selection`` that differ from the paper's, as config.json's flat keys (TrainConfig
    overrides for :func:`nfrepro.engine.sweep.apply_overrides`)."""
    return {AGC_KEYS[f.name]: json.loads(json.dumps(value)) for f in dataclasses.fields(selection)
            if (value := getattr(selection, f.name)) != f.default}


@dataclass(frozen=True)
class Option:
    """One key of ``config.json`` as the command line offers it."""
    name: str
    hint: Any  # the annotation
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    here: Callable[[], str] | None = None  # what the default resolves to on this machine


def options() -> list[Option]:
    """Every flat key of a TrainConfig, in ``config.json``'s order, with its meaning."""
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    found = [(TrainConfig, f, f.name) for f in dataclasses.fields(TrainConfig) if f.name != "agc"]
    found[names.index("agc"):names.index("agc")] = [(AGCSelection, f, AGC_KEYS[f.name])
                                                    for f in dataclasses.fields(AGCSelection)]
    hints = {cls: typing.get_type_hints(cls) for cls in (TrainConfig, AGCSelection)}
    return [Option(name, hints[cls][f.name],
                   f.default if f.default is not dataclasses.MISSING else f.default_factory(),
                   f.metadata["help"], f.metadata.get("choices"), f.metadata.get("here"))
            for cls, f, name in found]


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


def _flat_names(text: str) -> str:
    """An AGCSelection error with its fields named as config.json and the command line name them."""
    return re.sub(r"\b(eps|exclude_\w+)\b", r"clip_\1", text)


def _classes_of(dataset: str) -> int:
    return DATASET_SHAPES[dataset][1] if dataset in DATASET_SHAPES else 0


def check_model(name: str, kwargs: dict[str, Any], dataset: str, data_root: str | None = None,
                selection: AGCSelection | None = None, classes: int | None = None) -> None:
    """The model ``name`` with ``kwargs`` can be built for ``dataset`` (and AGC can find what
    ``selection`` names in it): else a ConfigError that names the argument. Builds it once on the
    meta device (shapes only, no memory). A folder data set's classes are its class sub-folders (a
    missing folder is an error here, before any work). ``classes``: the run's own number of
    classes (a ``classes`` subset of the data set's)."""
    chosen = classes
    if dataset == FOLDER:
        try:
            channels, classes = 3, folder.num_classes(data_root)
        except DataNotFoundError as err:
            raise ConfigError(error_line(err)) from None
    else:
        channels, classes = DATASET_SHAPES[dataset]
    classes = chosen or classes
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
            model = create_model(name, **{"num_classes": classes, "in_chans": channels, **kwargs})
    except (TypeError, ValueError, RuntimeError, IndexError, KeyError) as err:
        args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) or "no arguments"
        raise ConfigError(f"model {name} cannot be built with {args}: {error_line(err)}") from None
    if selection is not None:
        try:
            clip_parameters(model, selection)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"model {name}: {_flat_names(error_line(err))}") from None


# Fields added after run folders existed, with the value that reproduces the earlier behaviour:
# at that value they are left out of the trajectory, so the earlier folders keep their names.
ADDED_LATER = {"clip_exclude_skip_gains": False, "optimizer": "sgd", "clip_norm": None, "image_size": None,
               "agc_granularity": "unit", "clip_exclude_stage_skip_gains": True,
               "classes": None, "per_class": None, "pretrained": None, "freeze_backbone": False,
               "bn_reestimate": False, "onednn": True}


def trajectory(values: dict[str, Any]) -> dict[str, Any]:
    """The fields that decide what a run computes. ``pretrained`` enters by what the file holds (a
    hash of its bytes), not by where it lies: the same start gives the same run name in every
    checkout, and a weights file rewritten in place gives a new one."""
    out = {k: v for k, v in values.items()
           if k not in NOT_TRAJECTORY and not (k in ADDED_LATER and v == ADDED_LATER[k])}
    if out.get("pretrained") is not None:
        out["pretrained"] = _file_identity(out["pretrained"])
    return out


def _file_identity(path: str) -> str:
    """``sha256:<16 hex digits>`` of the file's bytes; the path itself when there is no file (a stored
    configuration whose weights file has gone). Hashed once per process and version of the file
    (path, size, mtime, inode): a plan names many runs that start from the same weights."""
    try:
        st = Path(path).stat()
    except OSError:
        return str(path)
    return _hash_file(str(path), st.st_size, st.st_mtime_ns, st.st_ino)


@functools.lru_cache(maxsize=32)
def _hash_file(name: str, size: int, mtime_ns: int, inode: int) -> str:
    digest = hashlib.sha256()
    with open(name, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()[:16]


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
