"""One optimisation step, and the module that holds everything it trains.

Benchmarks time exactly :class:`TrainStep`; the loop calls it once per batch. Nothing here reads a value
back from the device, so steps queue on the GPU without waiting for each other.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..distill import Distiller
from ..models.tap import FeatureTap


class RecognitionModule(nn.Module):
    """A recognition network in training: backbone, margin head and (for a student, or a teacher with an
    auxiliary loss) the distiller, in one module so that DDP synchronises all of their gradients."""

    def __init__(self, model: nn.Module, head: nn.Module, distiller: Distiller | None) -> None:
        super().__init__()
        self.model, self.head, self.distiller = model, head, distiller
        self.tap = FeatureTap(model, distiller.tap_layers(model)) if distiller is not None else None

    def forward(self, x: torch.Tensor, labels: torch.Tensor, teacher_feats: list[torch.Tensor],
                batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (task loss, distillation loss, logits)."""
        emb = self.model(x)
        logits = self.head(emb, labels)
        task = F.cross_entropy(logits.float(), labels)
        if self.distiller is None:
            return task, task.new_zeros(()), logits
        return task, self.distiller(self.tap.features, teacher_feats, {**batch, "embedding": emb}), logits


@dataclass
class TrainStep:
    """The frozen teacher's forward on HR (no autograd graph), the module's forward and backward on its
    input, the optimizer step. The losses come back as device tensors, read only at log intervals."""

    module: nn.Module  # a RecognitionModule, possibly wrapped in DDP / torch.compile
    teacher: nn.Module | None
    teacher_tap: FeatureTap | None
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    device_type: str

    def __call__(self, hr_x: torch.Tensor, x: torch.Tensor, labels: torch.Tensor,
                 scale: torch.Tensor) -> dict[str, torch.Tensor]:
        """-> detached ``loss``, ``task_loss``, ``distill_loss`` and ``logits``."""
        autocast = torch.autocast(self.device_type, self.amp_dtype) if self.amp_dtype else contextlib.nullcontext()
        with autocast:
            teacher_feats: list[torch.Tensor] = []
            batch = {"hr": hr_x, "labels": labels, "scale": scale}
            if self.teacher is not None:
                with torch.no_grad():  # not inference_mode: its tensors may not enter the student's graph
                    batch["teacher_embedding"] = self.teacher(hr_x)
                teacher_feats = self.teacher_tap.features
            task_loss, distill_loss, logits = self.module(x, labels, teacher_feats, batch)
            loss = task_loss + distill_loss
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return {"loss": loss.detach(), "task_loss": task_loss.detach(), "distill_loss": distill_loss.detach(),
                "logits": logits.detach()}


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The recipe's ``train.amp`` on this device: None (fp32) on the CPU or when off."""
    if device.type != "cuda" or amp == "off":
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]
