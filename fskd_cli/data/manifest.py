"""The dataset layout on disk, shared by every reader (``fskd prepare``) and every consumer.

``data/NAME/`` holds ``meta.yaml``, ``manifest.csv`` (one row per source image, bad ones included
with a status), ``images/hr/...`` and ``images/x2|x4|x8/...`` (same relative paths), and
``pairs.csv`` for 1:1 sets. :class:`DatasetWriter` writes it; :func:`read_manifest` and
:func:`read_meta` read it back and fail with one line naming the file when it is not there or wrong.
:func:`check_source` is what a run or an eval calls first: an in-place set's records must still be the
ones prepare read.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from .. import __version__
from ..core.errors import FskdError
from ..core.guard import inside
from ..core.io import append_csv, atomic_path, make_dirs, write_csv, write_yaml
from ..core.scale import INTERPOLATIONS, LR_FACTORS
from .degrade import degrade_uint8
from .readers.recordio import check_parts

TASKS = ("train", "verification", "identification", "classification")
#: Rows whose image is there to use: ``center`` is a central crop kept by ``--on-no-face center`` (filter it out by status).
USABLE = ("ok", "center")


@dataclass
class Row:
    """One manifest row. ``path`` is relative to the dataset folder and empty for images that failed."""

    path: str
    label: int
    identity: str
    split: str
    status: str = "ok"
    reason: str = ""
    role: str = ""  # probe / gallery / distractor for 1:N sets
    source: str = ""  # where the image came from (file, or file#record), for traceability and resume


MANIFEST_FIELDS = [f.name for f in fields(Row)]
JOURNAL = ".manifest.partial.csv"  # rows of an unfinished run, in the dataset folder
PAIR_FIELDS = ["left", "right", "same"]


def lr_path(path: str, scale: int) -> str:
    """The LR copy of an HR image path from the manifest (``images/hr/x.png`` -> ``images/x4/x.png``)."""
    if scale == 1:
        return path
    head, sep, tail = path.partition("images/hr/")
    if not sep:
        raise ValueError(f"not an HR image path: {path!r}")
    return f"{head}images/x{scale}/{tail}"


def save_png(path: Path, image: np.ndarray) -> None:
    """Write an ``H x W x C`` uint8 RGB (or ``H x W`` grey) image as PNG, atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as ``H x W x 3`` uint8 RGB (grey becomes three equal channels)."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


