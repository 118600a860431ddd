"""``fskd embed``: photos -> unit embeddings, written as ``.npz`` or ``.csv``.

An embedding is what eval scores: the model's embedding of the crop plus that of its mirror image
(:func:`~fskd_cli.inference.lowres.forward_with_mirror`), L2-normalised, so the cosine of two embeddings
is exactly the score the insightface protocol thresholds (``distance = 2 - 2 cos``). ``flip=False`` takes
the crop alone. With ``scale`` the crop is first degraded as the run's LR images were, which is what a
camera that many times farther away would give; aligned crops smaller than the input already are that
(:func:`~.photos.scale_conflict`), so ``scale`` is refused for them.

The output has one row per photo: ``path``, ``status`` (ok, center, unreadable, no_face, too_small,
not_finite), ``reason``, ``resized_from`` (``WxH`` of an aligned crop resized to the input, as eval resizes
native-size sets; empty otherwise) and the embedding (NaN, or empty CSV cells, where there is none). The
``.npz`` adds ``input``, a JSON record of how crops became model input (size, resize, scale, mirror).

A Linux file name is bytes and need not be UTF-8. The ``.npz`` keeps each name as Python gives it
(``os.fsdecode``: undecodable bytes as surrogate escapes). The ``.csv`` is UTF-8 text: a name that is not
UTF-8 is written with its non-ASCII bytes and ``%`` percent-encoded (``%FF``), and that row's
``path_encoding`` column says ``percent``; every other name is written as it is, ``path_encoding`` empty.
:func:`read_embeddings` gives back the original names from either file.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote_from_bytes, unquote_to_bytes

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import Progress

from ..core.errors import FskdError
from ..core.io import check_writable, write_atomic
from ..core.outputs import check_replaceable
from ..core.scale import Scale, one_factor
from ..inference.lowres import RESIZE, forward_with_mirror
from ..inference.model import ReadyModel
from .photos import EMBEDDED, Cropper, Photo, scale_conflict

NPZ_KEYS = ("embeddings", "paths", "status", "reason")  # in every embed .npz (later ones add resized_from, input)
CSV_HEAD = ["path", "status", "reason"]  # the first columns of every embed .csv
CSV_EXTRA = ["resized_from", "path_encoding"]
OUT_SUFFIXES = (".npz", ".csv")
PERCENT = "percent"
_CSV_SAFE = "".join(chr(c) for c in range(32, 127) if chr(c) != "%")  # printable ASCII stays as it is
_EMBEDDING_COLUMN = re.compile(r"e\d+")
NOT_FINITE = "the model's embedding is not finite (inf or NaN activations: an untrained or diverged model?)"


@dataclass
class Embeddings:
    """One row per photo: ``embeddings[i]`` (float32, unit length; NaN where the row has no embedding)."""

    embeddings: np.ndarray
    paths: list[str]
    status: list[str]
    reason: list[str]
    resized_from: list[str]
    input: dict[str, Any] = field(default_factory=dict)  # how crops became model input (:func:`describe_input`)

    @property
    def ok(self) -> np.ndarray:
        """Rows with an embedding: status ``ok``, or ``center`` (a central crop where no face was found)."""
        return np.array([s in EMBEDDED for s in self.status], dtype=bool)

    def count(self, status: str) -> int:
        return sum(s == status for s in self.status)


@torch.inference_mode()
def embed_crops(model: ReadyModel, crops: np.ndarray | torch.Tensor, *, factor: int = 1, flip: bool = True) -> np.ndarray:
    """Unit embeddings ``[N, D]`` (float32) of uint8 RGB crops ``[N, S, S, 3]`` (one forward pass), each first
    degraded by ``factor`` as the run's LR images were made."""
    crops = np.asarray(crops)
    if crops.ndim != 4 or crops.shape[1:] != (model.input_size, model.input_size, 3) or crops.dtype != np.uint8:
        raise ValueError(f"crops must be uint8 [N, {model.input_size}, {model.input_size}, 3], got {crops.dtype} {crops.shape}")
    lr = np.stack([model.degrade(c, factor) for c in crops])
    x = model.inputs(torch.from_numpy(lr).permute(0, 3, 1, 2))
    if flip:
        emb, mirror = forward_with_mirror(model.backbone, x)
        emb = emb + mirror
    else:
        emb = model.backbone(x).float()
    return F.normalize(emb, dim=1).cpu().numpy().astype(np.float32)


