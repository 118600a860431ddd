"""`fskd prepare` under mistakes and faults (issue 11): nothing outside --out, no user file replaced, no
inconsistent state with exit 0, one-line errors. Tiny .rec/.bin sets made here; no face detector runs."""

from __future__ import annotations

import errno
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, assert_untouched, encode, pattern, run_main, tree_state, write_insightface_rec
from PIL import Image

from fskd_cli.core.errors import FskdError
from fskd_cli.data import align
from fskd_cli.data.align import Aligned
from fskd_cli.data.manifest import DatasetWriter, Row, read_manifest, read_meta, read_pairs
from fskd_cli.data.prepare import prepare_dataset
from fskd_cli.data.readers.lfw import read_lfw_pairs


def _rec(folder: Path, labels: list[int]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_insightface_rec(folder, [(label, encode(pattern(i))) for i, label in enumerate(labels)])
    return folder


def test_pair_names_that_climb_out_are_refused_before_anything_is_written(tmp_path):
    (tmp_path / "lfw" / "Ann").mkdir(parents=True)
    (tmp_path / "pairs.txt").write_text("1\t1\n../../escape\t1\t2\nAnn\t1\tAnn\t2\n")
    before = tree_state(tmp_path)
    with pytest.raises(FskdError, match=r"pairs.txt, line 2: unsafe name '../../escape'"):
        prepare_dataset("lfw", tmp_path / "lfw", tmp_path / "out", pairs=tmp_path / "pairs.txt", progress=False)
    assert_untouched(before, tmp_path)
    (tmp_path / "pairs.txt").write_text("1\t1\nA/B\t1\t2\nAnn\t1\tAnn\t2\n")
    with pytest.raises(FskdError, match="unsafe name 'A/B'"):
        read_lfw_pairs(tmp_path / "pairs.txt")


def test_every_output_path_is_checked_inside_out(tmp_path):
    writer = DatasetWriter(tmp_path / "out", "t", "train", 8, scales=(2,))
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(FskdError, match="outside the output folder"):
        writer.write_images(Row(path="images/hr/../../../escape.png", label=0, identity="a", split="train"), image)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out" / "images" / "x2").mkdir(parents=True)
    (tmp_path / "out" / "images" / "x2" / "a").symlink_to(tmp_path / "elsewhere")  # a link planted in --out
    with pytest.raises(FskdError, match="outside the output folder"):
        writer.write_images(Row(path="images/hr/a/1.png", label=0, identity="a", split="train"), image)
    assert not (tmp_path / "escape.png").exists() and not any((tmp_path / "elsewhere").iterdir())
    assert not (tmp_path / "out" / "images" / "hr" / "a" / "1.png").exists()  # checked before the first write


def test_a_users_folder_is_refused_unless_forced(tmp_path):
    src = _rec(tmp_path / "rec", [0, 0, 1])
    out = tmp_path / "mine"
    (out / "images" / "hr" / "0").mkdir(parents=True)
    (out / "manifest.csv").write_text("my,own\n")
    (out / "meta.yaml").write_text("mine: true\n")
    (out / "images" / "hr" / "0" / "1.png").write_bytes(b"my picture")
    before = tree_state(tmp_path)
    result = run_main("prepare", "rec", src, "--out", out)
    assert_one_line_error(result, str(out), "not empty and not written by fskd", "images/, manifest.csv, meta.yaml")
    assert_untouched(before, tmp_path)
    meta = prepare_dataset("rec", src, out, force=True, progress=False)
    assert meta["counts"]["ok"] == 3 and (out / "images" / "hr" / "0" / "1.png").read_bytes() != b"my picture"


def test_orphan_temp_files_of_a_killed_run_are_swept(tmp_path):
    src = _rec(tmp_path / "rec", [0, 1])
    out = tmp_path / "out"
    prepare_dataset("rec", src, out, progress=False)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = out / "images" / "x4" / "0" / f".1.png.{int(dead.stdout)}.abcd1234.tmp"
    orphan.write_bytes(b"half an image")
    prepare_dataset("rec", src, out, progress=False)
    assert not orphan.exists()


def test_a_set_with_no_usable_image_is_an_error_not_exit_0(tmp_path):
    (tmp_path / "agedb_30.bin").write_bytes(pickle.dumps(([b"junk", 7, b"", b"x"], [True, False]), protocol=4))
    result = run_main("prepare", "agedb", tmp_path / "agedb_30.bin", "--out", tmp_path / "out")
    assert_one_line_error(result, "agedb_30.bin", "none of its 4 images is usable", "unreadable 4", "manifest.csv")
    rows = read_manifest(tmp_path / "out", ok_only=False)
    assert [r.status for r in rows] == ["unreadable"] * 4 and all(r.reason for r in rows)


def test_an_identity_with_no_usable_image_is_warned_about_and_counted(tmp_path, capsys):
    src = _rec(tmp_path / "rec", [0, 0, 1, 2])
    offsets = [int(line.split("\t")[1]) for line in (src / "train.idx").read_text().splitlines()]
    with open(src / "train.rec", "r+b") as f:  # identity 1's only image: record 3 loses its bytes
        f.seek(offsets[3] + 40)
        f.write(b"\xff" * 60)
    meta = prepare_dataset("rec", src, tmp_path / "out", progress=False)
    assert meta["counts"]["identities_without_image"] == 1 and meta["counts"]["unreadable"] == 1
    assert "warning: 1 identity has no usable image (1)" in capsys.readouterr().err


def test_a_full_disk_or_read_only_folder_is_one_line_naming_the_file(tmp_path, monkeypatch):
    src = _rec(tmp_path / "rec", [0, 1])

    def full(self, fp, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(fp))

    monkeypatch.setattr(Image.Image, "save", full)
    assert_one_line_error(run_main("prepare", "rec", src, "--out", tmp_path / "out"), "No space left on device",
                          str(tmp_path / "out" / "images" / "hr"))
    monkeypatch.undo()

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", kwargs.get("dir"))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    assert_one_line_error(run_main("prepare", "rec", src, "--out", tmp_path / "ro"), "Read-only file system",
                          str(tmp_path / "ro"))


