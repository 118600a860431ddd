"""``fskd embed`` / ``fskd verify`` / the API on native low-resolution faces, and their edges.

Aligned crops of any size go in as ``fskd eval`` takes a native-size set (TinyFace): resized to the input
by :func:`~fskd_cli.inference.lowres.to_input_size`. Checked against eval itself on a TinyFace-layout set
prepared with ``fskd prepare tinyface --layout native``: the same embeddings, and the same rank-1 and mAP
recomputed from ``embed``'s rows. Then the edges: ``--scale`` on crops that already are LR, photos without
a face (``--on-no-face center``), a decompression bomb, file names that are not UTF-8, ``--out`` checked
before any photo is read, eval JSONs with thresholds that are no distances, and the API's Python errors.

The model is an iResNet-18 of width 4 at a 32 px input trained for 2 steps: the tests check mechanisms,
never accuracy. Commands run in this process (``run_main``), so eval and embed share the thread count.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import FACE_SIZE, assert_one_line_error, encode, face, make_tinyface, pattern, run_main, write_face_set
from PIL import Image

from fskd_cli.use.embed import read_embeddings

SIZES = [(8, 8), (24, 24), (112, 112), (160, 200), (FACE_SIZE, FACE_SIZE)]  # (H, W): smaller, larger, non-square, equal


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A teacher run (32 px input) trained for 2 steps."""
    from fskd_cli.core.config import resolve
    from fskd_cli.train.loop import train

    root = tmp_path_factory.mktemp("native")
    train_set = write_face_set(root / "train", "train", [(i, k, "") for i in range(4) for k in range(4)], split="train")
    recipe = {"name": "native", "data": {"path": str(train_set), "flip": True},
              "model": {"name": "iresnet18", "kwargs": {"base_width": 4, "input_size": FACE_SIZE, "embedding_size": 16},
                        "head": "cosface"},
              "train": {"batch_size": 8, "lr": 0.1, "steps": 2, "log_every": 1}, "distill": {"scale": "4"}}
    return train(resolve(None, base=recipe), root / "runs" / "teacher", kind="teacher").parent


@pytest.fixture()
def crops(tmp_path) -> list[Path]:
    """Aligned face-like crops of every size in :data:`SIZES`, as PNG files."""
    folder = tmp_path / "crops"
    folder.mkdir()
    paths = []
    for k, (h, w) in enumerate(SIZES):
        paths.append(folder / f"{k}_{w}x{h}.png")
        Image.fromarray(np.asarray(Image.fromarray(face(k % 2, k, 64)).resize((w, h), Image.BILINEAR))).save(paths[-1])
    return paths


def ok(result) -> None:
    assert result.exit_code == 0 and "Traceback" not in result.stderr, result.stderr


def test_embed_aligned_on_native_tinyface_gives_the_embeddings_eval_uses(run, tmp_path):
    from fskd_cli.data.manifest import read_manifest
    from fskd_cli.evaluate.identification import DISTRACTOR, identification_accuracy
    from fskd_cli.evaluate.inputs import Evaluation

    data = tmp_path / "tinyface"
    ok(run_main("prepare", "tinyface", make_tinyface(tmp_path / "src"), "--out", data, "--layout", "native",
                "--workers", "1"))
    ok(run_main("embed", data / "images", "--aligned", "--ckpt", run, "--out", tmp_path / "e.npz", "--device", "cpu"))
    got = read_embeddings(tmp_path / "e.npz")
    index = {p: i for i, p in enumerate(got.paths)}
    rows = read_manifest(data)
    mine = got.embeddings[[index[str(data / r.path)] for r in rows]].astype(np.float64)

    ev = Evaluation.open(run, data, "identification", "tinyface", device="cpu")
    emb, mirror = ev.embed(rows, 1, "tinyface")
    theirs = (emb + mirror) / np.linalg.norm(emb + mirror, axis=1, keepdims=True)
    assert np.abs(mine - theirs).max() < 1e-6  # float32 precision: the same pixels, resize and network
    sizes = [Image.open(data / r.path).size for r in rows]
    assert all(w != FACE_SIZE or h != FACE_SIZE for w, h in sizes)  # every native crop was resized...
    assert [got.resized_from[index[str(data / r.path)]] for r in rows] == [f"{w}x{h}" for w, h in sizes]  # ...and says so
    assert "bilinear" in got.input["crops"] and got.input["input_size"] == FACE_SIZE

    # `fskd eval tinyface` on the same set: its rank-1 and mAP recomputed from embed's rows
    ok(run_main("eval", "tinyface", "--data", data, "--ckpt", run, "--results", tmp_path / "r.csv", "--device", "cpu"))
    report = json.loads((run / "eval" / "tinyface_x1.json").read_text())
    assert report["resized"] == f"bilinear from native size to {FACE_SIZE}px"
    probes = [i for i, r in enumerate(rows) if r.role == "probe"]
    gallery = [i for i, r in enumerate(rows) if r.role in ("gallery", "distractor")]
    labels = np.array([DISTRACTOR if rows[i].role == "distractor" else rows[i].label for i in gallery])
    again = identification_accuracy(mine[probes], np.array([rows[i].label for i in probes]), mine[gallery], labels,
                                    max_rank=len(gallery))
    assert again.ranks[1] == report["metrics"]["rank1"] and again.mean_ap == pytest.approx(report["metrics"]["mAP"], abs=1e-12)


