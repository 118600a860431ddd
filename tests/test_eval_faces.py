"""``fskd eval`` on face-like sets: 1:1 verification (both protocols, cross-resolution, saved scores that
recompute the accuracy exactly), 1:N identification with distractors, results.csv rows, and the
one-line errors for a missing pairs.csv, a set of the wrong task and a checkpoint of the wrong size.

Everything is tiny: 32 x 32 synthetic "faces" (a smooth pattern per identity plus per-image noise) and
an iResNet-18 of base width 4 trained for 30 steps, so the whole module runs in about a minute on 2 cores.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from face_fixtures import pattern

from fskd_cli.data.manifest import DatasetWriter, Row
from fskd_cli.core.errors import FskdError
from fskd_cli.evaluate.verification import accuracy_from_scores

SIZE = 32
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def face(identity: int, k: int, size: int = SIZE) -> np.ndarray:
    """Image ``k`` of ``identity``: the identity's pattern, shifted a little, plus noise."""
    rng = np.random.default_rng(1000 * identity + k)
    base = np.roll(pattern(identity, (size, size)).astype(np.int16), k % 3, axis=1)
    return np.clip(base + rng.integers(-20, 21, base.shape), 0, 255).astype(np.uint8)


def write_set(out: Path, task: str, items: list[tuple[int, int, str]], pairs=None, size: int = SIZE,
              split: str = "test") -> Path:
    """A prepared set of ``(identity, k, role)`` images; ``pairs`` of item indices (or None for -1)."""
    w = DatasetWriter(out, out.name, task, size, scales=(2, 4, 8))
    paths = []
    for identity, k, role in items:
        label = -1 if role == "distractor" else identity
        row = Row(path=f"images/hr/{identity}/{k}.png", label=label, identity=str(identity), split=split, role=role)
        w.add(row, face(identity, k, size))
        paths.append(row.path)
    pair_rows = None if pairs is None else [("" if a is None else paths[a], "" if b is None else paths[b], s)
                                           for a, b, s in pairs]
    w.close(pair_rows)
    return out


def verification_pairs(n_ids: int, per_id: int) -> list[tuple[int, int, int]]:
    """10 folds of 2 same and 2 different pairs, over images laid out identity-major."""
    pairs = []
    for f in range(10):
        i, j = f % n_ids, (f + 1) % n_ids
        pairs += [(i * per_id, i * per_id + 1 + f % (per_id - 1), 1), (j * per_id + 1, j * per_id, 1),
                  (i * per_id, j * per_id + 2, 0), (i * per_id + 2, ((i + 2) % n_ids) * per_id, 0)]
    return pairs


def build_face_runs(root: Path, steps: int = 30) -> dict[str, Path]:
    """A train set, a teacher and an F-SKD student (``steps`` each), a verification and an identification set.

    30 steps make the embeddings discriminative enough for thresholds off the grid's first value.
    """
    from fskd_cli.core.config import resolve
    from fskd_cli.train.loop import train

    train_set = write_set(root / "train", "train", [(i, k, "") for i in range(4) for k in range(8)],
                          split="train")
    base = {"name": "faces", "data": {"path": str(train_set), "flip": True},
            "model": {"name": "iresnet18", "kwargs": {"base_width": 4, "input_size": SIZE, "embedding_size": 16},
                      "head": "cosface"},
            "train": {"batch_size": 16, "lr": 0.1, "steps": steps, "log_every": 10}, "distill": {"scale": "4"}}
    teacher = train(resolve(None, base=base), root / "runs" / "teacher", kind="teacher")
    student = train(resolve(None, {"distill.method": "f-skd", "distill.teacher": str(teacher)}, base=base),
                    root / "runs" / "f-skd", kind="student")
    n_ids, per_id = 6, 4
    ver = write_set(root / "ver", "verification", [(i, k, "") for i in range(n_ids) for k in range(per_id)],
                    verification_pairs(n_ids, per_id))
    ident_items = ([(i, 0, "probe") for i in range(5)] + [(i, k, "gallery") for i in range(5) for k in (1, 2)]
                   + [(100 + d, 0, "distractor") for d in range(12)])
    ident = write_set(root / "ident", "identification", ident_items)
    return {"teacher": teacher, "student": student, "ver": ver, "ident": ident, "train": train_set, "root": root}


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> dict[str, Path]:
    return build_face_runs(tmp_path_factory.mktemp("faces"))


def one_line_error(result) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert len([l for l in result.stderr.strip().splitlines() if l.strip()]) >= 1
    return " ".join(result.stderr.split())


