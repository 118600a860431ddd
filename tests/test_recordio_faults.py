"""Broken insightface records: a corrupt .idx or record header is one line naming the file, never a traceback."""

from __future__ import annotations

import pytest
from conftest import encode, pattern, run_cli, write_insightface_rec

from fskd_cli.core.errors import FskdError
from fskd_cli.data.readers.recordio import HEADER, RecordFile, pack_record, read_rec, write_recordio


@pytest.fixture()
def rec_dir(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    write_insightface_rec(folder, [(i % 2, encode(pattern(i), "JPEG")) for i in range(4)])
    return folder


def _offsets(folder):
    return [line.split("\t") for line in (folder / "train.idx").read_text().splitlines()]


def _write_idx(folder, rows):
    (folder / "train.idx").write_text("".join(f"{k}\t{o}\n" for k, o in rows))


def test_binary_idx_is_refused_naming_the_byte(rec_dir):
    (rec_dir / "train.idx").write_bytes(b"0\t0\n\xff\xfe\x00garbage")
    with pytest.raises(FskdError, match=r"train.idx: not a text index \(binary byte 0xff at byte 4\)"):
        read_rec(rec_dir, "rec")


def test_negative_offset_is_refused_naming_the_line(rec_dir):
    rows = _offsets(rec_dir)
    rows[2][1] = "-24"
    _write_idx(rec_dir, rows)
    with pytest.raises(FskdError, match=r"train.idx, line 3: negative offset"):
        read_rec(rec_dir, "rec")


def test_duplicate_key_is_refused(rec_dir):
    rows = _offsets(rec_dir)
    rows[2][0] = rows[1][0]
    _write_idx(rec_dir, rows)
    with pytest.raises(FskdError, match=r"train.idx, line 3: key 1 is listed twice"):
        read_rec(rec_dir, "rec")


def test_offset_past_the_end_is_a_bad_row_naming_the_file(rec_dir):
    """Past the end is what a truncated copy looks like: those records become rows, the rest is kept."""
    rows = _offsets(rec_dir)
    rows[2][1] = str((rec_dir / "train.rec").stat().st_size + 1000)
    _write_idx(rec_dir, rows)
    source = read_rec(rec_dir, "rec")
    assert [it.problem is None for it in source.items] == [True, False, True, True]
    assert "train.rec is truncated" in source.items[1].problem[1]


def _with_header(folder, labels):
    """Rewrite record 0 (the set's header) with ``labels``, keeping the other records."""
    rec, idx = folder / "train.rec", folder / "train.idx"
    records = RecordFile(rec, idx)
    bodies = [(k, records.read(k)) for k in sorted(records.offsets)]
    del records
    write_recordio(rec, idx, [(0, pack_record(labels, b""))] + bodies[1:])


@pytest.mark.parametrize("end, message", [
    (float("nan"), r"record 0 \(the header of the set\) says images end at key nan"),
    (float("inf"), r"says images end at key inf"),
    (-3.0, r"says images end at key -3"),
    (2.5, r"says images end at key 2.5"),
    (1e9, r"record 0 \(the header\) claims 999999999 images, but train.idx holds only 7 records"),
])
def test_bad_set_header_is_one_line(rec_dir, end, message):
    _with_header(rec_dir, [end, 7.0])
    with pytest.raises(FskdError, match=r"train.rec: .*" + message):
        read_rec(rec_dir, "rec")


@pytest.mark.parametrize("label", [float("nan"), float("inf"), -1.0, 1.5])
def test_bad_image_label_is_an_unreadable_row(tmp_path, label):
    write_insightface_rec(tmp_path, [(0, encode(pattern(0), "JPEG")), (1, encode(pattern(1), "JPEG"))])
    rec, idx = tmp_path / "train.rec", tmp_path / "train.idx"
    records = RecordFile(rec, idx)
    bodies = {k: records.read(k) for k in records.offsets}
    del records
    bodies[2] = HEADER.pack(0, label, 0, 0) + bodies[2][HEADER.size:]
    write_recordio(rec, idx, sorted(bodies.items()))
    items = read_rec(tmp_path, "rec").items
    assert items[0].problem is None and items[1].label == -1
    assert items[1].problem[0] == "unreadable" and "is not a whole number >= 0" in items[1].problem[1]


def test_a_record_split_at_magic_words_reads_back_in_one_read(tmp_path):
    from conftest import with_magic_inside

    payload = with_magic_inside(encode(pattern(3), "JPEG"))
    rec, idx = tmp_path / "t.rec", tmp_path / "t.idx"
    write_recordio(rec, idx, [(1, pack_record(4, payload)), (2, pack_record(5, b"x" * 10))])
    records = RecordFile(rec, idx)
    assert records.read(1)[HEADER.size:] == payload
    assert records.read_head(1, 30) == pack_record(4, payload)[:30]
    assert records.read_labels(2)[1].tolist() == [5.0]


def test_cli_refuses_a_corrupt_index_with_one_line_and_exit_2(rec_dir, tmp_path):
    (rec_dir / "train.idx").write_bytes(b"\x00\x01\x02\xff" * 8)
    out = tmp_path / "out"
    r = run_cli("prepare", "rec", rec_dir, "--out", out, "--in-place")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "train.idx" in r.stderr
    assert len([line for line in r.stderr.splitlines() if line.strip()]) == 1
    assert not (out / "manifest.csv").exists()


def test_cli_refuses_a_header_claiming_more_images_than_the_index(rec_dir, tmp_path):
    _with_header(rec_dir, [5e6, 7.0])
    r = run_cli("prepare", "rec", rec_dir, "--out", tmp_path / "out")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "claims 4999999 images" in r.stderr and "train.rec" in r.stderr

