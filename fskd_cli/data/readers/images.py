"""Image files as readers meet them: decoding any depth to 8-bit RGB, and listing a folder tree.

Decoding goes by content, not by file name. 16-bit and float images are scaled by their type's range
(65535, 1.0) rather than clipped, which would turn them white. Listing gives every candidate file a
place, including broken or looping symbolic links and folders that cannot be listed, so each becomes
an ``unreadable`` manifest row instead of vanishing.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .reader import UnreadableImage, natural_key

# Files that are never images: documentation and checksums shipped beside the photos.
NOT_IMAGE_SUFFIXES = {".txt", ".md", ".csv", ".json", ".yaml", ".yml", ".html", ".pdf", ".xml", ".ini",
                      ".py", ".sh", ".mat", ".zip", ".tar", ".gz", ".tgz", ".db", ".idx", ".rec", ".bin"}
NOT_IMAGE_PREFIXES = ("readme", "license", "sha256sums", "md5sums", "thumbs.db")
# Image suffixes dropped from output names; anything else (Yale's ``subject01.glasses``) is kept whole.
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".pnm", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
_DEEP_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}  # PIL modes that convert("RGB") would clip
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def to_uint8(array: np.ndarray, where: str) -> np.ndarray:
    """``array`` (grey ``H x W`` or ``H x W x 1|3|4``, any depth) as ``H x W x 3`` uint8, scaled by its type's range.

    uint8 stays as it is; 16-bit values are divided by 257 (65535 -> 255); floats are taken as 0..1.
    Values outside the type's range cannot be mapped without guessing: :class:`UnreadableImage`.
    """
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] in (1, 3, 4):
        a = a[:, :, :3] if a.shape[2] > 1 else a[:, :, 0]
    if a.ndim not in (2, 3) or 0 in a.shape:
        raise UnreadableImage(f"{where}: an array of shape {a.shape} is not an image")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        a = _scaled(a.astype(np.float64), 1.0, where)
    elif np.issubdtype(a.dtype, np.integer) and a.dtype != np.uint8:
        a = _scaled(a.astype(np.float64), 255.0 if a.dtype.itemsize == 1 else 65535.0, where)
    elif a.dtype != np.uint8:
        raise UnreadableImage(f"{where}: pixels of type {a.dtype} are not an image")
    return np.ascontiguousarray(np.repeat(a[:, :, None], 3, axis=2) if a.ndim == 2 else a)


def _scaled(a: np.ndarray, top: float, where: str) -> np.ndarray:
    if not np.isfinite(a).all() or a.min() < 0 or a.max() > top:
        low, high = np.nanmin(a), np.nanmax(a)
        raise UnreadableImage(f"{where}: pixel values {low:g}..{high:g} lie outside 0..{top:g}, the range of their type")
    return np.rint(a * (255.0 / top)).astype(np.uint8)


def decode_image(data: bytes | Path, where: str) -> np.ndarray:
    """Decode encoded bytes or a file, by content (not by file name), as ``H x W x 3`` uint8 RGB.

    EXIF orientation is applied so phone photos stand upright; grey and palette images become three
    equal channels; 16-bit and float images are scaled (:func:`to_uint8`). What PIL cannot open
    (float colour TIFFs) is tried with OpenCV. Any failure becomes :class:`UnreadableImage` naming ``where``.
    """
    if not isinstance(data, bytes) and (problem := not_a_file(Path(data))):
        raise UnreadableImage(f"{where}: {problem}")
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            if im.mode in _DEEP_MODES:
                return to_uint8(np.array(im), where)
            return np.array(im.convert("RGB"))  # a writable copy, as torch wants
    except FileNotFoundError:
        raise UnreadableImage(f"{where}: file not found") from None
    except UnidentifiedImageError as e:
        return _decode_with_opencv(data, where, e)
    except _DECODE_ERRORS as e:
        raise UnreadableImage(f"{where}: cannot read image ({type(e).__name__}: {e})") from None


def image_size(path: Path) -> tuple[int, int] | None:
    """``(width, height)`` from the file's header (nothing decoded), or None when PIL cannot read the header."""
    if not_a_file(path):
        return None
    try:
        with Image.open(path) as im:
            return im.size
    except _DECODE_ERRORS:
        return None


