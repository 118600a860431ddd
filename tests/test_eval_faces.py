"""``fskd eval`` on face-like sets: 1:1 verification (both protocols, cross-resolution, saved scores that
recompute the accuracy exactly), 1:N identification with distractors, results.csv rows, and the
one-line errors for a missing pairs.csv, a set of the wrong task and a checkpoint of the wrong size.

Everything is tiny: 32 x 32 synthetic "faces" (a smooth pattern per identity plus per-image noise) and
an iResNet-18 of base width 4 trained for 30 steps, so the whole module runs in about a minute on 2 cores.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import (
    FACE_SIZE,
    PNG_MAGIC,
    assert_one_line_error,
    build_face_runs,
    face,
    rows_of,
    run_cli,
    verification_pairs,
    write_face_set,
)

from fskd_cli.core.errors import FskdError
from fskd_cli.data.manifest import DatasetWriter, Row
from fskd_cli.evaluate.verification import accuracy_from_scores

TAR_METRICS = ["tar@far=1e-3(pooled)", "tar@far=1e-4(pooled)", "tar@far=1e-3(folds)", "tar@far=1e-4(folds)"]


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> dict[str, Path]:
    return build_face_runs(tmp_path_factory.mktemp("faces"))


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
        (label, "4", m) for m in ("accuracy", "accuracy_std", *TAR_METRICS, "auc")]
    assert float(rows[0]["value"]) == pytest.approx(recomputed, abs=5e-7)
    assert rows[0]["method"] == "f-skd"
    assert Path(report["roc_png"]).read_bytes()[:8] == PNG_MAGIC


def test_cross_resolution_pairs_an_hr_left_with_an_lr_right(faces, tmp_path):
    """Each pair's cross-resolution score is the distance of the HR left and x8 right embeddings, and differs
    from the same-resolution score of that pair (both x8)."""
    import torch

    from fskd_cli.core.checkpoint import load_checkpoint
    from fskd_cli.data.dataset import PairDataset
    from fskd_cli.data.manifest import read_manifest
    from fskd_cli.evaluate.pairs import verification_stage
    from fskd_cli.inference.model import build_backbone

    common = dict(dataset="ver", scale=8, results=tmp_path / "r.csv", device="cpu")
    same_res = verification_stage(faces["student"], faces["ver"], json_path=tmp_path / "a.json",
                                  scores_csv=tmp_path / "same.csv", **common)
    cross = verification_stage(faces["student"], faces["ver"], cross_resolution=True, json_path=tmp_path / "b.json",
                               scores_csv=tmp_path / "s.csv", roc_png=tmp_path / "roc.png", **common)
    assert (same_res["left_scale"], same_res["right_scale"]) == (8, 8)
    assert (cross["left_scale"], cross["right_scale"]) == (1, 8) and cross["dataset"] == "ver[cross-res]"
    cross_rows, same_rows = rows_of(tmp_path / "s.csv"), rows_of(tmp_path / "same.csv")
    assert all(float(c["score"]) != float(s["score"]) for c, s in zip(cross_rows, same_rows, strict=True))

    model = build_backbone(load_checkpoint(faces["student"]))
    index = {r.path: i for i, r in enumerate(read_manifest(faces["ver"]))}
    ds = PairDataset(faces["ver"], "", (8,), cache=False, rows=read_manifest(faces["ver"]))
    left, right = cross_rows[0]["left"], cross_rows[0]["right"]
    hr, _, _, _ = ds.__getitems__([(index[left], False, 1)])
    _, lr, _, _ = ds.__getitems__([(index[right], False, 8)])
    with torch.inference_mode():
        a, b = (model(torch.cat([x, x.flip(-1)]).float().sub(127.5).div(127.5)).double() for x in (hr, lr))
    a, b = (torch.nn.functional.normalize(e.sum(0, keepdim=True), dim=1) for e in (a, b))
    assert float(cross_rows[0]["score"]) == pytest.approx(float(((a - b) ** 2).sum()), abs=1e-5)
    assert accuracy_from_scores(tmp_path / "s.csv", cross["fold_thresholds"], cross["greater_is_same"]) == \
        cross["metrics"]["accuracy"]
    assert (tmp_path / "roc.png").read_bytes()[:8] == PNG_MAGIC


def test_a_pair_with_a_failed_image_is_kept_and_counted_wrong(faces, tmp_path):
    from fskd_cli.evaluate.pairs import verification_stage

    pairs = verification_pairs(6, 4)
    pairs[0] = (None, pairs[0][1], 1)  # the left image of the first pair failed alignment
    data = write_face_set(tmp_path / "holes", "verification", [(i, k, "") for i in range(6) for k in range(4)], pairs)
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
    assert len(cmc) == 20 and all(a <= b for a, b in zip(cmc, cmc[1:], strict=False)) and cmc[-1] == 1.0
    assert report["metrics"]["rank1"] == cmc[0] and report["metrics"]["rank20"] == cmc[19]
    assert (tmp_path / "cmc.png").read_bytes()[:8] == PNG_MAGIC


def test_identification_of_native_size_faces_resizes_them(faces, tmp_path):
    """TinyFace keeps its faces at their own small sizes: they are resized to the model's input."""
    from fskd_cli.evaluate.search import identification_stage

    w = DatasetWriter(tmp_path / "tiny", "tinyface", "identification", None, scales=())
    for n, (identity, role, side) in enumerate([(0, "probe", 12), (1, "probe", 20), (0, "gallery", 16),
                                                 (1, "gallery", 9), (7, "distractor", 14)]):
        row = Row(path=f"images/hr/{n}.png", label=-1 if role == "distractor" else identity, identity=str(identity),
                  split="test", role=role)
        w.add(row, face(identity, n, side), keep_size=True)
    w.close()
    res = identification_stage(faces["student"], tmp_path / "tiny", dataset="tinyface", results=tmp_path / "r.csv",
                               json_path=tmp_path / "t.json")
    assert res["resized"] == f"bilinear from native size to {FACE_SIZE}px" and res["gallery"] == 2 and res["distractors"] == 1
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
    no_pairs = write_face_set(tmp_path / "nopairs", "verification", [(0, 0, ""), (0, 1, "")])
    assert_one_line_error(run_cli("eval", "verification", "--data", no_pairs, "--ckpt", ck),
                          f"{no_pairs / 'pairs.csv'}: not found")
    # a set of the wrong task
    with pytest.raises(FskdError, match="meta.yaml: a verification set, but `fskd eval identification` needs an "
                                        "identification set"):
        evaluate_benchmark("identification", ck, data=faces["ver"])
    with pytest.raises(FskdError, match="a train set, but `fskd eval agedb` needs a verification set"):
        evaluate_benchmark("agedb", ck, data=faces["train"])
    # a checkpoint of the wrong kind: a 32px model on a 112px set, and a file that is no checkpoint
    big = write_face_set(tmp_path / "big", "verification", [(i, k, "") for i in range(2) for k in range(2)],
                    [(0, 1, 1), (0, 2, 0)] * 5, size=112)
    assert_one_line_error(run_cli("eval", "verification", "--data", big, "--ckpt", ck), "takes 32px inputs, but",
                          "112px images")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"no")
    with pytest.raises(FskdError, match="junk.pt: not a readable fskd checkpoint"):
        evaluate_benchmark("verification", junk, data=faces["ver"])
    # pairs that cannot form 10 folds, a pair naming an image the manifest lacks, options of another task
    odd = write_face_set(tmp_path / "odd", "verification", [(0, 0, ""), (0, 1, ""), (1, 0, "")], [(0, 1, 1), (0, 2, 0)])
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


