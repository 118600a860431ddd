"""Photos given on the command line -> crops of the model's input size, one status per photo.

A folder stands for every image file below it (sorted, so the output order is stable). Each photo is
decoded as ``fskd prepare`` decodes it (:func:`~fskd_cli.data.readers.images.decode_image`: by content,
EXIF orientation applied), then detected and aligned by :class:`~fskd_cli.data.align.FaceAligner`, the code
``prepare`` uses, so a photo is embedded exactly as the training and test faces were cut out. With
``on_no_face="center"`` a photo where no face is found (a small or tight one) keeps its central crop,
status ``center``, as ``prepare --on-no-face center`` does.

``aligned=True`` takes photos that already are aligned face crops, of any size: a native low-resolution
crop (TinyFace's are 8-100 px wide) or one larger than the input is brought to the input with
:func:`~fskd_cli.inference.lowres.to_input_size`, the resize ``fskd eval`` applies to native-size sets, so
both give the same embeddings. That resize stretches: a crop that is not square becomes square without
keeping its aspect, exactly as eval treats TinyFace's (mostly not square) crops. Each resized crop records
its own size (``resized_from``, ``WxH``).

A photo that cannot be read (any decoder failure, a header claiming billions of pixels included) or
holds no face is a row with its status and reason, never a crash.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import FskdError
from ..data.align import ON_NO_FACE
from ..data.readers.images import decode_image, image_size
from ..data.readers.reader import UnreadableImage
from ..inference.lowres import to_input_size

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".pnm", ".tif", ".tiff", ".webp", ".gif"})
#: statuses of a row that has an embedding: a detected face, or (``on_no_face="center"``) a photo's central crop
EMBEDDED = ("ok", "center")


@dataclass
class Photo:
    """One source photo: its crop (``S x S x 3`` uint8 RGB) or ``None`` with a status saying why."""

    path: str
    crop: np.ndarray | None
    status: str  # ok | center | unreadable | no_face | too_small
    reason: str = ""
    resized_from: str = ""  # "WxH" of an aligned crop that was resized to the input; "" when it went in as it was


def list_photos(sources: Sequence[str | Path]) -> list[Path]:
    """Image files named directly, and those below named folders; a missing source is an error.

    Every entry with an image suffix is kept, a broken or looping link and a FIFO included: each becomes an
    ``unreadable`` row saying why (:func:`read_photo`) instead of vanishing from the count."""
    found: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            found += sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir())
        elif source.is_file() or source.is_symlink() or source.exists():  # a link or FIFO: a row saying why
            found.append(source)
        else:
            raise FskdError(f"{source}: no such file or folder")
    if not found:
        raise FskdError(f"{', '.join(map(str, sources))}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return found


def read_photo(path: Path) -> tuple[np.ndarray | None, str]:
    """The photo as ``H x W x 3`` uint8 RGB, or ``None`` and why it cannot be read (whatever the decoder's failure)."""
    try:
        return decode_image(path, str(path)), ""
    except UnreadableImage as e:
        return None, str(e).removeprefix(f"{path}: ")


def as_rgb(image: np.ndarray) -> np.ndarray:
    """An in-memory image as ``H x W x 3`` uint8 RGB (grey ``H x W`` gets three equal channels)."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3) or 0 in image.shape:
        raise ValueError(f"an image must be uint8 H x W x 3 RGB or H x W grey, got {image.dtype} {image.shape}")
    return np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image


def scale_conflict(items: Sequence[str | Path | np.ndarray], size: int, factor: int) -> str | None:
    """Why ``--scale factor`` cannot apply to these aligned crops, or None.

    Degrading imitates a camera ``factor`` times farther away from a face seen at the input's resolution. A
    crop smaller than the input (on either side) already is that far away: degrading it again would give a
    face no camera took. Sizes come from the files' headers (nothing is decoded), so the refusal comes before
    any work; a file whose header cannot be read becomes an ``unreadable`` row later.
    """
    if factor == 1:
        return None
    sizes = [(str(x), image_size(Path(x))) if isinstance(x, str | Path) else (f"#{i}", np.shape(x)[1::-1])
             for i, x in enumerate(items)]
    small = [(name, wh) for name, wh in sizes if wh is not None and min(wh) < size]
    if not small:
        return None
    name, (w, h) = small[0]
    return (f"{name}: {w} x {h} px, already a low-resolution face (the model takes {size} x {size}); --scale "
            f"{factor} would degrade it a second time ({len(small)} of {len(items)} crops are smaller than the input). "
            "Leave --scale out for native low-resolution crops")


class Cropper:
    """Turns batches of photos into :class:`Photo` rows: detect and align, or bring given crops to the input size."""

    def __init__(self, size: int, aligned: bool, device: str = "cpu", on_no_face: str = "skip", factor: int = 1) -> None:
        """``factor``: the scale the crops will be degraded at; an aligned crop smaller than the input is then
        refused (:func:`scale_conflict` checks headers before the work; this catches what only OpenCV decodes)."""
        if on_no_face not in ON_NO_FACE:
            raise ValueError(f"on_no_face must be one of {', '.join(ON_NO_FACE)}, got {on_no_face!r}")
        if aligned and on_no_face != "skip":
            raise ValueError("on_no_face applies to photos that are detected; aligned crops are used whole")
        self.size, self.aligned, self.device, self.on_no_face, self.factor = size, aligned, device, on_no_face, factor
        self._aligner = None

    def __call__(self, items: Sequence[str | Path | np.ndarray]) -> list[Photo]:
        """One row per item: a photo file, or an ``H x W x 3`` (or ``H x W`` grey) uint8 RGB array named ``#i``."""
        images = [read_photo(Path(x)) if isinstance(x, str | Path) else (as_rgb(x), "") for x in items]
        names = [str(x) if isinstance(x, str | Path) else f"#{i}" for i, x in enumerate(items)]
        rows: list[Photo | None] = [None if im is not None else Photo(name, None, "unreadable", why)
                                    for name, (im, why) in zip(names, images, strict=True)]
        todo = [i for i, row in enumerate(rows) if row is None]
        crops = self._crops([images[i][0] for i in todo])
        for i, (crop, status, reason, resized_from) in zip(todo, crops, strict=True):
            rows[i] = Photo(names[i], crop, status, reason, resized_from)
        return rows

    def _crops(self, images: list[np.ndarray]) -> list[tuple[np.ndarray | None, str, str, str]]:
        if self.aligned:
            return [self._given(im) for im in images]
        if not images:
            return []
        if self._aligner is None:
            from ..data.align import FaceAligner  # loads the detector: only when photos need aligning

            self._aligner = FaceAligner(device=str(self.device), size=self.size, on_no_face=self.on_no_face)
        return [(a.image, a.status, a.reason, "") for a in self._aligner.align(images)]

    def _given(self, image: np.ndarray) -> tuple[np.ndarray | None, str, str, str]:
        """An aligned crop brought to the input size, as eval brings native-size crops (:func:`to_input_size`)."""
        h, w = image.shape[:2]
        if self.factor > 1 and min(h, w) < self.size:
            return None, "too_small", f"{w} x {h} px, already low-resolution: --scale {self.factor} is refused", ""
        return to_input_size(image, self.size), "ok", "", "" if (h, w) == (self.size, self.size) else f"{w}x{h}"