def test_crops_of_any_size_are_resized_as_eval_does_and_verify_agrees_with_embed(run, crops, tmp_path):
    from fskd_cli import api
    from fskd_cli.inference.lowres import to_input_size

    ok(run_main("embed", *crops, "--aligned", "--ckpt", run, "--out", tmp_path / "e.csv", "--device", "cpu"))
    got = read_embeddings(tmp_path / "e.csv")
    assert got.status == ["ok"] * len(SIZES)
    assert got.resized_from == ["8x8", "24x24", "112x112", "200x160", ""]  # WxH; the 32 x 32 crop went in as it was
    model = api.load(run, device="cpu")
    # the same rows as the crops stretched to 32 x 32 by eval's resize, the non-square one included
    stretched = [to_input_size(np.asarray(Image.open(p).convert("RGB")), FACE_SIZE) for p in crops]
    assert np.abs(api.embed(model, stretched, aligned=True) - got.embeddings).max() < 1e-6
    for i, j in [(0, 1), (1, 3), (2, 3), (0, 4)]:
        result = run_main("verify", crops[i], crops[j], "--aligned", "--ckpt", run, "--threshold", "0.3", "--json",
                          "--device", "cpu")
        ok(result)
        verdict = json.loads(result.stdout)
        assert verdict["cosine"] == pytest.approx(float(got.embeddings[i] @ got.embeddings[j]), abs=1e-6)
        assert (verdict["a_resized_from"], verdict["b_resized_from"]) == (got.resized_from[i] or None,
                                                                          got.resized_from[j] or None)
        assert verdict["a_status"] == verdict["b_status"] == "ok" and "bilinear" in verdict["input"]["crops"]


def test_scale_on_crops_that_already_are_low_resolution_is_refused_before_any_decoding(run, crops, tmp_path,
                                                                                       monkeypatch):
    from fskd_cli import api
    from fskd_cli.use import photos

    model = api.load(run, device="cpu")
    ok(run_main("embed", crops[2], crops[3], "--aligned", "--scale", "4", "--ckpt", run, "--out", tmp_path / "big.npz"))
    assert read_embeddings(tmp_path / "big.npz").input["scale"] == 4  # larger crops degrade as eval's HR images do

    def no_decoding(path):
        raise AssertionError(f"{path} was decoded before the refusal")

    monkeypatch.setattr(photos, "read_photo", no_decoding)
    refused = run_main("embed", *crops, "--aligned", "--scale", "4", "--ckpt", run, "--out", tmp_path / "e.npz")
    assert_one_line_error(refused, str(crops[0]), "8 x 8 px, already a low-resolution face", "--scale 4",
                          "2 of 5 crops")
    assert not (tmp_path / "e.npz").exists()
    assert_one_line_error(run_main("verify", crops[1], crops[2], "--aligned", "--scale", "2", "--ckpt", run,
                                   "--threshold", "0.3"), str(crops[1]), "--scale 2")
    with pytest.raises(ValueError, match="--scale 8 would degrade it a second time"):
        api.embed(model, [np.zeros((24, 20, 3), np.uint8)], aligned=True, scale=8)


def test_scale_offers_what_the_commands_accept():
    for command in ("embed", "verify"):
        shown = run_main(command, "--help").stdout
        assert "1|2|4|8" in shown and "multi" not in shown
    assert_one_line_error(run_main("embed", "x.png", "--ckpt", "r", "--scale", "multi"), "--scale")


