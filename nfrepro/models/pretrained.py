"""Load DeepMind's NFNet weights into :class:`nfrepro.models.nfnet.NFNet` (and export them back).

Two sources carry the same ImageNet weights (paper-facts, "Pretrained weights"):

* the official ``F0_haiku.npz`` .. ``F6_haiku.npz``: despite the suffix, a (dill) pickle of the
  Haiku parameter dict ``{module_name: {param_name: array}}``. Module names follow Haiku's
  numbering: ``NFNet/~/stem_conv0``..``3``, ``NFNet/~/nf_block`` (the first block: Haiku leaves
  the first instance unnumbered; ``nf_block_0`` is accepted too), ``NFNet/~/nf_block_1`` ..
  ``nf_block_{n-1}``, each with
  ``skip_gain`` and sub-modules ``conv0``, ``conv1``, ``conv1b``, ``conv2``, ``conv_shortcut``
  (WS convs: ``w`` in HWIO layout, ``gain``, ``bias``) and ``squeeze_excite/~/linear`` and
  ``linear_1`` (``w`` in IO layout, ``b``); then ``NFNet/~/final_conv`` and the classifier
  ``NFNet/~/linear``. No state (no BN statistics).
* timm's ``dm_nfnet_f0`` .. ``f6`` checkpoints (``.pth`` state dict, or ``.safetensors``):
  ``stem.conv1..4``, ``stages.{s}.{b}.conv1/conv2/conv2b/conv3``, ``downsample.conv``,
  ``attn_last.fc1/fc2`` (1x1 convs), ``skipinit_gain``, ``final_conv``, ``head.fc``; WS gains
  shaped ``(O, 1, 1, 1)``.

Pickles run code when loaded: read only files you trust (DeepMind's, or your own). ``.pth`` files
are read with ``torch.load(weights_only=True)``, which unpickles tensors and plain containers only;
like timm's own ``load_checkpoint`` we also allow ``argparse.Namespace``, the ``args`` that timm's
``train.py`` (``CheckpointSaver``) stores in ``model_best.pth.tar`` / ``checkpoint-N.pth.tar``. A file
that needs any other class is refused with its name. Such a training checkpoint holds the weights
under ``state_dict`` and, with ``--model-ema``, the EMA weights under ``state_dict_ema``;
``use_ema=True`` loads the latter (timm's ``load_checkpoint(..., use_ema=True)``).

Both are converted to our state-dict names, then checked against the model: a checkpoint of
another variant (for example F1 weights into an F0) raises a ``ValueError`` that names the
variant the checkpoint looks like. Note that timm's model computes WS and GELU slightly
differently from the official code (paper-facts, "Pitfalls"); the weights are the same.
"""
from __future__ import annotations

import argparse
import logging
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from nfrepro.models.nfnet import VARIANTS, NFNet
from nfrepro.models.weight_formats import (  # noqa: F401  (to_timm, haiku_shapes: public here too)
    HAIKU_ROOT,
    _check_exportable,
    from_haiku,
    from_timm,
    haiku_shapes,
    to_haiku,
    to_timm,
)

logger = logging.getLogger(__name__)
# fine-tuning loads refuse a checkpoint that fits less than this share of the model's tensors
MIN_FITTING = 0.5

# ---------------------------------------------------------------- architecture checks
def describe(state: Mapping[str, torch.Tensor]) -> str:
    """"NFNet-F1" if the state dict (our names) matches a Table 1 variant, else its depths and widths."""
    n = 1 + max((int(k.split(".")[1]) for k in state if k.startswith("blocks.")), default=-1)
    starts = [i for i in range(n) if f"blocks.{i}.conv_shortcut.weight" in state] + [n]
    depths = tuple(b - a for a, b in zip(starts, starts[1:], strict=False))
    widths = tuple(int(state[k].shape[0]) if (k := f"blocks.{i}.conv2.weight") in state else None
                   for i in starts[:-1])
    for variant in VARIANTS.values():
        if (variant.depths, variant.widths) == (depths, widths):
            return f"NFNet-{variant.name}"
    return f"an NFNet with depths {depths} and widths {widths}"


