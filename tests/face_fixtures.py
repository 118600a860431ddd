"""Small helpers shared by the face tests: synthetic encoded images and the shared real data."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared(*parts: str) -> Path:
    """A path under the shared real data, or skip the test when that data is not there (a fresh clone)."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared ORL/Yale/LFW data exists only on the development machine")
    return path


def pattern(seed: int, size: tuple[int, int] = (112, 112)) -> np.ndarray:
    """A smooth colour image that survives JPEG well and differs by ``seed``."""
    h, w = size
    y, x = np.mgrid[0:h, 0:w]
    rgb = [(np.sin(x / (5 + seed + c)) + np.cos(y / (7 + c))) * 60 + 128 for c in range(3)]
    return np.clip(np.stack(rgb, axis=-1), 0, 255).astype(np.uint8)


def encode(image: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt)
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def with_magic_inside(payload: bytes) -> bytes:
    """``payload`` with RecordIO's magic word appended at a 4-byte-aligned place of its record body.

    The writer must then split the record into parts; image decoders ignore bytes after the image.
    """
    from fskd_cli.data.readers.recordio import HEADER, MAGIC_BYTES

    pad = -(HEADER.size + len(payload)) % 4
    return payload + b"\0" * pad + MAGIC_BYTES + b"tail" + MAGIC_BYTES + b"end!"


def write_insightface_rec(folder: Path, labelled: list[tuple[int, bytes]]) -> tuple[Path, Path]:
    """``train.rec``/``train.idx`` laid out as insightface does: header record 0, images 1..n, identity ranges."""
    from fskd_cli.data.readers.recordio import pack_record, write_recordio

    n = len(labelled)
    ids = sorted({label for label, _ in labelled})
    records = [(0, pack_record([n + 1, n + 1 + len(ids)], b""))]
    records += [(key, pack_record(label, data)) for key, (label, data) in enumerate(labelled, start=1)]
    for j, label in enumerate(ids):
        keys = [k for k, (lab, _) in enumerate(labelled, start=1) if lab == label]
        records.append((n + 1 + j, pack_record([keys[0], keys[-1] + 1], b"")))
    rec, idx = folder / "train.rec", folder / "train.idx"
    write_recordio(rec, idx, records)
    return rec, idx


def make_tinyface(root: Path) -> Path:
    """A TinyFace-shaped ``Testing_Set`` of tiny JPEGs: 3 probes, 3 gallery mates, 2 distractors."""
    test = root / "tinyface" / "Testing_Set"
    files = {"Probe": ["1_1.jpg", "2_1.jpg", "10_3.jpg"], "Gallery_Match": ["1_2.jpg", "2_5.jpg", "10_1.jpg"],
             "Gallery_Distractor": ["a.jpg", "b_9.jpg"]}
    for i, (folder, names) in enumerate(files.items()):
        (test / folder).mkdir(parents=True)
        for j, name in enumerate(names):
            (test / folder / name).write_bytes(encode(pattern(i * 10 + j, (20 + j, 16 + i)), "JPEG"))
    return root / "tinyface"