def test_photos_without_a_face_fall_back_to_their_central_crop_when_asked(run, tmp_path):
    folder = tmp_path / "small"
    folder.mkdir()
    for k, side in enumerate((16, 24, 48)):
        Image.fromarray(pattern(k, (side, side))).save(folder / f"{k}.png")
    ok(run_main("embed", folder, "--ckpt", run, "--out", tmp_path / "skip.npz", "--device", "cpu"))
    skipped = read_embeddings(tmp_path / "skip.npz")
    assert skipped.status == ["too_small", "no_face", "no_face"] and np.isnan(skipped.embeddings).all()
    result = run_main("embed", folder, "--ckpt", run, "--out", tmp_path / "center.npz", "--on-no-face", "center",
                      "--device", "cpu")
    ok(result)
    centered = read_embeddings(tmp_path / "center.npz")
    assert centered.status == ["center"] * 3 and np.isfinite(centered.embeddings).all()
    assert "3 of 3 photos had no face found; embedded their central crop (status center)" in " ".join(result.stderr.split())
    assert "central crop" in centered.reason[0]
    assert_one_line_error(run_main("embed", folder, "--aligned", "--on-no-face", "center", "--ckpt", run),
                          "--on-no-face")


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels (with a few bytes of image data)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def test_an_image_claiming_ten_billion_pixels_is_an_unreadable_row(run, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "bomb.png").write_bytes(_png_header(100_000, 100_000))
    (folder / "face.png").write_bytes(encode(face(1, 1)))
    ok(run_main("embed", folder, "--aligned", "--ckpt", run, "--out", tmp_path / "e.npz", "--device", "cpu"))
    got = read_embeddings(tmp_path / "e.npz")
    assert got.status == ["unreadable", "ok"] and "DecompressionBombError" in got.reason[0]
    assert np.isnan(got.embeddings[0]).all() and np.isfinite(got.embeddings[1]).all()
    assert_one_line_error(run_main("verify", folder / "bomb.png", folder / "face.png", "--aligned", "--ckpt", run,
                                   "--threshold", "0.3"), "bomb.png: unreadable")


