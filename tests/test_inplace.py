"""Training straight from insightface records (in place) and from HR-only sets (LR made on the fly).

The sets are built here: a .rec in two parts (two files), some records cut at magic words, one record
that is not an image; and the same images prepared with and without their LR files.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import encode, pattern, with_magic_inside, write_insightface_rec

from fskd_cli.core.errors import FskdError
from fskd_cli.core.preprocess import RGB_UNIT
from fskd_cli.data.dataset import PairDataset
from fskd_cli.data.degrade import DEVICE_EXACT, INTERPOLATIONS, degrade_batch
from fskd_cli.data.manifest import DatasetWriter, Row, read_manifest, read_meta
from fskd_cli.data.prepare import prepare_dataset

N_IDS, PER_ID = 4, 6


def _face(i: int) -> np.ndarray:
    """A 112px image with detail at every scale (a smooth pattern alone would hide interpolation errors)."""
    noise = np.random.default_rng(i).integers(-40, 40, (112, 112, 3))
    return np.clip(pattern(i % 7).astype(int) + noise, 0, 255).astype(np.uint8)


def _two_part_rec(folder):
    """``part0.rec`` (identities 0, 1) and ``part1.rec`` (2, 3) with their .idx; record 3 of part 1 is garbage."""
    for part in (0, 1):
        labelled = []
        for n, label in enumerate(lab for lab in (2 * part, 2 * part + 1) for _ in range(PER_ID)):
            data = encode(_face(100 * part + n), "JPEG")
            labelled.append((label, with_magic_inside(data) if n % 3 == 0 else data))
        if part == 1:
            labelled[2] = (labelled[2][0], b"not an image at all")
        sub = folder / f"p{part}"
        sub.mkdir(parents=True)
        rec, idx = write_insightface_rec(sub, labelled)
        rec.rename(folder / f"part{part}.rec")
        idx.rename(folder / f"part{part}.idx")
    return folder


@pytest.fixture(scope="module")
def in_place(tmp_path_factory):
    root = tmp_path_factory.mktemp("inplace")
    src = _two_part_rec(root / "src")
    meta = prepare_dataset("rec", src, root / "data", in_place=True, progress=False)
    return root, meta


def _image_files(folder):
    return [p for p in folder.rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"}]


def test_in_place_prepare_writes_rows_pointing_at_records_and_no_image(in_place):
    root, meta = in_place
    data = root / "data"
    assert meta["in_place"] is True and meta["scales"] == [1] and meta["image_size"] == 112
    assert [p["rec"].rsplit("/", 1)[1] for p in meta["records"]] == ["part0.rec", "part1.rec"]
    rows = read_manifest(data, ok_only=False)
    assert len(rows) == N_IDS * PER_ID
    assert rows[0].path == "rec:0:1" and rows[PER_ID * 2].path == "rec:1:1"
    bad = [r for r in rows if r.status != "ok"]
    assert [(r.status, r.source) for r in bad] == [("unreadable", "part1.rec#3")]
    assert "part1.rec#3" in bad[0].reason and bad[0].path == ""
    assert sorted({r.label for r in rows}) == list(range(N_IDS))
    assert _image_files(data) == []


def test_in_place_images_equal_the_decoded_records(in_place):
    root, _ = in_place
    ds = PairDataset(root / "data", "train", (1, 8), cache=False)
    hr, lr, labels, _ = ds.__getitems__([(0, False, 1), (PER_ID * 2 + 3, True, 8)])
    assert torch.equal(hr[0].permute(1, 2, 0), torch.from_numpy(_decoded(0)))
    assert torch.equal(hr[1].permute(1, 2, 0), torch.from_numpy(_decoded(104)).flip(1))
    assert labels.tolist() == [0, 2]
    assert not torch.equal(lr[1], hr[1])  # 8x made on the fly


def _decoded(i: int) -> np.ndarray:
    from fskd_cli.data.readers.images import decode_image

    return decode_image(encode(_face(i), "JPEG"), "test")


def test_workers_read_records_with_their_own_file(in_place):
    from torch.utils.data import DataLoader

    from fskd_cli.data.dataset import PairBatchSampler

    root, _ = in_place
    ds = PairDataset(root / "data", "train", (1, 2), cache=False)
    sampler = PairBatchSampler(len(ds), 8, 4, 0, (1, 2), flip=True)
    with_workers = [b for b in DataLoader(ds, batch_sampler=sampler, collate_fn=lambda b: b, num_workers=2)]
    in_process = [ds.__getitems__(keys) for keys in sampler]
    for a, b in zip(with_workers, in_process, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_a_moved_record_file_is_one_line(in_place, tmp_path):
    import shutil

    root, _ = in_place
    copy = tmp_path / "data"
    shutil.copytree(root / "data", copy)
    meta = (copy / "meta.yaml").read_text().replace("part1.rec", "gone.rec")
    (copy / "meta.yaml").write_text(meta)
    ds = PairDataset(copy, "train", (1,), cache=False)
    with pytest.raises(FskdError, match=r"gone.rec: not found; expected the records of the in-place set"):
        ds.__getitems__([(len(ds) - 1, False, 1)])


def _tiny_run(data, steps: int = 3) -> dict:
    return {"name": "tiny-faces", "data": {"path": str(data), "flip": True, "cache": False},
            "model": {"name": "iresnet18", "kwargs": {"base_width": 4, "input_size": 112, "embedding_size": 16},
                      "head": "cosface"},
            "train": {"batch_size": 8, "lr": 0.05, "steps": steps, "log_every": 1}, "distill": {"scale": "8"}}


def _teacher_and_student(data, runs):
    from fskd_cli.core.config import resolve
    from fskd_cli.train.loop import train

    base = _tiny_run(data)
    teacher = train(resolve(None, base=base), runs / "teacher", kind="teacher")
    student = train(resolve(None, {"distill.method": "f-skd", "distill.teacher": str(teacher)}, base=base),
                    runs / "student", kind="student")
    return teacher, student


def test_a_two_part_rec_trains_a_teacher_and_an_8x_student_in_place(in_place, tmp_path):
    root, _ = in_place
    teacher, student = _teacher_and_student(root / "data", tmp_path / "runs")
    ck = torch.load(student, weights_only=True)
    assert ck["step"] == 3 and ck["scale"] == "8" and ck["method"] == "f-skd"
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())
    assert _image_files(root) == [] and _image_files(tmp_path) == []


def _write_set(out, scales, interpolation="bilinear", antialias=False, n=6, size=112):
    writer = DatasetWriter(out, "t", "train", size, scales=scales, interpolation=interpolation, antialias=antialias)
    for i in range(n):
        writer.add(Row(path=f"images/hr/{i % 2}/{i}.png", label=i % 2, identity=str(i % 2), split="train"),
                   _face(i)[:size, :size])
    writer.close()
    return out


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
@pytest.mark.parametrize("antialias", [False, True])
def test_on_the_fly_lr_equals_the_files(tmp_path, interpolation, antialias):
    files = _write_set(tmp_path / "files", (2, 4, 8), interpolation, antialias, size=48)
    hr_only = _write_set(tmp_path / "hr", (), interpolation, antialias, size=48)
    assert read_meta(hr_only)["scales"] == [1]
    keys = [(i, i % 2 == 1, s) for i, s in enumerate((2, 4, 8, 8, 4, 2))]
    on_disk = PairDataset(files, "train", (1, 2, 4, 8), cache=False).__getitems__(keys)
    made = PairDataset(hr_only, "train", (1, 2, 4, 8), cache=True)
    assert made.made == (2, 4, 8) and made.read_lr
    made_lr = made.__getitems__(keys)
    assert torch.equal(made_lr[0], on_disk[0]) and torch.equal(made_lr[1], on_disk[1])  # byte for byte
    on_device = PairDataset(hr_only, "train", (1, 2, 4, 8), cache=False, lr_on_device=True)
    if interpolation not in DEVICE_EXACT:  # the loader makes those: the loop could not match them
        assert on_device.read_lr and torch.equal(on_device.__getitems__(keys)[1], on_disk[1])
        return
    assert not on_device.read_lr
    hr, _, _, scale = on_device.__getitems__(keys)
    device_lr = degrade_batch(RGB_UNIT.apply(hr), scale, interpolation, antialias)
    grey_levels = (device_lr - RGB_UNIT.apply(on_disk[1])).abs().max() * 127.5
    assert grey_levels <= 0.5 + 1e-3


def test_scales_on_disk_are_read_not_made(tmp_path):
    files = _write_set(tmp_path / "files", (4,), size=48)
    ds = PairDataset(files, "train", (1, 4, 8), cache=False, lr_on_device=True)
    assert ds.made == (8,) and not ds.read_lr
    assert PairDataset(files, "train", (1, 4), cache=False, lr_on_device=True).read_lr


def test_an_hr_only_set_trains_an_8x_student(tmp_path):
    data = _write_set(tmp_path / "hr", (), n=16)
    assert not list((data / "images").glob("x*"))
    teacher, student = _teacher_and_student(data, tmp_path / "runs")
    ck = torch.load(student, weights_only=True)
    assert ck["step"] == 3 and ck["scale"] == "8"
    assert not list((data / "images").glob("x*"))


def test_native_size_sets_get_no_synthetic_lr(tmp_path):
    data = _write_set(tmp_path / "native", (), size=48)
    meta = (data / "meta.yaml").read_text().replace("image_size: 48", "image_size: null")
    (data / "meta.yaml").write_text(meta)
    assert PairDataset(data, "train", (1,), cache=False).made == ()
    with pytest.raises(FskdError, match=r"meta.yaml: a set of native low-resolution images .* no x8 copies"):
        PairDataset(data, "train", (1, 8), cache=False)


def test_unpacked_parts_do_not_overwrite_each_other(in_place):
    from fskd_cli.data.readers.recordio import read_rec

    root, _ = in_place
    items = read_rec(root / "src", "rec").items
    assert len({item.rel for item in items}) == len(items) == N_IDS * PER_ID
    assert items[0].rel == "0/p0-1" and items[-1].rel == f"3/p1-{PER_ID * 2}"