def embed_images(model: ReadyModel, items: Sequence[str | Path | np.ndarray], *, aligned: bool = False,
                 scale: Scale = Scale.x1, flip: bool = True, batch_size: int = 32, on_no_face: str = "skip",
                 progress: bool = True) -> Embeddings:
    """Embed photo files or uint8 RGB arrays, ``batch_size`` at a time; one without a usable face keeps a NaN row.

    ``aligned``: the items are aligned crops of any size (:mod:`.photos`); ``on_no_face="center"``: a detected
    photo without a face is embedded from its central crop (status ``center``).
    """
    factor = one_factor(scale)
    cropper = Cropper(model.input_size, aligned, str(model.device), on_no_face, factor)
    if aligned and (problem := scale_conflict(items, model.input_size, factor)):
        raise FskdError(problem)  # before any photo is decoded
    rows: list[Photo] = []
    chunks: list[np.ndarray] = []
    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task(f"embedding {len(items)} photos", total=len(items))
        for start in range(0, len(items), batch_size):
            photos = cropper(items[start:start + batch_size])
            chunks.append(_embed_rows(model, photos, factor, flip))
            rows += photos
            bar.advance(task, len(photos))
    dim = model.embedding_size
    return Embeddings(np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32), [r.path for r in rows],
                      [r.status for r in rows], [r.reason for r in rows], [r.resized_from for r in rows],
                      describe_input(model, aligned, factor, flip, on_no_face))


def _embed_rows(model: ReadyModel, photos: list[Photo], factor: int, flip: bool) -> np.ndarray:
    """Embeddings of the photos that have a crop, NaN rows for the others; a non-finite embedding is a row's status."""
    out = np.full((len(photos), model.embedding_size), np.nan, dtype=np.float32)
    ok = [i for i, p in enumerate(photos) if p.crop is not None]
    if ok:
        out[ok] = embed_crops(model, np.stack([photos[i].crop for i in ok]), factor=factor, flip=flip)
    for i in ok:
        if not np.isfinite(out[i]).all():
            photos[i].status, photos[i].reason, photos[i].crop = "not_finite", NOT_FINITE, None
            out[i] = np.nan
    return out


def describe_input(model: ReadyModel, aligned: bool, factor: int, flip: bool, on_no_face: str) -> dict[str, Any]:
    """How the crops became model input: recorded in the ``.npz`` (``input``) and verify's ``--json``."""
    size = model.input_size
    crops = ("aligned crops as given; one of another size resized to the input: "
             f"{RESIZE} (PIL), stretched if not square, as fskd eval resizes native-size sets") if aligned else \
        f"faces detected (MTCNN) and aligned to the 5-point template at {size} x {size}, on_no_face {on_no_face}"
    degraded = model.checkpoint.degradation
    return {"input_size": size, "crops": crops, "scale": factor, "mirror": flip,
            "degradation": None if factor == 1 else {"interpolation": degraded.interpolation,
                                                     "antialias": degraded.antialias},
            "checkpoint": str(model.checkpoint.path)}


# ----------------------------------------------------------------------------------------------------- files

