"""Cases a new user with their own data tried against prepare, eval and analyze (tryout c): each was a traceback,
a rerun that kept what the user had fixed or mixed old files with new, a user's file replaced, or figures recorded
under the wrong benchmark; each now does the right thing or ends in one line before any output.

The face runs are conftest's tiny iResNet teacher and F-SKD student (2 steps each); commands run in this process.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import (
    assert_one_line_error,
    build_face_runs,
    encode,
    face,
    make_tinyface,
    rows_of,
    run_main,
    write_face_set,
    write_insightface_rec,
)


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> dict[str, Path]:
    return build_face_runs(tmp_path_factory.mktemp("tryout_c"), steps=2)


def _meta_copy(source: Path, folder: Path, **changes) -> Path:
    """A copy of ``source``'s meta.yaml and manifest.csv (no image: the check comes first) with ``changes``."""
    folder.mkdir()
    shutil.copy(source / "manifest.csv", folder / "manifest.csv")
    meta = yaml.safe_load((source / "meta.yaml").read_text())
    (folder / "meta.yaml").write_text(yaml.safe_dump({**meta, **changes}))
    return folder


@pytest.mark.parametrize("key, value", [("num_classes", "10"), ("name", ["digits"]), ("image_size", "abc"),
                                        ("degradation", "bilinear"), ("scales", [1, 3])])
def test_a_hand_edited_meta_yaml_names_the_key(tmp_path, tiny_teacher, tiny_digits, key, value):
    """num_classes "10" and name [..] were TypeErrors; image_size "abc" blamed the checkpoint ("holds abcpx")."""
    data = _meta_copy(tiny_digits, tmp_path / "d", **{key: value})
    result = run_main("eval", "digits", "--ckpt", tiny_teacher, "--data", data, "--results", tmp_path / "r.csv")
    assert_one_line_error(result, str(data / "meta.yaml"), f"{key} must be")
    assert not (tmp_path / "r.csv").exists()


def test_a_holdout_entry_edited_by_hand_is_named(tmp_path):
    """`holdout: yes` was an AttributeError."""
    data = write_face_set(tmp_path / "train", "train", [(i, k, "") for i in range(4) for k in range(4)], split="train")
    meta = yaml.safe_load((data / "meta.yaml").read_text())
    (data / "meta.yaml").write_text(yaml.safe_dump({**meta, "holdout": True}))
    assert_one_line_error(run_main("prepare", "holdout", data, "--identities", "2", "--pairs", "20"),
                          "holdout must be a mapping")


def _rec(folder: Path, size: int = 112) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_insightface_rec(folder, [(i, encode(face(i, k, size))) for i in range(2) for k in range(2)])
    return folder


def _images(out: Path) -> list[str]:
    return sorted(p.relative_to(out / "images").as_posix() for p in (out / "images").rglob("*.png"))


def test_a_forced_start_over_leaves_none_of_the_old_images(tmp_path):
    """--force with other scales kept images/x4 of the old run beside x2 (meta.yaml: scales [1, 2]); with fewer
    photos it kept the images of those no longer in the manifest."""
    src, out = _rec(tmp_path / "src"), tmp_path / "out"
    assert run_main("prepare", "rec", src, "--out", out, "--scales", "1,4").exit_code == 0
    assert run_main("prepare", "rec", src, "--out", out, "--scales", "1,2", "--force").exit_code == 0
    assert {p.split("/")[0] for p in _images(out)} == {"hr", "x2"}
    assert run_main("prepare", "rec", src, "--out", out, "--scales", "1", "--limit", "2", "--force").exit_code == 0
    assert _images(out) == sorted(r["path"].removeprefix("images/") for r in rows_of(out / "manifest.csv"))
    assert len(_images(out)) == 2


def test_a_photo_the_user_fixed_is_read_again_on_rerun(tmp_path):
    """A rerun with the same options kept the old 'wrong_size' rows though the source now held good images:
    the only way out was --force, preparing every photo again."""
    src, out = _rec(tmp_path / "src", size=32), tmp_path / "out"
    assert_one_line_error(run_main("prepare", "rec", src, "--out", out), "none of its 4 images is usable")
    _rec(src)  # the user replaces the records with aligned 112 x 112 faces
    assert run_main("prepare", "rec", src, "--out", out).exit_code == 0
    assert {r["status"] for r in rows_of(out / "manifest.csv")} == {"ok"} and len(_images(out)) == 4 * 4


