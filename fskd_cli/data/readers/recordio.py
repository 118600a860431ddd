"""insightface training records (``train.rec`` + ``train.idx``), read and written without mxnet.

The RecordIO format (dmlc-core): each record is ``magic`` (0xced7230a, little endian), a length word
whose top 3 bits are a continuation flag and low 29 bits the byte count, the bytes, and zero padding
to a multiple of 4. A writer never lets the magic word appear 4-byte aligned inside a record: it cuts
the record there into parts (flag 1 = first, 2 = middle, 3 = last; 0 = whole), and a reader rejoins
the parts with the magic word between them. ``.idx`` lines are ``key<TAB>byte offset``.

insightface packs each record as a 24-byte header ``struct 'IfQQ'`` (flag, label, id, id2), then
``flag`` float32 labels when ``flag > 0`` (the label field is then unused), then the encoded image.
Record 0 is a header whose first label is the end of the image keys (images are keys 1 .. end-1).
Images there are already aligned to 112 x 112, so no detection runs.

A set may come as several ``.rec`` files (parts) in one folder. ``fskd prepare rec --in-place`` writes
no image: its manifest rows point at records (``rec:PART:KEY``, see :func:`record_path`) and
:class:`RecordImages` reads them at training time, one open file per process, by the ``.idx`` offsets.
Such a set trusts files it did not write, so each part is fingerprinted at prepare (:func:`source_fingerprint`)
and checked when a run or an eval starts (:func:`check_parts`): a replaced ``.rec`` would otherwise train on
images whose labels no longer match.
"""

from __future__ import annotations

import hashlib
import math
import os
import struct
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ...core.errors import FskdError
from ...core.io import atomic_path
from ..prepare_options import Option
from .images import decode_image
from .reader import Item, Source, UnreadableImage, natural_key, register, require_exists

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
HEADER = struct.Struct("<IfQQ")
_PART = struct.Struct("<II")
_LENGTH_MASK = (1 << 29) - 1
WHOLE, FIRST, MIDDLE, LAST = 0, 1, 2, 3
RECORD_PREFIX = "rec:"  # manifest paths of an in-place set: rec:PART:KEY
SAMPLED = 64  # records hashed into a part's fingerprint, spread evenly over its index
_WINDOW = 16 * 1024  # bytes hashed from each sampled record's offset (a 112px JPEG record is 5 to 10 KB)
_FINGERPRINT_KEYS = ("size", "mtime_ns", "idx_sha256", "records_sha256", "sampled")


class RecordError(Exception):
    """One record cannot be read (truncated file, no magic word, broken part sequence)."""


def pack_record(label: float | Sequence[float], payload: bytes, id: int = 0, id2: int = 0) -> bytes:
    """insightface's record body: header, the labels when there are several, then ``payload``."""
    if isinstance(label, (int, float)):
        return HEADER.pack(0, float(label), id, id2) + payload
    labels = np.asarray(label, dtype="<f4")
    return HEADER.pack(len(labels), 0.0, id, id2) + labels.tobytes() + payload


def unpack_record(record: bytes) -> tuple[np.ndarray, bytes]:
    """``(labels, payload)`` of a record body; ``labels`` has one entry unless the header says more."""
    flag = _flag(record)
    if flag == 0:
        return np.array([HEADER.unpack_from(record)[1]], dtype=np.float32), record[HEADER.size:]
    end = HEADER.size + 4 * flag
    if len(record) < end:
        raise RecordError(f"record of {len(record)} bytes is shorter than its header with {flag} labels")
    return np.frombuffer(record, dtype="<f4", count=flag, offset=HEADER.size).copy(), record[end:]


def _flag(record: bytes) -> int:
    if len(record) < HEADER.size:
        raise RecordError(f"record of {len(record)} bytes is shorter than its {HEADER.size}-byte header")
    return HEADER.unpack_from(record)[0]


def _split(record: bytes) -> list[bytes]:
    """Cut ``record`` at every 4-byte-aligned magic word, dropping the word (the reader puts it back)."""
    parts, start = [], 0
    for i in range(0, len(record) - len(record) % 4, 4):
        if record[i:i + 4] == MAGIC_BYTES:
            parts.append(record[start:i])
            start = i + 4
    return [*parts, record[start:]]


