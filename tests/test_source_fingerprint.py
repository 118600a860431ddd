"""An in-place set trusts the user's .rec: prepare fingerprints it, and a run or an eval refuses a replaced one.

The set here: 4 people x 6 aligned faces in one insightface .rec, prepared ``--in-place``, 2 people held out
for verification, a teacher trained 2 steps on the others. Each test changes the source as a user might
(another .rec of the same size, of another size, another index; a touch; a copy) and puts it back after.
"""

from __future__ import annotations

import os
import shutil

import pytest
import yaml
from conftest import assert_one_line_error, encode, pattern, run_main, write_insightface_rec

from fskd_cli.core.errors import FskdError
from fskd_cli.data.manifest import DatasetWriter, Row, check_source, read_manifest, read_meta
from fskd_cli.data.readers.recordio import SAMPLED, source_fingerprint

N_IDS, PER_ID = 4, 6
TINY_FACES = {"name": "iresnet18", "kwargs": {"base_width": 4, "input_size": 112, "embedding_size": 16},
              "head": "cosface"}


def _write_rec(folder, labels):
    """``train.rec``/``.idx`` of the faces ``0..len(labels)-1`` with these labels (the same images, whatever the labels)."""
    folder.mkdir(parents=True, exist_ok=True)
    return write_insightface_rec(folder, [(label, encode(pattern(i % 7), "JPEG") + bytes([i])) for i, label in
                                          enumerate(labels)])


LABELS = [i // PER_ID for i in range(N_IDS * PER_ID)]


def _recipe(path, data, steps=2):
    recipe = {"name": "fp", "data": {"path": str(data), "cache": False}, "model": TINY_FACES,
              "train": {"batch_size": 8, "lr": 0.05, "steps": steps, "log_every": 1}}
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("fingerprint")
    src = root / "src"
    _write_rec(src, LABELS)
    data = root / "data"
    assert run_main("prepare", "rec", src, "--in-place", "--out", data, "--workers", "1").exit_code == 0
    assert run_main("prepare", "holdout", data, "--identities", "2", "--pairs", "20").exit_code == 0
    result = run_main("train-teacher", "--recipe", _recipe(root / "r.yaml", data), "--out", root / "teacher")
    assert result.exit_code == 0, result.stderr
    return {"src": src, "data": data, "run": root / "teacher", "recipe": root / "r.yaml"}


@pytest.fixture()
def source(trained):
    """The trained set's source files, put back (bytes and times) after the test changes them."""
    saved = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in trained["src"].iterdir()}
    yield trained
    for path, (data, mtime) in saved.items():
        path.write_bytes(data)
        os.utime(path, ns=(mtime, mtime))
    assert check_source(trained["data"]) == []


def _relabelled(src):
    """Another .rec of the same size with the same images, labelled otherwise: its .idx is the same file."""
    before = (src / "train.rec").stat().st_size, (src / "train.idx").read_bytes()
    _write_rec(src, [(label + 1) % N_IDS for label in LABELS])
    assert ((src / "train.rec").stat().st_size, (src / "train.idx").read_bytes()) == before


def _grown(src):
    _write_rec(src, [*LABELS, 0])


def _reindexed(src):
    """The same .rec, its .idx pointing two keys at each other's record (their labels swap)."""
    lines = (src / "train.idx").read_text().splitlines()
    (k1, o1), (k2, o2) = lines[1].split("\t"), lines[PER_ID + 1].split("\t")
    lines[1], lines[PER_ID + 1] = f"{k1}\t{o2}", f"{k2}\t{o1}"
    (src / "train.idx").write_text("\n".join(lines) + "\n")


CHANGES = {"same size, other records": (_relabelled, "train.rec", "same size, but records differ"),
           "other size": (_grown, "train.rec", "bytes then"),
           "changed index": (_reindexed, "train.idx", "another index")}


@pytest.mark.parametrize("change", CHANGES)
def test_a_replaced_rec_is_refused_at_train_start(source, tmp_path, change):
    make, name, what = CHANGES[change]
    make(source["src"])
    result = run_main("train-teacher", "--recipe", source["recipe"], "--out", tmp_path / "run")
    line = assert_one_line_error(result, source["src"] / name, what, "changed since `fskd prepare`")
    assert f"prepare {source['data']} again" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("change", CHANGES)
def test_a_replaced_rec_is_refused_at_eval_start(source, tmp_path, change):
    make, name, what = CHANGES[change]
    make(source["src"])
    before = sorted((source["run"] / "eval").glob("*.json")) if (source["run"] / "eval").exists() else []
    result = run_main("eval", "verification", "--ckpt", source["run"], "--data", source["data"], "--device", "cpu",
                      "--results", tmp_path / "results.csv")
    assert_one_line_error(result, source["src"] / name, what)
    assert not (tmp_path / "results.csv").exists()
    assert (sorted((source["run"] / "eval").glob("*.json")) if (source["run"] / "eval").exists() else []) == before


