"""``a-skd``: attention similarity KD (Shin et al., ECCV 2022), on CBAM attention maps.

Teacher and student are both CBAM models (``iresnet50`` with ``cbam: true``): every block's residual
branch ends with channel attention (a shared two-layer 1x1-conv MLP, reduction 16, over the avg- and
max-pooled input) then spatial attention (a conv over the channel-wise mean and max), each gating by a
sigmoid, before the shortcut add. The maps compared are the gates' *pre-sigmoid* outputs, the
``channel_gate`` and ``spatial_gate`` modules that :func:`~fskd_cli.models.iresnet.attention_layers` lists,
captured by forward hooks.

For each map, ``1 - cos`` between the teacher's (HR input) and the student's (LR input) map, flattened
per sample, averaged over the batch; the maps' terms are *summed* (two per block: 48 for iResNet-50) and
multiplied by ``weight`` (lambda, 5). The sum is what the A-SKD authors' code computes
(``loss_sum += d_loss * distill_attn_param`` over every channel and spatial map), and lambda 5 was tuned
with it; ``reduction: mean`` averages over the maps instead, on F-SKD's scale (its Eq. 3 has 1/L).
The authors' CBAM uses a 3x3 spatial conv (``cbam_kernel: 3``, set in the paper recipes); the model's default
is CBAM's 7x7. Teacher and student must share it: their spatial maps are then computed alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..core.errors import FskdError
from ..models.iresnet import attention_layers
from . import Distiller, register_distiller
from .fskd import cosine_distance


@register_distiller("a-skd")
class ASKD(Distiller):
    """Options: ``reduction`` (``sum`` over the maps, as the A-SKD code; or ``mean``)."""

    summary = "attention similarity KD (Shin et al. 2022): cosine between CBAM attention maps"
    paper_name, table_order = "A-SKD", 50

    @classmethod
    def tap_layers(cls, model: nn.Module) -> list[str]:
        names = attention_layers(model)
        if not names:
            arch = getattr(model, "arch", {}).get("name", type(model).__name__)
            raise FskdError(f"a-skd distils CBAM attention maps, but this {arch} model has no CBAM; "
                            "use an iResNet with `cbam: true` in model.kwargs for both teacher and student")
        return names

    def __init__(self, student_shapes: Sequence[torch.Size], teacher_shapes: Sequence[torch.Size],
                 weight: float = 5.0, reduction: str = "sum") -> None:
        super().__init__(student_shapes, teacher_shapes, weight)
        if reduction not in ("sum", "mean"):
            raise FskdError(f"a-skd: reduction must be 'sum' or 'mean', got {reduction!r}")
        for i, (s, t) in enumerate(zip(student_shapes, teacher_shapes, strict=True)):
            if tuple(s) != tuple(t):
                raise FskdError(f"a-skd: attention map {i} is {tuple(s)} in the student but {tuple(t)} in the "
                                "teacher; both must be the same CBAM architecture")
        self.reduction = reduction

    def forward(self, student: list[torch.Tensor], teacher: list[torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        per_map = torch.stack([cosine_distance(s, t).mean() for s, t in zip(student, teacher, strict=True)])
        return self.weight * (per_map.sum() if self.reduction == "sum" else per_map.mean())