def test_eval_json_records_the_training_setting_and_how_lr_images_were_made(faces, tmp_path):
    from fskd_cli.evaluate.pairs import verification_stage

    res = verification_stage(faces["student"], faces["ver"], dataset="ver", scale=4, results=tmp_path / "r.csv",
                             json_path=tmp_path / "v.json")
    setting = json.loads((tmp_path / "v.json").read_text())["setting"]
    assert setting["method"] == "f-skd" and setting["scale"] == "4" and setting["kind"] == "student"
    assert setting["teacher"] == str(faces["teacher"]) and setting["recipe"] == "faces" and setting["seed"] == 0
    assert setting["data"] == str(faces["train"]) and setting["variant"] == "plain"
    assert setting["preprocess"] == {"color": "rgb", "mean": 127.5, "std": 127.5}
    assert setting["degradation"]["interpolation"] == "bilinear" and setting["degradation"]["antialias"] is False
    assert res["lr_images"] == {"source": "degrade", "interpolation": "bilinear", "antialias": False,
                                "from": setting["degradation"]["from"]}
    disk = verification_stage(faces["student"], faces["ver"], dataset="ver", scale=4, results=tmp_path / "r.csv",
                              json_path=tmp_path / "d.json", lr_source="disk")
    assert disk["lr_images"]["source"] == "disk"
    # the set's LR files were made with the student's own (bilinear) degradation: the same images, the same figures
    assert disk["metrics"] == res["metrics"]


