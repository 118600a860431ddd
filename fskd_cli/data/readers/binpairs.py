"""insightface verification sets (``agedb_30.bin``, ``lfw.bin``, ``cfp_fp.bin``).

Each file is a pickle of ``(images, same)``: a list of encoded, already aligned 112 x 112 images and
a list of same/different flags, pair ``i`` being images ``2i`` and ``2i + 1``. The pairs keep the
file's order, which is the protocol's: 10 consecutive folds of equal size. Files written under
Python 2 hold ``str`` images and need ``encoding='bytes'``.

The file is unpickled with a restricted unpickler that only builds the few types such a file holds
(bytes, numpy arrays), so a file of the wrong kind fails with a clear message instead of running code.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ...core.errors import FskdError
from .images import bytes_loader, to_uint8
from .reader import Item, Source, UnreadableImage, register, require_exists

DEFAULT_FILES = {"agedb": "agedb_30.bin", "lfw": "lfw.bin", "cfp-fp": "cfp_fp.bin"}
_ALLOWED = {
    ("_codecs", "encode"),  # how Python 3 pickles bytes at protocol 2
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("builtins", "bytearray"),
    ("__builtin__", "bytearray"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which a verification set never holds")
        return super().find_class(module, name)


def load_bin(path: Path) -> tuple[list[bytes | np.ndarray | None], list[int]]:
    """``(images, same flags)`` of a verification ``.bin``, checked for the expected shape.

    An image is encoded bytes or a decoded array; an element that is neither comes back as ``None``:
    one bad image, not a bad file.
    """
    data = _unpickle(path)
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise FskdError(f"{path}: not an insightface verification set (expected a pickle of (images, same flags))")
    images, same = (list(x) for x in data)
    if len(images) != 2 * len(same) or not same:
        raise FskdError(f"{path}: {len(images)} images for {len(same)} pairs; a verification set has two per pair")
    try:
        flags = [_flag(s) for s in same]
    except (TypeError, ValueError):
        raise FskdError(f"{path}: the pair flags are not all true/false") from None
    return [_element(x) for x in images], flags


def _unpickle(path: Path) -> Any:
    """Try Python 3 strings first, then Python 2 byte strings (``encoding='bytes'``)."""
    for encoding in ("ASCII", "bytes"):
        try:
            with open(path, "rb") as f:
                return _SafeUnpickler(f, encoding=encoding).load()
        except UnicodeDecodeError:
            continue
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
            raise FskdError(f"{path}: not an insightface verification set ({type(e).__name__}: {e})") from None
    raise FskdError(f"{path}: not an insightface verification set (its strings decode neither as text nor as bytes)")


def _flag(value: Any) -> int:
    if isinstance(value, (bool, np.bool_)) or value in (0, 1):
        return int(bool(value))
    raise ValueError(value)


def _element(image: Any) -> bytes | np.ndarray | None:
    """One element of the image list as encoded bytes, or as an already decoded image array (any depth);
    ``None`` for anything else."""
    if isinstance(image, bytes | bytearray | memoryview):
        return bytes(image)
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 1:
        return image.tobytes()
    if isinstance(image, np.ndarray) and image.ndim in (2, 3):
        return image
    if isinstance(image, str):  # a Python 2 pickle read with a text encoding that happened to succeed
        return image.encode("latin-1")
    return None


def _loader(image: bytes | np.ndarray | None, where: str) -> Callable[[], np.ndarray] | None:
    """Decode bytes, or scale an array to 8-bit by its type's range (:func:`to_uint8`, never a clip)."""
    if image is None:
        return None
    return bytes_loader(image, where) if isinstance(image, bytes) else partial(to_uint8, image, where)


def bin_path(src: Path, kind: str) -> Path:
    """``src`` is the ``.bin`` itself or a folder holding the set's usual file name."""
    path = src / DEFAULT_FILES[kind] if src.is_dir() else src
    require_exists(path, f"an insightface verification set ({DEFAULT_FILES[kind]})")
    return path


def read_bin(src: Path, kind: str) -> Source:
    """One item per image of the ``.bin``; the pairs in the file's order."""
    path = bin_path(src, kind)
    images, same = load_bin(path)
    keys = [f"{path.name}#{i}" for i in range(len(images))]
    loaders = [_loader(image, f"{path}#{i}") for i, image in enumerate(images)]
    items = [Item(source=key, rel=f"{i:05d}", identity="", label=-1, split="test", load=load or _not_an_image,
                  problem=None if load else ("unreadable", f"{path}#{i}: neither encoded image bytes nor an image array"))
             for i, (key, load) in enumerate(zip(keys, loaders, strict=True))]
    pairs = [(keys[2 * i], keys[2 * i + 1], s) for i, s in enumerate(same)]
    return Source(task="verification", faces="aligned", items=items, pairs=pairs,
                  meta={"folds": 10} if len(pairs) % 10 == 0 else {})


def _not_an_image() -> np.ndarray:
    raise UnreadableImage("not an image")


for _kind, _name in (("agedb", "AgeDB-30"), ("cfp-fp", "CFP-FP (frontal-profile)")):
    register(_kind, summary=f"{_name} verification pairs from insightface's {DEFAULT_FILES[_kind]} (10 folds, file "
             "order kept).", example=f"fskd prepare {_kind} ~/datasets/faces_emore/{DEFAULT_FILES[_kind]}",
             src_help=f"{DEFAULT_FILES[_kind]}, or the folder holding it.")(read_bin)
