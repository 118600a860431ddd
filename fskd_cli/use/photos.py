"""Photos given on the command line -> aligned crops, one status per photo.

A folder stands for every image file below it (sorted, so the output order is stable). Each photo is
detected and aligned by :class:`~fskd_cli.data.align.FaceAligner`, the code ``fskd prepare`` uses, so a
photo is embedded exactly as the training and test faces were cut out; ``aligned=True`` takes photos
that already are crops of the model's size instead. A photo that cannot be read, holds no face or has
the wrong size is a row with its status and reason, never a crash.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import FskdError
from ..data.manifest import load_image

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".pnm", ".tif", ".tiff", ".webp", ".gif"})


@dataclass
class Photo:
    """One source photo: its aligned crop (``S x S x 3`` uint8 RGB) or ``None`` with a status saying why."""

    path: str
    crop: np.ndarray | None
    status: str  # ok | unreadable | no_face | too_small | wrong_size
    reason: str = ""


def list_photos(sources: Sequence[str | Path]) -> list[Path]:
    """Image files named directly, and those below named folders; a missing source is an error."""
    found: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            found += sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif source.is_file():
            found.append(source)
        else:
            raise FskdError(f"{source}: no such file or folder")
    if not found:
        raise FskdError(f"{', '.join(map(str, sources))}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return found


def read_photo(path: Path) -> tuple[np.ndarray | None, str]:
    """The photo as ``H x W x 3`` uint8 RGB, or ``None`` and why it cannot be read."""
    try:
        return load_image(path), ""
    except (OSError, ValueError, SyntaxError) as e:  # PIL raises these for truncated or foreign files
        return None, f"cannot read image ({str(e).splitlines()[0][:100]})"


def as_rgb(image: np.ndarray) -> np.ndarray:
    """An in-memory image as ``H x W x 3`` uint8 RGB (grey ``H x W`` gets three equal channels)."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"an image must be uint8 H x W x 3 RGB or H x W grey, got {image.dtype} {image.shape}")
    return np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image


class Cropper:
    """Turns batches of photo paths into :class:`Photo` rows: detect and align, or check given crops."""

    def __init__(self, size: int, aligned: bool, device: str = "cpu") -> None:
        self.size, self.aligned, self.device = size, aligned, device
        self._aligner = None

    def __call__(self, items: Sequence[str | Path | np.ndarray]) -> list[Photo]:
        """One row per item: a photo file, or an ``H x W x 3`` (or ``H x W`` grey) uint8 RGB array named ``#i``."""
        images = [read_photo(Path(x)) if isinstance(x, str | Path) else (as_rgb(x), "") for x in items]
        names = [str(x) if isinstance(x, str | Path) else f"#{i}" for i, x in enumerate(items)]
        rows: list[Photo | None] = [None if im is not None else Photo(name, None, "unreadable", why)
                                    for name, (im, why) in zip(names, images, strict=True)]
        todo = [i for i, row in enumerate(rows) if row is None]
        crops = self._crops([images[i][0] for i in todo])
        for i, (crop, status, reason) in zip(todo, crops, strict=True):
            rows[i] = Photo(names[i], crop, status, reason)
        return rows

    def _crops(self, images: list[np.ndarray]) -> list[tuple[np.ndarray | None, str, str]]:
        if self.aligned:
            return [(im, "ok", "") if im.shape[:2] == (self.size, self.size) else
                    (None, "wrong_size", f"{im.shape[1]} x {im.shape[0]} px; --aligned takes {self.size} x {self.size} crops")
                    for im in images]
        if not images:
            return []
        if self._aligner is None:
            from ..data.align import FaceAligner  # loads the detector: only when photos need aligning

            self._aligner = FaceAligner(device=str(self.device), size=self.size)
        return [(a.image, a.status, a.reason) for a in self._aligner.align(images)]
