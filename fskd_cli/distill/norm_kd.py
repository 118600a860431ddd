"""``norm-kd``: distil only the norm of the features (the paper's Section 5.2 ablation, Table 4).

Per block and sample, ``(||f_T|| - ||f_S||)^2`` divided by the number of elements per sample, so it is on
FitNet's scale (and never above FitNet's loss, by the reverse triangle inequality); mean over the batch
and the blocks, times ``weight``. Any rotation of the student's features leaves it unchanged.
"""

from __future__ import annotations

from typing import Any

import torch

from . import Distiller, register_distiller


@register_distiller("norm-kd")
class NormKD(Distiller):
    summary = "only the norm of the features (the paper's Table 4 ablation)"
    paper_name, table_order = "Norm-KD", 30

    def forward(self, student: list[torch.Tensor], teacher: list[torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        per_block = []
        for s, t in zip(student, teacher, strict=True):
            s, t = s.flatten(1).float(), t.flatten(1).float()
            per_block.append(((t.norm(dim=1) - s.norm(dim=1)) ** 2 / s.shape[1]).mean())
        return self.weight * torch.stack(per_block).mean()
