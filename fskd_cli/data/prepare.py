"""``fskd prepare KIND SRC``: any reader's :class:`~.readers.Source` -> the one dataset layout.

The reader says what the images need: ``detect`` (raw photos: MTCNN, five landmarks, similarity warp
onto the 112 x 112 ArcFace template), ``aligned`` (insightface ``.rec``/``.bin``, digits: used as they
are) or ``native`` (TinyFace: kept at their own low resolution). Everything else is common: batches
of images, each read, detected and written by one of ``workers`` threads, a progress bar with running
counts, one row per source image whatever happens to it, and resume: a rerun with the same options
skips finished images and ends with the same manifest; a rerun with other options is refused unless
``force``, which starts over (see :func:`fskd_cli.core.guard.claim_output`).
"""

from __future__ import annotations

import shutil
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..core.errors import FskdError
from ..core.guard import claim_output, first_difference, read_claim
from ..core.io import check_writable, write_faults
from .manifest import JOURNAL, USABLE, DatasetWriter, Row, identities_without_image, read_manifest, read_meta
from .prepare_options import COMMON_OPTIONS, DETECT_OPTIONS, parse_scales
from .readers import READERS, Item, Reader, Source, UnreadableImage
from .readers.recordio import same_records

COLOUR_NOTE = "RGB throughout; the F-SKD authors' released code read images with OpenCV, in BGR order"
CLAIM_KIND = "prepare"
_ALIGNMENT = {
    "aligned": "none here: the source's images are already aligned (used as they are, checked for size)",
    "native": "none: native low-resolution faces kept at their own size, with no synthetic LR copies",
}
_DETECT_NAMES = {o.name for o in DETECT_OPTIONS}
console = Console(stderr=True)


def prepare_dataset(kind: str, src: Path | None, out: Path, *, force: bool = False, device: str = "cpu",
                    progress: bool = True, **options: Any) -> dict[str, Any]:
    """Prepare the source ``src`` of format ``kind`` into ``out``; return the meta dict written.

    ``options`` are the common ones (:data:`COMMON_OPTIONS`) and the reader's own, by name; defaults
    come from their declarations. A dataset with no usable image is an error (its manifest is kept).
    """
    reader = _reader(kind)
    opts = resolve_options(reader, options)
    if (src is None) != (reader.src_help is None):
        raise ValueError(f"`{kind}` reads {'no SRC' if reader.src_help is None else 'a SRC'}, got src={src!r}")
    src = None if src is None else Path(src)
    out = Path(out)
    check_writable(out, folder=True)  # a doomed --out is refused before the source is read
    _check_apart(reader, src, out)
    record = _recorded_options(kind, src, reader, opts)
    with write_faults(out):  # a read-only folder or a full disk: one line naming the file
        source = _read(reader, src, opts)
        reuse = _claim(out, record, force, stale=_records_changed(out, source))
        items = source.items if reader.limits or not opts["limit"] else source.items[: opts["limit"]]
        aligner = _aligner(source, opts, device)
        writer = _writer(out, kind, source, src, opts, record, aligner, resume_rows=read_manifest(out, ok_only=False)
                         if reuse and (out / "manifest.csv").exists() else ())
        _run(items, source, writer, aligner, kind, opts, progress)
        pairs, pair_meta = _pairs_and_counts(source.pairs, writer.rows, {item.source for item in items})
        meta = writer.close(pairs, **pair_meta)
    if source.pairs and len(pairs) < len(source.pairs):  # pairs is None only when the source has none
        console.print(f"[yellow]warning:[/] --limit {opts['limit']} keeps {len(pairs)} of the {len(source.pairs)} "
                      f"pairs (those whose two images are among the first {opts['limit']}); `fskd eval` needs a "
                      "positive multiple of 10", highlight=False, soft_wrap=True)
    _report(meta, writer.rows, src, out)
    return meta