def _frame(record: bytes) -> bytes:
    parts = _split(record)
    flags = [WHOLE] if len(parts) == 1 else [FIRST, *[MIDDLE] * (len(parts) - 2), LAST]
    out = bytearray()
    for flag, part in zip(flags, parts, strict=True):
        out += MAGIC_BYTES + struct.pack("<I", flag << 29 | len(part)) + part + b"\0" * (-len(part) % 4)
    return bytes(out)


def write_recordio(rec: Path, idx: Path, records: Iterable[tuple[int, bytes]]) -> None:
    """Write ``(key, record body)`` pairs as a ``.rec`` and its ``.idx`` (e.g. to hand fskd data to insightface)."""
    lines = []
    with atomic_path(rec) as tmp, open(tmp, "wb") as f:
        for key, body in records:
            lines.append(f"{key}\t{f.tell()}\n")
            f.write(_frame(body))
    with atomic_path(idx) as tmp:
        tmp.write_text("".join(lines), encoding="utf-8")


class RecordFile:
    """Random access to the records of a ``.rec`` through its ``.idx``.

    One file descriptor per process, opened again after a fork (DataLoader workers each get their own),
    read with ``os.pread`` so threads share it safely. A record is usually one read: the bytes up to
    the next offset of the index.
    """

    def __init__(self, rec: Path, idx: Path) -> None:
        self._fd, self._pid = -1, -1
        self.rec, self.idx = Path(rec), Path(idx)
        self.size = self.rec.stat().st_size
        self.offsets = _read_idx(self.idx)
        ends = sorted({*self.offsets.values(), self.size})
        self._span = {key: _next_after(ends, off) - off for key, off in self.offsets.items()}
        self._fileno()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fd": -1, "_pid": -1}  # a spawned worker opens its own file

    def __del__(self) -> None:
        if self._pid == os.getpid():
            os.close(self._fd)

    def _fileno(self) -> int:
        if self._pid != os.getpid():
            try:
                self._fd = os.open(self.rec, os.O_RDONLY)
            except OSError as e:
                raise FskdError(f"{self.rec}: cannot open ({e.strerror})") from None
            self._pid = os.getpid()
        return self._fd

    def _pread(self, n: int, pos: int) -> bytes:
        return os.pread(self._fileno(), max(n, 0), pos) if pos < self.size else b""

    def read(self, key: int) -> bytes:
        """The record body stored under ``key``, its parts rejoined."""
        offset = self._offset(key)
        return self._join(offset, self._pread(self._span[key], offset))

    def read_labels(self, key: int) -> tuple[int, np.ndarray]:
        """``(flag, labels)`` of a record, reading only its head: a pass over a large ``.rec`` stays cheap."""
        head = self.read_head(key, HEADER.size)
        flag = _flag(head)
        if flag > 0:
            head = self.read_head(key, HEADER.size + 4 * flag)
        return flag, unpack_record(head)[0]

    def read_head(self, key: int, n: int) -> bytes:
        """The first ``n`` bytes of a record body (all of it when shorter)."""
        offset = self._offset(key)
        buf = self._pread(min(self._span[key], _PART.size + n), offset)
        flag, length = self._part(buf, 0, offset, first=True)
        if flag != WHOLE and length < n:
            return self._join(offset, buf)[:n]
        if len(buf) < _PART.size + min(n, length):
            raise RecordError(self._truncated(offset))
        return buf[_PART.size:_PART.size + min(n, length)]

    def _offset(self, key: int) -> int:
        if key not in self.offsets:
            raise RecordError(f"key {key} is not in {self.idx.name}")
        return self.offsets[key]

    def _part(self, buf: bytes, at: int, offset: int, *, first: bool) -> tuple[int, int]:
        """``(part flag, length)`` of the part starting ``at`` bytes into ``buf`` (read from ``offset``)."""
        if len(buf) < at + _PART.size:
            raise RecordError(self._truncated(offset + at))
        magic, word = _PART.unpack_from(buf, at)
        if magic != MAGIC:
            raise RecordError(f"no record at byte {offset + at} of {self.rec.name} (magic word {magic:#010x})")
        flag, length = word >> 29, word & _LENGTH_MASK
        if flag not in ((WHOLE, FIRST) if first else (MIDDLE, LAST)):
            raise RecordError(f"broken multi-part record at byte {offset + at} of {self.rec.name} (part flag {flag})")
        return flag, length

    def _join(self, offset: int, buf: bytes) -> bytes:
        """The record at ``offset`` from ``buf`` (its first bytes), reading more when a part runs past it."""
        parts: list[bytes] = []
        at = 0
        while True:
            if len(buf) < at + _PART.size:
                buf = self._pread(at + _PART.size, offset)
            flag, length = self._part(buf, at, offset, first=not parts)
            end = at + _PART.size + length
            if len(buf) < end:
                buf = self._pread(end, offset)
                if len(buf) < end:
                    raise RecordError(self._truncated(offset + at))
            parts.append(buf[at + _PART.size:end])
            if flag in (WHOLE, LAST):
                return parts[0] if len(parts) == 1 else MAGIC_BYTES.join(parts)
            at = end + (-length % 4)

    def _truncated(self, pos: int) -> str:
        return f"{self.rec.name} is truncated: the record at byte {pos} runs past its end ({self.size} bytes)"