@pytest.fixture()
def people(tmp_path) -> Path:
    """Identity folders ann/ and bob/ of two photos each."""
    for person in ("ann", "bob"):
        (tmp_path / "src" / person).mkdir(parents=True)
        for k in range(2):
            (tmp_path / "src" / person / f"{k}.png").write_bytes(encode(face(len(person), k)))
    return tmp_path / "src"


@pytest.mark.parametrize("lines, needle", [
    (["ann/0.png,ann/1.png,1", "ann/0.png,bob/0.png,0"], "2 pairs cannot be split into 10 equal"),
    (["ann/0.png,ann/1.png,1"] * 10, "all pairs are same-identity"),
    (["ann/0.png,ann/1.png,1", "ann/0.png,bob/0.png,0", "bob/1.png,bob/1.png,1"], "line 4: pairs 'bob/1.png' with itself"),
    (["ann/0.png,ann/1.png,1", "ann/0.png,bob/0.png,1"] * 5, "line 3: same is 1 for 'ann/0.png' and 'bob/0.png', "
                                                             "but they are 'ann' and 'bob'"),
    (["ann/0.png,ann/1.png,0", "ann/0.png,bob/0.png,0"] * 5, "line 2: same is 0 for 'ann/0.png' and 'ann/1.png', "
                                                             "but both are 'ann'"),
])
def test_a_pair_list_eval_cannot_use_is_refused_before_any_photo_is_aligned(people, tmp_path, lines, needle):
    """Each was prepared (MTCNN over every photo) and then refused by `fskd eval`, or, for a label that contradicts
    the identity folders, evaluated against the wrong truth."""
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("left,right,same\n" + "\n".join(lines) + "\n")
    assert_one_line_error(run_main("prepare", "folder", people, "--out", tmp_path / "out", "--pairs", pairs),
                          str(pairs), needle)
    assert not (tmp_path / "out" / "manifest.csv").exists()


def test_save_scores_never_replaces_a_users_file(faces, tmp_path):
    """It overwrote any file of that name; a scores file of its own is still replaced."""
    mine = tmp_path / "scores.csv"
    mine.write_text("my,own\n1,2\n")
    args = ("eval", "verification", "--ckpt", faces["student"], "--data", faces["ver"], "--results", tmp_path / "r.csv")
    assert_one_line_error(run_main(*args, "--save-scores", mine), str(mine), "choose another --save-scores")
    assert mine.read_text() == "my,own\n1,2\n" and not (tmp_path / "r.csv").exists()
    ours = tmp_path / "ours.csv"
    for _ in range(2):
        assert run_main(*args, "--save-scores", ours).exit_code == 0
    assert len(rows_of(ours)) == 40


@pytest.mark.parametrize("benchmark, data", [("agedb", "ver"), ("lfw", "ver"), ("tinyface", "ident")])
def test_a_named_benchmark_refuses_a_set_of_the_users_own(faces, tmp_path, benchmark, data):
    """`eval agedb --data data/myfaces` recorded the user's own pairs as AgeDB rows of results.csv (beside the
    paper's AgeDB numbers in a report)."""
    result = run_main("eval", benchmark, "--ckpt", faces["student"], "--data", faces[data], "--results", tmp_path / "r.csv")
    generic = "verification" if data == "ver" else "identification"
    assert_one_line_error(result, f"a set named '{data}', not {benchmark}", f"`fskd eval {generic}`")
    assert not (tmp_path / "r.csv").exists()