def _check_apart(reader: Reader, src: Path | None, out: Path) -> None:
    """``--out`` may not be a source folder, nor lie inside one whose every photo is read (``--force``
    included): the next run of the same command would read the prepared images as photos of one more identity,
    named after the output folder. Nor may the source lie in ``--out``'s ``images/``, which prepare writes into and
    a start over removes."""
    if src is None:
        return
    here, there = out.resolve(), src.resolve()
    if there.is_relative_to(here / "images"):
        raise FskdError(f"{out}: its images/ folder holds the source {src}, and prepare writes (and on a start over "
                        "removes) that folder; choose another --out")
    if not src.is_dir():
        return
    if here == there or (reader.detects and here.is_relative_to(there)):
        raise FskdError(f"{out}: the source folder {src} or inside it; a prepared set goes in a folder of its own "
                        "(e.g. data/NAME): choose another --out")


def _reader(kind: str) -> Reader:
    if kind not in READERS:
        raise FskdError(f"unknown source kind {kind!r}; choose one of {', '.join(sorted(READERS))}")
    return READERS[kind]


def resolve_options(reader: Reader, given: dict[str, Any]) -> dict[str, Any]:
    """Every option of ``reader`` (common ones included) by name: given values checked, defaults filled."""
    declared = {o.name: o for o in (*COMMON_OPTIONS, *reader.options)}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise FskdError(f"--{unknown[0].replace('_', '-')} is not an option of `fskd prepare {reader.kind}`")
    opts = {name: o.check(given.get(name, o.default)) for name, o in declared.items()}
    opts["scales"] = parse_scales(opts["scales"])
    return opts


def _recorded_options(kind: str, src: Path | None, reader: Reader, opts: dict[str, Any]) -> dict[str, Any]:
    """The options that decide what is written (not workers or batch size), as plain YAML values.

    A rerun continues earlier work only when these are identical.
    """
    changes = {o.name for o in (*COMMON_OPTIONS, *reader.options) if o.changes_output}
    plain = {name: (str(v) if isinstance(v, Path) else v) for name, v in opts.items() if name in changes}
    return {"kind": kind, "src": None if src is None else str(src.resolve()), **plain,
            "scales": [1, *opts["scales"]]}


def _read(reader: Reader, src: Path | None, opts: dict[str, Any]) -> Source:
    """Run the reader with its own options (the detection ones go to the aligner, ``limit`` only if it takes it)."""
    own = {o.name: opts[o.name] for o in reader.options if o.name not in _DETECT_NAMES}
    return reader.read(src, reader.kind, **own, **({"limit": opts["limit"]} if reader.limits else {}))


def _claim(out: Path, record: dict[str, Any], force: bool, stale: bool = False) -> bool:
    """Claim ``out`` for this run; return whether earlier work there (same options) may be reused.

    Without ``force`` a folder that is not fskd's, or holds a run with other options, is refused. With
    ``force``, or when the in-place records it was prepared from have changed (``stale``), the earlier
    run's manifest and journal go (fskd's own files only): this run starts over.
    A finished set whose identities ``prepare holdout`` split is not prepared again over that split.
    """
    try:
        before = read_claim(out)
    except FskdError:
        before = None  # claim_output says what is wrong with it unless forced
    claim_output(out, CLAIM_KIND, record, force=force)
    ours = before is not None and before.get("kind") == CLAIM_KIND
    reuse = ours and not force and first_difference(before.get("options") or {}, record) is None
    if reuse and stale:
        console.print(f"[yellow]note:[/] the records {escape(str(out))} was prepared from have changed since; "
                      "preparing it again from the start", highlight=False, soft_wrap=True)
        reuse = False
    if reuse and (out / "meta.yaml").exists() and "holdout" in read_meta(out):
        raise FskdError(f"{out}: its identities were split by `fskd prepare holdout`; preparing it again would undo "
                        "that split: use --force to start over")
    if not reuse:
        (out / JOURNAL).unlink(missing_ok=True)
        if ours:
            for name in ("manifest.csv", "pairs.csv", "meta.yaml"):
                (out / name).unlink(missing_ok=True)
            _remove_images(out / "images")
    return reuse


