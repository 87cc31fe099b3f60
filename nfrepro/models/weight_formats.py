"""DeepMind's NFNet parameter names, Haiku's and timm's, converted to and from ours.

The two layouts are described in :mod:`nfrepro.models.pretrained`, which reads the files and loads
the converted state dicts; this module only renames and reshapes tensors (Haiku: HWIO conv weights,
IO linear weights; timm: ``(O, 1, 1, 1)`` WS gains, SE linears as 1x1 convs).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from nfrepro.layers.weight_standardization import WSConv2d
from nfrepro.models.features import FeatureExtractor
from nfrepro.models.nfnet import NFNet

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
    model = _check_exportable(model)
    shapes: dict[str, dict[str, tuple[int, ...]]] = {}
    for key, tensor in model.state_dict().items():
        module, name, perm = _haiku_entry(key)
        shape = tuple(tensor.shape)
        shapes.setdefault(module, {})[name] = tuple(shape[i] for i in perm) if perm else shape
    return shapes


def to_haiku(model: nn.Module) -> dict[str, dict[str, np.ndarray]]:
    """Our NFNet -> a Haiku-style params dict with the official names and layouts."""
    model = _check_exportable(model)
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


def to_timm(model: nn.Module) -> dict[str, torch.Tensor]:
    """Our NFNet -> a state dict in timm's ``dm_nfnet_*`` names and layouts (inverse of :func:`from_timm`).

    A ``features_only`` backbone gives its NFNet's tensors, no ``head.fc``: what
    ``timm.create_model(name, num_classes=0)`` loads strictly, and timm's ``features_only=True``
    loader reads from a file. WS gains become ``(O, 1, 1, 1)``, the SE linears 1x1 convs
    ``(O, I, 1, 1)``, skip gains keep their shape; blocks are numbered per stage
    (``stages.{s}.{j}``) from ``block.stage``.
    """
    model = _check_exportable(model)
    inverse = {ours: theirs for theirs, ours in _TIMM_BLOCK.items()}
    position: dict[int, tuple[int, int]] = {}
    per_stage: dict[int, int] = {}
    for i, block in enumerate(model.blocks):
        position[i] = (block.stage, per_stage.get(block.stage, 0))
        per_stage[block.stage] = position[i][1] + 1
    out: dict[str, torch.Tensor] = {}
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().clone()
        if m := re.fullmatch(r"stem\.conv(\d)\.(\w+)", key):
            new = f"stem.conv{int(m[1]) + 1}.{m[2]}"
        elif m := re.fullmatch(r"blocks\.(\d+)\.(.+)", key):
            stage, j = position[int(m[1])]
            module, _, name = m[2].rpartition(".")
            rest = "skipinit_gain" if m[2] == "skip_gain" else f"{inverse[module]}.{name}"
            new = f"stages.{stage}.{j}.{rest}"
            if module.startswith("se.") and name == "weight":
                tensor = tensor[:, :, None, None]
        elif key.startswith("fc."):
            new = f"head.{key}"
        else:
            new = key
        if new.endswith(".gain"):
            tensor = tensor.reshape(-1, 1, 1, 1)
        out[new] = tensor
    return out


def _check_exportable(model: nn.Module) -> NFNet:
    """The NFNet whose weights ``model`` holds (a ``features_only`` backbone's inner model: its
    weights less the classifier, which timm's own ``features_only`` loader drops too)."""
    if isinstance(model, FeatureExtractor):
        model = model.model
    if not isinstance(model, NFNet):
        raise ValueError(f"pretrained NFNet weights fit nfrepro.models.nfnet.NFNet, "
                         f"not {type(model).__name__}")
    if model.norm != "none" or not isinstance(model.stem.conv0, WSConv2d):
        raise ValueError("DeepMind's weights are for the normalizer-free WS model (use_ws=True, "
                         "norm='none'); this model has plain or BatchNorm convs")
    return model
