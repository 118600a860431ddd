"""What a run is, read once from its checkpoint: its name, its method and the setting it was trained in.

Eval writes this setting into every eval JSON (``setting``), so tables and reports read one record per
eval instead of walking ``config.yaml`` files (and their teachers'); analyze takes the teacher, the data
and the scale of a student from it. One place, so a legend, a results row and a table row never name
the same run differently.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .checkpoint import Checkpoint
from .scale import Scale


@dataclass(frozen=True)
class RunSetting:
    """A run's identity and training setting; ``variant`` is the network family the paper's tables use."""

    run: str  # the run's folder name
    kind: str  # teacher | student
    method: str  # the distillation method; "teacher" for a teacher run
    scale: Scale  # the scale the run was trained at (x1 for a teacher); its value ("4") in the eval JSON
    teacher: str | None  # the teacher checkpoint a student was distilled from
    recipe: str  # the recipe's run name
    seed: int | None
    data: str | None  # the training set folder
    degradation: dict[str, Any]  # interpolation, antialias, scales, and "from": where that was read
    preprocess: dict[str, Any]  # core.preprocess.Preprocess of the model's input
    variant: str  # plain | dec (teacher with QualNet's decoder) | cbam
    backbone: str  # architecture, e.g. "iresnet50+CBAM (width 16)"

    @classmethod
    def of(cls, ck: Checkpoint) -> RunSetting:
        """The setting of a loaded checkpoint (``core.checkpoint.load_checkpoint``)."""
        return cls(
            run=ck.run, kind=ck.kind, method=str(ck.method) if ck.kind == "student" else "teacher",
            scale=ck.scale, teacher=ck.teacher, recipe=str(ck.config.get("name", "")), seed=ck.seed,
            data=ck.data, degradation=ck.degradation.to_dict(), preprocess=ck.preprocess.to_dict(),
            variant=ck.variant, backbone=_backbone(ck))

    @property
    def legend(self) -> str:
        """A curve's legend: the run name, and its method when the name does not say it."""
        return self.run if self.method in self.run else f"{self.run} ({self.method})"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "scale": self.scale.value}


def _backbone(ck: Checkpoint) -> str:
    kwargs = ck.arch.kwargs
    width = kwargs.get("base_width") or kwargs.get("width")
    return ck.arch.name + ("+CBAM" if kwargs.get("cbam") else "") + (f" (width {width})" if width else "")
