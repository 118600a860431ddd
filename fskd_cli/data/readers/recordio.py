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
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ...errors import FskdError
from ...io import atomic_path
from .base import Item, Source, UnreadableImage, decode_image, reader, require_exists

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
HEADER = struct.Struct("<IfQQ")
_LENGTH_MASK = (1 << 29) - 1
WHOLE, FIRST, MIDDLE, LAST = 0, 1, 2, 3


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
    for flag, part in zip(flags, parts):
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

    Each :meth:`read` opens the file itself, so worker threads can read records concurrently.
    """

    def __init__(self, rec: Path, idx: Path) -> None:
        self.rec, self.idx = rec, idx
        self.size = rec.stat().st_size
        self.offsets = _read_idx(idx)

    def read(self, key: int) -> bytes:
        """The record body stored under ``key``, its parts rejoined."""
        with open(self.rec, "rb") as f:
            return self._read_at(f, self._offset(key))

    def read_labels(self, key: int) -> tuple[int, np.ndarray]:
        """``(flag, labels)`` of a record, reading only its header: a pass over a large ``.rec`` stays cheap."""
        head = self.read_head(key, HEADER.size)
        flag = _flag(head)
        if flag > 0:
            head = self.read_head(key, HEADER.size + 4 * flag)
        return flag, unpack_record(head)[0]

    def read_head(self, key: int, n: int) -> bytes:
        """The first ``n`` bytes of a record body (all of it when shorter)."""
        offset = self._offset(key)
        with open(self.rec, "rb") as f:
            flag, length = self._part_header(f, offset, first=True)
            if flag != WHOLE and length < n:
                return self._read_at(f, offset)[:n]
            data = f.read(min(n, length))
            if len(data) < min(n, length):
                raise RecordError(self._truncated(offset))
            return data

    def _offset(self, key: int) -> int:
        if key not in self.offsets:
            raise RecordError(f"key {key} is not in {self.idx.name}")
        return self.offsets[key]

    def _part_header(self, f: BinaryIO, pos: int, *, first: bool) -> tuple[int, int]:
        """``(part flag, length)`` of the part at ``pos``; the file is left at its first byte."""
        f.seek(pos)
        head = f.read(8)
        if len(head) < 8:
            raise RecordError(self._truncated(pos))
        magic, word = struct.unpack("<II", head)
        if magic != MAGIC:
            raise RecordError(f"no record at byte {pos} of {self.rec.name} (magic word {magic:#010x})")
        flag, length = word >> 29, word & _LENGTH_MASK
        if flag not in ((WHOLE, FIRST) if first else (MIDDLE, LAST)):
            raise RecordError(f"broken multi-part record at byte {pos} of {self.rec.name} (part flag {flag})")
        return flag, length

    def _read_at(self, f: BinaryIO, offset: int) -> bytes:
        parts: list[bytes] = []
        pos = offset
        while True:
            flag, length = self._part_header(f, pos, first=not parts)
            data = f.read(length)
            if len(data) < length:
                raise RecordError(self._truncated(pos))
            parts.append(data)
            if flag in (WHOLE, LAST):
                return MAGIC_BYTES.join(parts)
            pos += 8 + length + (-length % 4)

    def _truncated(self, pos: int) -> str:
        return f"{self.rec.name} is truncated: the record at byte {pos} runs past its end ({self.size} bytes)"


def _read_idx(idx: Path) -> dict[int, int]:
    offsets = {}
    for line_no, line in enumerate(idx.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            key, offset = (int(x) for x in fields)
        except ValueError:
            raise FskdError(f"{idx}, line {line_no}: expected 'key<TAB>offset', got {line!r}") from None
        offsets[key] = offset
    if not offsets:
        raise FskdError(f"{idx}: the index is empty")
    return offsets


def _rec_paths(src: Path) -> tuple[Path, Path]:
    """``src`` is the ``.rec`` itself or a folder holding ``train.rec``; the ``.idx`` lies beside it."""
    rec = src / "train.rec" if src.is_dir() else src
    require_exists(rec, "an insightface train.rec (or a folder holding train.rec and train.idx)")
    idx = rec.with_suffix(".idx")
    require_exists(idx, f"the index of {rec.name} beside it")
    return rec, idx


def image_keys(records: RecordFile) -> list[int]:
    """Keys of the image records: 1 .. end-1 when record 0 is insightface's header, else every key."""
    if 0 not in records.offsets:
        return sorted(records.offsets)
    try:
        flag, labels = records.read_labels(0)
    except RecordError as e:
        raise FskdError(f"{records.rec}: cannot read record 0, the header of the set ({e})") from None
    return list(range(1, int(labels[0]))) if flag > 0 else sorted(records.offsets)


def _label(records: RecordFile, key: int) -> tuple[int, tuple[str, str] | None]:
    """The identity label of one image record, or -1 and an ``unreadable`` problem."""
    try:
        return int(records.read_labels(key)[1][0]), None
    except RecordError as e:
        return -1, ("unreadable", f"{records.rec}#{key}: {e}")


def _loader(records: RecordFile, key: int) -> Callable[[], np.ndarray]:
    where = f"{records.rec}#{key}"

    def load() -> np.ndarray:
        try:
            _, payload = unpack_record(records.read(key))
        except RecordError as e:
            raise UnreadableImage(f"{where}: {e}") from None
        return decode_image(payload, where)

    return load


@reader("rec")
def read_rec(src: Path, kind: str) -> Source:
    """One item per image record, labelled from its header; a record that cannot be read is a bad row."""
    rec, idx = _rec_paths(src)
    records = RecordFile(rec, idx)
    items = []
    for key in image_keys(records):
        label, problem = _label(records, key)
        items.append(Item(source=f"{rec.name}#{key}", rel=f"{max(label, 0)}/{key}", identity=str(label),
                          label=label, split="train", load=_loader(records, key), problem=problem))
    if not items:
        raise FskdError(f"{rec}: no image records")
    return Source(task="train", faces="aligned", items=items, meta={"records": str(rec)})
