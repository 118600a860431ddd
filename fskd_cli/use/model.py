"""A checkpoint's backbone, loaded once, with what using it needs: input convention, device, degradation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.checkpoint import build_model, load_checkpoint
from ..core.device import resolve_device
from ..core.preprocess import Preprocess
from ..core.runs import RunSetting, training_degradation
from ..core.scale import Scale, one_factor
from ..data.degrade import degrade_uint8


@dataclass
class LoadedModel:
    """A backbone in eval mode on ``device``, and the checkpoint it came from.

    ``preprocess`` is the colour order and scaling the model was trained with (an imported AdaFace teacher
    and its students take BGR); ``degradation`` is how the run's LR images were made, so ``--scale``
    degrades a photo as the run's training images were degraded.
    """

    backbone: nn.Module
    ck: dict[str, Any]
    preprocess: Preprocess
    device: torch.device
    degradation: dict[str, Any]

    @property
    def input_size(self) -> int:
        return int(getattr(self.backbone, "input_size", None) or self.ck["input_size"])

    @property
    def run_dir(self) -> Path:
        return Path(self.ck["path"]).parent

    @property
    def setting(self) -> RunSetting:
        return RunSetting.of(self.ck)

    def inputs(self, crops: torch.Tensor) -> torch.Tensor:
        """uint8 RGB crops ``[N, 3, S, S]`` -> the model's float input on its device."""
        return self.preprocess.apply(crops, self.device)

    def degrade(self, crop, scale: Scale | str | int):
        """One ``S x S x 3`` uint8 crop as the run's LR copies at ``scale`` are made (:func:`degrade_uint8`)."""
        factor = one_factor(scale)
        if factor == 1:
            return crop
        return degrade_uint8(crop, factor, self.degradation["interpolation"], bool(self.degradation["antialias"]))


def load_model(ckpt: str | Path, device: str | torch.device = "auto") -> LoadedModel:
    """The backbone of a run (its folder or ``checkpoint.pt``), ready to embed."""
    ck = load_checkpoint(ckpt)
    backbone, _ = build_model(ck)
    device = resolve_device(device)
    backbone.requires_grad_(False)
    return LoadedModel(backbone.to(device).eval(), ck, Preprocess.from_dict(ck.get("preprocess")), device,
                       training_degradation(ck))