def _check_ws_weights(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Scaled-WS weights (they carry WS gains) fit only an NFNet built with WS convs."""
    if isinstance(model, NFNet) and "stem.conv0.gain" in state:
        _check_exportable(model)


def load_state(model: nn.Module, state: Mapping[str, torch.Tensor]) -> nn.Module:
    """Copy a converted state dict (our names) into ``model``, with errors that say what is wrong."""
    _check_ws_weights(model, state)
    ours = model.state_dict()
    have = want = None
    if isinstance(model, NFNet):
        have, want = describe(state), describe(ours)
        if have != want:
            raise ValueError(f"the checkpoint looks like {have}, but the model is {want}")
    what = have or type(model).__name__
    missing, unexpected = sorted(set(ours) - set(state)), sorted(set(state) - set(ours))
    if missing or unexpected:
        raise ValueError(f"checkpoint and model differ ({what}): missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]} (e.g. extra_conv or num_classes overrides; "
                         f"strict=False keeps what fits)")
    for key, tensor in state.items():
        if tensor.shape != ours[key].shape:
            raise ValueError(f"shape mismatch for {key}: checkpoint {tuple(tensor.shape)}, model "
                             f"{tuple(ours[key].shape)} ({what}; check num_classes / in_chans, or "
                             f"load with strict=False to fine-tune)")
    model.load_state_dict(state, strict=True)
    return model


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """A stem conv weight ``O x 3 x kh x kw`` for ``in_chans`` inputs (timm's rule, restated):
    one channel sums the RGB filters (a grey image is R = G = B); more channels repeat the RGB
    filters cyclically and scale by ``3 / in_chans``, so that the response to a grey image keeps
    its size. A Scaled WS stem re-standardises its weight anyway, so there only the pattern matters."""
    if in_chans == weight.shape[1]:
        return weight
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = -(-in_chans // weight.shape[1])
    return weight.repeat(1, repeats, 1, 1)[:, :in_chans] * (weight.shape[1] / in_chans)


def _cfg_key(model: nn.Module, which: str, default: str) -> str:
    cfg = getattr(model, "pretrained_cfg", None)
    return cfg.get(which, default) if isinstance(cfg, dict) else default


def load_fitting(model: nn.Module, state: Mapping[str, torch.Tensor]) -> dict[str, list[str]]:
    """Fine-tuning load: copy every tensor whose name and shape fit; adapt the stem's first conv to
    the model's input channels; leave a classifier of another size freshly initialised (it already
    is: the model was just built). Returns what was ``loaded``, ``adapted``, ``reinitialised``,
    ``skipped`` (in the checkpoint, not fitting) and ``missing`` (in the model, not the checkpoint)."""
    _check_ws_weights(model, state)
    if isinstance(model, NFNet) and describe(state) != describe(model.state_dict()):
        raise ValueError(f"the checkpoint looks like {describe(state)}, but the model is "
                         f"{describe(model.state_dict())}: pick the model the weights were trained as")
    ours = model.state_dict()
    first_conv = _cfg_key(model, "first_conv", "") + ".weight"
    head = _cfg_key(model, "classifier", "fc") + "."
    report: dict[str, list[str]] = {k: [] for k in ("loaded", "adapted", "reinitialised", "skipped")}
    fitting = {}
    for key, tensor in state.items():
        target = ours.get(key)
        if target is None:
            report["skipped"].append(key)
        elif tensor.shape == target.shape:
            fitting[key] = tensor
            report["loaded"].append(key)
        elif key == first_conv and tensor.ndim == 4 and tensor.shape[0] == target.shape[0] \
                and tensor.shape[2:] == target.shape[2:]:
            fitting[key] = adapt_input_conv(tensor.float(), target.shape[1]).to(target.dtype)
            report["adapted"].append(key)
        elif key.startswith(head):
            report["reinitialised"].append(key)
        else:
            report["skipped"].append(key)
    body = [k for k in ours if not k.startswith(head)]  # the classifier may change with the task
    fit = len(report["loaded"]) + len(report["adapted"])
    if fit < MIN_FITTING * len(body):
        raise ValueError(f"only {fit} of the {len(body)} tensors of {type(model).__name__} (classifier "
                         f"aside) fit the checkpoint (keys such as {list(state)[:3]}); fine-tuning needs at "
                         f"least {MIN_FITTING:.0%}: pick the model the weights were trained as")
    report["missing"] = sorted(set(ours) - set(fitting) - set(report["reinitialised"]))
    model.load_state_dict(fitting, strict=False)
    return report


# ---------------------------------------------------------------- files
def _unpickle(path: Path) -> Any:
    with open(path, "rb") as f:
        try:
            return pickle.load(f)
        except (ModuleNotFoundError, AttributeError) as error:
            missing = getattr(error, "name", None) or str(error)
    try:
        import dill  # the official files were written with dill
    except ImportError as error:
        raise ImportError(f"{path} could not be read with pickle (it refers to {missing!r}); the "
                          "official NFNet files are dill pickles: `pip install dill` and retry") from error
    with open(path, "rb") as f:
        try:
            return dill.load(f)
        except ModuleNotFoundError as error:  # e.g. a pickled Haiku FlatMapping needs haiku itself
            raise ImportError(f"{path} needs the module {error.name!r} to be unpickled; install it (for "
                              "example dm-haiku or jax) or re-save the params as plain dicts of numpy "
                              "arrays") from error


def _plain(obj: Any) -> Any:
    """Haiku FlatMapping / jax arrays -> plain dicts of numpy arrays."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    return np.asarray(obj)


def sniff_format(path: str | Path) -> str:
    """The file's format from its first bytes, never its suffix (a timm ``model_best.pth.tar`` is a
    torch zip, an official ``F0_haiku.npz`` a pickle): "safetensors" (8-byte header length, then
    JSON), "torch" (a zip holding ``data.pkl``, or the legacy pickled format), "npz" (another zip),
    "pickle" (protocol 2+), else
    "unknown"."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
        return "torch" if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names) else "npz"
    if len(head) > 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") > 1:
        return "safetensors"
    if head[:4] == b"\x80\x02\x8a\x0a":  # torch.save's legacy format opens with a pickled magic number
        return "torch"
    if head[:1] == b"\x80" or head[:1] in (b"c", b"("):
        return "pickle"
    return "unknown"


CONTAINER_KEYS = ("state_dict", "model", "model_state_dict", "params")  # training checkpoints
EMA_KEYS = ("state_dict_ema", "model_ema", "ema")  # timm's train.py (and older timm), ours
# the classes a weights_only load may meet besides tensors and containers: timm's training args
SAFE_GLOBALS = (argparse.Namespace,)


def _unwrap(raw: Any, use_ema: bool | None = None) -> Any:
    """A training checkpoint (timm's ``{"state_dict": ...}``, ours ``{"model": ...}``) -> its weights;
    with ``use_ema`` its EMA weights where it has them (timm's order: ``state_dict_ema``,
    ``model_ema``; then ours, ``ema``), else the weights, as timm's ``load_state_dict`` does.
    ``use_ema=None`` takes the weights and warns when EMA weights sit beside them."""
    ema = next((k for k in EMA_KEYS if isinstance(raw, Mapping) and isinstance(raw.get(k), Mapping)), None)
    if ema is not None and use_ema:
        return raw[ema]
    if use_ema:
        logger.info("use_ema=True: the checkpoint holds no EMA weights (%s); loading its weights",
                    "/".join(EMA_KEYS))
    elif ema is not None and use_ema is None:
        warnings.warn(f"the checkpoint also holds EMA weights ({ema!r}): loading the raw weights; "
                      f"use_ema=True loads the EMA ones (timm's load_checkpoint default), use_ema=False "
                      f"says you want the raw ones", UserWarning, stacklevel=4)
    while isinstance(raw, Mapping):
        inner = next((raw[k] for k in CONTAINER_KEYS if isinstance(raw.get(k), Mapping)), None)
        if inner is None:
            return raw
        raw = inner
    return raw


def strip_prefixes(state: Mapping[str, Any]) -> dict[str, Any]:
    """Drop the ``module.`` (DataParallel / DDP) and ``_orig_mod.`` (``torch.compile``) prefixes."""
    out = {}
    for key, value in state.items():
        while key.startswith(("module.", "_orig_mod.")):
            key = key.split(".", 1)[1]
        out[key] = value
    return out


def read_checkpoint(path: str | Path, use_ema: bool | None = None) -> dict[str, torch.Tensor]:
    """Read an official Haiku pickle, a flat ``.npz``, a timm ``.pth``/``.pth.tar``/``.safetensors``
    or one of our own state dicts or training checkpoints, and return it under our names. The
    format is read from the file's content (:func:`sniff_format`), not its suffix; ``use_ema``
    picks a training checkpoint's EMA weights (:func:`_unwrap`).

    A missing file is a ``FileNotFoundError``; an empty, truncated or foreign one (text, an
    image...) a ``ValueError`` naming the file, whatever the reader raised (pickle, zip, torch and
    safetensors each raise their own types, some with an empty message). A torch file that needs a
    class ``weights_only`` refuses is a ``ValueError`` naming the class."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    try:
        raw = _read_raw(path)
    except ImportError:
        raise  # its message says what to install
    except Exception as err:
        refused = _refused_globals(path, err) if isinstance(err, pickle.UnpicklingError) else []
        if refused:
            raise ValueError(
                f"{path} needs {', '.join(refused)} to be unpickled, which nfrepro does not do: "
                f"torch.load(weights_only=True) admits tensors, plain containers and (torch >= 2.5) "
                f"argparse.Namespace, timm's training args, only. If you trust the file, read it "
                f"yourself, torch.load(path, weights_only=False), and pass its state dict (for example "
                f"checkpoint['state_dict']) as pretrained= / to load_pretrained") from err
        raise ValueError(f"{path} is empty, truncated or not a weights file ({type(err).__name__}); "
                         f"expected a DeepMind pickle / .npz, a torch .pth / .pth.tar or a .safetensors "
                         f"file") from err
    if not isinstance(raw, Mapping):
        raise ValueError(f"{path} holds a {type(raw).__name__}, not a mapping of parameter names to "
                         f"arrays: not a weights file")
    return convert(raw, use_ema)


def _refused_globals(path: Path, err: Exception) -> list[str]:
    """The classes a ``weights_only`` load refused: torch's own list where it has one (torch >= 2.5),
    else the names in its message ("Unsupported global: GLOBAL module.Class"); none for a file
    that is merely broken."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # older torch, or a file it cannot list
        names = re.findall(r"GLOBAL ([\w.]+)", str(err))
    if getattr(torch.serialization, "safe_globals", None) is not None:   # these were admitted
        names = [n for n in names if n not in {f"{g.__module__}.{g.__qualname__}" for g in SAFE_GLOBALS}]
    return list(dict.fromkeys(names))


def _read_raw(path: Path) -> Any:
    kind = sniff_format(path)
    if kind == "safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    if kind == "npz":  # a real .npz: flat keys "NFNet/~/stem_conv0/w"
        with np.load(path, allow_pickle=False) as npz:
            raw = {}
            for key in npz.files:
                module, _, name = key.rpartition("/")
                raw.setdefault(module, {})[name] = npz[key]
        return raw
    if kind == "torch":
        safe = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5; scoped to this load
        if safe is None:
            return torch.load(path, map_location="cpu", weights_only=True)
        with safe(list(SAFE_GLOBALS)):
            return torch.load(path, map_location="cpu", weights_only=True)
    if kind == "pickle":
        return _plain(_unpickle(path))
    raise ValueError(f"{path}: not a weights file nfrepro can read (expected a DeepMind pickle or .npz, "
                     f"a torch .pth / .pth.tar, or a .safetensors file)")


def convert(raw: Mapping[str, Any], use_ema: bool | None = None) -> dict[str, torch.Tensor]:
    """Any supported parameter mapping -> our state dict (the format is recognised by its names)."""
    raw = strip_prefixes(_unwrap(raw, use_ema))
    keys = list(raw)
    if keys and all(k.startswith(HAIKU_ROOT) for k in keys):
        return from_haiku(raw)
    if any(k.startswith("stages.") for k in keys):
        return from_timm(raw)
    if any(k.startswith(("blocks.", "stem.")) for k in keys):
        return {k: torch.as_tensor(v) for k, v in raw.items()}
    raise ValueError(f"unrecognised checkpoint: keys such as {keys[:3]} are neither official Haiku "
                     "NFNet names, timm dm_nfnet names nor nfrepro names")


def load_pretrained(model: nn.Module, source: str | Path | Mapping[str, Any],
                    strict: bool = True, use_ema: bool | None = None) -> nn.Module:
    """Load weights into ``model`` (in place; returned) from a file path or an in-memory mapping.

    ``strict=True``: the checkpoint must match the model exactly (a mismatch raises a
    ``ValueError`` saying what differs). ``strict=False`` (fine-tuning; what
    ``create_model(name, pretrained=...)`` uses): every tensor that fits is loaded, the first conv
    is adapted to other input channels, a classifier of another size stays freshly initialised.
    A checkpoint that fits fewer than :data:`MIN_FITTING` of the model's tensors (classifier aside)
    is refused; anything short of an exact fit is one ``UserWarning`` saying what was done.

    ``use_ema`` (timm's ``load_checkpoint`` argument): ``True`` loads a training checkpoint's EMA
    weights (timm's ``state_dict_ema``, ours ``ema``) where it has them; ``False`` its raw weights;
    ``None`` (default) the raw weights, with a warning if EMA weights were there too (timm's default
    is ``True``: it takes the EMA weights silently).
    """
    state = convert(source, use_ema) if isinstance(source, Mapping) else read_checkpoint(source, use_ema)
    if strict:
        return load_state(model, state)
    report = load_fitting(model, state)
    where = "a state dict" if isinstance(source, Mapping) else str(source)
    parts = [f"loaded {len(report['loaded'])} tensors from {where}"]
    if report["adapted"]:
        chans = model.state_dict()[report['adapted'][0]].shape[1]
        parts.append(f"adapted {', '.join(report['adapted'])} to {chans} "
                     f"input channels")
    if report["reinitialised"]:
        parts.append(f"re-initialised the classifier ({', '.join(report['reinitialised'])}: "
                     f"other number of classes)")
    if report["skipped"]:
        parts.append(f"skipped {len(report['skipped'])} that do not fit "
                     f"({', '.join(report['skipped'][:3])}...)")
    if report["missing"]:
        parts.append(f"{len(report['missing'])} model tensors not in the file keep their init "
                     f"({', '.join(report['missing'][:3])}...)")
    if len(parts) > 1:  # anything but an exact fit is a warning a user sees
        warnings.warn("; ".join(parts), UserWarning, stacklevel=2)
    else:
        logger.info(parts[0])
    return model


def save_haiku(model: nn.Module, path: str | Path) -> None:
    """Write ``to_haiku(model)`` as a plain pickle, the official file layout (readable without dill)."""
    with open(path, "wb") as f:
        pickle.dump(to_haiku(model), f, protocol=pickle.HIGHEST_PROTOCOL)