def _next_after(ends: list[int], offset: int) -> int:
    """The smallest of the sorted ``ends`` above ``offset`` (the end of the file at most)."""
    i = bisect_right(ends, offset)
    return ends[i] if i < len(ends) else offset


def _read_idx(idx: Path) -> dict[int, int]:
    """``key -> offset`` from an index, refusing (one line naming file and line) anything else."""
    raw = idx.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FskdError(f"{idx}: not a text index (binary byte {raw[e.start]:#04x} at byte {e.start}); "
                        f"expected lines 'key<TAB>offset'") from None
    offsets: dict[int, int] = {}
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            key, offset = (int(x) for x in line.split())
        except ValueError:
            raise FskdError(f"{idx}, line {line_no}: expected 'key<TAB>offset', got {line[:60]!r}") from None
        if key < 0 or offset < 0:
            raise FskdError(f"{idx}, line {line_no}: negative {'key' if key < 0 else 'offset'} in {line.strip()!r}")
        if key in offsets:
            raise FskdError(f"{idx}, line {line_no}: key {key} is listed twice")
        offsets[key] = offset
    if not offsets:
        raise FskdError(f"{idx}: the index is empty")
    return offsets


def _whole_number(value: float) -> int | None:
    """``value`` as an int when it is a finite whole number, else None (NaN, infinite, 2.5)."""
    return int(value) if math.isfinite(value) and value == int(value) else None


def image_keys(records: RecordFile) -> list[int]:
    """Keys of the image records: 1 .. end-1 when record 0 is insightface's header, else every key.

    A header that is not a whole number, or that claims more images than the index holds, is refused:
    it would make every later step wrong (or ask for a billion rows).
    """
    if 0 not in records.offsets:
        return sorted(records.offsets)
    try:
        flag, labels = records.read_labels(0)
    except RecordError as e:
        raise FskdError(f"{records.rec}: cannot read record 0, the header of the set ({e})") from None
    if flag == 0:
        return sorted(records.offsets)
    end = _whole_number(float(labels[0]))
    if end is None or end < 1:
        raise FskdError(f"{records.rec}: record 0 (the header of the set) says images end at key {labels[0]}, "
                        "which is not a positive whole number")
    if end - 1 > len(records.offsets) - 1:
        raise FskdError(f"{records.rec}: record 0 (the header) claims {end - 1} images, but {records.idx.name} "
                        f"holds only {len(records.offsets)} records")
    return list(range(1, end))


def _label(records: RecordFile, key: int) -> tuple[int, tuple[str, str] | None]:
    """The identity label of one image record, or -1 and an ``unreadable`` problem."""
    where = f"{records.rec}#{key}"
    try:
        value = float(records.read_labels(key)[1][0])
    except RecordError as e:
        return -1, ("unreadable", f"{where}: {e}")
    label = _whole_number(value)
    if label is None or label < 0:
        return -1, ("unreadable", f"{where}: the record's label {value} is not a whole number >= 0")
    return label, None


