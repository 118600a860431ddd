"""Cases a new user tried against the fault suite (tryout b): each was a traceback, a run that did the wrong
thing, or work done before a doomed output was refused; each now ends in one line before any training step."""

from __future__ import annotations

import os

import pytest
from conftest import assert_one_line_error, assert_untouched, run_main, tree_state


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
