"""Checkpoints: plain dicts of tensors and Python values, loadable with ``weights_only=True``.

A checkpoint holds everything needed to rebuild the model without the recipe (``arch``, head, number of
classes), to resume exactly (optimizer, scheduler, step, RNG states) and to know where it came from
(the resolved config, the data manifest's fingerprint, the fskd version). It is written to a temp file
and renamed, so a kill at any moment leaves the last good checkpoint in place.
"""

from __future__ import annotations

import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..models import create_model
from ..models.heads import create_head
from .errors import FskdError
from .guard import note_checkpoint
from .io import atomic_path

KINDS = ("teacher", "student")


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), *n[2:]))
    p = state["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write atomically; through a file object, so a full disk surfaces as an OSError (-> one-line FskdError).

    The path is noted for the CLI's Ctrl-C message ("interrupted; last checkpoint: PATH").
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save({**payload, "fskd_version": __version__}, f)
    note_checkpoint(path)


def load_checkpoint(path: str | Path, kind: str | None = None) -> dict[str, Any]:
    """Load and check a checkpoint; ``kind`` ('teacher'/'student') is required when given."""
    path = Path(path)
    if not path.exists():
        raise FskdError(f"{path}: checkpoint not found")
    if path.is_dir():
        if (path / "checkpoint.pt").exists():
            path = path / "checkpoint.pt"
        else:
            raise FskdError(f"{path}: a folder without checkpoint.pt")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as e:
        reason = (str(e) or type(e).__name__).splitlines()[0][:120]
        raise FskdError(f"{path}: not a readable fskd checkpoint ({reason})") from None
    if not isinstance(ck, dict) or "arch" not in ck or "kind" not in ck:
        raise FskdError(f"{path}: not an fskd checkpoint (no 'arch'/'kind' entries)")
    if kind and ck["kind"] != kind:
        what = f"a {ck['kind']} checkpoint" + (f" (method {ck.get('method')})" if ck["kind"] == "student" else "")
        raise FskdError(f"{path}: {what}, but a {kind} checkpoint is needed here")
    ck["path"] = str(path)
    return ck


def build_model(ck: dict[str, Any]) -> tuple[nn.Module, nn.Module]:
    """Rebuild the backbone and head stored in a checkpoint, weights loaded, in eval mode."""
    model = create_model(ck["arch"]["name"], **ck["arch"]["kwargs"])
    model.load_state_dict(ck["model"])
    head = create_head(ck["head_arch"]["name"], model.embedding_size, ck["num_classes"], **ck["head_arch"]["kwargs"])
    head.load_state_dict(ck["head"])
    return model.eval(), head.eval()
