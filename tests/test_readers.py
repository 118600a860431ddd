"""Readers: each source format written in its real layout by the test, then read back."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import decode, encode, make_tinyface, pattern, shared, with_magic_inside, write_insightface_rec

from fskd_cli.core.errors import FskdError
from fskd_cli.data.readers import READERS, UnreadableImage
from fskd_cli.data.readers.binpairs import load_bin, read_bin
from fskd_cli.data.readers.folder import read_folder
from fskd_cli.data.readers.lfw import read_lfw, read_lfw_pairs
from fskd_cli.data.readers.recordio import (
    MAGIC_BYTES,
    RecordError,
    RecordFile,
    pack_record,
    read_rec,
    unpack_record,
    write_recordio,
)
from fskd_cli.data.readers.tinyface import read_tinyface


def test_every_kind_of_the_issue_has_a_reader():
    assert set(READERS) == {"folder", "casia", "rec", "agedb", "lfw", "cfp-fp", "tinyface", "digits", "svhn"}


# --- RecordIO -------------------------------------------------------------------------------------

def test_record_body_round_trip_with_one_and_several_labels():
    labels, payload = unpack_record(pack_record(7, b"abc"))
    assert labels.tolist() == [7.0] and payload == b"abc"
    labels, payload = unpack_record(pack_record([3, 9.5], b"xyz"))
    assert labels.tolist() == [3.0, 9.5] and payload == b"xyz"


def test_a_record_holding_the_magic_word_is_split_into_parts_and_rejoined(tmp_path):
    body = b"abcd" + MAGIC_BYTES + b"efgh" + MAGIC_BYTES + b"ij"  # magic at aligned offsets 4 and 12
    rec, idx = tmp_path / "t.rec", tmp_path / "t.idx"
    write_recordio(rec, idx, [(0, b"plain"), (1, body)])
    raw = rec.read_bytes()
    second = int(idx.read_text().splitlines()[1].split("\t")[1])
    flags = []
    pos = second
    while pos < len(raw):
        magic, word = struct.unpack_from("<II", raw, pos)
        assert magic == 0xCED7230A
        flags.append(word >> 29)
        pos += 8 + (word & (2**29 - 1)) + (-(word & (2**29 - 1)) % 4)
    assert flags == [1, 2, 3]  # first, middle, last part
    records = RecordFile(rec, idx)
    assert records.read(0) == b"plain" and records.read(1) == body


def test_insightface_rec_gives_labels_and_images(tmp_path):
    images = [pattern(i) for i in range(5)]
    labelled = [(0, encode(images[0])), (0, encode(images[1], "JPEG")), (3, with_magic_inside(encode(images[2]))),
                (3, encode(images[3])), (5, encode(images[4]))]
    write_insightface_rec(tmp_path, labelled)
    source = read_rec(tmp_path, "rec")
    assert source.faces == "aligned" and source.task == "train"
    assert [it.label for it in source.items] == [0, 0, 3, 3, 5]
    assert [it.source for it in source.items] == [f"train.rec#{k}" for k in range(1, 6)]
    assert np.array_equal(source.items[2].load(), images[2])  # the split record decodes
    assert np.abs(source.items[1].load().astype(int) - decode(labelled[1][1])).max() == 0


def test_truncated_rec_makes_bad_rows_for_the_lost_records_only(tmp_path):
    rec, _ = write_insightface_rec(tmp_path, [(i, encode(pattern(i))) for i in range(4)])
    size = rec.stat().st_size
    offsets = [int(line.split("\t")[1]) for line in (tmp_path / "train.idx").read_text().splitlines()]
    with open(rec, "r+b") as f:
        f.truncate(offsets[4] + 40)  # record 4 (the last image) loses its tail, identity records are gone
    source = read_rec(tmp_path, "rec")
    assert [it.problem for it in source.items[:3]] == [None] * 3
    source.items[0].load()
    with pytest.raises(UnreadableImage, match=r"train.rec#4: train.rec is truncated"):
        source.items[3].load()
    assert size > rec.stat().st_size


def test_rec_errors_name_the_file(tmp_path):
    with pytest.raises(FskdError, match="not found; expected an insightface train.rec"):
        read_rec(tmp_path, "rec")
    (tmp_path / "train.rec").write_bytes(b"")
    with pytest.raises(FskdError, match="train.idx: not found"):
        read_rec(tmp_path, "rec")
    (tmp_path / "train.idx").write_text("0\t0\n")
    with pytest.raises(FskdError, match=r"train.rec: cannot read record 0.*truncated"):
        read_rec(tmp_path, "rec")
    (tmp_path / "train.idx").write_text("zero\t0\n")
    with pytest.raises(FskdError, match=r"train.idx, line 1"):
        read_rec(tmp_path, "rec")


def test_garbage_at_an_offset_is_a_record_error(tmp_path):
    rec, idx = tmp_path / "g.rec", tmp_path / "g.idx"
    rec.write_bytes(b"\0" * 64)
    idx.write_text("0\t8\n")
    with pytest.raises(RecordError, match="no record at byte 8 of g.rec"):
        RecordFile(rec, idx).read(0)


# --- verification .bin --------------------------------------------------------------------------

def _bin_content(n_pairs: int) -> tuple[list[bytes], list[bool]]:
    return [encode(pattern(i), "JPEG") for i in range(2 * n_pairs)], [i % 2 == 0 for i in range(n_pairs)]


@pytest.mark.parametrize("protocol", [2, 4])
def test_bin_pickles_of_protocol_2_and_4(tmp_path, protocol):
    images, same = _bin_content(3)
    path = tmp_path / "agedb_30.bin"
    path.write_bytes(pickle.dumps((images, same), protocol=protocol))
    source = read_bin(tmp_path, "agedb")  # a folder holding the usual file name
    assert [it.source for it in source.items] == [f"agedb_30.bin#{i}" for i in range(6)]
    assert source.pairs == [("agedb_30.bin#0", "agedb_30.bin#1", 1), ("agedb_30.bin#2", "agedb_30.bin#3", 0),
                            ("agedb_30.bin#4", "agedb_30.bin#5", 1)]
    assert np.array_equal(source.items[5].load(), decode(images[5]))


def _python2_pickle(images: list[bytes], same: list[bool]) -> bytes:
    """What Python 2's cPickle writes at protocol 2 for (list of str, list of bool): BINSTRING opcodes."""
    out = b"\x80\x02]q\x00("
    for data in images:
        out += b"T" + struct.pack("<i", len(data)) + data
    out += b"e](" + b"".join(b"\x88" if s else b"\x89" for s in same) + b"e\x86q\x01."
    return out


