"""fskd from Python (a notebook, a service): load a run, embed photos, verify a pair.

>>> from fskd_cli import api
>>> model = api.load("runs/f-skd-x8")                    # a run folder or its checkpoint.pt
>>> emb = api.embed(model, ["a.jpg", "b.jpg"])           # [2, D] float32, unit rows (NaN: no face)
>>> api.verify(model, "a.jpg", "b.jpg").same             # threshold from the run's own eval
>>> api.verify(model, "a.jpg", "b.jpg", threshold=0.3)   # or a cosine of your own

Photos are aligned with the code ``fskd prepare`` uses and embedded with their mirror image, as
``fskd embed`` and ``fskd eval`` do; numpy uint8 RGB arrays work wherever a path does. Importing this
module loads torch but no plotting library, and prints nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .core.errors import FskdError
from .core.scale import Scale
from .inference.model import ReadyModel, load_model
from .use.embed import Embeddings, embed_images
from .use.verify import Verdict
from .use.verify import verify as _verify

__all__ = ["load", "embed", "embed_table", "verify", "ReadyModel", "Verdict", "Embeddings"]

Image = str | Path | np.ndarray


def load(run: str | Path, device: str | torch.device = "auto") -> ReadyModel:
    """The backbone of ``run`` (a run folder or a checkpoint file) in eval mode on ``device``."""
    return load_model(run, device=device)


def embed(model: ReadyModel, images: Image | Sequence[Image], *, aligned: bool = False, scale: Scale | str | int = 1,
          flip: bool = True, batch_size: int = 32) -> np.ndarray:
    """Unit embeddings ``[N, D]`` (float32) of photo files or uint8 RGB arrays; a row of NaN where no face was found.

    ``aligned=True`` takes images that already are the model's crops (e.g. 112 x 112) as they are;
    ``scale`` (1, 2, 4 or 8; ``4``, ``"4"``, ``"x4"`` and ``Scale.x4`` alike) degrades them first as the run's LR
    training images were made.
    """
    return embed_table(model, images, aligned=aligned, scale=scale, flip=flip, batch_size=batch_size).embeddings


def embed_table(model: ReadyModel, images: Image | Sequence[Image], *, aligned: bool = False, scale: Scale | str | int = 1,
                flip: bool = True, batch_size: int = 32) -> Embeddings:
    """:func:`embed`, with each image's name, status (ok, no_face, unreadable, ...) and reason."""
    items = [images] if isinstance(images, str | Path | np.ndarray) and np.ndim(images) != 4 else list(images)
    return embed_images(model, items, aligned=aligned, scale=_scale(scale), flip=flip, batch_size=batch_size,
                        progress=False)


def verify(model: ReadyModel, a: Image, b: Image, *, threshold: float | None = None,
           scale: Scale | str | int | None = None) -> Verdict:
    """Same person or not: ``.same``, ``.cosine``, ``.threshold`` (value and source), ``.line()``."""
    return _verify(model, a, b, threshold=threshold, scale=None if scale is None else _scale(scale))


def _scale(value: Scale | str | int) -> Scale:
    """The API is an edge: the scale a caller gives is parsed here, once (a bad one is one line naming it)."""
    try:
        return Scale.parse(value)
    except ValueError as e:
        raise FskdError(f"scale: {e}") from None