def test_lr_images_are_made_with_the_students_training_degradation(faces):
    """Degrading from HR gives the prepared files exactly when the interpolation matches, and other images
    when the student was trained with another one (so eval follows the checkpoint, not the files)."""
    from fskd_cli.data.manifest import read_manifest
    from fskd_cli.inference.lowres import LowRes

    rows = read_manifest(faces["ver"])[:6]
    disk = LowRes("disk")
    files = disk.batch(disk.dataset(faces["ver"], rows, 4), range(6), 4)[1]
    bilinear = LowRes("degrade", "bilinear", False)
    assert bilinear.batch(bilinear.dataset(faces["ver"], rows, 4), range(6), 4)[1].equal(files)
    nearest = LowRes("degrade", "nearest", False)
    assert not nearest.batch(nearest.dataset(faces["ver"], rows, 4), range(6), 4)[1].equal(files)


def test_a_scale_not_on_disk_is_made_on_the_fly(faces, tmp_path):
    from fskd_cli.evaluate.pairs import verification_stage

    hr_only = write_face_set(tmp_path / "hr", "verification", [(i, k, "") for i in range(6) for k in range(4)],
                             verification_pairs(6, 4), scales=())
    made = verification_stage(faces["student"], hr_only, dataset="ver", scale=4, results=tmp_path / "r.csv",
                              json_path=tmp_path / "m.json")
    full = verification_stage(faces["student"], faces["ver"], dataset="ver", scale=4, results=tmp_path / "r.csv",
                              json_path=tmp_path / "f.json", lr_source="disk")
    assert made["metrics"] == full["metrics"] and made["lr_images"]["source"] == "degrade"


def test_results_of_another_kind_are_refused_and_left_as_they_were(faces, tmp_path):
    ck = faces["teacher"]
    theirs = tmp_path / "theirs.csv"
    theirs.write_text("name,score\nalice,1\n")
    assert_one_line_error(run_cli("eval", "verification", "--data", faces["ver"], "--ckpt", ck, "--results", theirs),
                          str(theirs), "not fskd's results columns")
    assert theirs.read_text() == "name,score\nalice,1\n"
    assert_one_line_error(run_cli("eval", "verification", "--data", faces["ver"], "--ckpt", ck, "--results", tmp_path),
                          str(tmp_path), "is a folder")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_one_line_error(run_cli("eval", "verification", "--data", faces["ver"], "--ckpt", ck,
                                  "--results", blocker / "r.csv"), "is a file, not a folder")


def _append_rows(path: str, start: int) -> None:
    from fskd_cli.core.io import append_csv
    from fskd_cli.core.results import RESULT_FIELDS

    for i in range(start, start + 30):
        append_csv(path, {f: str(i) for f in RESULT_FIELDS}, RESULT_FIELDS)


def test_two_evals_creating_results_csv_at_once_write_one_header(tmp_path):
    import multiprocessing

    from fskd_cli.core.results import RESULT_FIELDS

    path = tmp_path / "results.csv"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_rows, args=(str(path), k * 100)) for k in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    lines = path.read_text().splitlines()
    assert lines.count(",".join(RESULT_FIELDS)) == 1
    assert lines[0].startswith("run,") and len(lines) == 1 + 90


def test_device_auto_and_a_missing_gpu():
    import torch

    from fskd_cli.core.device import resolve_device

    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(FskdError, match="--device: unknown device 'gpu0'"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(FskdError, match="--device cuda: no CUDA device"):
            resolve_device("cuda")


def test_eval_and_analyze_default_to_device_auto():
    for cmd in (["eval", "--help"], ["analyze", "norms", "--help"], ["analyze", "attention", "--help"]):
        out = " ".join(run_cli(*cmd).stdout.split())
        assert "auto (CUDA when available" in out and "[default: auto]" in out, cmd


def test_a_bgr_checkpoint_is_fed_bgr(faces, tmp_path):
    """Model input goes through the checkpoint's recorded preprocessing, not a constant RGB scaling."""
    import torch

    from fskd_cli.evaluate.pairs import verification_stage

    ck = torch.load(faces["teacher"], weights_only=True)
    ck["preprocess"] = {"color": "bgr", "mean": 127.5, "std": 127.5}
    bgr = tmp_path / "bgr" / "checkpoint.pt"
    bgr.parent.mkdir()
    torch.save(ck, bgr)
    common = dict(dataset="ver", scale=1, results=tmp_path / "r.csv")
    rgb_res = verification_stage(faces["teacher"], faces["ver"], json_path=tmp_path / "rgb.json",
                                 scores_csv=tmp_path / "rgb.csv", **common)
    bgr_res = verification_stage(bgr, faces["ver"], json_path=tmp_path / "bgr.json", scores_csv=tmp_path / "bgr.csv",
                                 **common)
    assert bgr_res["setting"]["preprocess"]["color"] == "bgr" and rgb_res["setting"]["preprocess"]["color"] == "rgb"
    assert [r["score"] for r in rows_of(tmp_path / "rgb.csv")] != [r["score"] for r in rows_of(tmp_path / "bgr.csv")]