class DatasetWriter:
    """Writes one prepared dataset: images at every scale, the manifest, meta.yaml.

    Rows are journalled to ``.manifest.partial.csv`` as they are written, so a run that is killed
    can be re-run: :meth:`finished` tells which sources are already done (written; a failed one is tried
    again), and :meth:`close` writes
    the final manifest in the order the reader gave. ``resume_rows`` (the manifest of an earlier,
    finished run with the same options) count as done in the same way, so a re-run skips them too.
    ``in_place``: rows point at records that stay where they are (``rec:PART:KEY``); no image is written.
    """

    def __init__(
        self,
        out: str | os.PathLike,
        name: str,
        task: str,
        image_size: int | None,
        *,
        scales: Sequence[int] = LR_FACTORS,
        interpolation: str = "bilinear",
        antialias: bool = False,
        source: str = "",
        extra_meta: dict[str, Any] | None = None,
        resume_rows: Iterable[Row] = (),
        in_place: bool = False,
    ) -> None:
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}")
        bad = [s for s in scales if s not in LR_FACTORS]
        if bad:
            raise FskdError(f"scales must be among {LR_FACTORS}, got {bad}")
        self.out = Path(out)
        self.name, self.task, self.image_size = name, task, image_size
        self.scales = tuple(sorted(set(scales)))
        self.interpolation, self.antialias = interpolation, antialias
        self.source, self.extra_meta = source, dict(extra_meta or {})
        self.in_place = in_place
        self.rows: list[Row] = []
        self.journal = self.out / JOURNAL
        self._done: dict[str, Row] = {}
        for row in [*resume_rows, *self._journal_rows()]:
            # only images written: a failed one is tried again, as the user may have replaced the photo since
            if row.source and row.status in USABLE and self._files_exist(row.path):
                self._done[row.source] = row
        make_dirs(self.out)

    def _journal_rows(self) -> list[Row]:
        if not self.journal.exists():
            return []
        with open(self.journal, newline="", encoding="utf-8") as f:
            return [Row(**{**r, "label": int(r["label"])}) for r in csv.DictReader(f)]

    def _files_exist(self, path: str) -> bool:
        return self.in_place or all((self.out / lr_path(path, s)).exists() for s in (1, *self.scales))

    def finished(self, source: str) -> Row | None:
        """The row already written for ``source`` by an earlier, interrupted run, if any."""
        return self._done.get(source)

    def add(self, row: Row, image: np.ndarray | None = None, *, keep_size: bool = False) -> Row:
        """Record ``row``; when it is ``ok``, write ``image`` (H x W x 3 uint8 RGB) at HR and every LR scale.

        ``keep_size`` skips the size check for sets kept at their native size (TinyFace). An ``ok``
        row without ``image`` must have had its files written by :meth:`write_images` already.
        """
        if row.source and row.source in self._done:
            self.rows.append(self._done[row.source])
            return self._done[row.source]
        if row.status in USABLE:
            if image is not None:
                self.write_images(row, image, keep_size=keep_size)
            elif not self._files_exist(row.path):
                raise ValueError("an ok row needs its image (or its files written by write_images)")
        self.rows.append(row)
        append_csv(self.journal, asdict(row), MANIFEST_FIELDS)
        return row

    def write_images(self, row: Row, image: np.ndarray, *, keep_size: bool = False) -> None:
        """Write ``row``'s image at HR and every LR scale, without recording the row.

        It touches only this row's files, so worker threads may write many rows at once while
        :meth:`add` records them in order; a row is journalled only after its files exist.
        """
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if not keep_size and self.image_size and image.shape[:2] != (self.image_size, self.image_size):
            raise ValueError(f"image of {image.shape[:2]} in a {self.image_size}px dataset")
        paths = {s: inside(self.out, self.out / lr_path(row.path, s)) for s in (1, *self.scales)}  # nothing escapes
        save_png(paths[1], image)
        for s in self.scales:
            save_png(paths[s], degrade_uint8(image, s, self.interpolation, self.antialias))

    def close(self, pairs: Iterable[tuple[str, str, int]] | None = None, **meta: Any) -> dict[str, Any]:
        """Write ``manifest.csv``, ``pairs.csv`` (if given) and ``meta.yaml``; return the meta dict."""
        write_csv(self.out / "manifest.csv", (asdict(r) for r in self.rows), MANIFEST_FIELDS)
        if pairs is not None:
            pairs = list(pairs)
            write_csv(self.out / "pairs.csv", (dict(zip(PAIR_FIELDS, p, strict=True)) for p in pairs), PAIR_FIELDS)
        status = Counter(r.status for r in self.rows)
        ok = [r for r in self.rows if r.status in USABLE]
        info: dict[str, Any] = {
            "name": self.name,
            "task": self.task,
            "image_size": self.image_size,
            "channels": 3,
            "colour": "RGB",
            "scales": [1] if self.in_place else [1, *self.scales],  # on disk (an in-place set writes no image)
            # what a stage makes from HR with the degradation below when asked (none for native-size sets)
            "scales_made_on_the_fly": [s for s in LR_FACTORS if self.in_place or s not in self.scales]
            if self.image_size else [],
            "degradation": {"interpolation": self.interpolation, "antialias": self.antialias,
                            "method": "downsample by the scale, then resize back to the HR size"},
            "num_classes": len({r.label for r in ok if r.label >= 0}),
            "counts": {"rows": len(self.rows), **{k: status[k] for k in sorted(status)},
                       "splits": dict(sorted(Counter(r.split for r in ok).items())),
                       "identities_without_image": len(identities_without_image(self.rows))},
            "source": self.source,
            "fskd_version": __version__,
            **self.extra_meta,
            **meta,
        }
        if pairs is not None:
            info["counts"]["pairs"] = len(pairs)
        write_yaml(self.out / "meta.yaml", info)
        self.journal.unlink(missing_ok=True)
        return info


def identities_without_image(rows: Iterable[Row]) -> list[str]:
    """Identities (in order of first appearance) that have rows but not one usable image."""
    seen: dict[str, bool] = {}
    for r in rows:
        if r.identity:
            seen[r.identity] = seen.get(r.identity, False) or r.status in USABLE
    return [name for name, usable in seen.items() if not usable]


def read_meta(root: str | os.PathLike) -> dict[str, Any]:
    path = Path(root) / "meta.yaml"
    if not path.exists():
        raise FskdError(f"{path}: not found; is {root} a dataset written by `fskd prepare`?")
    try:
        meta = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise FskdError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(meta, dict) or "task" not in meta:
        raise FskdError(f"{path}: not an fskd meta.yaml (no 'task' key)")
    for key, (fits, wanted) in _META_TYPES.items():
        if key in meta and not fits(meta[key]):
            raise FskdError(f"{path}: {key} must be {wanted}, got {meta[key]!r}")
    return meta


