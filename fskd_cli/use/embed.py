"""``fskd embed``: photos -> unit embeddings, written as ``.npz`` or ``.csv``.

An embedding is what eval scores: the model's embedding of the crop plus that of its mirror image
(:func:`~fskd_cli.inference.lowres.forward_with_mirror`), L2-normalised, so the cosine of two embeddings
is exactly the score the insightface protocol thresholds (``distance = 2 - 2 cos``). ``flip=False`` takes
the crop alone. With ``scale`` the crop is first degraded as the run's LR images were, which is what a
camera that many times farther away would give.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import Progress

from ..core.errors import FskdError
from ..core.io import write_atomic
from ..core.outputs import check_replaceable
from ..core.scale import Scale, one_factor
from ..inference.lowres import forward_with_mirror
from ..inference.model import ReadyModel
from .photos import Cropper, Photo, list_photos

NPZ_KEYS = ("embeddings", "paths", "status", "reason")
CSV_HEAD = ["path", "status", "reason"]


@dataclass
class Embeddings:
    """One row per photo: ``embeddings[i]`` (float32, unit length; NaN where ``status[i] != 'ok'``)."""

    embeddings: np.ndarray
    paths: list[str]
    status: list[str]
    reason: list[str]

    @property
    def ok(self) -> np.ndarray:
        return np.array([s == "ok" for s in self.status], dtype=bool)


@torch.inference_mode()
def embed_crops(model: ReadyModel, crops: np.ndarray | torch.Tensor, *, scale: Scale = Scale.x1,
                flip: bool = True) -> np.ndarray:
    """Unit embeddings ``[N, D]`` (float32) of uint8 RGB crops ``[N, S, S, 3]`` (one forward pass)."""
    crops = np.asarray(crops)
    if crops.ndim != 4 or crops.shape[1:] != (model.input_size, model.input_size, 3) or crops.dtype != np.uint8:
        raise ValueError(f"crops must be uint8 [N, {model.input_size}, {model.input_size}, 3], got {crops.dtype} {crops.shape}")
    factor = one_factor(scale)
    lr = np.stack([model.degrade(c, factor) for c in crops])
    x = model.inputs(torch.from_numpy(lr).permute(0, 3, 1, 2))
    if flip:
        emb, mirror = forward_with_mirror(model.backbone, x)
        emb = emb + mirror
    else:
        emb = model.backbone(x).float()
    return F.normalize(emb, dim=1).cpu().numpy().astype(np.float32)


def embed_photos(model: ReadyModel, sources: Sequence[str | Path], **options: Any) -> Embeddings:
    """Embed every photo of ``sources`` (files, or folders of them); options as :func:`embed_images`."""
    return embed_images(model, list_photos(sources), **options)


def embed_images(model: ReadyModel, items: Sequence[str | Path | np.ndarray], *, aligned: bool = False,
                 scale: Scale = Scale.x1, flip: bool = True, batch_size: int = 32, progress: bool = True) -> Embeddings:
    """Embed photo files or uint8 RGB arrays, ``batch_size`` at a time; one without a usable face keeps a NaN row."""
    cropper = Cropper(model.input_size, aligned, str(model.device))
    rows: list[Photo] = []
    chunks: list[np.ndarray] = []
    dim = model.embedding_size
    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task(f"embedding {len(items)} photos", total=len(items))
        for start in range(0, len(items), batch_size):
            photos = cropper(items[start:start + batch_size])
            out = np.full((len(photos), dim), np.nan, dtype=np.float32)
            ok = [i for i, p in enumerate(photos) if p.crop is not None]
            if ok:
                out[ok] = embed_crops(model, np.stack([photos[i].crop for i in ok]), scale=scale, flip=flip)
            rows += photos
            chunks.append(out)
            bar.advance(task, len(photos))
    return Embeddings(np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32),
                      [r.path for r in rows], [r.status for r in rows], [r.reason for r in rows])


def write_embeddings(path: str | Path, result: Embeddings) -> None:
    """Write ``result`` atomically as ``.npz`` or ``.csv`` (by suffix), never over a file fskd did not write."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".npz", ".csv"):
        raise FskdError(f"{path}: --out must end in .npz or .csv")
    check_replaceable(path, _written_by_embed, "embed")
    if suffix == ".npz":
        arrays = {"embeddings": result.embeddings, "paths": np.array(result.paths), "status": np.array(result.status),
                  "reason": np.array(result.reason)}
        write_atomic(path, lambda f: np.savez(f, **arrays), mode="wb")
    else:
        write_atomic(path, lambda f: _write_csv(f, result))


def read_embeddings(path: str | Path) -> Embeddings:
    """Read back a file written by :func:`write_embeddings`."""
    path = Path(path)
    if path.suffix.lower() == ".npz":
        with np.load(path) as z:
            return Embeddings(z["embeddings"], *(z[k].tolist() for k in NPZ_KEYS[1:]))
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    body = rows[1:]
    emb = np.array([[float(v) if v else np.nan for v in r[3:]] for r in body], dtype=np.float32)
    return Embeddings(emb.reshape(len(body), len(rows[0]) - 3), *([r[k] for r in body] for k in range(3)))


def _write_csv(f: IO, result: Embeddings) -> None:
    w = csv.writer(f)
    w.writerow(CSV_HEAD + [f"e{i}" for i in range(result.embeddings.shape[1])])
    for p, s, why, e in zip(result.paths, result.status, result.reason, result.embeddings, strict=True):
        w.writerow([p, s, why] + (["" for _ in e] if s != "ok" else [repr(float(v)) for v in e]))


def _written_by_embed(path: Path) -> bool:
    """Whether an existing ``--out`` file has the layout this module writes (so replacing it is safe)."""
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path) as z:
                return set(NPZ_KEYS) <= set(z.files)
        with open(path, newline="", encoding="utf-8") as f:
            return next(csv.reader(io.StringIO(f.readline())), [])[:3] == CSV_HEAD
    except (OSError, ValueError, zipfile.BadZipFile, UnicodeDecodeError):
        return False
