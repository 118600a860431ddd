"""``fskd prepare`` for faces: any reader's :class:`~.readers.Source` -> the one dataset layout.

The reader says what the faces need: ``detect`` (raw photos: MTCNN, five landmarks, similarity warp
onto the 112 x 112 ArcFace template), ``aligned`` (insightface ``.rec``/``.bin``: used as they are)
or ``native`` (TinyFace: kept at their own low resolution). Everything else is common: batches
of images, each read, detected and written by one of ``workers`` threads, a progress bar with running
counts, one row per source image whatever happens to it, and resume (a re-run skips finished images
and ends with the same manifest).
"""

from __future__ import annotations

import os
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..core.errors import FskdError
from ..core.io import write_yaml
from .align import SIZE, FaceAligner
from ..core.scale import LR_FACTORS
from .degrade import INTERPOLATIONS
from .manifest import JOURNAL, DatasetWriter, Row, read_manifest, read_meta
from .readers import READERS, Item, Source, UnreadableImage

DEFAULT_WORKERS = min(4, os.cpu_count() or 1)
OPTIONS_MARKER = ".prepare-options.yaml"  # the options of the run in progress, beside the journal
COLOUR_NOTE = "RGB throughout; the F-SKD authors' released code read images with OpenCV, in BGR order"
_ALIGNMENT = {
    "aligned": "none here: the source's faces are already aligned to 112 x 112 (insightface)",
    "native": "none: native low-resolution faces kept at their own size, with no synthetic LR copies",
}


def prepare_faces(
    kind: str,
    src: Path,
    out: Path,
    *,
    scales: Sequence[int] = LR_FACTORS,
    interpolation: str = "bilinear",
    antialias: bool = False,
    workers: int = DEFAULT_WORKERS,
    batch_size: int = 32,
    limit: int | None = None,
    pairs: Path | None = None,
    identity_regex: str | None = None,
    min_face_size: int = 20,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Prepare the face set ``src`` of format ``kind`` into ``out``; return the meta dict written.

    ``pairs`` (a pair list for ``folder``, ``pairs.txt`` for an LFW tree) and ``identity_regex``
    (identity from the file path, for flat folders) are reader options. ``limit`` keeps the first
    ``limit`` images (for a quick look); ``batch_size`` photos go through MTCNN at once.
    """
    _check_options(workers, batch_size, interpolation, limit)
    src, out = Path(src), Path(out)
    source = _read(kind, src, pairs=pairs, identity_regex=identity_regex)
    items = source.items[:limit] if limit else source.items
    native = source.faces == "native"
    scales = () if native else tuple(scales)
    options = {"kind": kind, "src": str(src), "limit": limit, "pairs": None if pairs is None else str(pairs),
               "identity_regex": identity_regex, "min_face_size": min_face_size,
               "scales": list(scales), "interpolation": interpolation, "antialias": antialias}
    aligner = FaceAligner(min_face_size=min_face_size, device=device) if source.faces == "detect" else None
    writer = DatasetWriter(
        out, kind, source.task, None if native else SIZE, scales=scales, interpolation=interpolation,
        antialias=antialias, source=str(src), resume_rows=_start_run(out, options),
        extra_meta={"colour_note": COLOUR_NOTE,
                    "alignment": aligner.describe() if aligner else _ALIGNMENT[source.faces],
                    **source.meta, "prepare": options},
    )
    counts: Counter[str] = Counter()
    work = partial(_process, source=source, writer=writer, aligner=aligner)
    with _torch_threads(1), ThreadPoolExecutor(workers) as pool, _progress_bar(progress) as bar:
        task = bar.add_task(f"prepare {kind}", total=len(items), counts="")
        for rows in _in_order(pool, work, _chunks(items, batch_size), ahead=2 * workers):
            counts.update(writer.add(row).status for row in rows)  # recorded in the reader's order
            bar.update(task, advance=len(rows), counts=_count_text(counts))
    pair_rows = _pair_paths(source.pairs, writer.rows, {item.source for item in items})
    extra = {} if pair_rows is None else {"pairs_with_failed_image": sum(1 for a, b, _ in pair_rows if not (a and b))}
    meta = writer.close(pair_rows, **extra)
    (out / OPTIONS_MARKER).unlink()
    return meta


def _check_options(workers: int, batch_size: int, interpolation: str, limit: int | None) -> None:
    if limit is not None and limit < 1:
        raise FskdError(f"--limit must be at least 1, got {limit}")
    if workers < 1:
        raise FskdError(f"--workers must be at least 1, got {workers}")
    if batch_size < 1:
        raise FskdError(f"--batch-size must be at least 1, got {batch_size}")
    if interpolation not in INTERPOLATIONS:
        raise FskdError(f"--interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")


def _read(kind: str, src: Path, **options: Any) -> Source:
    """Run the reader registered for ``kind`` with the options the user gave (and it understands)."""
    if kind not in READERS:
        raise FskdError(f"unknown face set {kind!r}; choose one of {', '.join(sorted(READERS))}")
    spec = READERS[kind]
    given = {name: value for name, value in options.items() if value is not None}
    unknown = sorted(given.keys() - set(spec.options))
    if unknown:
        raise FskdError(f"--{unknown[0].replace('_', '-')} is not an option of `fskd prepare {kind}`")
    return spec.fn(src, kind, **given)


def _start_run(out: Path, options: dict[str, Any]) -> list[Row]:
    """Note this run's options in ``out``; return the rows it may keep from earlier runs with the same ones.

    An interrupted run leaves a journal (resumed by :class:`DatasetWriter`); a finished one leaves its
    manifest, returned here. Runs with other options made their images differently: their journal and
    manifest are removed, since this run overwrites their images and starts over.
    """
    marker = out / OPTIONS_MARKER
    if marker.exists() and yaml.safe_load(marker.read_text(encoding="utf-8")) != options:
        (out / JOURNAL).unlink(missing_ok=True)
    finished = _finished_options(out)
    if finished is not None and finished != options:
        for name in ("manifest.csv", "pairs.csv", "meta.yaml"):
            (out / name).unlink(missing_ok=True)
    write_yaml(marker, options)
    return read_manifest(out, ok_only=False) if finished == options else []


def _finished_options(out: Path) -> dict[str, Any] | None:
    """The options of the finished dataset in ``out`` (``{}`` if it has none), or ``None`` if there is none."""
    if not (out / "manifest.csv").exists():
        return None
    try:
        return read_meta(out).get("prepare", {})
    except FskdError:
        return None


def _chunks(items: Sequence[Item], size: int) -> Iterator[Sequence[Item]]:
    """Fixed slices of the item list, so a re-run batches the same photos together (determinism)."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _in_order(pool: ThreadPoolExecutor, fn: Callable[[Sequence[Item]], list[Row]],
              batches: Iterable[Sequence[Item]], ahead: int) -> Iterator[list[Row]]:
    """``fn`` of each batch on the pool, yielded in order, with at most ``ahead`` batches in flight.

    Unlike ``pool.map`` this does not queue the whole set at once, so an error or Ctrl-C stops the
    run after the batches already started instead of after all of them.
    """
    pending: deque[Future[list[Row]]] = deque()
    try:
        for batch in batches:
            pending.append(pool.submit(fn, batch))
            if len(pending) > ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()


