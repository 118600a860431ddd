"""What every reader gives back, and the registry of readers (``fskd prepare KIND``).

A reader turns one source format into a :class:`Source`: a list of :class:`Item` (one per source
image, in a deterministic order), the pairs of a 1:1 protocol in terms of item keys, and how the
images must be treated (faces detected and aligned, images already aligned, or kept at their native
size). :func:`fskd_cli.data.prepare.prepare_dataset` turns any :class:`Source` into the dataset layout,
and the CLI builds ``fskd prepare KIND`` from the :class:`Reader` declaration, so adding a format is one
new module registered with :func:`register` and nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ...core.errors import FskdError
from ..prepare_options import DETECT_OPTIONS, Option

Faces = Literal["detect", "aligned", "native"]
ALIGNED_SIZE = 112  # insightface's aligned crops, and what the aligner writes


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
    """Everything a reader found: the items, the protocol's pairs (by item key) and dataset facts.

    ``image_size`` is the side of the (square) images of an ``aligned`` source; others are checked
    against it. ``meta`` goes into meta.yaml as it is (it may name the ``source`` and ``alignment``).
    """

    task: str
    faces: Faces
    items: list[Item]
    pairs: list[tuple[str, str, int]] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    image_size: int = ALIGNED_SIZE


@dataclass(frozen=True)
class Reader:
    """A registered source format: how to read it, and what ``fskd prepare KIND --help`` says about it.

    ``read(src, kind, **options) -> Source``. ``src_help`` is the help of the SRC argument (``None``: the
    kind reads no SRC, e.g. the digits inside a wheel). ``limits``: the reader takes ``limit`` itself
    (a stratified subset) instead of the first ``limit`` items being kept.
    """

    kind: str
    read: Callable[..., Source]
    summary: str
    example: str
    src_help: str | None
    options: tuple[Option, ...] = ()
    limits: bool = False
    detects: bool = False  # reads every photo under SRC (and detects faces in them)


READERS: dict[str, Reader] = {}


def register(kind: str, *, summary: str, example: str, src_help: str | None, options: Sequence[Option] = (),
             detects: bool = False, limits: bool = False) -> Callable[[Callable[..., Source]], Callable[..., Source]]:
    """Register ``fn`` as the reader of ``kind``; ``detects`` adds the face-detection options."""

    def add(fn: Callable[..., Source]) -> Callable[..., Source]:
        if kind in READERS:
            raise ValueError(f"a reader for {kind!r} is already registered")
        READERS[kind] = Reader(kind, fn, summary, example, src_help,
                               (*options, *(DETECT_OPTIONS if detects else ())), limits, detects)
        return fn

    return add


def require_exists(path: Path, what: str) -> None:
    if not path.exists():
        raise FskdError(f"{path}: not found; expected {what}")


def natural_key(text: str) -> list[Any]:
    """Sort key that puts ``s2`` before ``s10`` and ``2.pgm`` before ``10.pgm``: the order people expect."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def label_map(identities: Sequence[str]) -> dict[str, int]:
    """Integer labels 0..K-1 for identity names, in natural order, so they do not depend on disk order."""
    return {name: i for i, name in enumerate(sorted(set(identities), key=natural_key))}
