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
are read with ``torch.load(weights_only=True)``.

Both are converted to our state-dict names, then checked against the model: a checkpoint of
another variant (for example F1 weights into an F0) raises a ``ValueError`` that names the
variant the checkpoint looks like. Note that timm's model computes WS and GELU slightly
differently from the official code (paper-facts, "Pitfalls"); the weights are the same.
"""
from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from nfrepro.layers.weight_standardization import WSConv2d
from nfrepro.models.nfnet import VARIANTS, NFNet

HAIKU_ROOT = "NFNet/~/"
_TIMM_BLOCK = {"conv1": "conv0", "conv2": "conv1", "conv2b": "conv1b", "conv3": "conv2",
               "downsample.conv": "conv_shortcut", "attn_last.fc1": "se.fc0", "attn_last.fc2": "se.fc1"}
_SE_LINEAR = {"fc0": "linear", "fc1": "linear_1"}
_SE_LINEAR_INV = {v: k for k, v in _SE_LINEAR.items()}


# ---------------------------------------------------------------- names: ours <-> Haiku
def _haiku_module(module: str) -> str:
    """Our module path (``blocks.3.se.fc0``) -> Haiku module name."""
    parts = module.split(".")
    if parts[0] == "stem":
        return f"{HAIKU_ROOT}stem_{parts[1]}"
    if parts[0] == "final_conv":
        return f"{HAIKU_ROOT}final_conv"
    if parts[0] == "fc":
        return f"{HAIKU_ROOT}linear"
    block = HAIKU_ROOT + ("nf_block" if parts[1] == "0" else f"nf_block_{parts[1]}")
    if len(parts) == 2:
        return block
    if parts[2] == "se":
        return f"{block}/~/squeeze_excite/~/{_SE_LINEAR[parts[3]]}"
    return f"{block}/~/{parts[2]}"


def _our_module(haiku_module: str) -> str:
    """Haiku module name -> our module path (inverse of :func:`_haiku_module`)."""
    name = haiku_module.removeprefix(HAIKU_ROOT)
    if m := re.fullmatch(r"stem_(conv\d)", name):
        return f"stem.{m[1]}"
    if name in ("final_conv", "linear"):
        return {"final_conv": "final_conv", "linear": "fc"}[name]
    m = re.fullmatch(r"nf_block(?:_(\d+))?(?:/~/(.+))?", name)
    if m is None:
        raise ValueError(f"unknown Haiku module {haiku_module!r}: not an official NFNet parameter")
    block = f"blocks.{int(m[1] or 0)}"
    sub = m[2]
    if sub is None:
        return block
    if sub.startswith("squeeze_excite/~/"):
        return f"{block}.se.{_SE_LINEAR_INV[sub.split('/~/')[1]]}"
    return f"{block}.{sub}"


def _is_linear(module: str) -> bool:
    return module == "fc" or ".se." in module


def from_haiku(params: Mapping[str, Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    """Official Haiku params -> our state dict (HWIO -> OIHW, IO -> OI)."""
    state: dict[str, torch.Tensor] = {}
    for haiku_module, tensors in params.items():
        module = _our_module(haiku_module)
        for name, value in tensors.items():
            array = np.asarray(value, dtype=np.float32)
            if name == "w":
                array = array.T if _is_linear(module) else array.transpose(3, 2, 0, 1)
                name = "weight"
            elif name == "b":
                name = "bias"
            state[f"{module}.{name}"] = torch.from_numpy(np.array(array, order="C"))  # keeps 0-d skip gains
    return state


def _haiku_entry(key: str) -> tuple[str, str, tuple[int, ...] | None]:
    """Our state-dict key -> (Haiku module, Haiku param name, permutation of our tensor's axes)."""
    module, _, name = key.rpartition(".")
    if name == "weight":  # OIHW -> HWIO, OI -> IO
        return _haiku_module(module), "w", (1, 0) if _is_linear(module) else (2, 3, 1, 0)
    return _haiku_module(module), "b" if name == "bias" and _is_linear(module) else name, None


def haiku_shapes(model: nn.Module) -> dict[str, dict[str, tuple[int, ...]]]:
    """The official names and shapes of ``model``'s parameters (works on the meta device)."""
    _check_exportable(model)
    shapes: dict[str, dict[str, tuple[int, ...]]] = {}
    for key, tensor in model.state_dict().items():
        module, name, perm = _haiku_entry(key)
        shape = tuple(tensor.shape)
        shapes.setdefault(module, {})[name] = tuple(shape[i] for i in perm) if perm else shape
    return shapes


def to_haiku(model: nn.Module) -> dict[str, dict[str, np.ndarray]]:
    """Our NFNet -> a Haiku-style params dict with the official names and layouts."""
    _check_exportable(model)
    params: dict[str, dict[str, np.ndarray]] = {}
    for key, tensor in model.state_dict().items():
        module, name, perm = _haiku_entry(key)
        array = tensor.detach().cpu().float().numpy()
        # np.array, not np.ascontiguousarray: the latter turns the 0-d skip gains into shape (1,)
        params.setdefault(module, {})[name] = np.array(array.transpose(perm) if perm else array, order="C")
    return params


# ---------------------------------------------------------------- names: timm -> ours
def from_timm(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm ``dm_nfnet_*`` state dict -> ours (gains ``(O,1,1,1)`` -> ``(O,)``, SE 1x1 convs -> linears)."""
    blocks = sorted({(int(m[1]), int(m[2])) for k in state_dict
                     if (m := re.match(r"stages\.(\d+)\.(\d+)\.", k))})
    index = {stage_block: i for i, stage_block in enumerate(blocks)}
    state: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        if m := re.fullmatch(r"stem\.conv(\d)\.(\w+)", key):
            new = f"stem.conv{int(m[1]) - 1}.{m[2]}"
        elif m := re.fullmatch(r"stages\.(\d+)\.(\d+)\.(.+)", key):
            module, _, name = m[3].rpartition(".")
            prefix = f"blocks.{index[(int(m[1]), int(m[2]))]}"
            if m[3] == "skipinit_gain":
                new = f"{prefix}.skip_gain"
            elif module in _TIMM_BLOCK:
                new = f"{prefix}.{_TIMM_BLOCK[module]}.{name}"
            else:
                raise ValueError(f"unknown timm NFNet key {key!r}")
        elif key.startswith("final_conv."):
            new = key
        elif key.startswith("head.fc."):
            new = key.removeprefix("head.")
        else:
            raise ValueError(f"unknown timm NFNet key {key!r}")
        if new.endswith(".gain") or ".se." in new:
            tensor = tensor.reshape(tensor.shape[0], -1) if new.endswith("weight") else tensor.reshape(-1)
        state[new] = tensor.detach().float().clone()
    return state


# ---------------------------------------------------------------- architecture checks
def describe(state: Mapping[str, torch.Tensor]) -> str:
    """"NFNet-F1" if the state dict (our names) matches a Table 1 variant, else its depths and widths."""
    n = 1 + max((int(k.split(".")[1]) for k in state if k.startswith("blocks.")), default=-1)
    starts = [i for i in range(n) if f"blocks.{i}.conv_shortcut.weight" in state] + [n]
    depths = tuple(b - a for a, b in zip(starts, starts[1:]))
    widths = tuple(int(state[k].shape[0]) if (k := f"blocks.{i}.conv2.weight") in state else None
                   for i in starts[:-1])
    for variant in VARIANTS.values():
        if (variant.depths, variant.widths) == (depths, widths):
            return f"NFNet-{variant.name}"
    return f"an NFNet with depths {depths} and widths {widths}"


def _check_exportable(model: nn.Module) -> None:
    if not isinstance(model, NFNet):
        raise ValueError(f"pretrained NFNet weights fit nfrepro.models.nfnet.NFNet, not {type(model).__name__}")
    if model.norm != "none" or not isinstance(model.stem.conv0, WSConv2d):
        raise ValueError("DeepMind's weights are for the normalizer-free WS model (use_ws=True, "
                         "norm='none'); this model has plain or BatchNorm convs")


def load_state(model: nn.Module, state: Mapping[str, torch.Tensor]) -> nn.Module:
    """Copy a converted state dict (our names) into ``model``, with errors that say what is wrong."""
    _check_exportable(model)
    ours = model.state_dict()
    have, want = describe(state), describe(ours)
    if have != want:
        raise ValueError(f"the checkpoint looks like {have}, but the model is {want}")
    missing, unexpected = sorted(set(ours) - set(state)), sorted(set(state) - set(ours))
    if missing or unexpected:
        raise ValueError(f"checkpoint and model differ ({have}): missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]} (e.g. extra_conv or num_classes overrides)")
    for key, tensor in state.items():
        if tensor.shape != ours[key].shape:
            raise ValueError(f"shape mismatch for {key}: checkpoint {tuple(tensor.shape)}, model "
                             f"{tuple(ours[key].shape)} ({have}; check num_classes / in_chans)")
    model.load_state_dict(state, strict=True)
    return model


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


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an official Haiku pickle, a flat ``.npz``, a timm ``.pth``/``.safetensors`` or one of
    our own state dicts, and return it under our names.

    A missing file is a ``FileNotFoundError``; an empty, truncated or foreign one (text, an
    image...) a ``ValueError`` naming the file, whatever the reader raised (pickle, zip, torch and
    safetensors each raise their own types, some with an empty message)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    try:
        raw = _read_raw(path)
    except ImportError:
        raise  # its message says what to install
    except Exception as err:
        raise ValueError(f"{path} is empty, truncated or not a weights file ({type(err).__name__}); "
                         f"expected an official Haiku pickle / .npz or a timm .pth / .safetensors") from err
    if not isinstance(raw, Mapping):
        raise ValueError(f"{path} holds a {type(raw).__name__}, not a mapping of parameter names to "
                         f"arrays: not a weights file")
    return convert(raw)


def _read_raw(path: Path) -> Any:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    if path.suffix in (".pth", ".pt", ".bin"):
        raw = torch.load(path, map_location="cpu", weights_only=True)
        return raw.get("state_dict", raw.get("model", raw)) if isinstance(raw, Mapping) else raw
    if zipfile.is_zipfile(path):  # a real .npz: flat keys "NFNet/~/stem_conv0/w"
        with np.load(path, allow_pickle=False) as npz:
            raw = {}
            for key in npz.files:
                module, _, name = key.rpartition("/")
                raw.setdefault(module, {})[name] = npz[key]
        return raw
    return _plain(_unpickle(path))


def convert(raw: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Any supported parameter mapping -> our state dict (the format is recognised by its names)."""
    keys = list(raw)
    if keys and all(k.startswith(HAIKU_ROOT) for k in keys):
        return from_haiku(raw)
    if any(k.startswith("stages.") for k in keys):
        return from_timm(raw)
    if any(k.startswith("blocks.") for k in keys):
        return {k: torch.as_tensor(v) for k, v in raw.items()}
    raise ValueError(f"unrecognised checkpoint: keys such as {keys[:3]} are neither official Haiku "
                     "NFNet names, timm dm_nfnet names nor nfrepro names")


def load_pretrained(model: nn.Module, source: str | Path | Mapping[str, Any]) -> nn.Module:
    """Load weights into ``model`` (in place; returned) from a file path or an in-memory mapping."""
    state = convert(source) if isinstance(source, Mapping) else read_checkpoint(source)
    return load_state(model, state)


def save_haiku(model: nn.Module, path: str | Path) -> None:
    """Write ``to_haiku(model)`` as a plain pickle, the official file layout (readable without dill)."""
    with open(path, "wb") as f:
        pickle.dump(to_haiku(model), f, protocol=pickle.HIGHEST_PROTOCOL)