def _remove_images(images: Path) -> None:
    """The image tree of an earlier prepare that this one replaces: a start over with other scales, another
    interpolation or fewer photos would otherwise leave the old run's copies (``images/x4`` of a run that now
    writes x2, photos no longer in the manifest) beside the new ones, in a folder whose meta.yaml no longer
    describes them. Only called on a folder fskd's prepare claimed, whose ``images/`` it wrote."""
    if images.is_symlink() or images.is_file():
        raise FskdError(f"{images}: not the image folder `fskd prepare` writes; move it away, or choose another --out")
    if images.is_dir():
        shutil.rmtree(images)


def _records_changed(out: Path, source: Source) -> bool:
    """Whether the in-place records of ``source`` differ from those ``out``'s finished set was prepared from.

    Its rows (labels read from the records) would then be stale: reusing them would bless a replaced ``.rec``.
    A set of image files, or one not finished, has nothing to compare; an unreadable meta.yaml counts as changed.
    """
    if not source.meta.get("in_place") or not (out / "meta.yaml").is_file():
        return False
    try:
        before = read_meta(out).get("records")
    except FskdError:
        return True
    now = source.meta["records"]
    return not (isinstance(before, list) and len(before) == len(now) and all(
        isinstance(b, dict) and same_records(b.get("fingerprint"), n["fingerprint"]) for b, n in zip(before, now, strict=True)))


def _writer(out: Path, kind: str, source: Source, src: Path | None, opts: dict[str, Any], record: dict[str, Any],
            aligner: Any, resume_rows: Iterable[Row]) -> DatasetWriter:
    native, in_place = source.faces == "native", bool(source.meta.get("in_place"))
    alignment = aligner.describe() if aligner is not None else _ALIGNMENT[source.faces]
    return DatasetWriter(
        out, kind, source.task, None if native else source.image_size,
        scales=() if native or in_place else opts["scales"], interpolation=opts["interpolation"],
        antialias=opts["antialias"], source="" if src is None else str(src), resume_rows=resume_rows,
        in_place=in_place, extra_meta={"colour_note": COLOUR_NOTE, "alignment": alignment, **source.meta,
                                       "prepare": record},
    )


def _aligner(source: Source, opts: dict[str, Any], device: str) -> Any:
    """The face aligner of a ``detect`` source (built here so other sources never load MTCNN), else None."""
    if source.faces != "detect":
        return None
    from .align import FaceAligner

    return FaceAligner(min_face_size=opts["min_face_size"], on_no_face=opts["on_no_face"], device=device)


def _run(items: Sequence[Item], source: Source, writer: DatasetWriter, aligner: Any, kind: str,
         opts: dict[str, Any], progress: bool) -> None:
    """Process ``items`` in fixed batches on the worker threads, recording rows in the reader's order."""
    counts: Counter[str] = Counter()
    work = partial(_process, source=source, writer=writer, aligner=aligner)
    workers = opts["workers"]
    with _torch_threads(1), ThreadPoolExecutor(workers) as pool, _progress_bar(progress) as bar:
        task = bar.add_task(f"prepare {kind}", total=len(items), counts="")
        for rows in _in_order(pool, work, _chunks(items, opts["batch_size"]), ahead=2 * workers):
            counts.update(writer.add(row).status for row in rows)
            bar.update(task, advance=len(rows), counts=_count_text(counts))


def _pairs_and_counts(pairs: list[tuple[str, str, int]] | None, rows: Sequence[Row], kept: set[str]
                      ) -> tuple[list[tuple[str, str, int]] | None, dict[str, Any]]:
    """Pairs by manifest path, in the protocol's order; a side whose image failed has an empty path.

    Pairs are never dropped (the folds must stay equal blocks), except those outside ``--limit``.
    """
    if pairs is None:
        return None, {}
    path = {row.source: row.path for row in rows}
    pair_rows = [(path[a], path[b], same) for a, b, same in pairs if a in kept and b in kept]
    return pair_rows, {"pairs_with_failed_image": sum(1 for a, b, _ in pair_rows if not (a and b))}