def test_python2_bin_needs_bytes_encoding_and_is_read(tmp_path):
    images, same = _bin_content(2)
    path = tmp_path / "lfw.bin"
    path.write_bytes(_python2_pickle(images, same))
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(path.read_bytes())  # the default text decoding fails, as with the old insightface files
    got_images, got_same = load_bin(path)
    assert got_images == images and got_same == [1, 0]


def test_numpy_encoded_images_are_accepted(tmp_path):
    images, same = _bin_content(1)
    path = tmp_path / "cfp_fp.bin"
    path.write_bytes(pickle.dumps(([np.frombuffer(b, np.uint8) for b in images], np.array(same)), protocol=4))
    assert load_bin(path)[0] == images


@pytest.mark.parametrize("content, message", [
    (b"this is not a pickle", "not an insightface verification set"),
    (pickle.dumps({"a": 1}), "not an insightface verification set"),
    (pickle.dumps(([b"x"] * 3, [True, False])), "3 images for 2 pairs"),
    (pickle.dumps(([b"x"] * 2, ["yes"])), "flags are not all true/false"),
    (pickle.dumps((Path("x"), [True])), "refers to pathlib"),
])
def test_bin_of_the_wrong_shape_is_refused_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.bin"
    path.write_bytes(content)
    with pytest.raises(FskdError, match=rf"bad\.bin.*{message}"):
        load_bin(path)


def test_a_bin_element_that_is_not_bytes_is_one_bad_item(tmp_path):
    images, same = _bin_content(1)
    path = tmp_path / "x.bin"
    path.write_bytes(pickle.dumps(([images[0], 12345], same)))
    source = read_bin(path, "agedb")
    assert source.items[0].problem is None
    assert source.items[1].problem == ("unreadable", f"{path}#1: neither encoded image bytes nor an image array")


