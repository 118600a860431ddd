"""``fitnet``: FitNet hints (Romero et al. 2014), the whole feature distilled with an L2 distance.

Per block, the mean squared difference between the teacher's and the (optionally regressed) student's
features, mean over the blocks, times ``weight``. The paper writes the distance as ``||f_T - f_S||_2``;
we use its square averaged over elements, as FitNet's own code and RepDistiller/torchdistill do, so the
loss does not grow with the feature size. With ``hint_layers`` (default when the channels differ) a 1x1
conv + BN per block maps the student's features to the teacher's channels; it trains with the student.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import FskdError
from . import Distiller, register_distiller


@register_distiller("fitnet")
class FitNet(Distiller):
    summary = "FitNet hints (Romero et al. 2014): L2 between whole feature maps, via 1x1 hint layers"
    paper_name, table_order = "FitNet", 20

    def __init__(self, student_shapes: Sequence[torch.Size], teacher_shapes: Sequence[torch.Size],
                 weight: float = 1.0, hint_layers: bool | None = None) -> None:
        super().__init__(student_shapes, teacher_shapes, weight)
        mismatch = any(s[0] != t[0] for s, t in zip(student_shapes, teacher_shapes, strict=True))
        if hint_layers is None:
            hint_layers = mismatch
        if mismatch and not hint_layers:
            raise FskdError("fitnet: student and teacher channels differ; set hint_layers: true")
        if any(s[1:] != t[1:] for s, t in zip(student_shapes, teacher_shapes, strict=True)):
            raise FskdError("fitnet: student and teacher feature maps differ in size")
        self.hints = nn.ModuleList(
            nn.Sequential(nn.Conv2d(s[0], t[0], 1, bias=False), nn.BatchNorm2d(t[0])) if hint_layers else nn.Identity()
            for s, t in zip(student_shapes, teacher_shapes, strict=True)
        )

    def forward(self, student: list[torch.Tensor], teacher: list[torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        per_block = [F.mse_loss(h(s).float(), t.float()) for h, s, t in zip(self.hints, student, teacher, strict=True)]
        return self.weight * torch.stack(per_block).mean()
