"""fskd from Python (a notebook, a service): load a run, embed photos, verify a pair.

>>> from fskd_cli import api
>>> model = api.load("runs/f-skd-x8")                    # a run folder or its checkpoint.pt
>>> emb = api.embed(model, ["a.jpg", "b.jpg"])           # [2, D] float32, unit rows (NaN: no face)
>>> api.embed(model, ["lr/1.png"], aligned=True)         # aligned crops of any size, e.g. 24 x 24 native LR faces
>>> api.verify(model, "a.jpg", "b.jpg").same             # threshold from the run's own eval
>>> api.verify(model, "a.jpg", "b.jpg", threshold=0.3)   # or a cosine of your own
>>> api.read_embeddings("photos.npz").embeddings         # what `fskd embed --out` wrote (.npz or .csv)

Photos are aligned with the code ``fskd prepare`` uses and embedded with their mirror image, as
``fskd embed`` and ``fskd eval`` do; numpy uint8 RGB arrays work wherever a path does. Aligned crops
(``aligned=True``) of another size than the model's input are resized to it exactly as ``fskd eval``
resizes native-size sets such as TinyFace (:mod:`fskd_cli.use.photos`).

Mistakes in the arguments raise what Python code expects: ``FileNotFoundError`` for a photo that does not
exist, ``TypeError`` for a value of the wrong type (``threshold=True``), ``ValueError`` for a value out of
range. A photo that exists but cannot be decoded, or holds no face, is a row of NaN (its status in
:func:`embed_table`); problems with a run's files (its checkpoint, its eval JSONs) raise
:class:`~fskd_cli.core.errors.FskdError`, the one-line error of the CLI. Importing this module loads torch
but no plotting library, and prints nothing.
"""

from __future__ import annotations

import errno
import math
import os
from collections.abc import Iterable, Sequence
from numbers import Real
from pathlib import Path

import numpy as np
import torch

from .core.scale import SINGLE_SCALES, Scale, one_factor
from .inference.model import ReadyModel, load_model
from .use.embed import Embeddings, embed_images, read_embeddings
from .use.photos import scale_conflict
from .use.verify import Verdict
from .use.verify import verify as _verify

__all__ = ["load", "embed", "embed_table", "verify", "read_embeddings", "ReadyModel", "Verdict", "Embeddings"]

Image = str | Path | np.ndarray


def load(run: str | Path, device: str | torch.device = "auto") -> ReadyModel:
    """The backbone of ``run`` (a run folder or a checkpoint file) in eval mode on ``device``."""
    return load_model(run, device=device)


def embed(model: ReadyModel, images: Image | Sequence[Image], *, aligned: bool = False, scale: str | int = 1,
          flip: bool = True, batch_size: int = 32, on_no_face: str = "skip") -> np.ndarray:
    """Unit embeddings ``[N, D]`` (float32) of photo files or uint8 RGB arrays; a row of NaN where no face was found.

    ``aligned=True`` takes images that already are aligned face crops, of any size (a crop of another size
    than the model's input is resized to it as eval resizes native-size sets); ``scale`` degrades them first
    as the run's LR training images were made (refused for crops smaller than the input: already LR);
    ``on_no_face="center"`` embeds the central crop of a photo where no face is found.
    """
    return embed_table(model, images, aligned=aligned, scale=scale, flip=flip, batch_size=batch_size,
                       on_no_face=on_no_face).embeddings


def embed_table(model: ReadyModel, images: Image | Sequence[Image], *, aligned: bool = False,
                scale: Scale | str | int = 1,
                flip: bool = True, batch_size: int = 32, on_no_face: str = "skip") -> Embeddings:
    """:func:`embed`, with each image's name, status (ok, center, no_face, unreadable, ...), reason and resize."""
    items = [images] if isinstance(images, str | Path | np.ndarray) and np.ndim(images) != 4 else _sequence(images)
    _check_images(items)
    scale = _scale(scale)
    factor = one_factor(scale)
    _check_call(model, aligned=aligned, flip=flip)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if aligned and (problem := scale_conflict(items, model.input_size, factor)):
        raise ValueError(problem)
    return embed_images(model, items, aligned=aligned, scale=scale, flip=flip, batch_size=batch_size,
                        on_no_face=on_no_face, progress=False)


def verify(model: ReadyModel, a: Image, b: Image, *, threshold: float | None = None,
           scale: Scale | str | int | None = None,
           aligned: bool = False, on_no_face: str = "skip") -> Verdict:
    """Same person or not: ``.same``, ``.cosine``, ``.threshold`` (value and source), ``.line()``, ``.to_json()``.

    ``threshold`` is a cosine in [-1, 1] (default: from the run's newest verification eval at the matching scale).
    """
    _check_call(model, aligned=aligned)
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, Real):
            raise TypeError(f"threshold must be a number (a cosine in [-1, 1]) or None, got {threshold!r}")
        if not (math.isfinite(threshold) and -1 <= threshold <= 1):
            raise ValueError(f"threshold is a cosine and lies in [-1, 1], got {threshold!r}")
        threshold = float(threshold)
    _check_images([a, b])
    scale = None if scale is None else _scale(scale)
    if aligned and scale and (problem := scale_conflict([a, b], model.input_size, one_factor(scale))):
        raise ValueError(problem)
    return _verify(model, a, b, threshold=threshold, scale=scale, aligned=aligned,
                   on_no_face=on_no_face)


def _check_call(model: object, **flags: object) -> None:
    """A model from :func:`load` (a run's path is not one) and true/false flags: a string such as ``"no"`` would
    otherwise count as true and, for ``flip``, silently change every embedding."""
    if not isinstance(model, ReadyModel):
        raise TypeError(f"model must be what api.load(run) returns, got {type(model).__name__}")
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False, got {value!r}")


def _sequence(images: object) -> list[object]:
    """The images of a list, tuple or other iterable; ``bytes`` is refused whole (iterating it gives numbers)."""
    if isinstance(images, bytes | bytearray) or not isinstance(images, Iterable):
        raise TypeError(f"images must be a file path (str or Path), a uint8 RGB array, or a list of them, got "
                        f"{type(images).__name__}")
    return list(images)


def _check_images(items: Sequence[object]) -> None:
    """Paths must name existing files, arrays are checked where they are read: the error a Python user expects."""
    for item in items:
        if isinstance(item, np.ndarray):
            continue
        if not isinstance(item, str | Path):
            raise TypeError(f"an image is a file path or a uint8 RGB array, got {type(item).__name__}")
        if Path(item).is_dir():
            raise IsADirectoryError(errno.EISDIR, "a folder, not an image file (list its images)", str(item))
        if not Path(item).exists():
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(item))


def _scale(scale: object) -> Scale:
    """The scale a caller gives (1, 2, 4 or 8; ``4``, ``"4"``, ``"x4"`` and ``Scale.x4`` alike), parsed here, once;
    multi is a training setting."""
    if isinstance(scale, bool) or not isinstance(scale, str | int | Scale):
        raise TypeError(f"scale must be 1, 2, 4 or 8, got {scale!r}")
    if str(scale).strip().lower().removeprefix("x") == Scale.multi.value:
        raise ValueError("scale: multi mixes scales in training; give one of 1, 2, 4, 8")
    if not any(str(scale).strip().lower().removeprefix("x") == s.value for s in SINGLE_SCALES):
        raise ValueError(f"scale must be one of 1, 2, 4, 8, got {scale!r}")  # the choices this call takes
    return Scale.parse(scale)