def _degradation_fits(value: Any) -> bool:
    return (isinstance(value, dict) and value.get("interpolation", "bilinear") in INTERPOLATIONS
            and isinstance(value.get("antialias", False), bool))


# The keys of meta.yaml that stages read, with the types prepare writes: a hand-edited value of another type is
# named here, not a TypeError deep in a stage or a message that blames the checkpoint ("holds abcpx images").
_META_TYPES: dict[str, tuple[Any, str]] = {
    "task": (lambda v: v in TASKS, f"one of {', '.join(TASKS)}"),
    "name": (lambda v: isinstance(v, str), "a string"),
    "image_size": (lambda v: v is None or (type(v) is int and v > 0), "a whole number of pixels (or null)"),
    "num_classes": (lambda v: type(v) is int and v >= 0, "a whole number"),
    "scales": (lambda v: isinstance(v, list) and all(type(s) is int and s in (1, *LR_FACTORS) for s in v),
               f"a list of scales among {(1, *LR_FACTORS)}"),
    "in_place": (lambda v: isinstance(v, bool), "true or false"),
    "layout": (lambda v: v is None or isinstance(v, str), "a string"),
    "degradation": (_degradation_fits, f"a mapping with interpolation one of {', '.join(INTERPOLATIONS)} and "
                                       "antialias true or false"),
    "counts": (lambda v: isinstance(v, dict), "a mapping"),
    "holdout": (lambda v: isinstance(v, dict), "a mapping (what `fskd prepare holdout` did)"),
    "folds": (lambda v: type(v) is int and v > 0, "a whole number of folds"),
}


def check_source(root: str | os.PathLike) -> list[str]:
    """Check that the images of the dataset at ``root`` are still the ones ``fskd prepare`` read; return notes.

    Only an in-place set can change under fskd (its records stay in the user's ``.rec``): one replaced since
    prepare is refused with one line naming the file and what changed (see
    :func:`~.readers.recordio.check_parts`). A set of image files needs no check: fskd wrote them.
    """
    meta = read_meta(root)
    if not meta.get("in_place"):
        return []
    return check_parts(meta.get("records"), Path(root) / "meta.yaml")


def read_manifest(root: str | os.PathLike, *, split: str | None = None, ok_only: bool = True) -> list[Row]:
    """Rows of ``root/manifest.csv``, optionally of one split, by default only the usable ones."""
    path = Path(root) / "manifest.csv"
    rows = []
    for i, r in enumerate(_csv_records(path, MANIFEST_FIELDS, f"is {root} a dataset written by `fskd prepare`?"),
                          start=2):
        try:
            row = Row(**{k: r[k] for k in MANIFEST_FIELDS} | {"label": int(r["label"])})
        except (ValueError, TypeError):
            raise FskdError(f"{path}, line {i}: label {r['label']!r} is not an integer") from None
        if (not ok_only or row.status in USABLE) and (split is None or row.split == split):
            rows.append(row)
    return rows


def read_pairs(root: str | os.PathLike) -> list[tuple[str, str, int]]:
    path = Path(root) / "pairs.csv"
    pairs = []
    for i, r in enumerate(_csv_records(path, PAIR_FIELDS, "a verification set needs pairs.csv"), start=2):
        if r["same"] not in ("0", "1"):
            raise FskdError(f"{path}, line {i}: same must be 0 or 1, got {r['same']!r}")
        pairs.append((r["left"], r["right"], int(r["same"])))
    return pairs


def _csv_records(path: Path, fields: Sequence[str], hint: str) -> list[dict[str, str]]:
    """The records of a CSV fskd wrote, or a one-line FskdError when it is missing, not text or lacks columns."""
    if not path.is_file():
        raise FskdError(f"{path}: not found; {hint}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a spreadsheet's UTF-8 starts with a BOM
            reader = csv.DictReader(f)
            missing = set(fields) - set(reader.fieldnames or [])
            if missing:
                raise FskdError(f"{path}: missing columns {sorted(missing)}")
            return list(reader)
    except (UnicodeDecodeError, csv.Error) as e:
        raise FskdError(f"{path}: not a CSV file fskd wrote ({type(e).__name__})") from None


def fingerprint(root: str | os.PathLike) -> str:
    """SHA-256 of the manifest: a checkpoint records which data it was trained on."""
    path = Path(root) / "manifest.csv"
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.exists() else ""