# --- TinyFace -----------------------------------------------------------------------------------

def test_tinyface_roles_and_identities(tmp_path):
    source = read_tinyface(make_tinyface(tmp_path), "tinyface")
    assert source.faces == "native" and source.task == "identification"
    got = [(it.rel, it.role, it.identity, it.label) for it in source.items]
    assert got == [
        ("Probe/1_1", "probe", "1", 1), ("Probe/2_1", "probe", "2", 2), ("Probe/10_3", "probe", "10", 10),
        ("Gallery_Match/1_2", "gallery", "1", 1), ("Gallery_Match/2_5", "gallery", "2", 2),
        ("Gallery_Match/10_1", "gallery", "10", 10),
        ("Gallery_Distractor/a", "distractor", "", -1), ("Gallery_Distractor/b_9", "distractor", "", -1),
    ]
    assert source.items[2].load().shape == (22, 16, 3)  # native size


def test_tinyface_without_its_folders_is_refused(tmp_path):
    (tmp_path / "Testing_Set" / "Probe").mkdir(parents=True)
    with pytest.raises(FskdError, match="not a TinyFace Testing_Set .missing Gallery_Match, Gallery_Distractor"):
        read_tinyface(tmp_path, "tinyface")


# --- LFW ----------------------------------------------------------------------------------------

def test_lfw_view2_pairs_txt():
    protocol = read_lfw_pairs(shared("lfw-pairs", "pairs.txt"))
    assert protocol.folds == 10 and len(protocol.pairs) == 6000
    assert sum(same for _, _, same in protocol.pairs) == 3000
    assert protocol.pairs[0] == ("Abel_Pacheco/Abel_Pacheco_0001.jpg", "Abel_Pacheco/Abel_Pacheco_0004.jpg", 1)
    assert protocol.pairs[300] == ("Abdel_Madi_Shabneh/Abdel_Madi_Shabneh_0001.jpg",
                                   "Dean_Barker/Dean_Barker_0001.jpg", 0)
    for fold in range(10):  # each fold: 300 same pairs, then 300 different ones
        block = [same for _, _, same in protocol.pairs[600 * fold: 600 * (fold + 1)]]
        assert block == [1] * 300 + [0] * 300


@pytest.mark.parametrize("text, message", [
    ("ten\t1\n", r"line 1: expected 'folds"),
    ("1\t1\nA\t1\t2\n", "promises 2 pairs, the file has 1 lines"),
    ("1\t1\nA\t1\tB\t2\nA\t1\t2\n", r"line 2: expected 'name i j' \(same person\)"),
    ("1\t1\nA\t1\t2\nA\tx\tB\t2\n", r"line 3: expected 'name1 i name2 j'"),
])
def test_lfw_pairs_errors_name_file_and_line(tmp_path, text, message):
    path = tmp_path / "pairs.txt"
    path.write_text(text)
    with pytest.raises(FskdError, match=rf"pairs\.txt.*{message}"):
        read_lfw_pairs(path)


def test_lfw_tree_uses_the_images_of_its_pairs(tmp_path):
    for name, n in (("Ann", 2), ("Bob", 1), ("Cid", 1)):
        (tmp_path / name).mkdir()
        for i in range(1, n + 1):
            (tmp_path / name / f"{name}_{i:04d}.jpg").write_bytes(encode(pattern(i), "JPEG"))
    (tmp_path / "pairs.txt").write_text("1\t1\nAnn\t1\t2\nBob\t1\tAnn\t1\n")
    source = read_lfw(tmp_path, "lfw")
    assert [it.source for it in source.items] == ["Ann/Ann_0001.jpg", "Ann/Ann_0002.jpg", "Bob/Bob_0001.jpg"]
    assert [it.label for it in source.items] == [0, 0, 1]
    assert source.pairs == [("Ann/Ann_0001.jpg", "Ann/Ann_0002.jpg", 1), ("Bob/Bob_0001.jpg", "Ann/Ann_0001.jpg", 0)]
    assert source.faces == "detect" and source.meta["folds"] == 1


