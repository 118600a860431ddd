"""``fskd embed`` / ``fskd verify`` / ``fskd_cli.api`` on real photos (ORL, aligned by the code prepare uses).

A tiny iResNet-18 (width 8) is trained for 60 steps on ORL people 1-20; photos of people 31-40, unseen
in training, are then embedded from the raw 92 x 112 PGM files: the same person must score above
different people on average. A face-less picture and an unreadable file are rows with a status.
The verify threshold is read from a real ``fskd eval`` JSON of the run (people 21-30).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import pattern, run_cli, shared
from PIL import Image

from fskd_cli.use.embed import read_embeddings

TEST_PEOPLE, SHOTS = range(31, 41), range(1, 6)


def aligned_orl(orl: Path, people: range, shots: range) -> list[tuple[int, np.ndarray]]:
    """(person, aligned 112 x 112 crop) of ORL photos, through FaceAligner as `prepare` uses it."""
    from fskd_cli.data.align import FaceAligner
    from fskd_cli.data.manifest import load_image

    items = [(p, load_image(orl / f"s{p}" / f"{k}.pgm")) for p in people for k in shots]
    aligned = FaceAligner().align([im for _, im in items])
    return [(p, a.image) for (p, _), a in zip(items, aligned, strict=True) if a.image is not None]


def write_set(out: Path, task: str, faces: list[tuple[int, np.ndarray]], pairs=None) -> Path:
    from fskd_cli.data.manifest import DatasetWriter, Row

    w = DatasetWriter(out, out.name, task, 112, scales=(2, 4, 8))
    paths = []
    for i, (person, crop) in enumerate(faces):
        row = Row(path=f"images/hr/{person}/{i}.png", label=person - 1, identity=str(person),
                  split="train" if task == "train" else "test")
        w.add(row, crop)
        paths.append(row.path)
    w.close(None if pairs is None else [(paths[a], paths[b], s) for a, b, s in pairs])
    return out


def ten_folds_of_pairs(faces: list[tuple[int, np.ndarray]]) -> list[tuple[int, int, int]]:
    """40 pairs in 10 folds of 2 same + 2 different, over the aligned faces."""
    by_person: dict[int, list[int]] = {}
    for i, (p, _) in enumerate(faces):
        by_person.setdefault(p, []).append(i)
    people = sorted(by_person)
    pairs = []
    for f in range(10):
        a, b = by_person[people[f % len(people)]], by_person[people[(f + 3) % len(people)]]
        pairs += [(a[0], a[1], 1), (b[1], b[2], 1), (a[2], b[0], 0), (a[1], b[2], 0)]
    return pairs


@pytest.fixture(autouse=True)
def _cli_threads_as_ours(monkeypatch):
    """`fskd` subprocesses compute with this process's torch thread count (conftest: 1). Float sums depend on
    how a reduction is split over threads, so an API-vs-CLI comparison then holds on any machine and load."""
    import torch

    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(name, str(torch.get_num_threads()))


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row of ``a`` with the same row of ``b``, in float64: for unit embeddings the measure of
    agreement that does not hinge on one element's last bits."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def orl_run(tmp_path_factory) -> dict[str, Path]:
    from fskd_cli.core.config import resolve
    from fskd_cli.evaluate.stage import evaluate_benchmark
    from fskd_cli.train.loop import train

    orl = shared("orl", "att_faces")
    root = tmp_path_factory.mktemp("orl")
    train_set = write_set(root / "train", "train", aligned_orl(orl, range(1, 21), range(1, 9)))
    base = {"name": "orl", "data": {"path": str(train_set), "flip": True},
            "model": {"name": "iresnet18", "kwargs": {"base_width": 8, "embedding_size": 32}, "head": "cosface"},
            "train": {"batch_size": 16, "lr": 0.1, "steps": 60, "log_every": 20}, "distill": {"scale": "4"}}
    ckpt = train(resolve(None, base=base), root / "runs" / "teacher", kind="teacher")
    ver_faces = aligned_orl(orl, range(21, 31), range(1, 4))
    ver = write_set(root / "orl_ver", "verification", ver_faces, ten_folds_of_pairs(ver_faces))
    evaluate_benchmark("verification", ckpt, data=ver, results=root / "results.csv", device="cpu")
    return {"run": ckpt.parent, "root": root, "orl": orl}


def test_embed_real_photos_same_person_scores_higher(orl_run, tmp_path):
    photos = [orl_run["orl"] / f"s{p}" / f"{k}.pgm" for p in TEST_PEOPLE for k in SHOTS]
    Image.fromarray(pattern(5, (160, 160))).save(tmp_path / "no_face.png")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "emb.npz"
    result = run_cli("embed", *photos, tmp_path / "no_face.png", tmp_path / "broken.jpg", "--ckpt", orl_run["run"],
                     "--out", out, "--batch-size", "16", "--device", "auto")
    assert result.returncode == 0, result.stderr
    emb = read_embeddings(out)
    assert emb.paths == [str(p) for p in photos] + [str(tmp_path / "no_face.png"), str(tmp_path / "broken.jpg")]
    assert emb.status[-2:] == ["no_face", "unreadable"] and np.isnan(emb.embeddings[-2:]).all()
    assert emb.embeddings.dtype == np.float32 and emb.embeddings.shape == (len(photos) + 2, 32)
    ok = emb.ok[:len(photos)]
    assert ok.mean() > 0.9  # MTCNN finds nearly every ORL face
    assert np.allclose(np.linalg.norm(emb.embeddings[:len(photos)][ok], axis=1), 1, atol=1e-5)
    person = np.repeat(np.array(list(TEST_PEOPLE)), len(SHOTS))[ok]
    e = emb.embeddings[:len(photos)][ok]
    cos = e @ e.T
    upper = np.triu(np.ones_like(cos, dtype=bool), 1)
    same, diff = cos[upper & (person[:, None] == person[None, :])], cos[upper & (person[:, None] != person[None, :])]
    assert same.mean() > diff.mean() + 0.1, (same.mean(), diff.mean())
    assert (same[:, None] > diff[None, :]).mean() > 0.75  # the AUC over all pairs of people unseen in training


def test_embed_csv_scale_and_no_flip_change_what_they_should(orl_run, tmp_path):
    from fskd_cli import api
    from fskd_cli.core.errors import FskdError
    from fskd_cli.use.embed import write_embeddings

    photos = [orl_run["orl"] / "s33" / f"{k}.pgm" for k in (1, 2)]
    assert run_cli("embed", *photos, "--ckpt", orl_run["run"], "--out", tmp_path / "e.csv").returncode == 0
    from_csv = read_embeddings(tmp_path / "e.csv")
    model = api.load(orl_run["run"], device="cpu")
    plain = api.embed(model, photos)
    assert from_csv.status == ["ok", "ok"] and row_cosines(from_csv.embeddings, plain).min() >= 1 - 1e-6
    assert not np.allclose(plain, api.embed(model, photos, scale=8), atol=1e-3)
    assert not np.allclose(plain, api.embed(model, photos, flip=False), atol=1e-3)
    (tmp_path / "mine.csv").write_text("my,own,file\n")
    with pytest.raises(FskdError, match="not an `fskd embed` output"):
        write_embeddings(tmp_path / "mine.csv", from_csv)
    assert (tmp_path / "mine.csv").read_text() == "my,own,file\n"
    write_embeddings(tmp_path / "e.csv", from_csv)  # its own output is replaced


def test_verify_reads_its_threshold_from_the_runs_eval(orl_run):
    run, orl = orl_run["run"], orl_run["orl"]
    evals = [json.loads(p.read_text()) for p in (run / "eval").glob("*.json")]
    thresholds = next(e["fold_thresholds"] for e in evals if e["protocol"] == "insightface")
    a, b, c = orl / "s35" / "1.pgm", orl / "s35" / "2.pgm", orl / "s36" / "1.pgm"
    line = run_cli("verify", a, b, "--ckpt", run)
    assert line.returncode == 0, line.stderr
    words = line.stdout.split()
    assert words[0] in ("same", "different") and words[1] == "cosine" and words[3] == "threshold"
    assert float(words[4]) == pytest.approx(1 - np.mean(thresholds) / 2, abs=5e-4)
    assert "orl_ver x1, insightface protocol" in line.stdout and "orl_ver_x1_insightface.json" in line.stdout
    given = json.loads(run_cli("verify", a, c, "--ckpt", run, "--threshold", "0.25", "--json").stdout)
    assert given["threshold"] == 0.25 and given["same"] == (given["cosine"] > 0.25)
    assert given["threshold_source"] == "given" and given["threshold_eval_json"] is None
    from fskd_cli import api

    e = api.embed(api.load(run, device="cpu"), [a, c])
    assert given["cosine"] == pytest.approx(float(e[0] @ e[1]), abs=1e-5)


def test_verify_without_a_usable_threshold_or_face_is_one_line(orl_run, tmp_path):
    run, orl = orl_run["run"], orl_run["orl"]
    at_x4 = run_cli("verify", orl / "s35" / "1.pgm", orl / "s35" / "2.pgm", "--ckpt", run, "--scale", "4")
    assert at_x4.returncode == 2 and "Traceback" not in at_x4.stderr
    assert "no insightface-protocol verification eval at scale 4" in " ".join(at_x4.stderr.split())
    assert "found only orl_ver x1 insightface" in " ".join(at_x4.stderr.split())
    Image.fromarray(pattern(7, (160, 160))).save(tmp_path / "wall.png")
    faceless = run_cli("verify", tmp_path / "wall.png", orl / "s35" / "2.pgm", "--ckpt", run, "--threshold", "0.3")
    assert faceless.returncode == 2 and "wall.png: no face" in faceless.stderr and "Traceback" not in faceless.stderr


def test_api_matches_the_cli_and_imports_quietly(orl_run, tmp_path):
    from fskd_cli import api
    from fskd_cli.data.manifest import load_image

    photos = [orl_run["orl"] / "s38" / f"{k}.pgm" for k in (1, 2, 3)]
    assert run_cli("embed", *photos, "--ckpt", orl_run["run"], "--out", tmp_path / "e.npz").returncode == 0
    model = api.load(orl_run["run"], device="cpu")
    from_arrays = api.embed(model, [load_image(p) for p in photos])
    assert row_cosines(from_arrays, read_embeddings(tmp_path / "e.npz").embeddings).min() >= 1 - 1e-6
    verdict = api.verify(model, photos[0], photos[1], threshold=0.2)
    assert verdict.cosine == pytest.approx(float(from_arrays[0] @ from_arrays[1]), abs=1e-5)
    # a user's backend choice (here MPLBACKEND) survives importing fskd, which loads no plotting at import
    code = ("import sys; import fskd_cli, fskd_cli.api, fskd_cli.cli; "
            "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'; "
            "import matplotlib; assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()")
    env = {**os.environ, "MPLBACKEND": "svg"}
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == "", quiet.stderr