def test_a_touched_rec_is_used_with_one_note(source, tmp_path):
    rec = source["src"] / "train.rec"
    os.utime(rec, (rec.stat().st_atime + 1000, rec.stat().st_mtime + 1000))
    trained = run_main("train-teacher", "--recipe", source["recipe"], "--out", tmp_path / "run")
    assert trained.exit_code == 0, trained.stderr
    notes = [line for line in trained.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and str(rec) in notes[0] and "size, index and" in notes[0], trained.stderr
    evaluated = run_main("eval", "verification", "--ckpt", tmp_path / "run", "--data", source["data"], "--device", "cpu",
                         "--results", tmp_path / "results.csv")
    assert evaluated.exit_code == 0, evaluated.stderr
    assert "modification time changed since prepare" in evaluated.stderr


def test_a_copy_that_lost_its_time_is_accepted(source):
    rec = source["src"] / "train.rec"
    shutil.copyfile(rec, rec.with_suffix(".copy"))  # a plain cp: new file, new time, same bytes
    os.replace(rec.with_suffix(".copy"), rec)
    assert [n for n in check_source(source["data"]) if "modification time changed since prepare" in n]


def test_a_set_prepared_before_fingerprints_still_works_with_one_note(trained, tmp_path):
    data = tmp_path / "old"
    shutil.copytree(trained["data"], data)
    meta = yaml.safe_load((data / "meta.yaml").read_text())
    for part in meta["records"]:
        del part["fingerprint"]
    (data / "meta.yaml").write_text(yaml.safe_dump(meta))
    notes = check_source(data)
    assert len(notes) == 1 and "prepared before fskd fingerprinted" in notes[0]
    result = run_main("eval", "verification", "--ckpt", trained["run"], "--data", data, "--device", "cpu",
                      "--results", tmp_path / "results.csv")
    assert result.exit_code == 0, result.stderr


def test_a_damaged_fingerprint_or_a_moved_rec_is_one_line(trained, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(trained["data"], data)
    meta = yaml.safe_load((data / "meta.yaml").read_text())
    meta["records"][0]["fingerprint"] = "banana"
    (data / "meta.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(FskdError, match=r"meta.yaml: the fingerprint of train.rec is not one fskd wrote"):
        check_source(data)
    meta["records"][0]["rec"] = str(tmp_path / "gone.rec")
    (data / "meta.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(FskdError, match=r"gone.rec: not found; expected the records of the in-place set"):
        check_source(data)


def test_prepare_fingerprints_each_part_by_a_fixed_sample(tmp_path):
    rec, idx = _write_rec(tmp_path / "big", [i % 3 for i in range(150)])
    fingerprint = source_fingerprint(rec, idx)
    assert fingerprint["sampled"] == SAMPLED and fingerprint["size"] == rec.stat().st_size
    assert source_fingerprint(rec, idx) == fingerprint  # the same sample every time


def test_preparing_again_after_a_replacement_reads_the_new_labels(tmp_path):
    src, data = tmp_path / "src", tmp_path / "data"
    _write_rec(src, LABELS)
    args = ("prepare", "rec", src, "--in-place", "--out", data, "--workers", "1")
    assert run_main(*args).exit_code == 0
    _relabelled(src)
    with pytest.raises(FskdError, match="same size, but records differ"):
        check_source(data)
    again = run_main(*args)
    assert again.exit_code == 0 and "have changed since" in again.stderr, again.stderr
    assert [r.label for r in read_manifest(data)] == [(label + 1) % N_IDS for label in LABELS]
    assert check_source(data) == []


def test_meta_says_which_scales_are_on_disk_and_which_are_made_on_the_fly(tmp_path):
    src, data = tmp_path / "src", tmp_path / "data"
    _write_rec(src, LABELS)
    result = run_main("prepare", "rec", src, "--in-place", "--out", data, "--workers", "1", "--scales", "1,2,4,8")
    assert "its 2x, 4x, 8x LR copies are made on the fly" in result.stderr, result.stderr
    meta = read_meta(data)
    assert meta["scales"] == [1] and meta["scales_made_on_the_fly"] == [2, 4, 8]
    assert meta["prepare"]["scales"] == [1, 2, 4, 8]  # what was asked, beside what was done
    writer = DatasetWriter(tmp_path / "files", "t", "train", 16, scales=(4,))
    writer.add(Row(path="images/hr/0/0.png", label=0, identity="0", split="train"), pattern(0, (16, 16)))
    meta = writer.close()
    assert meta["scales"] == [1, 4] and meta["scales_made_on_the_fly"] == [2, 8]