def test_pairs_of_a_held_out_set_are_among_its_test_images(faces, tmp_path):
    """A pair edited to name a training image (a person the model may have learnt) was scored with the others."""
    data = tmp_path / "train"
    shutil.copytree(faces["train"], data)
    assert run_main("prepare", "holdout", data, "--identities", "2", "--pairs", "20").exit_code == 0
    seen = next(r["path"] for r in rows_of(data / "manifest.csv") if r["split"] == "train")
    pairs = rows_of(data / "pairs.csv")
    pairs[0]["left"] = seen
    with open(data / "pairs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["left", "right", "same"])
        writer.writeheader()
        writer.writerows(pairs)
    result = run_main("eval", "verification", "--ckpt", faces["student"], "--data", data, "--results", tmp_path / "r.csv")
    assert_one_line_error(result, "pairs.csv, line 2", repr(seen), "'train' split")


@pytest.mark.parametrize("command", ["norms", "correlation", "attention"])
def test_analyze_on_a_set_of_another_size_or_native_crops_is_one_line_before_any_output(faces, tmp_path, command):
    """norms and correlation on 48 px images were a RuntimeError in the first linear layer, and on native TinyFace
    crops a ValueError from stacking images of different sizes; attention's check came after the output folder."""
    big = write_face_set(tmp_path / "big", "verification", [(i, k, "") for i in range(2) for k in range(2)], size=48,
                         scales=())
    args = ("analyze", command, "--ckpt", faces["student"], "--scale", "4", "--images", "2", "--device", "cpu")
    assert_one_line_error(run_main(*args, "--data", big, "--out", tmp_path / "a"), "takes 32px inputs", "48px images")
    native = tmp_path / "native"
    assert run_main("prepare", "tinyface", make_tinyface(tmp_path / "tf"), "--out", native, "--layout", "native",
                    "--workers", "1").exit_code == 0
    assert_one_line_error(run_main(*args, "--data", native, "--out", tmp_path / "a"), str(native / "meta.yaml"),
                          "native low-resolution crops")
    assert not (tmp_path / "a").exists()


def test_an_identification_role_edited_by_hand_is_named_not_left_out(faces, tmp_path):
    """A probe whose role was typed 'Probe' was silently left out of the search (counted as 'no role')."""
    data = tmp_path / "ident"
    shutil.copytree(faces["ident"], data)
    rows = rows_of(data / "manifest.csv")
    rows[0]["role"] = "Probe"
    with open(data / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = run_main("eval", "identification", "--ckpt", faces["student"], "--data", data, "--results", tmp_path / "r.csv")
    assert_one_line_error(result, str(data / "manifest.csv"), f"{rows[0]['path']} has role 'Probe'")
    assert not (tmp_path / "r.csv").exists()


def test_two_results_files_joined_with_their_headers_name_the_repeated_header(tmp_path):
    """`cat a/results.csv b/results.csv` was refused as "value 'value' is not a finite number"."""
    header = "run,method,dataset,scale,seed,teacher,metric,value,ckpt,timestamp\n"
    row = "f-skd,f-skd,orl,4,{s},,accuracy,0.9,runs/s{s}/f-skd/checkpoint.pt,2026-01-01T00:00:0{s}+00:00\n"
    joined = tmp_path / "joined.csv"
    joined.write_text(header + row.format(s=0) + header + row.format(s=1))
    assert_one_line_error(run_main("analyze", "table", "--results", joined, "--out", tmp_path / "t"),
                          str(joined), "data row 2 repeats the header")


def test_a_source_inside_the_outs_image_folder_is_refused(tmp_path):
    """`prepare rec data/images/webface --out data --force` wrote its images among the user's records, and a later
    start over (which clears images/) would have deleted them."""
    out = tmp_path / "data"
    src = _rec(out / "images" / "webface")
    before = sorted(p.name for p in src.iterdir())
    assert_one_line_error(run_main("prepare", "rec", src, "--out", out, "--force"), f"{out}: its images/ folder holds")
    assert sorted(p.name for p in src.iterdir()) == before and not (out / "manifest.csv").exists()


def test_a_set_of_one_fold_is_refused_not_cut_into_ten(faces, tmp_path):
    """`prepare lfw --pairs pairsDevTrain.txt` (View 1: one fold, same pairs first) was evaluated as 10 folds, the
    first half of them of same-identity pairs only."""
    data = _meta_copy(faces["ver"], tmp_path / "lfw", folds=1, pairs_file="pairsDevTrain.txt")
    result = run_main("eval", "verification", "--ckpt", faces["student"], "--data", data, "--results", tmp_path / "r.csv")
    assert_one_line_error(result, str(data / "meta.yaml"), "1 fold(s) (from pairsDevTrain.txt)", "needs 10")
    assert not (tmp_path / "r.csv").exists()


def test_a_pair_list_saved_by_a_spreadsheet_is_read_or_named(people, tmp_path):
    """A UTF-8 BOM (Excel's "CSV UTF-8") was "needs the header left,right,same"; a Latin-1 file a UnicodeDecodeError
    and a short line an AttributeError, both tracebacks."""
    from fskd_cli.data.readers.folder import read_folder

    pairs = tmp_path / "pairs.csv"
    pairs.write_bytes(b"\xef\xbb\xbfleft,right,same\r\n" + b"ann/0.png,ann/1.png,1\r\nann/0.png,bob/0.png,0\r\n" * 5)
    assert read_folder(people, "folder", pairs=pairs).pairs[:2] == [("ann/0.png", "ann/1.png", 1),
                                                                   ("ann/0.png", "bob/0.png", 0)]
    for content, needle in ((b"left,right,same\nann/0.png,b\xf6b/0.png,0\n", "not a UTF-8 CSV file"),
                            (b"same,left,right\n1\n", "line 2: a pair needs left, right and same")):
        pairs.write_bytes(content)
        assert_one_line_error(run_main("prepare", "folder", people, "--out", tmp_path / "out", "--pairs", pairs),
                              str(pairs), needle)


def test_accuracy_on_the_training_split_is_its_own_row_not_the_test_accuracy(tmp_path, tiny_teacher, tiny_digits):
    """`eval digits --split train` was recorded as plain `digits` (and into digits_x1.json): the latest row per run
    wins in a table, so the training accuracy replaced the test accuracy."""
    results, run = tmp_path / "r.csv", tmp_path / "teacher"
    shutil.copytree(tiny_teacher, run)  # its eval/ folder is this test's own
    for split in ("test", "train"):
        assert run_main("eval", "digits", "--ckpt", run, "--data", tiny_digits, "--split", split,
                        "--results", results).exit_code == 0
    assert [r["dataset"] for r in rows_of(results)] == ["digits", "digits[train]"]
    assert (run / "eval" / "digits_x1.json").exists() and (run / "eval" / "digits_train_x1.json").exists()


@pytest.mark.parametrize("benchmark, data", [("verification", "ver"), ("identification", "ident")])
def test_cross_resolution_at_hr_is_refused(faces, tmp_path, benchmark, data):
    """--cross-resolution without --scale compared HR with HR and recorded the HR figures again as `ver[cross-res]`."""
    result = run_main("eval", benchmark, "--ckpt", faces["student"], "--data", faces[data], "--cross-resolution",
                      "--results", tmp_path / "r.csv")
    assert_one_line_error(result, "--cross-resolution", "--scale 2, 4 or 8")
    assert not (tmp_path / "r.csv").exists()


def test_analyze_takes_aligned_tinyface_for_112_px_faces(faces, tmp_path):
    """AdaFace's aligned TinyFace (no image_size in meta.yaml, all 112 x 112) is told from the native crops."""
    for folder, names in {"Probe": ["1_1.jpg"], "Gallery_Match": ["1_2.jpg"], "Gallery_Distractor": ["a.jpg"]}.items():
        (tmp_path / "src" / "aligned_pad_0.1_pad_high" / folder).mkdir(parents=True)
        for k, name in enumerate(names):
            (tmp_path / "src" / "aligned_pad_0.1_pad_high" / folder / name).write_bytes(encode(face(1, k, 112)))
    data = tmp_path / "tinyface"
    assert run_main("prepare", "tinyface", tmp_path / "src", "--out", data, "--workers", "1").exit_code == 0
    result = run_main("analyze", "norms", "--ckpt", faces["student"], "--data", data, "--out", tmp_path / "a")
    assert_one_line_error(result, "takes 32px inputs", "holds 112px images")


def test_a_limit_that_leaves_out_pairs_says_so(people, tmp_path):
    """--limit 2 with a pair list kept none of its pairs and said "0 pairs" only in the summary, exit 0."""
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("left,right,same\n" + "ann/0.png,ann/1.png,1\nann/1.png,bob/1.png,0\n" * 5)
    result = run_main("prepare", "folder", people, "--out", tmp_path / "out", "--pairs", pairs, "--limit", "2",
                      "--on-no-face", "center", "--scales", "1", "--workers", "1")
    assert result.exit_code == 0 and "--limit 2 keeps 5 of the 10 pairs" in result.stderr
    assert len(rows_of(tmp_path / "out" / "pairs.csv")) == 5


@pytest.mark.parametrize("command, option", [("attention", ("--images", "0")), ("norms", ("--split", "tset"))])
def test_an_analysis_option_mistake_leaves_no_output_folder(faces, tmp_path, command, option):
    """Both were refused in one line after --out was made and claimed: an empty folder was left behind."""
    result = run_main("analyze", command, "--ckpt", faces["student"], "--data", faces["ver"], "--scale", "4",
                      "--out", tmp_path / "a", *option)
    assert_one_line_error(result, option[0])
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("other", ["--save-scores", "--roc"])
def test_one_file_for_two_eval_outputs_is_refused_before_the_work(faces, tmp_path, monkeypatch, other):
    """--results and --save-scores (or --roc) of one name: the scores or the figure were written, then the results
    rows refused ("a CSV with columns left,right,... not fskd's"), after every image was embedded."""
    monkeypatch.chdir(tmp_path)
    result = run_main("eval", "verification", "--ckpt", faces["student"], "--data", faces["ver"], "--results", "out.csv",
                      other, "./out.csv")
    assert_one_line_error(result, "out.csv: named by both --results and " + other)
    assert not (tmp_path / "out.csv").exists()


def test_a_pair_of_an_image_with_itself_is_refused_by_eval(faces, tmp_path):
    """A pairs.csv edited to pair an image with itself scored a sure match into the accuracy."""
    data = tmp_path / "ver"
    shutil.copytree(faces["ver"], data)
    pairs = rows_of(data / "pairs.csv")
    pairs[3]["right"] = pairs[3]["left"]
    with open(data / "pairs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["left", "right", "same"])
        writer.writeheader()
        writer.writerows(pairs)
    result = run_main("eval", "verification", "--ckpt", faces["student"], "--data", data, "--results", tmp_path / "r.csv")
    assert_one_line_error(result, "pairs.csv, line 5", f"pairs {pairs[3]['left']!r} with itself")


def test_a_model_trained_before_the_holdout_is_not_scored_on_the_held_out_people(tmp_path):
    """prepare folder -> train-teacher -> prepare holdout -> eval: the teacher had trained on the people now held
    out, and its accuracy on them was recorded as if on unseen people."""
    data = write_face_set(tmp_path / "faces", "train", [(i, k, "") for i in range(4) for k in range(4)], split="train")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "faces", "data": {"path": str(data)}, "train": {"batch_size": 8, "lr": 0.1, "steps": 1},
        "model": {"name": "iresnet18", "kwargs": {"base_width": 4, "input_size": 32, "embedding_size": 8},
                  "head": "cosface"}}))
    assert run_main("train-teacher", "--recipe", recipe, "--out", tmp_path / "early").exit_code == 0
    assert run_main("prepare", "holdout", data, "--identities", "2", "--pairs", "20").exit_code == 0
    assert run_main("train-teacher", "--recipe", recipe, "--out", tmp_path / "late").exit_code == 0
    args = ("eval", "verification", "--data", data, "--results", tmp_path / "r.csv", "--ckpt")
    assert_one_line_error(run_main(*args, tmp_path / "early"), "before its identities were split", "held-out people")
    assert not (tmp_path / "r.csv").exists()
    assert run_main(*args, tmp_path / "late").exit_code == 0
    # a student distilled after the holdout from the early teacher learnt from a model that saw them
    from fskd_cli.core.config import resolve
    from fskd_cli.train.loop import train

    student = train(resolve(recipe, {"distill.method": "f-skd", "distill.teacher": str(tmp_path / "early"),
                                     "distill.scale": "4"}), tmp_path / "student", kind="student")
    assert_one_line_error(run_main(*args, student), f"its teacher {tmp_path / 'early' / 'checkpoint.pt'} was trained")
