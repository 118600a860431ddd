"""The one type for a resolution setting, parsed once at the edge (CLI, recipe, checkpoint).

``1`` is the HR image itself; ``2``, ``4`` and ``8`` are LR copies made by :func:`fskd_cli.data.degrade.degrade`
(downsample by that factor, enlarge back); ``multi`` is the paper's multiple-resolution setting (Section 4.3),
where each training sample draws one of 1x, 2x, 4x, 8x uniformly.
"""

from __future__ import annotations

from enum import StrEnum


class Scale(StrEnum):
    """A resolution setting. Its ``value`` is what recipes, file names and results.csv hold."""

    x1 = "1"
    x2 = "2"
    x4 = "4"
    x8 = "8"
    multi = "multi"

    @classmethod
    def parse(cls, value: Scale | str | int) -> Scale:
        """``4``, ``"4"``, ``"x4"`` or ``Scale.x4`` -> ``Scale.x4``; a ValueError names the choices."""
        if isinstance(value, Scale):
            return value
        text = str(value).strip().lower().removeprefix("x")
        for member in cls:
            if member.value == text:
                return member
        raise ValueError(f"scale must be one of {', '.join(CHOICES)}, got {value!r}")

    @property
    def factors(self) -> tuple[int, ...]:
        """The downsampling factors a sample may draw: ``(4,)`` for 4x, ``(1, 2, 4, 8)`` for multi."""
        return MULTI_FACTORS if self is Scale.multi else (int(self.value),)

    @property
    def label(self) -> str:
        """How tables and file names write it: ``x4``, ``multi``."""
        return self.value if self is Scale.multi else f"x{self.value}"


CHOICES = tuple(s.value for s in Scale)
LR_FACTORS = (2, 4, 8)  # the LR copies `fskd prepare` can write beside the HR image
MULTI_FACTORS = (1, *LR_FACTORS)
#: how an LR copy is made, down and back up (``prepare --interpolation``, a checkpoint's degradation)
INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area")
#: where an eval's LR images come from (``--lr-source``): made from HR as the run made its training images, or the
#: prepared copies on disk; the first is the default
LR_SOURCES = ("degrade", "disk")


def one_factor(value: Scale | str | int) -> int:
    """The one downsampling factor an eval or a photo is seen at; ``multi`` (a training setting) and a bad value
    are a user's mistake naming ``--scale``."""
    from .errors import FskdError

    try:
        parsed = Scale.parse(value)
    except ValueError as e:
        raise FskdError(f"--scale: {e}") from None
    if parsed is Scale.multi:
        raise FskdError("--scale: multi mixes scales in training; give one of 1, 2, 4, 8")
    return parsed.factors[0]
