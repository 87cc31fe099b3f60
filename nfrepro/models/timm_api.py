"""timm's model API beyond the head: gradient checkpointing, intermediates, pruning, layer groups.

timm >= 1.0 models answer a few calls that training scripts, dense-prediction necks and optimizer
factories make without knowing the architecture. :class:`TimmApi` gives every nfrepro model built
on :class:`~nfrepro.models.head.ClassifierHead` the same calls, with the signatures and meanings of
timm's ``NormFreeNet`` (``timm/models/nfnet.py``, the class behind ``dm_nfnet_f0``):

* ``set_grad_checkpointing(enable=True)``: while gradients are recorded, each residual block runs
  under ``torch.utils.checkpoint`` (non-reentrant): its activations are recomputed in the backward
  pass instead of kept. timm checkpoints per stage (``checkpoint_seq`` over ``stages``); our blocks
  are one flat sequence, so the unit is a block, which keeps less (a stage's input versus all its
  activations at recomputation). The random state is restored for the recomputation, so stochastic
  depth drops the same samples and the gradients are those without checkpointing. BatchNorm
  (``bn_resnet*``, ``nfnet_bn_*``) sees each training batch twice: its running statistics take two
  momentum steps per batch, as in every checkpointed BatchNorm net (timm's included).
* ``forward_intermediates(x, indices=None, norm=False, stop_early=False, output_fmt="NCHW",
  intermediates_only=False)``: the feature maps at timm's taps, then (unless ``intermediates_only``)
  the ``forward_features`` output. Tap 0 is inside the stem, after the conv that ends at stride 2
  (NFNet: ``stem.conv2``, timm's ``stem.conv3``, 64 channels; ResNets: the 7x7/2 conv before the
  max-pool; the 28/32 px nets: the whole stem); tap ``s`` is stage ``s``'s output, the last one
  *before* the final activation (after NFNet's final 1x1 conv), as timm takes it. ``indices``:
  ``None`` every tap, an int ``n`` the last ``n``, a sequence picks (negative from the end).
  ``norm`` is accepted and unused (no final norm), as in timm.
* ``prune_intermediate_layers(indices=1, prune_norm=False, prune_head=True)``: drops what the
  taps ``indices`` do not need (later stages, the final conv and activation, the stem's tail when
  only tap 0 is kept) and, with ``prune_head`` or when the end is cut, the classifier
  (``reset_classifier(0, "")``); returns the kept tap indices.
* ``group_matcher(coarse=False)``: timm's parameter grouping (stem, then one group per block, or
  per stage when ``coarse``, the final conv joining the last one, the classifier last), which
  ``timm.optim.create_optimizer_v2(..., layer_decay=...)`` reads for layer-wise lr decay.
* ``default_cfg``: timm's alias of ``pretrained_cfg``; ``head_hidden_size``: the width
  ``forward_head(x, pre_logits=True)`` returns (``num_features``: our pools keep the width).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

# timm's pool names whose output keeps the map's width ("catavgmax" doubles it: not offered)
POOLS = ("avg", "max", "avgmax", "")
MATCH_PREVIOUS = (99999,)  # timm's group_matcher marker: "belongs to the group before"


def pool(x: torch.Tensor, kind: str) -> torch.Tensor:
    """timm's ``SelectAdaptivePool2d`` at output size 1, flattened: ``N x C x H x W -> N x C``
    ("avg", "max", "avgmax" = their mean); "" leaves the map unpooled."""
    if kind == "avg":
        return x.mean(dim=(2, 3))
    if kind == "max":
        return x.amax(dim=(2, 3))
    if kind == "avgmax":
        return 0.5 * (x.mean(dim=(2, 3)) + x.amax(dim=(2, 3)))
    return x


def check_pool(kind: str, num_classes: int) -> None:
    """A pool we offer; "" (unpooled maps) only without a classifier, timm's convention (timm
    accepts it with a classifier and fails at the first forward)."""
    if kind not in POOLS:
        raise ValueError(f"global_pool={kind!r}: choose one of {', '.join(map(repr, POOLS))}")
    if kind == "" and num_classes:
        raise ValueError(f"global_pool='' keeps the unpooled map, which a linear classifier cannot take: "
                         f"pass num_classes=0 with it (got {num_classes}), or another pool")


def take_indices(num_taps: int, indices: int | Sequence[int] | None) -> tuple[list[int], int]:
    """timm's ``feature_take_indices``: the absolute taps and the largest. ``None``: all; an int
    ``n``: the last ``n``; a sequence: those taps, negative ones counted from the end."""
    if indices is None:
        indices = num_taps
    if isinstance(indices, int):
        if not 0 < indices <= num_taps:
            raise ValueError(f"indices={indices}: take the last 1..{num_taps} taps")
        taken = list(range(num_taps - indices, num_taps))
    else:
        taken = [num_taps + i if i < 0 else i for i in indices]
        if not taken or any(not 0 <= i < num_taps for i in taken):
            raise ValueError(f"indices={tuple(indices)}: taps are 0..{num_taps - 1} (or -{num_taps}..-1)")
    return taken, max(taken)


def _conv(module: nn.Module) -> nn.Conv2d | None:
    return next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)


def _stride(module: nn.Module) -> int:
    stride = getattr(_conv(module) or module, "stride", 1)
    return stride[0] if isinstance(stride, tuple) else stride


class TimmApi:
    """Mixin for ``nn.Module`` models with the model contract (``stem``, flat ``blocks`` each with
    a ``stage``, ``final_act``, optionally ``final_conv``, ``widths``, ``reset_classifier``)."""

    grad_checkpointing: bool = False
    global_pool: str = "avg"   # the papers' mean pool (official ``jnp.mean(out, [1, 2])``)

    @property
    def default_cfg(self) -> dict[str, Any]:
        """timm keeps ``default_cfg`` as an alias of ``pretrained_cfg``."""
        return self.pretrained_cfg

    @default_cfg.setter
    def default_cfg(self, cfg: dict[str, Any]) -> None:
        self.pretrained_cfg = cfg

    @property
    def head_hidden_size(self) -> int:
        """timm's name for the pre-logits width."""
        return self.num_features

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass (module docstring)."""
        self.grad_checkpointing = bool(enable)

    def _block(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint(block, x, use_reentrant=False)
        return block(x)

    def run_blocks(self, x: torch.Tensor) -> torch.Tensor:
        """``self.blocks(x)``, each block checkpointed when ``set_grad_checkpointing`` asked for it."""
        if not (self.grad_checkpointing and torch.is_grad_enabled()):
            return self.blocks(x)
        for block in self.blocks:
            x = self._block(block, x)
        return x

    # ------------------------------------------------------------ taps
    def _stages(self) -> list[list[nn.Module]]:
        stages: list[list[nn.Module]] = []
        for block in self.blocks:
            if not stages or block.stage != stages[-1][0].stage:
                stages.append([])
            stages[-1].append(block)
        return stages

    def _stem_tap(self) -> int:
        """The stem child whose output is tap 0: the conv before the stem's last downsampling
        layer when it downsamples twice (timm's stride-2 tap), else the stem's output."""
        children = list(self.stem)
        strided = [i for i, m in enumerate(children) if _stride(m) > 1]
        if len(strided) < 2:
            return len(children) - 1
        return max(i for i in range(strided[-1]) if _conv(children[i]) is not None)

    def _tap_channels(self, tap: int) -> int:
        if tap == 0:
            return _conv(self.stem[self._stem_tap()]).out_channels
        return self.widths[tap - 1] if tap < len(self._stages()) else self.num_features

    def forward_intermediates(self, x: torch.Tensor, indices: int | Sequence[int] | None = None,
                              norm: bool = False, stop_early: bool = False, output_fmt: str = "NCHW",
                              intermediates_only: bool = False
                              ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """The maps at the taps ``indices`` and the ``forward_features`` output (module docstring);
        ``stop_early`` skips the stages after the last tap wanted (the final output is then that
        stage's map, unactivated, as in timm)."""
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt={output_fmt!r}: nfrepro models give NCHW maps only")
        stages = self._stages()
        taken, last = take_indices(len(stages) + 1, indices)
        out = []
        stem_tap = self._stem_tap()
        for i, module in enumerate(self.stem):
            x = module(x)
            if i == stem_tap and 0 in taken:
                out.append(x)
        run = stages[:last] if stop_early else stages
        for tap, stage in enumerate(run, start=1):
            for block in stage:
                x = self._block(block, x)
            if tap == len(stages):
                x = getattr(self, "final_conv", nn.Identity())(x)
            if tap in taken:
                out.append(x)
        if intermediates_only:
            return out
        return (self.final_act(x) if len(run) == len(stages) else x), out

    def prune_intermediate_layers(self, indices: int | Sequence[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Drop the layers the taps ``indices`` do not need (module docstring); the kept taps."""
        stages = self._stages()
        taken, last = take_indices(len(stages) + 1, indices)
        cut_end = last < len(stages)
        if cut_end:
            if hasattr(self, "final_conv"):
                self.final_conv = nn.Identity()
            self.final_act = nn.Identity()
            self.num_features = self._tap_channels(last)
        if last == 0:
            self.stem = self.stem[:self._stem_tap() + 1]
        self.blocks = self.blocks[:sum(len(stage) for stage in stages[:last])]
        if prune_head or cut_end:
            self.reset_classifier(0, "")
        return taken

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """timm's layer groups as regexes over our names: ``stem``; each block (``coarse``: each
        stage); the final conv / activation with the last block; unmatched (the classifier) last."""
        if coarse:   # one regex per stage, listing its blocks: (?:0|1)
            index = [(str(i), b.stage) for i, b in enumerate(self.blocks)]
            blocks = [(rf"^blocks\.(?:{'|'.join(i for i, t in index if t == s)})\.", (s,))
                      for s in sorted({t for _, t in index})]
        else:
            blocks = [(r"^blocks\.(\d+)\.", None)]
        return {"stem": r"^stem\.", "blocks": [*blocks, (r"^final_(?:conv|act)\.", MATCH_PREVIOUS)]}
