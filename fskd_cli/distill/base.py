"""``base``: no distillation, the student trained on LR images with its task loss alone."""

from __future__ import annotations

from typing import Any

import torch

from . import Distiller, register_distiller


@register_distiller("base")
class Base(Distiller):
    summary = "no distillation: the student learns from its task loss alone (the paper's Base)"
    paper_name, table_order = "Base", 10
    needs_teacher = False
    weighted = False

    def forward(self, student: list[torch.Tensor], teacher: list[torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        return student[0].new_zeros(())