def _loader(records: RecordFile, key: int, decode: Callable[[bytes, str], np.ndarray]) -> Callable[[], np.ndarray]:
    """The item's ``load``: read record ``key`` and ``decode`` its image (a bad record: :class:`UnreadableImage`)."""
    where = f"{records.rec}#{key}"

    def load() -> np.ndarray:
        try:
            _, payload = unpack_record(records.read(key))
        except RecordError as e:
            raise UnreadableImage(f"{where}: {e}") from None
        return decode(payload, where)

    return load


def rec_parts(src: Path) -> list[tuple[Path, Path]]:
    """``(rec, idx)`` of each part: ``src`` is a ``.rec``, a folder holding ``train.rec``, or a folder of
    several ``.rec`` files (parts, in natural name order); each ``.idx`` lies beside its ``.rec``."""
    if src.is_dir():
        recs = [src / "train.rec"] if (src / "train.rec").exists() else sorted(
            src.glob("*.rec"), key=lambda p: natural_key(p.name))
    else:
        recs = [src]
    if not recs:
        raise FskdError(f"{src}: not found; expected an insightface train.rec (or a folder holding .rec and .idx files)")
    for rec in recs:
        require_exists(rec, "an insightface train.rec (or a folder holding train.rec and train.idx)")
        require_exists(rec.with_suffix(".idx"), f"the index of {rec.name} beside it")
    return [(rec, rec.with_suffix(".idx")) for rec in recs]


def record_path(part: int, key: int) -> str:
    """The manifest path of record ``key`` of part ``part`` of an in-place set."""
    return f"{RECORD_PREFIX}{part}:{key}"


def parse_record_path(path: str) -> tuple[int, int]:
    """``(part, key)`` of a manifest path written by :func:`record_path`."""
    part, _, key = path[len(RECORD_PREFIX):].partition(":")
    return int(part), int(key)


def source_fingerprint(rec: Path, idx: Path) -> dict[str, Any]:
    """What tells a part's files apart, cheaply: the ``.rec``'s size and modification time, the SHA-256 of its
    ``.idx``, and a SHA-256 over :data:`SAMPLED` records spread over the index (each one's index line and the
    first 16 KiB of the ``.rec`` from its offset): about 1 MiB read, whatever the size of the set."""
    try:
        stat, index = rec.stat(), idx.read_bytes()
        sampled, digest = _sample_digest(rec, index)
    except OSError as e:
        raise FskdError(f"{e.filename or rec}: cannot read ({e.strerror})") from None
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "idx_sha256": hashlib.sha256(index).hexdigest(),
            "records_sha256": digest, "sampled": sampled}


def _sample_digest(rec: Path, index: bytes) -> tuple[int, str]:
    """``(number sampled, SHA-256)`` of the records of :func:`_sampled_lines`: each one's line and its bytes."""
    lines = _sampled_lines(index)
    digest = hashlib.sha256()
    fd = os.open(rec, os.O_RDONLY)
    try:
        for line, offset in lines:
            digest.update(line + b"\n" + os.pread(fd, _WINDOW, offset))
    finally:
        os.close(fd)
    return len(lines), digest.hexdigest()


def _sampled_lines(index: bytes) -> list[tuple[bytes, int]]:
    """``(line, offset)`` of up to :data:`SAMPLED` index lines: those at evenly spaced bytes, first to last.

    Found by byte position, not by splitting the index into lines: with a 490,000-line index (CASIA's size)
    and a 400 MB ``.rec``, a whole check took 25 ms this way and 0.4 s splitting the lines.
    """
    found: dict[int, tuple[bytes, int]] = {}
    for i in range(SAMPLED):
        at = round(i * (len(index) - 1) / (SAMPLED - 1))
        start = index.rfind(b"\n", 0, at) + 1
        end = index.find(b"\n", start)
        line = index[start:end if end >= 0 else len(index)].strip()
        words = line.split()
        if len(words) >= 2 and words[1].isdigit():  # an index fskd accepted has only such lines, and blank ones
            found[start] = (line, int(words[1]))
    return list(found.values())


def same_records(recorded: Any, now: dict[str, Any]) -> bool:
    """Whether a ``recorded`` fingerprint names the same files as ``now``, their modification time aside."""
    return isinstance(recorded, dict) and all(recorded.get(k) == now[k] for k in _FINGERPRINT_KEYS if k != "mtime_ns")


