"""Cases a new user tried against the fault suite (tryout b): each was a traceback, a run that did the wrong
thing, or work done before a doomed output was refused; each now ends in one line before any training step."""

from __future__ import annotations

import os

import pytest
import yaml
from conftest import (
    assert_one_line_error,
    assert_untouched,
    encode,
    pattern,
    run_main,
    tree_state,
    write_face_set,
    write_recipe,
)


@pytest.mark.parametrize("name", ["checkpoint.pt", "log.csv", "config.yaml"])
@pytest.mark.parametrize("special", ["folder", "fifo"])
def test_a_run_file_that_is_not_a_file_is_refused_before_training(tmp_path, tiny_recipe, name, special):
    """With --force too: the run used to train to the end, then fail writing its checkpoint."""
    out = tmp_path / "run"
    out.mkdir()
    if special == "folder":
        (out / name).mkdir()
    else:
        os.mkfifo(out / name)
    before = tree_state(tmp_path)
    result = run_main("train-teacher", "--recipe", tiny_recipe, "--out", out, "--force")
    line = assert_one_line_error(result, str(out / name), "cannot write")
    assert "teacher" not in result.stderr.replace(line, "")  # the run never began
    assert_untouched(before, tmp_path)


def test_distill_into_its_teachers_folder_is_refused_even_with_force(tmp_path, tiny_recipe, tiny_teacher):
    """--force used to replace the teacher's checkpoint with the student it was guiding."""
    before = tree_state(tiny_teacher)
    for teacher in (tiny_teacher, tiny_teacher / "checkpoint.pt"):
        result = run_main("distill", "--recipe", tiny_recipe, "--teacher", teacher, "--out", tiny_teacher, "--force")
        assert_one_line_error(result, str(tiny_teacher), "holds the teacher")
    assert_untouched(before, tiny_teacher)


@pytest.mark.parametrize("where", [".", "images/run"])
def test_a_run_inside_its_training_set_is_refused_even_with_force(tmp_path, tiny_recipe, tiny_digits, where):
    """--force used to write the run into the data folder and mark the data folder as a teacher run."""
    before = tree_state(tiny_digits)
    out = tiny_digits / where
    result = run_main("train-teacher", "--recipe", tiny_recipe, "--out", out, "--force")
    assert_one_line_error(result, str(out), "training set")
    assert_untouched(before, tiny_digits)


@pytest.fixture()
def faces(tmp_path):
    """A prepared training set of 4 people, 4 photos each."""
    return write_face_set(tmp_path / "faces", "train", [(i, k, "") for i in range(4) for k in range(4)], split="train")


@pytest.mark.parametrize("pairs", ["-20", "0"])
def test_holdout_with_no_pairs_is_refused(faces, pairs):
    """-20 was a ValueError traceback; 0 held people out with an empty pairs.csv and exit 0."""
    before = tree_state(faces)
    assert_one_line_error(run_main("prepare", "holdout", faces, "--identities", "2", "--pairs", pairs),
                          f"--pairs {pairs}", "positive multiple of 20")
    assert_untouched(before, faces)


def test_holdout_with_more_pairs_than_people_allow_names_the_option(faces):
    result = run_main("prepare", "holdout", faces, "--identities", "2", "--pairs", "1000")
    assert assert_one_line_error(result, "500 same").startswith("error: --pairs 1000: ")


def test_training_on_one_class_is_refused(tmp_path):
    """It trained to the end with a loss of 0 from the first step, exit 0."""
    data = write_face_set(tmp_path / "one", "train", [(0, k, "") for k in range(4)], split="train")
    recipe = write_recipe(tmp_path / "r.yaml", data, model={"name": "iresnet18", "kwargs": {"base_width": 4, "input_size": 32}},
                          train={"batch_size": 2, "lr": 0.1, "steps": 2})
    out = tmp_path / "run"
    assert_one_line_error(run_main("train-teacher", "--recipe", recipe, "--out", out), "manifest.csv", "1 class")
    assert not out.exists()


def test_eval_of_one_benchmark_on_anothers_set_is_refused(tmp_path, tiny_teacher, tiny_digits):
    """`eval svhn --data data/digits` used to record the digit accuracy as an SVHN row of results.csv."""
    results = tmp_path / "results.csv"
    result = run_main("eval", "svhn", "--ckpt", tiny_teacher, "--data", tiny_digits, "--results", results)
    assert_one_line_error(result, "meta.yaml", "a digits set", "fskd eval digits")
    assert not results.exists() and not (tiny_teacher / "eval" / "svhn_x1.json").exists()


def _results(path, values):
    """A results.csv of base and f-skd over seeds 0..n-1, ``values[i]`` f-skd's value for seed i."""
    from fskd_cli.core.results import RESULT_FIELDS

    rows = [",".join(RESULT_FIELDS)]
    for seed, value in enumerate(values):
        for method, v in (("base", "0.8"), ("f-skd", value)):
            run = f"{method}-s{seed}"
            rows.append(f"{run},{method},digits,4,{seed},t,accuracy,{v},runs/{run}/checkpoint.pt,2026-01-01T00:00:00")
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("command", ["table", "compare"])
@pytest.mark.parametrize("value", ["abc", "inf", "-inf"])
def test_a_damaged_value_in_results_is_named_not_dropped(tmp_path, command, value):
    """'abc' was silently read as a missing seed; 'inf' made the table's mean 'inf ± nan', exit 0."""
    results = _results(tmp_path / "results.csv", ["0.9", "0.85", value, "0.9"])
    result = run_main("analyze", command, "--results", results, "--out", tmp_path / "out")
    assert_one_line_error(result, str(results), "f-skd-s2", repr(value))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]


