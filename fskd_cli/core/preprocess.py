"""How a model wants its input: colour order and scaling, recorded in every checkpoint.

fskd's own models take RGB scaled to [-1, 1] (``(x - 127.5) / 127.5``, as the authors' code does).
Imported teachers may differ (AdaFace takes BGR), and a student distilled from one is trained and
evaluated in the teacher's convention, so every stage turns uint8 images into model input through
:meth:`Preprocess.apply` with the convention read from the checkpoint, never with a constant.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from numbers import Real
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch loads where images are converted, so a recipe is checked without it
    import torch

Stat = float | tuple[float, float, float]


@dataclass(frozen=True)
class Preprocess:
    """uint8 RGB ``[B, 3, H, W]`` -> float model input: optional channel flip, then ``(x - mean) / std``.

    ``mean`` and ``std`` are in uint8 units, one number for every channel or one per channel (in the
    model's channel order, i.e. after the flip), e.g. SVHN's statistics as the authors' QualNet code
    normalises digits: mean ``255 * (0.4377, 0.4438, 0.4728)``, std ``255 * (0.1980, 0.2010, 0.1970)``.
    """

    color: str = "rgb"  # rgb | bgr: the channel order the model expects
    mean: Stat = 127.5
    std: Stat = 127.5

    def __post_init__(self) -> None:
        if self.color not in ("rgb", "bgr"):
            raise ValueError(f"color must be rgb or bgr, got {self.color!r}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            numbers = list(value) if isinstance(value, (list, tuple)) else [value]
            if isinstance(value, (list, tuple)) and len(value) != 3:
                raise ValueError(f"{name} must be one number or three (one per channel), got {list(value)}")
            # a string or mapping would reach torch only when the first image is converted, NaN or inf would
            # turn every input into NaN or 0: each is refused where the convention is read
            if not all(isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v) for v in numbers):
                raise ValueError(f"{name} must be finite numbers, one or three (one per channel), got {value!r}")
            if isinstance(value, (list, tuple)):
                object.__setattr__(self, name, tuple(float(v) for v in value))  # lists from YAML, tuples kept
        stds = self.std if isinstance(self.std, tuple) else (self.std,)
        if not all(s > 0 for s in stds):
            raise ValueError(f"std must be positive, got {self.std}")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Preprocess:
        """The convention stored in a checkpoint or config (missing: fskd's RGB in [-1, 1])."""
        return cls(**(data or {}))

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def apply(self, images: torch.Tensor, device: torch.device | str = "cpu", channels_last: bool = False) -> torch.Tensor:
        """uint8 RGB images -> float input on ``device`` (the copy is made as uint8: a quarter of the bytes)."""
        import torch

        x = images.to(device, non_blocking=True)
        if self.color == "bgr":
            x = x.flip(-3)
        x = x.float()
        x = x.sub_(self._per_channel(self.mean, x)).div_(self._per_channel(self.std, x))
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x

    @staticmethod
    def _per_channel(value: Stat, x: torch.Tensor) -> float | torch.Tensor:
        import torch

        return torch.tensor(value, dtype=x.dtype, device=x.device).view(3, 1, 1) if isinstance(value, tuple) else value


RGB_UNIT = Preprocess()
