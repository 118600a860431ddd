"""``a-skd``: attention similarity KD (Shin et al., ECCV 2022), on CBAM attention maps.

Teacher and student are both CBAM models (``iresnet50`` with ``cbam: true``): every block's residual
branch ends with channel attention then spatial attention, each gating by a sigmoid, before the shortcut
add. The maps compared are the outputs of the ``channel_gate`` and ``spatial_gate`` modules that
:func:`~fskd_cli.models.iresnet.attention_layers` lists, captured by forward hooks: two per block, 48 for
iResNet-50. For each map, ``1 - cos`` between the teacher's (HR input) and the student's (LR input) map,
flattened per sample, averaged over the batch; then the maps' terms are reduced and multiplied by
``weight`` (lambda, 5).

Two codes implement A-SKD, and ``variant`` names one; it is the models' ``cbam_variant``, read from the
shape of their maps when the recipe leaves it out (so a recipe serves every method, and runs recorded
before the option, whose models are ``askd-code``, rebuild unchanged); given, it must match them:

- ``askd-code``: the A-SKD authors' own code (gist-ailab/teaching-where-to-look). Pre-sigmoid maps
  (model/backbone.py lines 49 and 67, handed to the hook at line 103); the maps' terms *summed*
  (utility/distill_loss.py lines 21-27: ``loss_sum += d_loss * distill_attn_param``; lambda 5 at
  train_student.py line 257).
- ``fskd-code``: the A-SKD option of the F-SKD authors' code (kangkzeng/feature-similarity-KD), the likelier
  source of the paper's A-SKD rows (Tables 1b, 2b, 3, 5b): post-sigmoid maps, the channel one a [B, C]
  vector (backbone/attention.py line 113); per block the channel and spatial terms halved, and the blocks
  averaged (train_student.py line 184: ``(d(c) + d(s)) / len(blocks) / 2``), i.e. the *mean* over the maps.

``reduction`` (``sum`` or ``mean``) overrides the variant's, as recipes written before variants could set it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..core.errors import FskdError
from ..models.iresnet import CBAM_VARIANTS, attention_layers
from . import Distiller, register_distiller
from .fskd import cosine_distance

# each variant's reduction over the maps, and the number of dimensions of its channel map per sample
# (askd-code: the [C, 1, 1] logits; fskd-code: the [C] gate vector)
_REDUCTION = {"askd-code": "sum", "fskd-code": "mean"}
_CHANNEL_DIMS = {"askd-code": 3, "fskd-code": 1}


@register_distiller("a-skd")
class ASKD(Distiller):
    """Options: ``variant`` (``askd-code`` or ``fskd-code``, whose code it follows; by default the models')
    and ``reduction`` (``sum`` or ``mean`` over the maps; by default the variant's)."""

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
                 weight: float = 5.0, reduction: str | None = None, variant: str | None = None) -> None:
        super().__init__(student_shapes, teacher_shapes, weight)
        if variant not in (None, *CBAM_VARIANTS):
            raise FskdError(f"a-skd: variant must be one of {', '.join(CBAM_VARIANTS)}, got {variant!r}")
        if reduction not in (None, "sum", "mean"):
            raise FskdError(f"a-skd: reduction must be 'sum' or 'mean', got {reduction!r}")
        for i, (s, t) in enumerate(zip(student_shapes, teacher_shapes, strict=True)):
            if tuple(s) != tuple(t):
                raise FskdError(f"a-skd: attention map {i} is {tuple(s)} in the student but {tuple(t)} in the "
                                "teacher; both must be the same CBAM architecture")
        self.variant = _variant(variant, student_shapes)
        self.reduction = reduction or _REDUCTION[self.variant]

    def forward(self, student: list[torch.Tensor], teacher: list[torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        per_map = torch.stack([cosine_distance(s, t).mean() for s, t in zip(student, teacher, strict=True)])
        return self.weight * (per_map.sum() if self.reduction == "sum" else per_map.mean())


def _variant(variant: str | None, shapes: Sequence[torch.Size]) -> str:
    """The models' CBAM variant, told by their first channel map's shape; ``variant``, if given, must be it."""
    built = next((v for v, dims in _CHANNEL_DIMS.items() if shapes and dims == len(shapes[0])), None)
    if variant is None:
        return built or "askd-code"
    if shapes and built != variant:
        given = f"the {built!r} variant's" if built else f"{tuple(shapes[0])}-shaped"
        raise FskdError(f"a-skd: variant {variant!r} compares that CBAM's maps, but the models give {given} maps; "
                        f"build teacher and student with model.kwargs.cbam_variant: {variant}, or leave "
                        "distill.options.variant out to follow the models")
    return variant