def check_parts(parts: Any, meta_file: Path) -> list[str]:
    """Check the parts of an in-place set (``meta.yaml``'s ``records``) against their fingerprints from prepare.

    A part whose size, index or sampled records differ is refused (FskdError naming the file and what
    changed): the manifest's labels would no longer match its images. A new modification time alone (a
    ``touch``, a copy that did not keep it) is a note, as is a set prepared before fingerprints were kept.
    Returns the notes.
    """
    if not isinstance(parts, list) or not all(isinstance(p, dict) and {"rec", "idx"} <= set(p)
                                              and isinstance(p["rec"], str) and isinstance(p["idx"], str) for p in parts):
        raise FskdError(f"{meta_file}: an in-place set needs 'records' (a list of rec/idx paths)")
    notes = []
    for part in parts:
        rec, idx = Path(part["rec"]), Path(part["idx"])
        for path in (rec, idx):
            require_exists(path, f"the records of the in-place set {meta_file.parent} (moved?)")
        if "fingerprint" not in part:
            notes.append(f"{meta_file.parent}: prepared before fskd fingerprinted in-place records, so a replaced "
                         ".rec cannot be told; prepare it again to have its records checked")
            continue
        try:
            notes += _compare(rec, idx, part["fingerprint"], meta_file)
        except OSError as e:
            raise FskdError(f"{e.filename or rec}: cannot read ({e.strerror})") from None
    return list(dict.fromkeys(notes))


def _compare(rec: Path, idx: Path, recorded: Any, meta_file: Path) -> list[str]:
    """One part against its ``recorded`` fingerprint: cheapest first (size, index, then the sampled records)."""
    root = meta_file.parent
    if not isinstance(recorded, dict) or not set(_FINGERPRINT_KEYS) <= set(recorded) or not all(
            isinstance(recorded[k], int) and not isinstance(recorded[k], bool) for k in ("size", "mtime_ns")):
        # a size in words would read as "changed", naming the user's .rec instead of the edited meta.yaml
        raise FskdError(f"{meta_file}: the fingerprint of {rec.name} is not one fskd wrote; prepare {root} again")

    def changed(path: Path, what: str) -> FskdError:
        return FskdError(f"{path}: changed since `fskd prepare` read it into {root} ({what}); the manifest's labels "
                         f"would no longer match its images: put the original back, or prepare {root} again")

    size = rec.stat().st_size
    if size != recorded["size"]:
        raise changed(rec, f"{recorded['size']} bytes then, {size} now")
    index = idx.read_bytes()
    if hashlib.sha256(index).hexdigest() != recorded["idx_sha256"]:
        raise changed(idx, "another index: its keys or offsets differ")
    sampled, digest = _sample_digest(rec, index)
    if digest != recorded["records_sha256"]:
        raise changed(rec, f"same size, but records differ among the {sampled} sampled")
    if rec.stat().st_mtime_ns != recorded["mtime_ns"]:
        return [f"{rec}: its modification time changed since prepare, but its size, index and {sampled} sampled "
                "records are the same; used as it is"]
    return []


def _items(part: int, records: RecordFile, in_place: bool, several: bool) -> list[Item]:
    """The items of one part; ``several``: image names carry the part, as keys repeat across parts."""
    items = []
    for key in image_keys(records):
        label, problem = _label(records, key)
        name = f"p{part}-{key}" if several else str(key)
        rel = record_path(part, key) if in_place else f"{max(label, 0)}/{name}"
        load = _loader(records, key, decode_rgb if in_place else decode_image)
        items.append(Item(source=f"{records.rec.name}#{key}", rel=rel, identity=str(label), label=label,
                          split="train", load=load, problem=problem))
    return items


@register("rec", summary="insightface training records (faces_webface_112x112 and the like), read without mxnet; "
          "already aligned.", example="fskd prepare rec ~/datasets/faces_webface_112x112 --in-place --scales 1",
          src_help="train.rec (with train.idx beside it), or their folder.",
          options=(Option("in_place", bool, False, "Read the records where they lie: the manifest points at them "
                          "and no image file is written."),))