def rows_of(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("protocol", ["insightface", "authors"])
def test_saved_scores_and_recorded_thresholds_recompute_the_accuracy_exactly(faces, tmp_path, protocol):
    results, scores = tmp_path / "results.csv", tmp_path / "scores.csv"
    r = run_cli("eval", "verification", "--data", faces["ver"], "--ckpt", faces["student"], "--scale", "4",
                "--protocol", protocol, "--save-scores", scores, "--results", results)
    assert r.returncode == 0, r.stderr
    report = json.loads((faces["student"].parent / "eval" / f"ver_x4_{protocol}.json").read_text())
    assert report["protocol"] == protocol and len(report["fold_thresholds"]) == 10
    recomputed = accuracy_from_scores(scores, report["fold_thresholds"], report["greater_is_same"])
    assert recomputed == report["metrics"]["accuracy"]  # exactly, not approximately
    saved = rows_of(scores)
    assert list(saved[0]) == ["left", "right", "same", "fold", "score"] and len(saved) == 40
    assert [int(s["fold"]) for s in saved] == [k for k in range(10) for _ in range(4)]
    rows = rows_of(results)
    label = "ver" if protocol == "insightface" else "ver[authors]"
    assert [(x["dataset"], x["scale"], x["metric"]) for x in rows] == [
        (label, "4", m) for m in ("accuracy", "accuracy_std", "tar@far=1e-3", "tar@far=1e-4", "auc")]
    assert float(rows[0]["value"]) == pytest.approx(recomputed, abs=5e-7)
    assert rows[0]["method"] == "f-skd"
    assert Path(report["roc_png"]).read_bytes()[:8] == PNG_MAGIC


def test_cross_resolution_pairs_an_hr_left_with_an_lr_right(faces, tmp_path):
    from fskd_cli.evaluate.stage import verification_stage

    common = dict(dataset="ver", scale=8, results=tmp_path / "r.csv", device="cpu")
    same_res = verification_stage(faces["student"], faces["ver"], json_path=tmp_path / "a.json", **common)
    cross = verification_stage(faces["student"], faces["ver"], cross_resolution=True, json_path=tmp_path / "b.json",
                               scores_csv=tmp_path / "s.csv", roc_png=tmp_path / "roc.png", **common)
    assert (same_res["left_scale"], same_res["right_scale"]) == (8, 8)
    assert (cross["left_scale"], cross["right_scale"]) == (1, 8) and cross["dataset"] == "ver[cross-res]"
    assert [float(r["score"]) for r in rows_of(tmp_path / "s.csv")] != same_res["fold_thresholds"]
    assert accuracy_from_scores(tmp_path / "s.csv", cross["fold_thresholds"], cross["greater_is_same"]) == \
        cross["metrics"]["accuracy"]
    assert (tmp_path / "roc.png").read_bytes()[:8] == PNG_MAGIC


def test_cross_resolution_scores_differ_from_same_resolution(faces, tmp_path):
    from fskd_cli.evaluate.stage import verification_stage

    out = {}
    for cross in (False, True):
        verification_stage(faces["student"], faces["ver"], dataset="ver", scale=8, cross_resolution=cross,
                           results=tmp_path / "r.csv", json_path=tmp_path / f"{cross}.json",
                           scores_csv=tmp_path / f"{cross}.csv")
        out[cross] = [float(r["score"]) for r in rows_of(tmp_path / f"{cross}.csv")]
    assert out[False] != out[True]


def test_a_pair_with_a_failed_image_is_kept_and_counted_wrong(faces, tmp_path):
    from fskd_cli.evaluate.stage import verification_stage

    pairs = verification_pairs(6, 4)
    pairs[0] = (None, pairs[0][1], 1)  # the left image of the first pair failed alignment
    data = write_set(tmp_path / "holes", "verification", [(i, k, "") for i in range(6) for k in range(4)], pairs)
    res = verification_stage(faces["student"], data, dataset="holes", scale=4, protocol="authors",
                             results=tmp_path / "r.csv", scores_csv=tmp_path / "s.csv", json_path=tmp_path / "h.json")
    assert res["missing_pairs"] == 1 and res["pairs"] == 40
    saved = rows_of(tmp_path / "s.csv")
    assert saved[0]["left"] == "" and saved[0]["score"] == "nan"
    assert res["fold_accuracies"][0] <= 0.75  # one of the fold's 4 pairs cannot be right
    assert accuracy_from_scores(tmp_path / "s.csv", res["fold_thresholds"], True) == res["metrics"]["accuracy"]


def test_identification_ranks_map_and_cmc(faces, tmp_path):
    results = tmp_path / "results.csv"
    r = run_cli("eval", "identification", "--data", faces["ident"], "--ckpt", faces["teacher"], "--results", results,
                "--cmc", tmp_path / "cmc.png")
    assert r.returncode == 0, r.stderr
    report = json.loads((faces["teacher"].parent / "eval" / "ident_x1.json").read_text())
    assert report["probes"] == 5 and report["gallery"] == 10 and report["distractors"] == 12
    assert [x["metric"] for x in rows_of(results)] == ["rank1", "rank5", "rank10", "rank20", "mAP"]
    cmc = report["cmc"]
    assert len(cmc) == 20 and all(a <= b for a, b in zip(cmc, cmc[1:])) and cmc[-1] == 1.0
    assert report["metrics"]["rank1"] == cmc[0] and report["metrics"]["rank20"] == cmc[19]
    assert (tmp_path / "cmc.png").read_bytes()[:8] == PNG_MAGIC


def test_identification_of_native_size_faces_resizes_them(faces, tmp_path):
    """TinyFace keeps its faces at their own small sizes: they are resized to the model's input."""
    from fskd_cli.evaluate.stage import identification_stage

    w = DatasetWriter(tmp_path / "tiny", "tinyface", "identification", None, scales=())
    for n, (identity, role, side) in enumerate([(0, "probe", 12), (1, "probe", 20), (0, "gallery", 16),
                                                 (1, "gallery", 9), (7, "distractor", 14)]):
        row = Row(path=f"images/hr/{n}.png", label=-1 if role == "distractor" else identity, identity=str(identity),
                  split="test", role=role)
        w.add(row, face(identity, n, side), keep_size=True)
    w.close()
    res = identification_stage(faces["student"], tmp_path / "tiny", dataset="tinyface", results=tmp_path / "r.csv",
                               json_path=tmp_path / "t.json")
    assert res["resized"] == f"bilinear to {SIZE}px" and res["gallery"] == 2 and res["distractors"] == 1
    assert set(res["metrics"]) == {"rank1", "mAP"}  # a 3-image gallery has no rank 5


def test_eval_digits_still_works_through_the_stage(tiny_digits, tmp_path):
    from fskd_cli.core.config import resolve
    from fskd_cli.evaluate.stage import evaluate_benchmark
    from fskd_cli.train.loop import train

    ck = train(resolve(None, base={"data": {"path": str(tiny_digits)}, "model": {"kwargs": {"width": 4}},
                                   "train": {"batch_size": 32, "steps": 1}}), tmp_path / "t", kind="teacher")
    res = evaluate_benchmark("digits", ck, data=tiny_digits, results=tmp_path / "r.csv")
    assert 0 <= res["metrics"]["accuracy"] <= 1 and (tmp_path / "t" / "eval" / "digits_x1.json").exists()
    with pytest.raises(FskdError, match="--save-scores does not apply to `fskd eval digits`"):
        evaluate_benchmark("digits", ck, data=tiny_digits, scores_csv=tmp_path / "s.csv")


def test_user_mistakes_name_the_file(faces, tmp_path):
    from fskd_cli.evaluate.stage import evaluate_benchmark

    ck = faces["student"]
    # a verification benchmark on a set without pairs.csv
    no_pairs = write_set(tmp_path / "nopairs", "verification", [(0, 0, ""), (0, 1, "")])
    err = one_line_error(run_cli("eval", "verification", "--data", no_pairs, "--ckpt", ck))
    assert f"{no_pairs / 'pairs.csv'}: not found" in err
    # a set of the wrong task
    with pytest.raises(FskdError, match="meta.yaml: a verification set, but `fskd eval identification` needs an "
                                        "identification set"):
        evaluate_benchmark("identification", ck, data=faces["ver"])
    with pytest.raises(FskdError, match="a train set, but `fskd eval agedb` needs a verification set"):
        evaluate_benchmark("agedb", ck, data=faces["train"])
    # a checkpoint of the wrong kind: a 32px model on a 112px set, and a file that is no checkpoint
    big = write_set(tmp_path / "big", "verification", [(i, k, "") for i in range(2) for k in range(2)],
                    [(0, 1, 1), (0, 2, 0)] * 5, size=112)
    err = one_line_error(run_cli("eval", "lfw", "--data", big, "--ckpt", ck))
    assert "takes 32px inputs, but" in err and "112px images" in err
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"no")
    with pytest.raises(FskdError, match="junk.pt: not a readable fskd checkpoint"):
        evaluate_benchmark("verification", junk, data=faces["ver"])
    # pairs that cannot form 10 folds, a pair naming an image the manifest lacks, options of another task
    odd = write_set(tmp_path / "odd", "verification", [(0, 0, ""), (0, 1, ""), (1, 0, "")], [(0, 1, 1), (0, 2, 0)])
    with pytest.raises(FskdError, match=r"pairs.csv: 2 pairs cannot be split into 10 equal consecutive folds"):
        evaluate_benchmark("verification", ck, data=odd)
    (odd / "pairs.csv").write_text("left,right,same\n" + "images/hr/0/0.png,images/hr/9/9.png,1\n" * 10)
    with pytest.raises(FskdError, match=r"pairs.csv, line 2: 'images/hr/9/9.png' is not a usable image"):
        evaluate_benchmark("verification", ck, data=odd)
    with pytest.raises(FskdError, match="--cmc does not apply to `fskd eval verification`"):
        evaluate_benchmark("verification", ck, data=faces["ver"], cmc_png=tmp_path / "x.png")
    with pytest.raises(FskdError, match="needs --data"):
        evaluate_benchmark("identification", ck)
    with pytest.raises(FskdError, match="--protocol does not apply to `fskd eval tinyface`"):
        evaluate_benchmark("tinyface", ck, data=faces["ident"], protocol="authors")