def test_lfw_bin_is_read_as_a_verification_bin(tmp_path):
    images, same = _bin_content(1)
    (tmp_path / "lfw.bin").write_bytes(pickle.dumps((images, same)))
    source = read_lfw(tmp_path, "lfw")
    assert source.faces == "aligned" and len(source.pairs) == 1


def test_lfw_tree_that_is_not_one_is_refused(tmp_path):
    (tmp_path / "pairs.txt").write_text("1\t1\nAnn\t1\t2\nBob\t1\tAnn\t1\n")
    with pytest.raises(FskdError, match=r"none of the images of pairs.txt is there \(e.g. Ann/Ann_0001.jpg\)"):
        read_lfw(tmp_path, "lfw")


# --- identity folders -----------------------------------------------------------------------------

def make_folder(root: Path) -> Path:
    for person, names in {"bob": ["10.jpg", "2.jpg"], "ann": ["x.png", "x.jpg"]}.items():
        (root / person).mkdir(parents=True)
        for name in names:
            (root / person / name).write_bytes(encode(pattern(len(name)), "PNG"))
    (root / "README").write_text("about")
    (root / "SHA256SUMS").write_text("")
    (root / "stray.jpg").write_bytes(b"")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "y.jpg").write_bytes(b"")
    return root


def test_identity_folders_in_natural_order(tmp_path):
    source = read_folder(make_folder(tmp_path), "folder")
    got = [(it.source, it.rel, it.identity, it.label, it.problem) for it in source.items]
    assert got[:4] == [("ann/x.jpg", "ann/x.jpg", "ann", 0, None), ("ann/x.png", "ann/x.png", "ann", 0, None),
                       ("bob/2.jpg", "bob/2", "bob", 1, None), ("bob/10.jpg", "bob/10", "bob", 1, None)]
    assert got[4][0] == "stray.jpg" and got[4][4][0] == "skipped"  # a row, not a silent drop
    assert len(got) == 5 and source.task == "train" and source.faces == "detect"


def test_flat_folder_needs_an_identity_regex(tmp_path):
    for name in ("subject01.glasses", "subject01.happy", "subject02.sad"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(FskdError, match="not in identity folders; pass --identity-regex"):
        read_folder(tmp_path, "folder")
    source = read_folder(tmp_path, "folder", identity_regex=r"^(subject\d+)")
    assert [(it.rel, it.identity, it.label) for it in source.items] == [
        ("subject01.glasses", "subject01", 0), ("subject01.happy", "subject01", 0), ("subject02.sad", "subject02", 1)]
    with pytest.raises(FskdError, match="not a valid regular expression"):
        read_folder(tmp_path, "folder", identity_regex="(")


def test_folder_pair_list(tmp_path):
    src = make_folder(tmp_path / "src")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("left,right,same\n" + "bob/2.jpg,bob/10.jpg,1\nann/x.png,bob/2.jpg,0\n" * 5)  # 10 folds
    source = read_folder(src, "folder", pairs=pairs)
    assert source.task == "verification" and source.pairs[1] == ("ann/x.png", "bob/2.jpg", 0)
    pairs.write_text("left,right,same\nbob/2.jpg,bob/3.jpg,1\n")
    with pytest.raises(FskdError, match=r"pairs.csv, line 2: 'bob/3.jpg' is not an image"):
        read_folder(src, "folder", pairs=pairs)


def test_empty_or_missing_folder_is_refused(tmp_path):
    with pytest.raises(FskdError, match="nope: not found"):
        read_folder(tmp_path / "nope", "casia")
    (tmp_path / "empty" / "person").mkdir(parents=True)
    with pytest.raises(FskdError, match="empty: no image files found"):
        read_folder(tmp_path / "empty", "casia")


def test_an_unreadable_file_fails_alone_naming_it(tmp_path):
    src = make_folder(tmp_path)
    (src / "bob" / "broken.jpg").write_bytes(encode(pattern(1), "JPEG")[:200])
    items = {it.source: it for it in read_folder(src, "folder").items}
    assert items["bob/2.jpg"].load().shape == (112, 112, 3)
    with pytest.raises(UnreadableImage, match=r"broken.jpg: cannot read image"):
        items["bob/broken.jpg"].load()
