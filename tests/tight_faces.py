"""Tightly cropped faces made from ORL and Yale, as many face sets ship them (the face fills a 168 x 192 frame).

Used by the tight-crop tests and by ``benchmarks/bench_prepare.py --tight``: MTCNN finds each face on the
original photo, and the crop keeps the central :data:`ZOOM` of its box (widened to the 7:8 frame), so the
forehead, ears and chin are cut as in Extended Yale B's cropped set.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from fskd_cli.data.align import FaceAligner
from fskd_cli.data.manifest import load_image

ZOOM = 0.8
FRAME = (168, 192)  # width, height


def tight_crop(image: np.ndarray, box: np.ndarray, zoom: float = ZOOM, frame: tuple[int, int] = FRAME) -> np.ndarray:
    """The central ``zoom`` of the face ``box`` (x1, y1, x2, y2), widened to the aspect of ``frame`` and resized to it."""
    x1, y1, x2, y2 = np.asarray(box, dtype=np.float64)
    width, height = (x2 - x1) * zoom, (y2 - y1) * zoom
    width, height = max(width, height * frame[0] / frame[1]), max(height, width * frame[1] / frame[0])
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left, top = max(0, round(cx - width / 2)), max(0, round(cy - height / 2))
    right = min(image.shape[1], round(cx + width / 2))
    bottom = min(image.shape[0], round(cy + height / 2))
    shrink = right - left > frame[0]
    return cv2.resize(image[top:bottom, left:right], frame, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def tight_set(files: Sequence[Path], aligner: FaceAligner, batch_size: int = 32) -> list[tuple[Path, np.ndarray]]:
    """``(file, tight crop)`` of each photo in ``files`` where MTCNN finds a face (all of ORL's and Yale's)."""
    out = []
    for start in range(0, len(files), batch_size):
        chunk = files[start:start + batch_size]
        photos = [load_image(f) for f in chunk]
        for file, photo, face in zip(chunk, photos, aligner.detect(photos), strict=True):
            if face is not None:
                out.append((file, tight_crop(photo, face.box)))
    return out


def orl_files(root: Path) -> list[Path]:
    return sorted(root.glob("s*/*.pgm"), key=lambda p: (int(p.parent.name[1:]), int(p.stem)))


def yale_files(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.name.startswith("subject"))
