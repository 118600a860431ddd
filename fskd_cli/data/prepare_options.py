"""The options of ``fskd prepare KIND``, each declared once: the CLI builds its flags from these declarations
and :func:`fskd_cli.data.prepare.prepare_dataset` fills defaults and checks values from the same ones.

Options every kind takes are :data:`COMMON_OPTIONS`; a reader declares its own (see ``readers/reader.py``),
and readers that detect faces add :data:`DETECT_OPTIONS`. It imports nothing heavy (no torch, numpy or cv2):
the command line builds ``fskd prepare KIND --help`` from it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import FskdError
from ..core.scale import INTERPOLATIONS, LR_FACTORS

#: what the aligner does with a photo where it finds no face (``--on-no-face``)
ON_NO_FACE: tuple[str, ...] = ("skip", "center")


@dataclass(frozen=True)
class Option:
    """One ``--NAME`` option. ``changes_output=False`` marks options that only change speed (workers):
    a rerun may change those and still continue the same work."""

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    changes_output: bool = True

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value: Any) -> Any:
        """``value`` if it is allowed, else FskdError naming the flag."""
        if value is None:
            return value
        if self.choices and value not in self.choices:
            raise FskdError(f"{self.flag} must be one of {', '.join(self.choices)}, got {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise FskdError(f"{self.flag} must be at least {self.minimum:g}, got {value}")
        return Path(value) if self.type is Path else value


DEFAULT_SCALES = ",".join(map(str, (1, *LR_FACTORS)))

COMMON_OPTIONS = (
    Option("scales", str, DEFAULT_SCALES, "Scales written on disk, e.g. 1 (HR only) or 1,2,4,8; other stages make "
           "a missing scale on the fly with the same degradation."),
    Option("interpolation", str, "bilinear", "Interpolation of the LR copies: bilinear (paper) or nearest "
           "(authors' code).", choices=INTERPOLATIONS),
    Option("antialias", bool, False, "Low-pass filter before downsampling (PIL-style)."),
    Option("limit", int, None, "Use only the first N images (for quick trials).", minimum=1),
    Option("workers", int, min(4, os.cpu_count() or 1), "Worker threads; each reads, detects and writes one "
           "batch at a time.", minimum=1, changes_output=False),
    Option("batch_size", int, 32, "Images per batch (one MTCNN call per batch and image size).", minimum=1,
           changes_output=False),
)

DETECT_OPTIONS = (
    Option("min_face_size", int, 20, "Smallest face MTCNN looks for, in pixels.", minimum=1),
    Option("on_no_face", str, "skip", "A photo where no face is found: skip it (status no_face) or keep a central "
           "crop scaled to the template (status center).", choices=ON_NO_FACE),
)


def parse_scales(value: str | int | Sequence[int]) -> tuple[int, ...]:
    """The LR factors to write for ``--scales`` (``"1"`` -> none, ``"1,2,4,8"`` or ``(2, 4, 8)`` -> 2, 4, 8)."""
    tokens = str(value).split(",") if isinstance(value, str | int) else list(value)
    try:
        scales = {int(str(t).strip().lower().removeprefix("x")) for t in tokens}
    except ValueError:
        raise FskdError(f"--scales must be a comma list of 1, 2, 4, 8 (e.g. 1,2,4,8), got {value!r}") from None
    bad = sorted(scales - {1, *LR_FACTORS})
    if bad or not scales:
        raise FskdError(f"--scales must be among 1, 2, 4, 8, got {value!r}")
    return tuple(sorted(scales - {1}))
