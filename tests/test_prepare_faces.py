"""prepare_dataset end to end: every source kind into the dataset layout, bad inputs, kill and re-run."""

from __future__ import annotations

import csv
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import decode, encode, make_tinyface, pattern, shared, with_magic_inside, write_insightface_rec

from fskd_cli.core.errors import FskdError
from fskd_cli.data import manifest
from fskd_cli.data.manifest import DatasetWriter, load_image, read_manifest, read_pairs
from fskd_cli.data.prepare import prepare_dataset


def _rec(folder: Path, n: int) -> Path:
    labelled = [(i // 3, encode(pattern(i))) for i in range(n)]
    labelled[1] = (0, with_magic_inside(labelled[1][1]))  # one record split into parts
    folder.mkdir(parents=True, exist_ok=True)
    write_insightface_rec(folder, labelled)
    return folder


def _files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.png"))}


def test_rec_becomes_the_dataset_layout(tmp_path):
    src = _rec(tmp_path / "webface", 5)
    meta = prepare_dataset("rec", src, tmp_path / "out", progress=False)
    rows = read_manifest(tmp_path / "out", ok_only=False)
    assert [(r.path, r.label, r.identity, r.status) for r in rows] == [
        ("images/hr/0/1.png", 0, "0", "ok"), ("images/hr/0/2.png", 0, "0", "ok"), ("images/hr/0/3.png", 0, "0", "ok"),
        ("images/hr/1/4.png", 1, "1", "ok"), ("images/hr/1/5.png", 1, "1", "ok")]
    for i, row in enumerate(rows):
        assert np.array_equal(load_image(tmp_path / "out" / row.path), pattern(i))
        for s in (2, 4, 8):
            assert load_image(tmp_path / "out" / manifest.lr_path(row.path, s)).shape == (112, 112, 3)
    assert meta["task"] == "train" and meta["scales"] == [1, 2, 4, 8] and meta["counts"]["ok"] == 5
    assert meta["num_classes"] == 2 and "already aligned" in meta["alignment"] and "BGR" in meta["colour_note"]
    on_disk = yaml.safe_load((tmp_path / "out" / "meta.yaml").read_text())
    assert on_disk["prepare"]["kind"] == "rec" and on_disk["degradation"]["interpolation"] == "bilinear"
    assert not (tmp_path / "out" / ".manifest.partial.csv").exists()


def test_truncated_rec_gives_unreadable_rows_and_the_run_finishes(tmp_path):
    src = _rec(tmp_path / "webface", 6)
    offsets = [int(line.split("\t")[1]) for line in (src / "train.idx").read_text().splitlines()]
    with open(src / "train.rec", "r+b") as f:
        f.truncate(offsets[5] + 100)
    meta = prepare_dataset("rec", src, tmp_path / "out", progress=False)
    rows = read_manifest(tmp_path / "out", ok_only=False)
    assert [r.status for r in rows] == ["ok"] * 4 + ["unreadable"] * 2
    assert "train.rec#5: train.rec is truncated" in rows[4].reason and rows[4].path == ""
    assert meta["counts"]["unreadable"] == 2


def test_bin_with_a_corrupt_and_a_wrong_size_image(tmp_path):
    images = [encode(pattern(i), "JPEG") for i in range(8)]
    images[3] = images[3][: len(images[3]) // 2]  # a truncated JPEG
    images[6] = encode(pattern(6, (96, 112)))  # not aligned to 112 x 112
    (tmp_path / "agedb_30.bin").write_bytes(pickle.dumps((images, [True, False, True, False]), protocol=4))
    meta = prepare_dataset("agedb", tmp_path / "agedb_30.bin", tmp_path / "out", progress=False, workers=2)
    rows = read_manifest(tmp_path / "out", ok_only=False)
    assert [r.status for r in rows] == ["ok", "ok", "ok", "unreadable", "ok", "ok", "wrong_size", "ok"]
    assert "agedb_30.bin#3: cannot read image" in rows[3].reason
    assert "112 x 96 px" in rows[6].reason
    assert read_pairs(tmp_path / "out") == [
        ("images/hr/00000.png", "images/hr/00001.png", 1), ("images/hr/00002.png", "", 0),
        ("images/hr/00004.png", "images/hr/00005.png", 1), ("", "images/hr/00007.png", 0)]
    assert meta["task"] == "verification" and meta["counts"]["pairs"] == 4 and meta["pairs_with_failed_image"] == 2
    assert np.abs(load_image(tmp_path / "out" / rows[0].path).astype(int) - decode(images[0])).max() == 0


def test_tinyface_keeps_native_sizes_and_roles(tmp_path):
    meta = prepare_dataset("tinyface", make_tinyface(tmp_path), tmp_path / "out", progress=False)
    rows = read_manifest(tmp_path / "out")
    assert [r.role for r in rows] == ["probe"] * 3 + ["gallery"] * 3 + ["distractor"] * 2
    assert load_image(tmp_path / "out" / rows[2].path).shape == (22, 16, 3)
    assert meta["image_size"] is None and meta["scales"] == [1] and meta["native_resolution"] is True
    assert meta["task"] == "identification" and not (tmp_path / "out" / "images" / "x2").exists()


class Killed(RuntimeError):
    """Stands for a kill in the middle of writing an image."""


def test_rerun_after_a_kill_ends_with_the_same_dataset(tmp_path, monkeypatch):
    src = _rec(tmp_path / "webface", 12)
    prepare_dataset("rec", src, tmp_path / "clean", progress=False, batch_size=4)

    real_save, calls = manifest.save_png, []

    def dying_save(path, image):
        calls.append(path)
        if len(calls) == 23:  # the 6th image: its HR and some LR copies are on disk, its row is not
            raise Killed("kill -9")
        real_save(path, image)

    monkeypatch.setattr(manifest, "save_png", dying_save)
    with pytest.raises(Killed):
        prepare_dataset("rec", src, tmp_path / "out", progress=False, batch_size=4, workers=1)
    monkeypatch.setattr(manifest, "save_png", real_save)
    assert (tmp_path / "out" / ".manifest.partial.csv").exists()
    assert not (tmp_path / "out" / "manifest.csv").exists()

    written = _count_writes(monkeypatch)
    prepare_dataset("rec", src, tmp_path / "out", progress=False, batch_size=4)
    assert len(written) == 12 - 4  # the first batch was journalled and is skipped; the killed one is redone
    assert (tmp_path / "out" / "manifest.csv").read_bytes() == (tmp_path / "clean" / "manifest.csv").read_bytes()
    assert _files(tmp_path / "out") == _files(tmp_path / "clean")


def test_a_killed_run_is_not_continued_with_other_options(tmp_path, monkeypatch):
    src = _rec(tmp_path / "webface", 8)
    prepare_dataset("rec", src, tmp_path / "clean", progress=False, batch_size=2, interpolation="nearest")
    monkeypatch.setattr(DatasetWriter, "write_images", _dies_at(5))
    with pytest.raises(Killed):
        prepare_dataset("rec", src, tmp_path / "out", progress=False, batch_size=2, workers=1)  # bilinear
    monkeypatch.undo()
    journal = (tmp_path / "out" / ".manifest.partial.csv").read_bytes()
    with pytest.raises(FskdError, match="interpolation='bilinear', now interpolation='nearest'"):
        prepare_dataset("rec", src, tmp_path / "out", progress=False, batch_size=2, interpolation="nearest")
    assert (tmp_path / "out" / ".manifest.partial.csv").read_bytes() == journal  # refused: nothing touched
    written = _count_writes(monkeypatch)
    prepare_dataset("rec", src, tmp_path / "out", progress=False, batch_size=2, interpolation="nearest", force=True)
    assert len(written) == 8  # started over
    assert _files(tmp_path / "out") == _files(tmp_path / "clean")
    assert (tmp_path / "out" / "manifest.csv").read_bytes() == (tmp_path / "clean" / "manifest.csv").read_bytes()


def _dies_at(n: int):
    """A write_images that dies on its n-th call."""
    real, calls = DatasetWriter.write_images, []

    def dying(self, row, image, **kw):
        calls.append(row)
        if len(calls) == n:
            raise Killed("kill -9")
        real(self, row, image, **kw)

    return dying


def test_rerun_after_a_real_sigkill(tmp_path):
    """A separate process killed with SIGKILL halfway; the re-run ends with the clean run's dataset."""
    src = _rec(tmp_path / "webface", 120)
    script = ("import sys; from pathlib import Path; from fskd_cli.data.prepare import prepare_dataset; "
              "prepare_dataset('rec', Path(sys.argv[1]), Path(sys.argv[2]), progress=False, batch_size=8)")
    proc = subprocess.Popen([sys.executable, "-c", script, str(src), str(tmp_path / "out")])
    journal = tmp_path / "out" / ".manifest.partial.csv"
    deadline = time.monotonic() + 60
    while not (journal.exists() and journal.read_text().count("\n") > 17) and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "out" / "manifest.csv").exists(), "the run ended before it could be killed"
    prepare_dataset("rec", src, tmp_path / "out", progress=False, batch_size=8)
    prepare_dataset("rec", src, tmp_path / "clean", progress=False, batch_size=8)
    assert (tmp_path / "out" / "manifest.csv").read_bytes() == (tmp_path / "clean" / "manifest.csv").read_bytes()
    assert _files(tmp_path / "out") == _files(tmp_path / "clean")


def _count_writes(monkeypatch) -> list[str]:
    written: list[str] = []
    real = DatasetWriter.write_images

    def counting(self, row, image, **kw):
        written.append(row.source)
        real(self, row, image, **kw)

    monkeypatch.setattr(DatasetWriter, "write_images", counting)
    return written


def test_rerun_of_a_finished_set_skips_it_and_other_options_need_force(tmp_path, monkeypatch):
    src = _rec(tmp_path / "webface", 4)
    prepare_dataset("rec", src, tmp_path / "out", progress=False)
    before = (tmp_path / "out" / "manifest.csv").read_bytes()
    written = _count_writes(monkeypatch)
    prepare_dataset("rec", src, tmp_path / "out", progress=False, workers=1, batch_size=3)  # speed options may change
    assert written == [] and (tmp_path / "out" / "manifest.csv").read_bytes() == before
    (tmp_path / "out" / "images" / "x8" / "0" / "2.png").unlink()  # a lost file is made again
    prepare_dataset("rec", src, tmp_path / "out", progress=False)
    assert written == ["train.rec#2"]
    with pytest.raises(FskdError, match="now interpolation='nearest'; use the same options"):
        prepare_dataset("rec", src, tmp_path / "out", progress=False, interpolation="nearest")
    meta = prepare_dataset("rec", src, tmp_path / "out", progress=False, interpolation="nearest", force=True)
    assert len(written) == 1 + 4 and meta["degradation"]["interpolation"] == "nearest"


@pytest.mark.parametrize("call, message", [
    (lambda p: prepare_dataset("celeb", p, p / "o"), "unknown source kind 'celeb'"),
    (lambda p: prepare_dataset("rec", p / "none", p / "o"), "none: not found; expected an insightface train.rec"),
    (lambda p: prepare_dataset("rec", p, p / "o", pairs=p / "x.csv"), "--pairs is not an option of `fskd prepare rec`"),
    (lambda p: prepare_dataset("rec", p, p / "o", workers=0), "--workers must be at least 1"),
    (lambda p: prepare_dataset("rec", p, p / "o", interpolation="cubic"), "--interpolation must be one of"),
    (lambda p: (p / "src").mkdir() or prepare_dataset("casia", p / "src", p / "o"), "no image files found"),
])
def test_user_mistakes_are_one_line_errors(tmp_path, call, message):
    with pytest.raises(FskdError, match=message):
        call(tmp_path)


# --- photos that need detection (real faces from the shared data) ---------------------------------

def _photo_folder(root: Path) -> Path:
    """Two identities of real photos (ORL PGM crops, Yale GIFs without extension), one corrupt file, one blank."""
    orl, yale = shared("orl", "att_faces"), shared("yale", "yalefaces")
    (root / "orl_s3").mkdir(parents=True)
    (root / "yale_04").mkdir()
    for name in ("1.pgm", "2.pgm"):
        shutil.copy(orl / "s3" / name, root / "orl_s3" / name)
    for name in ("subject04.normal", "subject04.wink"):
        shutil.copy(yale / name, root / "yale_04" / name)
    (root / "yale_04" / "broken.jpg").write_bytes((orl / "s3" / "3.pgm").read_bytes()[:300])
    (root / "orl_s3" / "wall.png").write_bytes(encode(np.full((112, 92, 3), 90, np.uint8)))
    return root


def test_folder_of_photos_aligns_faces_and_reports_the_rest(tmp_path):
    src = _photo_folder(tmp_path / "photos")
    meta = prepare_dataset("folder", src, tmp_path / "out", progress=False, batch_size=3)
    rows = {r.source: r for r in read_manifest(tmp_path / "out", ok_only=False)}
    assert {k: r.status for k, r in rows.items()} == {
        "orl_s3/1.pgm": "ok", "orl_s3/2.pgm": "ok", "orl_s3/wall.png": "no_face",
        "yale_04/broken.jpg": "unreadable", "yale_04/subject04.normal": "ok", "yale_04/subject04.wink": "ok"}
    assert rows["yale_04/subject04.normal"].path == "images/hr/yale_04/subject04.normal.png"
    assert "broken.jpg: cannot read image" in rows["yale_04/broken.jpg"].reason
    assert load_image(tmp_path / "out" / rows["orl_s3/1.pgm"].path).shape == (112, 112, 3)
    assert meta["alignment"]["detector"].startswith("MTCNN") and "largest" in meta["alignment"]["face_choice"]
    assert meta["counts"]["ok"] == 4 and meta["num_classes"] == 2

    prepare_dataset("folder", src, tmp_path / "again", progress=False, batch_size=3)  # deterministic
    assert (tmp_path / "again" / "manifest.csv").read_bytes() == (tmp_path / "out" / "manifest.csv").read_bytes()
    assert _files(tmp_path / "again") == _files(tmp_path / "out")


def test_lfw_tree_gives_pairs_in_protocol_order(tmp_path):
    orl = shared("orl", "att_faces")
    tree = tmp_path / "lfw"
    for name, person in (("Ann_A", "s1"), ("Bob_B", "s2")):
        (tree / name).mkdir(parents=True)
        for i in (1, 2):
            shutil.copy(orl / person / f"{i}.pgm", tree / name / f"{name}_{i:04d}.jpg")  # opened by content
    pairs_txt = tmp_path / "pairs.txt"
    pairs_txt.write_text("1\t1\nBob_B\t1\t2\nAnn_A\t2\tBob_B\t1\n")
    meta = prepare_dataset("lfw", tree, tmp_path / "out", pairs=pairs_txt, progress=False)
    with open(tmp_path / "out" / "pairs.csv", newline="") as f:
        assert list(csv.reader(f)) == [
            ["left", "right", "same"], ["images/hr/Bob_B/Bob_B_0001.png", "images/hr/Bob_B/Bob_B_0002.png", "1"],
            ["images/hr/Ann_A/Ann_A_0002.png", "images/hr/Bob_B/Bob_B_0001.png", "0"]]
    assert meta["folds"] == 1 and meta["counts"]["ok"] == 3 and meta["task"] == "verification"
