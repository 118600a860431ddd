"""The CLI end to end on a tiny dataset, and the one-line errors users get for their mistakes."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from conftest import assert_one_line_error, run_cli, write_recipe


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, tiny_digits):
    """prepare -> train-teacher -> distill (f-skd, base) -> eval -> analyze, all through the CLI."""
    tmp = tmp_path_factory.mktemp("cli")
    recipe = write_recipe(tmp / "r.yaml", tiny_digits, distill={"scale": "4"},
                          train={"batch_size": 32, "lr": 0.05, "epochs": 1, "milestones": [1], "log_every": 3})
    runs, results = tmp / "runs", tmp / "results.csv"
    r = run_cli("train-teacher", "--recipe", recipe, "--out", runs / "t")
    assert r.returncode == 0, r.stderr
    for m in ("f-skd", "base"):
        r = run_cli("distill", "--recipe", recipe, "--method", m, "--teacher", runs / "t" / "checkpoint.pt",
                    "--out", runs / m)
        assert r.returncode == 0, r.stderr
    for run, scale in (("t", "1"), ("f-skd", "4"), ("base", "4")):
        r = run_cli("eval", "digits", "--data", tiny_digits, "--ckpt", runs / run, "--scale", scale, "--results", results)
        assert r.returncode == 0, r.stderr
    return {"runs": runs, "results": results, "data": tiny_digits, "recipe": recipe, "tmp": tmp}


def test_pipeline_writes_the_contract_files(pipeline):
    runs = pipeline["runs"]
    for run in ("t", "f-skd", "base"):
        for f in ("checkpoint.pt", "config.yaml", "log.csv"):
            assert (runs / run / f).exists()
    assert torch.load(runs / "f-skd" / "checkpoint.pt", weights_only=True)["method"] == "f-skd"
    with open(pipeline["results"]) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["run", "method", "dataset", "scale", "seed", "teacher", "metric", "value", "ckpt", "timestamp"]
    assert rows[0]["seed"] == "0"
    assert [(r["method"], r["scale"]) for r in rows] == [("teacher", "1"), ("f-skd", "4"), ("base", "4")]
    assert all(0.0 <= float(r["value"]) <= 1.0 for r in rows)
    report = json.loads((runs / "f-skd" / "eval" / "digits_x4.json").read_text())
    assert report["metrics"]["accuracy"] == pytest.approx(float(rows[1]["value"]), abs=1e-6)


def test_analyze_writes_csv_and_png(pipeline):
    runs, out = pipeline["runs"], pipeline["tmp"] / "reports"
    args = ["--teacher", runs / "t", "--ckpt", runs / "f-skd", "--ckpt", runs / "base", "--data", pipeline["data"],
            "--scale", "4", "--out", out, "--images", "40"]
    r = run_cli("analyze", "norms", *args)
    assert r.returncode == 0, r.stderr
    r = run_cli("analyze", "correlation", *args)
    assert r.returncode == 0, r.stderr
    for f in ("norms.png", "correlation.png"):
        assert (out / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(out / "norms.csv") as f:
        norms = list(csv.DictReader(f))
    assert len(norms) == 3 * 4 * 40  # teacher + 2 students, 4 blocks, 40 images
    with open(out / "correlation_summary.csv") as f:
        summary = list(csv.DictReader(f))
    assert len(summary) == 2 * 4 and all(-1 <= float(s["pearson_r"]) <= 1 for s in summary)
    r = run_cli("analyze", "table", "--results", pipeline["results"], "--out", out / "table")
    assert r.returncode == 0, r.stderr
    md = (out / "table.md").read_text()
    assert "| f-skd |" in md and "| base |" in md and "4x" in md


@pytest.mark.parametrize("args, message", [
    (["prepare", "mnist"], "No such command"),
    (["eval", "imagenet", "--ckpt", "x.pt"], "imagenet"),
    (["distill", "--recipe", "missing.yaml"], "missing.yaml: recipe not found"),
    (["eval", "digits", "--ckpt", "nowhere.pt"], "nowhere.pt: checkpoint not found"),
])
def test_user_mistakes_get_one_clear_line(args, message):
    assert message in assert_one_line_error(run_cli(*args))


def test_scale_outside_the_choices(pipeline):
    err = assert_one_line_error(run_cli("distill", "--recipe", pipeline["recipe"], "--scale", "3"))
    assert "'3' is not one of" in err
    err = assert_one_line_error(run_cli("eval", "digits", "--ckpt", pipeline["runs"] / "t", "--scale", "16"))
    assert "16" in err


def test_checkpoint_of_the_wrong_kind(pipeline):
    runs = pipeline["runs"]
    err = assert_one_line_error(run_cli("distill", "--recipe", pipeline["recipe"], "--method", "f-skd",
                                 "--teacher", runs / "base" / "checkpoint.pt", "--out", pipeline["tmp"] / "x"))
    assert "a student checkpoint (method base), but a teacher checkpoint is needed" in err
    junk = pipeline["tmp"] / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    err = assert_one_line_error(run_cli("eval", "digits", "--ckpt", junk, "--data", pipeline["data"]))
    assert "junk.pt: not a readable fskd checkpoint" in err


def test_help_has_examples():
    for cmd in (["--help"], ["prepare", "digits", "--help"], ["train-teacher", "--help"], ["distill", "--help"],
                ["eval", "--help"], ["analyze", "norms", "--help"], ["analyze", "table", "--help"]):
        r = run_cli(*cmd)
        assert r.returncode == 0 and "Example" in r.stdout, cmd