def read_rec(src: Path, kind: str, in_place: bool = False) -> Source:
    """One item per image record, labelled from its header; a record that cannot be read is a bad row.

    ``in_place``: the items' ``rel`` are record paths (``rec:PART:KEY``) and the set is to be read from
    the records themselves, with no image written.
    """
    parts = rec_parts(Path(src))
    files = [RecordFile(rec, idx) for rec, idx in parts]
    items = [item for part, records in enumerate(files) for item in _items(part, records, in_place, len(files) > 1)]
    if not items:
        raise FskdError(f"{parts[0][0]}: no image records")
    meta: dict[str, Any] = {"records": str(parts[0][0]) if len(parts) == 1 else [str(rec) for rec, _ in parts]}
    if in_place:
        meta = {"in_place": True, "records": [{"rec": str(rec.resolve()), "idx": str(idx.resolve()),
                                               "fingerprint": source_fingerprint(rec, idx)} for rec, idx in parts]}
    return Source(task="train", faces="aligned", items=items, meta=meta)


def decode_bgr(payload: bytes, where: str) -> np.ndarray:
    """Decode an encoded image as ``H x W x 3`` uint8 in OpenCV's BGR order (about 3x PIL's speed on 112px JPEGs).

    The same pixels as :func:`~.images.decode_image` (both use libjpeg), less its care for 16-bit files,
    which records of aligned faces never hold.
    """
    bgr = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise UnreadableImage(f"{where}: cannot decode the image ({len(payload)} bytes)")
    return bgr


def decode_rgb(payload: bytes, where: str) -> np.ndarray:
    """:func:`decode_bgr` as RGB: an in-place set's check at prepare time decodes as training will."""
    return cv2.cvtColor(decode_bgr(payload, where), cv2.COLOR_BGR2RGB)


class RecordImages:
    """The images of an in-place set, read from its records by manifest path (``rec:PART:KEY``).

    ``parts`` is ``meta.yaml``'s ``records`` list. Files are opened per process as they are first needed,
    so a dataset built in the main process can be handed to DataLoader workers.
    """

    def __init__(self, parts: Sequence[dict[str, str]], meta_file: Path) -> None:
        self.meta_file = meta_file
        self.parts = [(Path(p["rec"]), Path(p["idx"])) for p in parts]
        self._files: dict[int, RecordFile] = {}

    def _file(self, part: int) -> RecordFile:
        if part not in self._files:
            if not 0 <= part < len(self.parts):
                raise FskdError(f"{self.meta_file}: the manifest names record part {part}, "
                                f"but records lists {len(self.parts)} part(s)")
            rec, idx = self.parts[part]
            for path in (rec, idx):
                require_exists(path, f"the records of the in-place set {self.meta_file.parent} (moved?)")
            self._files[part] = RecordFile(rec, idx)
        return self._files[part]

    def load(self, part: int, key: int) -> np.ndarray:
        """The image of record ``key`` of ``part`` as ``H x W x 3`` uint8 RGB."""
        return cv2.cvtColor(self._bgr(part, key), cv2.COLOR_BGR2RGB)

    def load_into(self, part: int, key: int, out: np.ndarray) -> None:
        """Decode record ``key`` of ``part`` into ``out`` (uint8 ``3 x H x W``, RGB): one copy from the decoder
        to a batch, the colour order and the layout changed on the way."""
        bgr = self._bgr(part, key)
        if bgr.shape != (out.shape[1], out.shape[2], 3):
            raise FskdError(f"{self._file(part).rec}#{key}: {bgr.shape[1]} x {bgr.shape[0]} px in a set of "
                            f"{out.shape[2]} x {out.shape[1]} px images")
        np.copyto(out, bgr.transpose(2, 0, 1)[::-1])

    def _bgr(self, part: int, key: int) -> np.ndarray:
        """The decoded record; one that cannot be read is a one-line error (prepare found it usable)."""
        records = self._file(part)
        where = f"{records.rec}#{key}"
        try:
            return decode_bgr(unpack_record(records.read(key))[1], where)
        except (RecordError, UnreadableImage) as e:
            raise FskdError(f"{where}: {str(e).removeprefix(where + ': ')} (prepare marked it usable: "
                            "has the file changed since?)") from None
