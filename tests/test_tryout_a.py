"""Mistakes a new user made against fskd that the other test files do not make, each now one line or a clear
Python error: checkpoints whose fields contradict each other or overflow, a correlation against a teacher of
another architecture, a report over damaged files a study folder may hold, ``--out`` names that are not
fskd's files, and API calls with the wrong types.

The runs are a resnet_32 of width 4 on the shared tiny digits, trained for 2 steps (teacher and student);
every command runs in this process (``run_main``).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from conftest import assert_one_line_error, noise_png, run_main, train_pair, write_recipe
from PIL import Image


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_digits) -> dict[str, Path]:
    """A teacher and its 4x F-SKD student (2 steps each), and a teacher of twice the width (1 step)."""
    from fskd_cli.core.config import resolve
    from fskd_cli.train.loop import train

    tmp = tmp_path_factory.mktemp("tryout")
    teacher, student = train_pair(tmp, tiny_digits, steps=2)
    wide = write_recipe(tmp / "wide.yaml", tiny_digits,
                        model={"name": "resnet_32", "kwargs": {"layers": [1, 1, 1, 1], "width": 8}})
    other = train(resolve(wide), tmp / "wide_teacher", kind="teacher", stop_after=1)
    return {"teacher": teacher, "student": student, "other": other}


@pytest.fixture()
def crop(tmp_path) -> Path:
    return noise_png(tmp_path / "crop.png", 8)


def edited(source: Path, folder: Path, change) -> Path:
    """A copy of checkpoint ``source`` with ``change(raw_dict)`` applied, as ``folder/checkpoint.pt``."""
    raw = torch.load(source, map_location="cpu", weights_only=True)
    change(raw)
    out = folder / "checkpoint.pt"
    out.parent.mkdir(parents=True)
    torch.save(raw, out)
    return out


def _integer_weight(raw) -> None:
    name = next(k for k, v in raw["model"].items() if v.is_floating_point())
    raw["model"][name] = raw["model"][name].round().long()


# (which run, the change, what the line says): each crashed (traceback), exhausted memory, or was used silently
CHECKPOINTS = {
    "config.data a list": ("teacher", lambda r: (r["config"].__setitem__("data", [1]), r.pop("degradation")),
                           "config.data must be a mapping"),
    "config.data.path a number": ("teacher", lambda r: (r["config"]["data"].__setitem__("path", 5),
                                                        r.pop("degradation")), "config.data.path must be text"),
    "config.model a string": ("teacher", lambda r: (r["config"].__setitem__("model", "x"), r.pop("input_size")),
                              "config.model must be a mapping"),
    "a million classes": ("teacher", lambda r: r.__setitem__("num_classes", 10**6), "head weight has shape (10, "),
    "input size of 5000 px": ("teacher", lambda r: r.__setitem__("input_size", 5000), "input_size must be"),
    "a width in words": ("teacher", lambda r: r["arch"]["kwargs"].__setitem__("width", "four"), "arch.kwargs.width"),
    "a negative width": ("teacher", lambda r: r["arch"]["kwargs"].__setitem__("width", -4), "arch.kwargs.width must be"),
    "mean a string": ("teacher", lambda r: r.__setitem__("preprocess", {"mean": "abc"}), "mean must be finite numbers"),
    "mean NaN": ("teacher", lambda r: r.__setitem__("preprocess", {"mean": float("nan")}), "mean must be finite"),
    "std infinite": ("teacher", lambda r: r.__setitem__("preprocess", {"std": float("inf")}), "std must be finite"),
    "std True": ("teacher", lambda r: r.__setitem__("preprocess", {"std": True}), "std must be finite"),
    "student scale 0": ("student", lambda r: r.__setitem__("scale", 0), "scale"),
    "teacher at scale 4": ("teacher", lambda r: r.__setitem__("scale", "4"), "a teacher is trained at scale 1"),
    "no training scales": ("teacher", lambda r: r["degradation"].__setitem__("scales", []), "contradicts scale 1"),
    "teacher relabelled student": ("teacher", lambda r: r.update(kind="student", method="f-skd", scale="4"),
                                   "contradicts scale 4"),
    "integer weights": ("teacher", _integer_weight, "torch.int64 values"),
    "version a list": ("teacher", lambda r: r.__setitem__("fskd_version", [1]), "fskd_version must be text"),
    "imported a string": ("teacher", lambda r: r.__setitem__("imported", "yes"), "imported must be a mapping"),
}


@pytest.mark.parametrize("case", list(CHECKPOINTS))
def test_a_checkpoint_that_contradicts_itself_or_overflows_is_one_line(case, runs, tmp_path, crop):
    which, change, needle = CHECKPOINTS[case]
    bad = edited(runs[which], tmp_path / "bad", change)
    out = tmp_path / "e.npz"
    result = run_main("embed", crop, "--aligned", "--ckpt", bad, "--out", out, "--device", "cpu")
    assert_one_line_error(result, str(bad), needle)
    assert not out.exists()


def test_correlation_with_a_teacher_of_another_architecture_is_one_line(runs, tmp_path, tiny_digits):
    result = run_main("analyze", "correlation", "--ckpt", runs["student"], "--teacher", runs["other"],
                      "--data", tiny_digits, "--out", tmp_path / "a", "--device", "cpu")
    assert_one_line_error(result, str(runs["other"]), "B1 8x32x32 vs 4x32x32")
    assert not (tmp_path / "a" / "correlation.csv").exists()


def test_a_report_over_damaged_files_of_a_study_is_written(runs, tmp_path):
    """An eval JSON that is no object, a summary CSV of other columns, a log that is not UTF-8, a results row
    without its method: the page is written, leaving out what it cannot read and saying why."""
    study = tmp_path / "study"
    run = study / "teacher"
    shutil.copytree(runs["teacher"].parent, run)
    (run / "eval").mkdir()
    (run / "eval" / "list.json").write_text("[1, 2]")
    (run / "eval" / "odd.json").write_text(json.dumps({"metrics": [1], "dataset": 5, "roc_png": 7}))
    (run / "log.csv").write_bytes(b"step\xff\n1\n")
    figures = study / "analysis"
    figures.mkdir()
    Image.new("RGB", (4, 4)).save(figures / "norms.png")
    (figures / "norms_summary.csv").write_text("x,y\n1,2\n")
    with open(study / "results.csv", "w", newline="") as f:
        csv.writer(f).writerows([["run", "method", "dataset", "scale", "seed", "teacher", "metric", "value", "ckpt",
                                  "timestamp"],
                                 ["teacher", "", "digits", "1", "0", "", "accuracy", "0.5", str(run / "checkpoint.pt"),
                                  "2026-01-01T00:00:00+00:00"]])
    result = run_main("report", study, "--out", tmp_path / "page.md")
    assert result.exit_code == 0, result.stderr
    page = (tmp_path / "page.md").read_text()
    assert "data row 1 has an empty 'method' cell" in page and "not an `fskd analyze` summary" in page
    assert "No evals yet" in page
    assert_one_line_error(run_main("analyze", "table", "--results", study / "results.csv", "--out", tmp_path / "t.md"),
                          "empty 'method' cell")


def test_embed_out_never_replaces_a_broken_link_or_a_users_csv(runs, tmp_path, crop):
    link = tmp_path / "link.npz"
    link.symlink_to(tmp_path / "elsewhere" / "x.npz")
    assert_one_line_error(run_main("embed", crop, "--aligned", "--ckpt", runs["teacher"], "--out", link),
                          str(link), "broken symbolic link")
    assert link.is_symlink() and os.readlink(link) == str(tmp_path / "elsewhere" / "x.npz")
    mine = tmp_path / "mine.csv"
    for header in ("path,status,reason\n", "path,status,reason,note\nx,ok,,1\n"):
        mine.write_text(header)
        assert_one_line_error(run_main("embed", crop, "--aligned", "--ckpt", runs["teacher"], "--out", mine),
                              str(mine), "not an `fskd embed` output")
        assert mine.read_text() == header
    ours = tmp_path / "ours.csv"
    for _ in range(2):  # an earlier embed .csv is replaced
        assert run_main("embed", crop, "--aligned", "--ckpt", runs["teacher"], "--out", ours).exit_code == 0


def test_api_calls_with_the_wrong_types_raise_what_python_users_expect(runs, crop):
    from fskd_cli import api

    model = api.load(runs["teacher"], device="cpu")
    with pytest.raises(TypeError, match="api.load"):
        api.embed(str(runs["teacher"]), crop, aligned=True)
    with pytest.raises(TypeError, match="flip must be True or False"):
        api.embed(model, crop, aligned=True, flip="no")
    with pytest.raises(TypeError, match="aligned must be True or False"):
        api.verify(model, crop, crop, aligned="yes", threshold=0.5)
    for images in (bytes(crop), 5, None):
        with pytest.raises(TypeError, match="a list of them"):
            api.embed(model, images, aligned=True)
    with pytest.raises(ValueError, match="one of 1, 2, 4, 8, got 3") as e:
        api.embed(model, crop, aligned=True, scale=3)
    assert "multi" not in str(e.value)
    assert api.embed(model, [crop, str(crop)], aligned=True).shape == (2, model.embedding_size)


def test_links_and_fifos_among_the_photos_are_rows_and_never_wait(runs, tmp_path, crop):
    """A folder's broken link, link loop and FIFO with image names were dropped from the count without a word;
    a FIFO named to verify or read for --scale would have waited for a writer forever."""
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(crop, folder / "a.png")
    (folder / "broken.png").symlink_to(tmp_path / "gone.png")
    (folder / "loop1.png").symlink_to(folder / "loop2.png")
    (folder / "loop2.png").symlink_to(folder / "loop1.png")
    os.mkfifo(folder / "fifo.png")
    out = tmp_path / "e.csv"
    result = run_main("embed", folder, "--aligned", "--ckpt", runs["teacher"], "--out", out)
    assert result.exit_code == 0, result.stderr
    with open(out, newline="") as f:
        rows = {Path(r["path"]).name: (r["status"], r["reason"]) for r in csv.DictReader(f)}
    assert rows["a.png"][0] == "ok" and len(rows) == 5
    assert rows["broken.png"] == ("unreadable", f"broken symbolic link (its target {tmp_path / 'gone.png'} does not exist)")
    assert rows["loop1.png"] == rows["loop2.png"] == ("unreadable", "symbolic link loop")
    assert rows["fifo.png"][0] == "unreadable" and "not a regular file" in rows["fifo.png"][1]
    big = folder / "big.png"
    Image.new("RGB", (64, 64)).save(big)
    result = run_main("embed", big, folder / "fifo.png", "--aligned", "--scale", "2", "--ckpt", runs["teacher"],
                      "--out", tmp_path / "s.npz")
    assert result.exit_code == 0, result.stderr
    assert_one_line_error(run_main("verify", crop, folder / "fifo.png", "--aligned", "--threshold", "0.5", "--ckpt",
                                   runs["teacher"]), str(folder / "fifo.png"), "not a regular file")


def test_an_eval_into_a_run_whose_eval_is_a_file_is_one_line(runs, tmp_path, tiny_digits):
    run = tmp_path / "run"
    shutil.copytree(runs["teacher"].parent, run)
    shutil.rmtree(run / "eval", ignore_errors=True)
    (run / "eval").write_text("mine\n")
    result = run_main("eval", "digits", "--ckpt", run, "--data", tiny_digits, "--results", tmp_path / "r.csv")
    assert_one_line_error(result, str(run / "eval"), "a file is there")
    assert (run / "eval").read_text() == "mine\n"


def test_an_in_place_fingerprint_of_the_wrong_types_names_meta_yaml(tmp_path):
    """A path that is a number crashed; a size in words read as "your .rec changed", blaming the user's file."""
    import yaml
    from conftest import encode, pattern, write_insightface_rec

    from fskd_cli.core.errors import FskdError
    from fskd_cli.data.manifest import check_source

    src = tmp_path / "src"
    src.mkdir()
    write_insightface_rec(src, [(i // 2, encode(pattern(i))) for i in range(4)])
    data = tmp_path / "data"
    assert run_main("prepare", "rec", src, "--in-place", "--out", data, "--workers", "1").exit_code == 0
    meta_file = data / "meta.yaml"
    meta = yaml.safe_load(meta_file.read_text())
    for key, value, needle in (("rec", 5, "a list of rec/idx paths"), ("size", "abc", "not one fskd wrote"),
                               ("mtime_ns", True, "not one fskd wrote")):
        edited = yaml.safe_load(yaml.safe_dump(meta))
        part = edited["records"][0]
        (part if key == "rec" else part["fingerprint"])[key] = value
        meta_file.write_text(yaml.safe_dump(edited))
        with pytest.raises(FskdError, match=needle) as e:
            check_source(data)
        assert str(e.value).startswith(f"{meta_file}: ")


def test_report_pages_of_one_name_in_both_formats_and_a_users_md_beside_an_html_page(runs, tmp_path, tiny_digits):
    """An .md report after an .html one of the same name was refused (its tables "beside no report page"); an
    .html report was refused for a user's .md of the same name, which it does not write."""
    run = tmp_path / "teacher"
    shutil.copytree(runs["teacher"].parent, run)
    results = tmp_path / "results.csv"
    assert run_main("eval", "digits", "--ckpt", run, "--data", tiny_digits, "--results", results).exit_code == 0
    for out in (tmp_path / "a.html", tmp_path / "a.md", tmp_path / "a.html"):
        result = run_main("report", run, "--results", results, "--out", out)
        assert result.exit_code == 0, result.stderr
        assert (tmp_path / "a_table.md").exists()
    notes = tmp_path / "b.md"
    notes.write_text("my notes\n")
    assert run_main("report", run, "--results", results, "--out", tmp_path / "b.html").exit_code == 0
    assert notes.read_text() == "my notes\n"
    assert_one_line_error(run_main("report", run, "--results", results, "--out", notes), str(notes),
                          "not an `fskd report` output")


def test_eval_on_a_set_of_another_task_names_it_with_its_article(runs, tmp_path):
    from conftest import write_face_set

    ident = write_face_set(tmp_path / "ident", "identification", [(0, 0, "probe"), (0, 1, "gallery")])
    result = run_main("eval", "digits", "--ckpt", runs["teacher"], "--data", ident, "--results", tmp_path / "r.csv")
    assert_one_line_error(result, "an identification set, but `fskd eval digits` needs a classification set")


def test_a_checkpoint_that_is_a_broken_link_or_a_loop_says_so(tmp_path, crop):
    """Each was "checkpoint not found" (or "a folder without checkpoint.pt"), for a name the user can see."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").symlink_to(tmp_path / "gone.pt")
    (tmp_path / "loop1.pt").symlink_to(tmp_path / "loop2.pt")
    (tmp_path / "loop2.pt").symlink_to(tmp_path / "loop1.pt")
    for ckpt, needle in ((run, f"a broken symbolic link (to {tmp_path / 'gone.pt'})"),
                         (tmp_path / "loop1.pt", "a symbolic link loop")):
        result = run_main("embed", crop, "--aligned", "--ckpt", ckpt, "--out", tmp_path / "e.npz")
        assert_one_line_error(result, needle)


def test_eval_never_replaces_a_json_or_figure_it_did_not_write(runs, tmp_path, tiny_digits):
    """A checkpoint kept in a folder of the user's own: eval writes its eval/ there, and replaced the user's
    eval/digits_x1.json; an identification eval replaced a user's picture named by --cmc. Both are refused
    before any image is embedded, and an eval's own files are still replaced."""
    from conftest import write_face_set

    folder = tmp_path / "downloads"
    (folder / "eval").mkdir(parents=True)
    shutil.copy(runs["teacher"], folder / "model.pt")
    mine = folder / "eval" / "digits_x1.json"
    mine.write_text('{"my": "notes"}\n')
    results = tmp_path / "r.csv"
    args = ("eval", "digits", "--ckpt", folder / "model.pt", "--data", tiny_digits, "--results", results)
    assert_one_line_error(run_main(*args), str(mine), "not an `fskd eval` output")
    assert mine.read_text() == '{"my": "notes"}\n' and not results.exists()
    mine.unlink()
    for _ in range(2):
        assert run_main(*args).exit_code == 0
    picture = tmp_path / "picture.png"
    Image.new("RGB", (4, 4)).save(picture)
    before = picture.read_bytes()
    ident = write_face_set(tmp_path / "ident", "identification",
                           [(i, 0, "probe") for i in range(2)] + [(i, 1, "gallery") for i in range(2)])
    result = run_main("eval", "identification", "--ckpt", runs["teacher"], "--data", ident, "--results", results,
                      "--cmc", picture)
    assert_one_line_error(result, str(picture), "choose another --cmc")
    assert picture.read_bytes() == before


def test_analyze_with_a_teacher_of_another_input_size_is_one_line_before_any_output(runs, tmp_path, tiny_digits):
    bigger = edited(runs["teacher"], tmp_path / "t64", lambda r: r.__setitem__("input_size", 64))
    result = run_main("analyze", "norms", "--ckpt", runs["student"], "--teacher", bigger, "--data", tiny_digits,
                      "--out", tmp_path / "a", "--device", "cpu")
    assert_one_line_error(result, str(bigger), "64px inputs", "32px")
    assert not (tmp_path / "a").exists()