class _FakeAligner:
    """Stands for MTCNN: no face in any photo; ``center`` keeps a central crop, as --on-no-face center asks."""

    made: list[dict] = []

    def __init__(self, **kwargs):
        self.on_no_face = kwargs["on_no_face"]
        _FakeAligner.made.append(kwargs)

    def describe(self):
        return {"detector": "fake", "on_no_face": self.on_no_face}

    def align(self, images):
        if self.on_no_face == "center":
            return [Aligned(np.zeros((112, 112, 3), np.uint8), "center", "no face: central crop") for _ in images]
        return [Aligned(None, "no_face", "no face found") for _ in images]


def test_on_no_face_reaches_the_aligner_and_center_rows_are_usable(tmp_path, monkeypatch):
    monkeypatch.setattr(align, "FaceAligner", _FakeAligner)
    for person in ("ann", "bob"):
        (tmp_path / "photos" / person).mkdir(parents=True)
        (tmp_path / "photos" / person / "1.png").write_bytes(encode(pattern(1, (60, 50))))
    with pytest.raises(FskdError, match="none of its 2 images is usable"):
        prepare_dataset("folder", tmp_path / "photos", tmp_path / "skip", progress=False)
    meta = prepare_dataset("folder", tmp_path / "photos", tmp_path / "center", on_no_face="center", min_face_size=30,
                           progress=False)
    assert _FakeAligner.made[-1]["on_no_face"] == "center" and _FakeAligner.made[-1]["min_face_size"] == 30
    assert meta["counts"]["center"] == 2 and meta["num_classes"] == 2 and meta["alignment"]["detector"] == "fake"
    assert [r.status for r in read_manifest(tmp_path / "center")] == ["center", "center"]  # usable, filterable
    assert read_meta(tmp_path / "center")["prepare"]["on_no_face"] == "center"
    with pytest.raises(FskdError, match="--on-no-face must be one of skip, center"):
        prepare_dataset("folder", tmp_path / "photos", tmp_path / "x", on_no_face="crop", progress=False)


def test_out_that_is_a_file_or_another_stages_folder_is_refused(tmp_path):
    src = _rec(tmp_path / "rec", [0, 1])
    (tmp_path / "file").write_text("x")
    assert_one_line_error(run_main("prepare", "rec", src, "--out", tmp_path / "file"), str(tmp_path / "file"),
                          "is a file")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".fskd.yaml").write_text("kind: train\noptions: {}\n")
    assert_one_line_error(run_main("prepare", "rec", src, "--out", tmp_path / "run"), "holds an fskd train run")


def test_a_corrupt_manifest_or_pair_list_is_one_line(tmp_path):
    src = _rec(tmp_path / "rec", [0, 1])
    prepare_dataset("rec", src, tmp_path / "out", progress=False)
    (tmp_path / "out" / "manifest.csv").write_bytes(b"\x89PNG\x00\xff\n")
    with pytest.raises(FskdError, match="manifest.csv: not a CSV file fskd wrote"):
        read_manifest(tmp_path / "out")
    (tmp_path / "out" / "pairs.csv").write_text("left,right,same\na,b,yes\n")
    with pytest.raises(FskdError, match="pairs.csv, line 2: same must be 0 or 1"):
        read_pairs(tmp_path / "out")