def _report(meta: dict[str, Any], rows: Sequence[Row], src: Path | None, out: Path) -> None:
    """Note LR scales asked for but not written, warn about identities left with no usable image; a set with no
    usable image at all is an error."""
    counts = meta["counts"]
    if not any(counts.get(status) for status in USABLE):
        bad = ", ".join(f"{k} {v}" for k, v in counts.items() if k not in ("rows", "splits", "identities_without_image"))
        raise FskdError(f"{src or meta['name']}: none of its {counts['rows']} images is usable ({bad}); "
                        f"the reason of each is in {out / 'manifest.csv'}")
    asked = [s for s in meta["prepare"]["scales"] if s not in meta["scales"]] if meta.get("in_place") else []
    if asked:
        console.print(f"[yellow]note:[/] an in-place set writes no image: its {', '.join(f'{s}x' for s in asked)} LR "
                      "copies are made on the fly when a stage needs them (meta.yaml: scales_made_on_the_fly)",
                      highlight=False, soft_wrap=True)
    lost = identities_without_image(rows)
    if lost:
        shown = ", ".join(lost[:3]) + (f" and {len(lost) - 3} more" if len(lost) > 3 else "")
        console.print(f"[yellow]warning:[/] {len(lost)} identit{'y has' if len(lost) == 1 else 'ies have'} no usable "
                      f"image ({shown}); see the reasons in {out / 'manifest.csv'}", highlight=False)


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


def _process(batch: Sequence[Item], *, source: Source, writer: DatasetWriter, aligner: Any) -> list[Row]:
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
    todo = [batch[i] for i in images]
    for i, (status, reason, face) in zip(images, _faces(source, todo, list(images.values()), aligner), strict=True):
        if face is None:
            rows[i] = _failed(batch[i], status, reason)
        else:
            rows[i] = _ok(batch[i], status, reason, in_place=writer.in_place)
            if not writer.in_place:
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
           aligner: Any) -> list[tuple[str, str, np.ndarray | None]]:
    """``(status, reason, image or None)`` per decoded image, as the source's images require."""
    if aligner is not None:
        return [(a.status, a.reason, a.image) for a in aligner.align(images)]
    if source.faces == "native":
        return [("ok", "", image) for image in images]
    size = source.image_size
    return [("ok", "", image) if image.shape[:2] == (size, size) else
            ("wrong_size", f"{item.source}: {image.shape[1]} x {image.shape[0]} px; the images of this source "
                           f"should already be aligned to {size} x {size}", None)
            for item, image in zip(items, images, strict=True)]


def _ok(item: Item, status: str = "ok", reason: str = "", *, in_place: bool = False) -> Row:
    """A usable row (``ok``, or ``center`` for a central crop kept by ``--on-no-face center``)."""
    path = item.rel if in_place else f"images/hr/{item.rel}.png"
    return Row(path=path, label=item.label, identity=item.identity, split=item.split, status=status, reason=reason,
               role=item.role, source=item.source)


def _failed(item: Item, status: str, reason: str) -> Row:
    return Row(path="", label=item.label, identity=item.identity, split=item.split, status=status,
               reason=reason, role=item.role, source=item.source)


def _progress_bar(enabled: bool) -> Progress:
    """Running counts while it works; erased at the end (transient), so what stays is the summary or one error line."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[counts]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=console, disable=not enabled, transient=True)


def _count_text(counts: Counter[str]) -> str:
    """``ok 120  no_face 2  unreadable 0``: the three counts always shown, any other status after them."""
    main = ("ok", "no_face", "unreadable")
    rest = sorted(k for k in counts if k not in main)
    return "  ".join(f"{k} {counts[k]}" for k in (*main, *rest))