def test_a_value_an_eval_could_not_measure_is_left_out(tmp_path):
    results = _results(tmp_path / "results.csv", ["0.9", "nan", "", "0.9"])
    assert run_main("analyze", "table", "--results", results, "--out", tmp_path / "t").exit_code == 0
    assert "(n=2)" in (tmp_path / "t.md").read_text()


@pytest.mark.parametrize("command", ["table", "compare"])
@pytest.mark.parametrize("out", [".", "..", "/"])
def test_an_out_that_names_no_file_is_refused(tmp_path, monkeypatch, command, out):
    """'.' and '/' were a ValueError traceback; '..' wrote '...md' and '...csv' into the working folder."""
    results = _results(tmp_path / "results.csv", ["0.9"] * 3)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    before = tree_state(tmp_path)
    assert_one_line_error(run_main("analyze", command, "--results", results, "--out", out), f"--out {out}")
    assert_untouched(before, tmp_path)


@pytest.mark.parametrize("key, value", [("distill.method", "nope"), ("distill.teacher_method", "f-skd"),
                                        ("model.name", "nosuch"), ("model.head", "nosuch")])
def test_an_unknown_name_in_a_recipe_names_the_recipe_and_key(tmp_path, tiny_digits, key, value):
    """distill.method was ignored by a teacher run (exit 0), and the others said 'unknown ...' naming no file."""
    section, name = key.split(".")
    recipe = write_recipe(tmp_path / "r.yaml", tiny_digits)
    data = yaml.safe_load(recipe.read_text())
    data[section][name] = value
    recipe.write_text(yaml.safe_dump(data))
    out = tmp_path / "run"
    assert_one_line_error(run_main("train-teacher", "--recipe", recipe, "--out", out), str(recipe), key, repr(value))
    assert not out.exists()


def test_a_decoder_that_cannot_give_back_the_input_is_refused_before_out_is_claimed(tmp_path, tiny_recipe):
    """The mismatch surfaced at the first step, after config.yaml and the marker were written."""
    out = tmp_path / "run"
    result = run_main("train-teacher", "--recipe", tiny_recipe, "--method", "qualnet-decoder", "--out", out)
    assert_one_line_error(result, "qualnet-decoder", "64px", "32px")
    assert not out.exists()


def test_an_empty_log_is_named_on_resume(tmp_path, tiny_recipe):
    out = tmp_path / "run"
    assert run_main("train-teacher", "--recipe", tiny_recipe, "--out", out, "--stop-after", "1").exit_code == 0
    (out / "log.csv").write_text("")
    result = run_main("train-teacher", "--recipe", tiny_recipe, "--out", out, "--resume")
    assert_one_line_error(result, str(out / "log.csv"), "an empty file")


def test_export_to_a_folder_name_is_one_line(tmp_path, tiny_teacher, monkeypatch):
    """'.' and '/' were a ValueError traceback."""
    monkeypatch.chdir(tmp_path)
    for out in (".", "/"):
        assert_one_line_error(run_main("export", "--ckpt", tiny_teacher, "--format", "torchscript", "--out", out),
                              f"{out}: is a folder")
    assert list(tmp_path.iterdir()) == []


def test_import_teacher_from_a_folder_says_so(tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    result = run_main("import-teacher", weights, "--arch", "iresnet18", "--format", "insightface", "--out", tmp_path / "t")
    assert_one_line_error(result, str(weights), "a folder")


@pytest.mark.parametrize("base, needle", [("[a]", "base must be the path"), ("3", "base must be the path"),
                                          ("nothere.yaml", "base nothere.yaml: recipe not found")])
def test_a_bad_base_names_the_recipe_that_gives_it(tmp_path, base, needle):
    """It was '['a']: recipe not found', naming neither the recipe nor the key."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"base: {base}\nseed: 1\n")
    assert_one_line_error(run_main("train-teacher", "--recipe", recipe, "--out", tmp_path / "run"), str(recipe), needle)


@pytest.mark.parametrize("args, option", [(("--seed", "99999999999"), "--seed"), (("--lr", "-1"), "--lr"),
                                          (("--device", "gpu"), "--device")])
def test_a_typed_option_out_of_range_names_the_option(tmp_path, tiny_recipe, args, option):
    """The error named 'the command line' instead of the option."""
    result = run_main("train-teacher", "--recipe", tiny_recipe, *args, "--out", tmp_path / "run")
    assert assert_one_line_error(result).startswith(f"error: {option}: ")


@pytest.mark.parametrize("where", [".", "prepared"])
def test_prepare_into_its_source_folder_is_refused(tmp_path, where):
    """A rerun read the prepared images as photos of one more identity, 'prepared' (6 photos became 30)."""
    src = tmp_path / "photos"
    for person in ("a", "b"):
        (src / person).mkdir(parents=True)
        (src / person / "0.png").write_bytes(encode(pattern(len(person))))
    before = tree_state(tmp_path)
    out = src / where
    result = run_main("prepare", "folder", src, "--out", out, "--force", "--workers", "1")
    assert_one_line_error(result, str(out), "source folder")
    assert_untouched(before, tmp_path)
