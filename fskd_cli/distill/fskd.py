"""``f-skd``: feature similarity KD, the paper's Eq. (3).

For each tapped block, ``1 - cos(f_T, f_S)`` between the teacher's and the student's whole feature maps,
each flattened per sample; mean over the batch, mean over the blocks, times ``weight`` (lambda, 5 in the
paper). Only the direction of the features is transferred: scaling the student's features by a positive
factor does not change the loss, which is the point of the method (Section 3.2).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from . import Distiller, register_distiller


def cosine_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Per-sample ``1 - cos`` between two feature maps flattened per sample, computed in fp32."""
    s, t = student.flatten(1).float(), teacher.flatten(1).float()
    return 1.0 - F.cosine_similarity(s, t, dim=1, eps=1e-8)


@register_distiller("f-skd")
class FSKD(Distiller):
    summary = "feature similarity KD (the paper, Eq. 3): 1 - cosine between teacher and student features"
    paper_name, table_order = "F-SKD", 60

    def forward(self, student: list[torch.Tensor], teacher: list[torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        per_block = [cosine_distance(s, t).mean() for s, t in zip(student, teacher, strict=True)]
        return self.weight * torch.stack(per_block).mean()