def _process(batch: Sequence[Item], *, source: Source, writer: DatasetWriter,
             aligner: FaceAligner | None) -> list[Row]:
    """Rows of one batch (in a worker thread): finished ones reused, the rest read, aligned, written.

    Only the image files are written here; the caller records the rows, in order.
    """
    rows = [writer.finished(item.source) or _problem_row(item) for item in batch]
    images: dict[int, np.ndarray] = {}
    for i, item in enumerate(batch):
        if rows[i] is None:
            loaded = _load(item)
            if isinstance(loaded, str):
                rows[i] = _failed(item, "unreadable", loaded)
            else:
                images[i] = loaded
    for i, (status, reason, face) in zip(images, _faces(source, [batch[i] for i in images], list(images.values()),
                                                        aligner)):
        if face is None:
            rows[i] = _failed(batch[i], status, reason)
        else:
            rows[i] = _ok(batch[i])
            writer.write_images(rows[i], face, keep_size=source.faces == "native")
    return rows


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Run a block with ``n`` torch intra-op threads, restoring the number after.

    The parallelism is the worker threads': MTCNN's many tiny ops (a resize per candidate box) and
    the LR copies only slow down when torch splits each over threads. Measured on ORL with 2 cores
    busy with other jobs: 53 images/s with one thread, 9-14 with two.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _problem_row(item: Item) -> Row | None:
    """The row of an item its reader already rejected (``None`` for a usable one)."""
    return None if item.problem is None else _failed(item, *item.problem)


def _load(item: Item) -> np.ndarray | str:
    """The decoded image, or the reason it cannot be read (one bad image never stops a run)."""
    try:
        return item.load()
    except UnreadableImage as e:
        return str(e)


def _faces(source: Source, items: Sequence[Item], images: Sequence[np.ndarray],
           aligner: FaceAligner | None) -> list[tuple[str, str, np.ndarray | None]]:
    """``(status, reason, face image or None)`` per decoded image, as the source's faces require."""
    if aligner is not None:
        return [(a.status, a.reason, a.image) for a in aligner.align(images)]
    if source.faces == "native":
        return [("ok", "", image) for image in images]
    return [("ok", "", image) if image.shape[:2] == (SIZE, SIZE) else
            ("wrong_size", f"{item.source}: {image.shape[1]} x {image.shape[0]} px; the faces of this source "
                           f"should already be aligned to {SIZE} x {SIZE}", None)
            for item, image in zip(items, images)]


def _ok(item: Item) -> Row:
    return Row(path=f"images/hr/{item.rel}.png", label=item.label, identity=item.identity, split=item.split,
               role=item.role, source=item.source)


def _failed(item: Item, status: str, reason: str) -> Row:
    return Row(path="", label=item.label, identity=item.identity, split=item.split, status=status,
               reason=reason, role=item.role, source=item.source)


def _pair_paths(pairs: list[tuple[str, str, int]] | None, rows: Sequence[Row],
                kept: set[str]) -> list[tuple[str, str, int]] | None:
    """Pairs by manifest path, in the protocol's order; a side whose image failed has an empty path.

    Pairs are never dropped (the folds must stay equal blocks), except those outside ``--limit``.
    """
    if pairs is None:
        return None
    path = {row.source: row.path for row in rows}
    return [(path[a], path[b], same) for a, b, same in pairs if a in kept and b in kept]


def _progress_bar(enabled: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[counts]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), disable=not enabled)


def _count_text(counts: Counter[str]) -> str:
    """``ok 120  no_face 2  unreadable 0``: the three counts always shown, any other status after them."""
    main = ("ok", "no_face", "unreadable")
    rest = sorted(k for k in counts if k not in main)
    return "  ".join(f"{k} {counts[k]}" for k in (*main, *rest))