def test_file_names_that_are_not_utf8_survive_the_csv_and_the_npz(run, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    names = [os.fsdecode(b"\xff.png"), os.fsdecode(b"caf\xe9 100%.png"), "ok 100%.png", "é.png"]
    for k, name in enumerate(names):
        (folder / name).write_bytes(encode(face(k, k)))
    for suffix in ("csv", "npz"):
        ok(run_main("embed", folder, "--aligned", "--ckpt", run, "--out", tmp_path / f"e.{suffix}", "--device", "cpu"))
        got = read_embeddings(tmp_path / f"e.{suffix}")
        assert sorted(got.paths) == sorted(str(folder / n) for n in names) and got.status == ["ok"] * 4
        assert all(Path(p).is_file() for p in got.paths)
    text = (tmp_path / "e.csv").read_bytes().decode("utf-8")  # UTF-8 text throughout
    assert "%FF.png,ok,,,percent," in text and "caf%E9 100%25.png,ok,,,percent," in text
    assert "ok 100%.png,ok,,," in text and "é.png,ok,,," in text  # UTF-8 names are written as they are


def test_every_output_is_checked_before_any_photo_is_read(run, crops, tmp_path, monkeypatch):
    import fskd_cli.inference.model
    from fskd_cli.use import photos

    def never(*args, **kwargs):
        raise AssertionError("work began before --out was checked")

    monkeypatch.setattr(photos, "read_photo", never)
    monkeypatch.setattr(fskd_cli.inference.model, "load_model", never)
    (tmp_path / "mine.csv").write_text("my,own,file\n")
    (tmp_path / "folder.npz").mkdir()
    (tmp_path / "file.txt").write_text("x")
    cases = {tmp_path / "e.txt": "--out must end in .npz or .csv", tmp_path / "mine.csv": "not an `fskd embed` output",
             tmp_path / "folder.npz": "is a folder", tmp_path / "file.txt" / "e.npz": "a parent of this file is a file",
             Path("/proc/fskd-e.npz"): "/proc/fskd-e.npz: cannot write",
             tmp_path / ("n" * 300) / "e.npz": "File name too long", tmp_path / ("n" * 300 + ".npz"): "File name too long"}
    for out, words in cases.items():
        assert_one_line_error(run_main("embed", *crops, "--aligned", "--ckpt", run, "--out", out), words)
    assert (tmp_path / "mine.csv").read_text() == "my,own,file\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused_before_the_work(run, crops, tmp_path, monkeypatch):
    import fskd_cli.inference.model

    monkeypatch.setattr(fskd_cli.inference.model, "load_model", lambda *a, **k: pytest.fail("model loaded"))
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    assert_one_line_error(run_main("embed", *crops, "--ckpt", run, "--out", locked / "e.npz"), "Permission denied")


def test_a_missing_photo_is_one_line_on_the_cli_and_an_oserror_in_python(run, crops, tmp_path):
    from fskd_cli import api

    missing = tmp_path / "nobody.png"
    assert_one_line_error(run_main("embed", crops[0], missing, "--aligned", "--ckpt", run), "nobody.png: no such file")
    assert_one_line_error(run_main("verify", crops[0], missing, "--aligned", "--ckpt", run, "--threshold", "0.3"),
                          "nobody.png: no such file")
    model = api.load(run, device="cpu")
    with pytest.raises(FileNotFoundError, match="nobody.png"):
        api.embed(model, [crops[0], missing], aligned=True)
    with pytest.raises(FileNotFoundError, match="nobody.png"):
        api.verify(model, missing, crops[0], threshold=0.3)
    with pytest.raises(IsADirectoryError):
        api.embed(model, tmp_path)
    with pytest.raises(TypeError, match="file path or a uint8 RGB array"):
        api.embed(model, [42])


@pytest.mark.parametrize(("thresholds", "shown"), [
    ([float("nan")] * 10, "NaN"), ([100.0] * 10, "100.0"), (["0.5"] * 10, '"0.5"'), ([True] * 10, "true"),
    ([-0.1] + [1.0] * 9, "-0.1"), ({"mean": 1.0}, '{"mean"'),
])
def test_eval_thresholds_that_are_no_distances_are_refused_naming_the_json(run, crops, tmp_path, thresholds, shown):
    copy = shutil.copytree(run, tmp_path / "run")
    (copy / "eval").mkdir(exist_ok=True)
    bad = copy / "eval" / "agedb_x1_insightface.json"
    bad.write_text(json.dumps({"dataset": "agedb", "scale": "1", "protocol": "insightface",
                               "fold_thresholds": thresholds}))
    line = assert_one_line_error(run_main("verify", crops[0], crops[1], "--aligned", "--ckpt", copy, "--json"),
                                 str(bad), "fold_thresholds must be squared distances", "--threshold")
    assert shown in line


def test_a_valid_eval_threshold_decides_and_the_json_is_standard(run, crops, tmp_path):
    copy = shutil.copytree(run, tmp_path / "run")
    (copy / "eval").mkdir(exist_ok=True)
    (copy / "eval" / "agedb_x1_insightface.json").write_text(json.dumps(
        {"dataset": "agedb", "scale": "1", "protocol": "insightface", "fold_thresholds": [1.2] * 10}))
    result = run_main("verify", crops[0], crops[1], "--aligned", "--ckpt", copy, "--json")
    ok(result)

    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    verdict = json.loads(result.stdout, parse_constant=refuse)
    assert verdict["threshold"] == pytest.approx(1 - 1.2 / 2) and verdict["same"] == (verdict["cosine"] > 0.4)
    assert verdict["threshold_eval_json"] == str(copy / "eval" / "agedb_x1_insightface.json")
    assert_one_line_error(run_main("verify", crops[0], crops[1], "--aligned", "--ckpt", copy, "--threshold", "nan"),
                          "--threshold")


def test_the_api_refuses_thresholds_and_scales_as_python_does(run, crops):
    from fskd_cli import api

    model = api.load(run, device="cpu")
    for wrong_type in (True, "0.3", [0.3]):
        with pytest.raises(TypeError, match="threshold must be a number"):
            api.verify(model, crops[0], crops[1], threshold=wrong_type, aligned=True)
    for out_of_range in (float("nan"), float("inf"), 1.5, -2):
        with pytest.raises(ValueError, match="lies in"):
            api.verify(model, crops[0], crops[1], threshold=out_of_range, aligned=True)
    with pytest.raises(ValueError, match="multi"):
        api.embed(model, crops[4], aligned=True, scale="multi")
    with pytest.raises(TypeError, match="scale"):
        api.embed(model, crops[4], aligned=True, scale=True)
    verdict = api.verify(model, crops[0], crops[1], threshold=np.float32(0.25), aligned=True)
    assert verdict.threshold.cosine == 0.25 and verdict.resized_from == ("8x8", "24x24")


def test_a_non_finite_embedding_is_a_row_status_not_a_unit_vector(run, crops, monkeypatch):
    from fskd_cli import api
    from fskd_cli.use import embed as embed_module

    model = api.load(run, device="cpu")
    real = embed_module.embed_crops

    def first_inf(*args, **kwargs):
        out = real(*args, **kwargs)
        out[0] = np.nan  # what normalising an inf embedding gives
        return out

    monkeypatch.setattr(embed_module, "embed_crops", first_inf)
    table = api.embed_table(model, crops[:2], aligned=True)
    assert table.status == ["not_finite", "ok"] and "not finite" in table.reason[0]
    assert np.isnan(table.embeddings[0]).all() and not table.ok[0]
