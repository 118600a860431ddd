"""What every reader gives back, and the helpers that several readers share.

A reader turns one source format into a :class:`Source`: a list of :class:`Item` (one per source
image, in a deterministic order), the pairs of a 1:1 protocol in terms of item keys, and how the
faces must be treated (detected and aligned, already aligned, or kept at their native size).
:func:`fskd_cli.data.prepare_faces.prepare_faces` turns any :class:`Source` into the dataset layout,
so adding a format is one new reader registered with :func:`reader` and nothing else.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageOps

from ...errors import FskdError

Faces = Literal["detect", "aligned", "native"]

# Files that are never images: documentation and checksums shipped beside the photos.
NOT_IMAGE_SUFFIXES = {".txt", ".md", ".csv", ".json", ".yaml", ".yml", ".html", ".pdf", ".xml", ".ini",
                      ".py", ".sh", ".mat", ".zip", ".tar", ".gz", ".tgz", ".db", ".idx", ".rec", ".bin"}
NOT_IMAGE_PREFIXES = ("readme", "license", "sha256sums", "md5sums", "thumbs.db")
# Image suffixes dropped from output names; anything else (Yale's ``subject01.glasses``) is kept whole.
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".pnm", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


class UnreadableImage(Exception):
    """One image cannot be decoded; it becomes an ``unreadable`` manifest row, never a crash."""


@dataclass(frozen=True)
class Item:
    """One source image.

    ``source`` is a stable, unique key (a relative path, or ``file#record``): the manifest keeps it
    for traceability and a re-run uses it to skip finished images. ``rel`` is the output path under
    ``images/hr/`` without suffix. ``load`` decodes the image as ``H x W x 3`` uint8 RGB, lazily so
    that a large set is never held in memory, and raises :class:`UnreadableImage` for a bad one.
    ``problem`` marks an item the reader already knows it cannot use (``(status, reason)``).
    """

    source: str
    rel: str
    identity: str
    label: int
    split: str
    load: Callable[[], np.ndarray]
    role: str = ""
    problem: tuple[str, str] | None = None


@dataclass
class Source:
    """Everything a reader found: the items, the protocol's pairs (by item key) and dataset facts."""

    task: str
    faces: Faces
    items: list[Item]
    pairs: list[tuple[str, str, int]] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


ReaderFn = Callable[..., Source]


@dataclass(frozen=True)
class ReaderSpec:
    fn: ReaderFn
    options: tuple[str, ...]


READERS: dict[str, ReaderSpec] = {}


def reader(*kinds: str, options: Sequence[str] = ()) -> Callable[[ReaderFn], ReaderFn]:
    """Register ``fn(src, kind, **options) -> Source`` under each of ``kinds`` (``fskd prepare KIND``)."""

    def register(fn: ReaderFn) -> ReaderFn:
        for kind in kinds:
            READERS[kind] = ReaderSpec(fn, tuple(options))
        return fn

    return register


def decode_image(data: bytes | Path, where: str) -> np.ndarray:
    """Decode encoded bytes or a file, by content (not by file name), as ``H x W x 3`` uint8 RGB.

    EXIF orientation is applied so phone photos stand upright; grey and palette images become
    three equal channels. Any decoder failure becomes :class:`UnreadableImage` naming ``where``.
    """
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as im:
            im.load()
            return np.array(ImageOps.exif_transpose(im).convert("RGB"))  # a writable copy, as torch wants
    except FileNotFoundError:
        raise UnreadableImage(f"{where}: file not found") from None
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
        raise UnreadableImage(f"{where}: cannot read image ({type(e).__name__}: {e})") from None


def file_loader(path: Path, where: str) -> Callable[[], np.ndarray]:
    return lambda: decode_image(path, where)


def bytes_loader(data: bytes, where: str) -> Callable[[], np.ndarray]:
    return lambda: decode_image(data, where)


def natural_key(text: str) -> list[Any]:
    """Sort key that puts ``s2`` before ``s10`` and ``2.pgm`` before ``10.pgm``: the order people expect."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def is_candidate_image(path: Path) -> bool:
    """Whether a file may be an image: not hidden, not documentation. Content decides the rest."""
    name = path.name.lower()
    return not (name.startswith(".") or name.startswith(NOT_IMAGE_PREFIXES)
                or path.suffix.lower() in NOT_IMAGE_SUFFIXES)


def list_images(root: Path) -> list[Path]:
    """Candidate image files under ``root`` (recursively), in natural order of their relative paths."""
    files = [p for p in root.rglob("*")
             if p.is_file() and is_candidate_image(p)
             and not any(part.startswith(".") for part in p.relative_to(root).parts)]
    return sorted(files, key=lambda p: natural_key(p.relative_to(root).as_posix()))


def output_names(rel_paths: Sequence[str]) -> list[str]:
    """Output names (no suffix) for relative source paths: the path without an image suffix.

    ``a.jpg`` and ``a.png`` in one folder would collide, so those keep their suffix in the name.
    """
    stems = [p[: -len(Path(p).suffix)] if Path(p).suffix.lower() in IMAGE_SUFFIXES else p for p in rel_paths]
    counts: dict[str, int] = {}
    for s in stems:
        counts[s] = counts.get(s, 0) + 1
    return [s if counts[s] == 1 else p for s, p in zip(stems, rel_paths)]


def require_exists(path: Path, what: str) -> None:
    if not path.exists():
        raise FskdError(f"{path}: not found; expected {what}")


def label_map(identities: Sequence[str]) -> dict[str, int]:
    """Integer labels 0..K-1 for identity names, in natural order, so they do not depend on disk order."""
    return {name: i for i, name in enumerate(sorted(set(identities), key=natural_key))}