def not_a_file(path: Path) -> str | None:
    """Why ``path`` is not a regular file that can be opened (a broken or looping link, a FIFO, a device), or None.

    Checked before opening: opening a FIFO waits for a writer forever, and a device may never end."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError as e:
        return _stat_problem(path, e).removeprefix(f"{path}: ") if path.is_symlink() else "file not found"
    except OSError as e:
        return _stat_problem(path, e).removeprefix(f"{path}: ")
    return None if stat.S_ISREG(mode) else "not a regular file (a FIFO, socket or device), so not an image"


def _decode_with_opencv(data: bytes | Path, where: str, first: Exception) -> np.ndarray:
    try:
        raw = data if isinstance(data, bytes) else Path(data).read_bytes()
        image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
    except (OSError, cv2.error):
        image = None
    if image is None:
        raise UnreadableImage(f"{where}: cannot read image ({type(first).__name__}: {first})")
    if image.ndim == 3 and image.shape[2] in (3, 4):
        image = image[:, :, 2::-1]  # OpenCV's BGR(A) -> RGB
    return to_uint8(image, where)


def file_loader(path: Path, where: str) -> Callable[[], np.ndarray]:
    return lambda: decode_image(path, where)


def bytes_loader(data: bytes, where: str) -> Callable[[], np.ndarray]:
    return lambda: decode_image(data, where)


def is_candidate_image(path: Path) -> bool:
    """Whether a file may be an image: not hidden, not documentation. Content decides the rest."""
    name = path.name.lower()
    return not (name.startswith(".") or name.startswith(NOT_IMAGE_PREFIXES)
                or path.suffix.lower() in NOT_IMAGE_SUFFIXES)


@dataclass(frozen=True)
class Listed:
    """A file found under a root (``rel`` to it, with ``/``), or, with ``problem``, one that cannot be read."""

    path: Path
    rel: str
    problem: str | None = None


def list_images(root: Path) -> list[Listed]:
    """Candidate image files under ``root``, recursively and in natural order of their relative paths.

    Hidden files and folders are skipped. Symbolic links are followed; a broken or looping one, and a
    folder that cannot be listed (``rel`` ends with ``/``), come back with the reason as ``problem``.
    """
    found: list[Listed] = []
    _walk(root, root, found, ancestors=(root.resolve(),))
    return sorted(found, key=lambda entry: natural_key(entry.rel))


def _walk(root: Path, folder: Path, found: list[Listed], ancestors: tuple[Path, ...]) -> None:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as e:
        found.append(Listed(folder, folder.relative_to(root).as_posix() + "/",
                            f"{folder}: cannot list this folder ({e.strerror})"))
        return
    for entry in entries:
        path = Path(entry.path)
        if entry.name.startswith("."):
            continue
        try:
            mode = path.stat().st_mode
        except OSError as e:
            if entry.is_symlink() or is_candidate_image(path):
                found.append(Listed(path, path.relative_to(root).as_posix(), _stat_problem(path, e)))
            continue
        if stat.S_ISDIR(mode):
            real = path.resolve()
            if real in ancestors:
                found.append(Listed(path, path.relative_to(root).as_posix() + "/",
                                    f"{path}: symbolic link loop (it leads back to {real})"))
            else:
                _walk(root, path, found, (*ancestors, real))
        elif stat.S_ISREG(mode) and is_candidate_image(path):
            found.append(Listed(path, path.relative_to(root).as_posix()))


def _stat_problem(path: Path, error: OSError) -> str:
    if error.errno == errno.ENOENT and path.is_symlink():
        return f"{path}: broken symbolic link (its target {os.readlink(path)} does not exist)"
    if error.errno == errno.ELOOP:
        return f"{path}: symbolic link loop"
    return f"{path}: cannot read ({error.strerror})"


def output_names(rel_paths: Sequence[str]) -> list[str]:
    """Output names (no suffix) for relative source paths: the path without an image suffix.

    ``a.jpg`` and ``a.png`` in one folder would collide, so those keep their suffix in the name.
    """
    stems = [p[: -len(Path(p).suffix)] if Path(p).suffix.lower() in IMAGE_SUFFIXES else p for p in rel_paths]
    counts: dict[str, int] = {}
    for s in stems:
        counts[s] = counts.get(s, 0) + 1
    return [s if counts[s] == 1 else p for s, p in zip(stems, rel_paths, strict=True)]