def check_out(path: str | Path) -> Path:
    """``--out`` checked before any photo is read: its suffix, that it can be created (its names' lengths, a parent
    that is a file, a read-only folder: :func:`~fskd_cli.core.io.check_writable`), what is there (a device, a file
    fskd did not write), and that a file can really be created where it goes (a pseudo file system says so only then)."""
    path = Path(path)
    if path.suffix.lower() not in OUT_SUFFIXES:
        raise FskdError(f"{path}: --out must end in .npz or .csv")
    check_writable(path)  # first: a name that is too long makes every later look at the path raise
    if path.exists() and not path.is_file() and not path.is_dir():
        raise FskdError(f"{path}: not a regular file (a device or pipe); --out names a file")
    check_replaceable(path, _written_by_embed, "embed")
    folder = next(p for p in (path.parent, *path.parent.parents) if os.path.isdir(p))  # isdir never raises
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:64]}.{os.getpid()}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise FskdError(f"{path}: cannot write ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(tmp)
    return path


def write_embeddings(path: str | Path, result: Embeddings) -> None:
    """Write ``result`` atomically as ``.npz`` or ``.csv`` (by suffix), never over a file fskd did not write."""
    path = check_out(path)
    if path.suffix.lower() == ".npz":
        arrays = {"embeddings": result.embeddings, **{k: np.array(v, dtype=str) for k, v in (
            ("paths", result.paths), ("status", result.status), ("reason", result.reason),
            ("resized_from", result.resized_from))}, "input": np.array(json.dumps(result.input))}
        write_atomic(path, lambda f: np.savez(f, **arrays), mode="wb")
    else:
        write_atomic(path, lambda f: _write_csv(f, result))


def read_embeddings(path: str | Path) -> Embeddings:
    """Read back a file written by :func:`write_embeddings` (older ones, without ``resized_from``, too).

    A file of another layout, or a damaged one, raises :class:`FskdError` naming it (and the line of a damaged
    row): read as it is, a CSV of other columns gave zero-wide embeddings, and a cut file a bare IndexError."""
    path = Path(path)
    if path.suffix.lower() == ".npz":
        return _read_npz(path)
    with open(path, newline="", encoding="utf-8") as f:
        try:
            rows = list(csv.reader(f))
        except (UnicodeDecodeError, csv.Error) as e:  # not text
            raise FskdError(f"{path}: not an `fskd embed` .csv ({e})") from None
    if not rows:
        raise FskdError(f"{path}: an empty file, not an `fskd embed` .csv")
    head, *body = rows
    if not _embed_header(head):
        raise FskdError(f"{path}: not an `fskd embed` .csv (its header is not {','.join(CSV_HEAD)},...,e0,e1,...)")
    columns = [k for k, name in enumerate(head) if _EMBEDDING_COLUMN.fullmatch(name)]
    emb = np.array([_csv_row(path, line, r, len(head), columns) for line, r in enumerate(body, start=2)],
                   dtype=np.float32)

    def column(name: str) -> list[str]:
        return [r[head.index(name)] for r in body] if name in head else [""] * len(body)

    paths = [_name_from_csv(p, how) for p, how in zip(column("path"), column("path_encoding"), strict=True)]
    return Embeddings(emb.reshape(len(body), len(columns)), paths, column("status"), column("reason"),
                      column("resized_from"))


def _csv_row(path: Path, line: int, row: list[str], width: int, columns: list[int]) -> list[float]:
    """One row's embedding (NaN where empty: no face), or one line naming the damaged row."""
    if len(row) != width:
        raise FskdError(f"{path}: line {line}: damaged row ({len(row)} values for {width} columns)")
    try:
        return [float(row[k]) if row[k] else np.nan for k in columns]
    except ValueError as e:
        raise FskdError(f"{path}: line {line}: damaged row ({e})") from None


def _read_npz(path: Path) -> Embeddings:
    try:
        with np.load(path) as z:
            if not set(NPZ_KEYS) <= set(z.files):
                raise FskdError(f"{path}: not an `fskd embed` .npz (it lacks {', '.join(sorted(set(NPZ_KEYS) - set(z.files)))})")
            n = len(z["embeddings"])
            resized = z["resized_from"].tolist() if "resized_from" in z.files else [""] * n
            described = json.loads(str(z["input"])) if "input" in z.files else {}
            return Embeddings(z["embeddings"], *(z[k].tolist() for k in NPZ_KEYS[1:]), resized, described)
    except (ValueError, EOFError, zipfile.BadZipFile) as e:  # not a zip, cut short, pickled objects refused
        raise FskdError(f"{path}: not a readable .npz, truncated or damaged? ({' '.join(str(e).split())[:100]})") from None


def _write_csv(f: IO, result: Embeddings) -> None:
    w = csv.writer(f)
    w.writerow(CSV_HEAD + CSV_EXTRA + [f"e{i}" for i in range(result.embeddings.shape[1])])
    for p, s, why, resized, e in zip(result.paths, result.status, result.reason, result.resized_from,
                                     result.embeddings, strict=True):
        name, how = _name_for_csv(p)
        cells = [repr(float(v)) for v in e] if s in EMBEDDED else ["" for _ in e]
        w.writerow([name, s, why.encode("utf-8", "backslashreplace").decode("utf-8"), resized, how] + cells)


def _name_for_csv(path: str) -> tuple[str, str]:
    """A file name as UTF-8 text and its ``path_encoding``: as it is, or percent-encoded when it is not UTF-8."""
    try:
        path.encode("utf-8")
        return path, ""
    except UnicodeEncodeError:
        return quote_from_bytes(os.fsencode(path), safe=_CSV_SAFE), PERCENT


def _name_from_csv(text: str, how: str) -> str:
    return os.fsdecode(unquote_to_bytes(text)) if how == PERCENT else text


def _embed_header(head: list[str]) -> bool:
    """Whether ``head`` is the header of an embed .csv: CSV_HEAD, the extra columns (absent in older files), then
    ``e0..eN``. The first columns alone would let a user's own ``path,status,reason`` list be replaced."""
    rest = head[len(CSV_HEAD):]
    extra = rest[:len(CSV_EXTRA)] if rest[:len(CSV_EXTRA)] == CSV_EXTRA else []
    columns = rest[len(extra):]
    return head[:len(CSV_HEAD)] == CSV_HEAD and bool(columns) and columns == [f"e{i}" for i in range(len(columns))]


def _written_by_embed(path: Path) -> bool:
    """Whether an existing ``--out`` file has the layout this module writes (so replacing it is safe)."""
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path) as z:
                return set(NPZ_KEYS) <= set(z.files)
        with open(path, newline="", encoding="utf-8") as f:
            return _embed_header(next(csv.reader(io.StringIO(f.readline())), []))
    except (OSError, ValueError, zipfile.BadZipFile, UnicodeDecodeError):
        return False
