"""How a model wants its input: colour order and scaling, recorded in every checkpoint.

fskd's own models take RGB scaled to [-1, 1] (``(x - 127.5) / 127.5``, as the authors' code does).
Imported teachers may differ (AdaFace takes BGR), and a student distilled from one is trained and
evaluated in the teacher's convention, so every stage turns uint8 images into model input through
:meth:`Preprocess.apply` with the convention read from the checkpoint, never with a constant.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Preprocess:
    """uint8 RGB ``[B, 3, H, W]`` -> float model input: optional channel flip, then ``(x - mean) / std``."""

    color: str = "rgb"  # rgb | bgr: the channel order the model expects
    mean: float = 127.5
    std: float = 127.5

    def __post_init__(self) -> None:
        if self.color not in ("rgb", "bgr"):
            raise ValueError(f"color must be rgb or bgr, got {self.color!r}")
        if not self.std > 0:
            raise ValueError(f"std must be positive, got {self.std}")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Preprocess:
        """The convention stored in a checkpoint or config (missing: fskd's RGB in [-1, 1])."""
        return cls(**(data or {}))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def apply(self, images: torch.Tensor, device: torch.device | str = "cpu", channels_last: bool = False) -> torch.Tensor:
        """uint8 RGB images -> float input on ``device`` (the copy is made as uint8: a quarter of the bytes)."""
        x = images.to(device, non_blocking=True)
        if self.color == "bgr":
            x = x.flip(-3)
        x = x.float().sub_(self.mean).div_(self.std)
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x


RGB_UNIT = Preprocess()
