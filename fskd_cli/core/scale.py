"""The one type for a resolution setting, parsed once at the edge (CLI, recipe, checkpoint, the Python API).

``1`` is the HR image itself; ``2``, ``4`` and ``8`` are LR copies made by :func:`fskd_cli.data.degrade.degrade`
(downsample by that factor, enlarge back); ``multi`` is the paper's multiple-resolution setting (Section 4.3),
where each training sample draws one of 1x, 2x, 4x, 8x uniformly.

How it is written, one spelling per place: recipes, checkpoints, eval JSON and results.csv hold the ``value``
(``"4"``, ``"multi"``); file and folder names, figure titles, captions and messages the ``label`` (``x4``); only
the paper-style tables (``fskd analyze table|compare``, the report's tables) write ``4x``, as the paper writes 4×.
This module imports nothing heavy: the command line builds its choices from it.
"""

from __future__ import annotations

from enum import StrEnum

from .errors import FskdError


class Scale(StrEnum):
    """A resolution setting. Its ``value`` is what recipes, checkpoints and results.csv hold."""

    x1 = "1"
    x2 = "2"
    x4 = "4"
    x8 = "8"
    multi = "multi"

    @classmethod
    def parse(cls, value: Scale | str | int) -> Scale:
        """``4``, ``"4"``, ``"x4"`` or ``Scale.x4`` -> ``Scale.x4``; a ValueError names the choices.

        For the edges only (a recipe, a checkpoint, an API argument): inside fskd a scale is a ``Scale``."""
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
        """How file names, figure titles and messages write it: ``x4``, ``multi``."""
        return self.value if self is Scale.multi else f"x{self.value}"


CHOICES = tuple(s.value for s in Scale)
LR_FACTORS = (2, 4, 8)  # the LR copies `fskd prepare` can write beside the HR image
MULTI_FACTORS = (1, *LR_FACTORS)
#: the scales one image is seen at (eval, embed, verify); ``multi`` is a training setting only
SINGLE_SCALES = tuple(s for s in Scale if s is not Scale.multi)
#: the scales a student's LR input can be compared at with its teacher's HR input (analyze)
LR_SCALES = tuple(s for s in SINGLE_SCALES if s is not Scale.x1)
#: how an LR copy is made, down and back up (``prepare --interpolation``, a checkpoint's degradation)
INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area")
#: where an eval's LR images come from (``--lr-source``): made from HR as the run made its training images, or the
#: prepared copies on disk; the first is the default
LR_SOURCES = ("degrade", "disk")


def one_factor(scale: Scale) -> int:
    """The one downsampling factor an eval or a photo is seen at; ``multi`` (a training setting) is a user's
    mistake naming ``--scale``."""
    if scale is Scale.multi:
        raise FskdError(f"--scale: multi mixes scales in training; give one of {', '.join(s.value for s in SINGLE_SCALES)}")
    return scale.factors[0]
