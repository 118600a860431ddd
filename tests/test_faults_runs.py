"""Fault and bad-input suite, part 2: output folders, reruns, write faults, concurrency and signals.

fskd writes only into folders that are empty or that it wrote, only inside ``--out``; a rerun continues only
with identical options; a full disk or Ctrl-C leaves whole files and says so in one line.
"""

from __future__ import annotations

import csv
import errno
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from conftest import (
    TINY_STEPS,
    assert_one_line_error,
    assert_untouched,
    encode,
    pattern,
    run_main,
    tree_state,
    write_face_set,
    write_insightface_rec,
    write_recipe,
)

from fskd_cli.core.guard import MARKER


@pytest.fixture(scope="module")
def prep(tmp_path_factory):
    """``fskd prepare rec SRC``'s first words, SRC 12 tiny aligned faces of 3 people (fast: no detection)."""
    src = tmp_path_factory.mktemp("rec")
    write_insightface_rec(src, [(i % 3, encode(pattern(i))) for i in range(12)])
    return ("prepare", "rec", src, "--workers", "1")


def _users_folder(path):
    path.mkdir(parents=True)
    (path / "manifest.csv").write_text("my,own,manifest\n")
    (path / "meta.yaml").write_text("mine: true\n")
    (path / "config.yaml").write_text("lr: 1\n")
    (path / "log.csv").write_text("step,loss\n1,2\n")
    return path


def _spawn(*args, limit_bytes=None):
    """``fskd ARGS`` in a fresh process; ``limit_bytes`` caps file sizes (a full disk, as the process sees it)."""

    def cap():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    env = {**os.environ, "COLUMNS": "200", "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "fskd_cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, preexec_fn=cap if limit_bytes else None)


def _finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# --- output folders ----------------------------------------------------------------------------------------

def test_prepare_into_a_users_folder_is_refused(prep, tmp_path):
    out = _users_folder(tmp_path / "out")
    before = tree_state(tmp_path)
    assert_one_line_error(run_main(*prep, "--out", out), str(out), "--force")
    assert_untouched(before, tmp_path)


def test_prepare_into_a_users_folder_with_force_keeps_unrelated_files(prep, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    assert run_main(*prep, "--out", out, "--force").exit_code == 0
    assert (out / "notes.txt").read_text() == "my notes" and (out / "meta.yaml").exists()


def test_train_into_a_users_folder_is_refused(tmp_path, tiny_recipe):
    out = _users_folder(tmp_path / "run")
    before = tree_state(tmp_path)
    assert_one_line_error(run_main("train-teacher", "--recipe", tiny_recipe, "--out", out), str(out))
    assert_untouched(before, tmp_path)


def test_train_into_another_kind_of_fskd_folder_is_refused(prep, tmp_path, tiny_recipe):
    out = tmp_path / "data"
    assert run_main(*prep, "--out", out).exit_code == 0
    before = tree_state(tmp_path)
    assert_one_line_error(run_main("train-teacher", "--recipe", tiny_recipe, "--out", out), str(out))
    assert_untouched(before, tmp_path)


@pytest.mark.parametrize("command", ["prepare", "train-teacher", "distill"])
def test_out_that_is_a_file(prep, tmp_path, tiny_recipe, tiny_teacher, command):
    out = tmp_path / "out.txt"
    out.write_text("a file")
    args = {"prepare": (*prep, "--out", out),
            "train-teacher": ("train-teacher", "--recipe", tiny_recipe, "--out", out),
            "distill": ("distill", "--recipe", tiny_recipe, "--teacher", tiny_teacher / "checkpoint.pt", "--out", out)}
    before = tree_state(tmp_path)
    assert_one_line_error(run_main(*args[command]), "out.txt")
    assert_untouched(before, tmp_path)


def test_results_csv_with_another_header_is_not_appended_to(tmp_path, tiny_teacher, tiny_digits):
    results = tmp_path / "results.csv"
    results.write_text("name,score\nmine,0.99\n")
    before = tree_state(tmp_path)
    result = run_main("eval", "digits", "--ckpt", tiny_teacher, "--data", tiny_digits, "--results", results)
    assert_one_line_error(result, "results.csv")
    assert_untouched(before, tmp_path)


def test_results_that_is_a_folder(tmp_path, tiny_teacher, tiny_digits):
    (tmp_path / "results").mkdir()
    before = tree_state(tmp_path)
    result = run_main("eval", "digits", "--ckpt", tiny_teacher, "--data", tiny_digits, "--results", tmp_path / "results")
    assert_one_line_error(result, "results")
    assert_untouched(before, tmp_path)


def test_analysis_into_a_users_folder_is_refused(tmp_path, tiny_recipe, tiny_teacher, tiny_digits):
    student = tmp_path / "student"
    assert run_main("distill", "--recipe", tiny_recipe, "--teacher", tiny_teacher / "checkpoint.pt",
                    "--out", student).exit_code == 0
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "norms.csv").write_text("my own numbers\n")
    before = tree_state(tmp_path)
    args = ("analyze", "norms", "--ckpt", student, "--teacher", tiny_teacher, "--data", tiny_digits, "--images", "20")
    assert_one_line_error(run_main(*args, "--out", mine), "mine")
    assert_untouched(before, tmp_path)
    assert run_main(*args).exit_code == 0  # beside the run, twice: fskd's own folder
    assert run_main(*args).exit_code == 0
    assert_untouched(before, tmp_path, student)


def test_pair_names_with_dotdot_write_nothing_outside_out(tmp_path):
    src = tmp_path / "lfw"
    for name in ("Ann", "Bob"):
        (src / name).mkdir(parents=True)
        for i in (1, 2):
            (src / name / f"{name}_{i:04d}.jpg").write_bytes(encode(pattern(i, (250, 250)), "JPEG"))
    (src / "pairs.txt").write_text("1\t1\nAnn\t1\t2\n../../escaped\t1\tBob\t1\n")
    before = tree_state(tmp_path)
    result = run_main("prepare", "lfw", src, "--out", tmp_path / "out", "--workers", "1")
    assert_one_line_error(result, "pairs.txt", "../../escaped")
    assert_untouched(before, tmp_path, tmp_path / "out")


def test_full_disk_while_preparing_is_one_line(prep, tmp_path):
    result = _finish(_spawn(*prep, "--out", tmp_path / "out", limit_bytes=2000))
    line = assert_one_line_error(result, "out")
    assert "File too large" in line
    assert not list((tmp_path / "out").rglob("*.tmp"))


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, tiny_digits):
    recipe = write_recipe(tmp_path / "r.yaml", tiny_digits, train={**TINY_STEPS, "steps": 6})
    out = tmp_path / "run"
    assert run_main("train-teacher", "--recipe", recipe, "--out", out, "--stop-after", "2").exit_code == 0
    good = (out / "checkpoint.pt").read_bytes()
    result = _finish(_spawn("train-teacher", "--recipe", recipe, "--out", out, "--resume", limit_bytes=len(good) // 2))
    assert_one_line_error(result, "run")
    assert (out / "checkpoint.pt").read_bytes() == good
    assert not list(out.glob(".*.tmp"))


def test_read_only_folder_is_one_line(tmp_path, tiny_recipe, monkeypatch):
    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), kwargs.get("dir"))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    line = assert_one_line_error(run_main("train-teacher", "--recipe", tiny_recipe, "--out", tmp_path / "run"), "run")
    assert "Read-only file system" in line


# --- reruns ------------------------------------------------------------------------------------------------

def test_prepare_rerun_with_same_options_changes_nothing(prep, tmp_path):
    out = tmp_path / "out"
    assert run_main(*prep, "--out", out).exit_code == 0
    before = {p: s for p, s in tree_state(tmp_path).items() if not p.endswith(MARKER)}
    assert run_main(*prep, "--out", out).exit_code == 0
    after = {p: s for p, s in tree_state(tmp_path).items() if not p.endswith(MARKER)}
    assert after == before


def test_prepare_rerun_with_other_options_is_refused(prep, tmp_path):
    out = tmp_path / "out"
    assert run_main(*prep, "--out", out, "--interpolation", "bilinear").exit_code == 0
    before = tree_state(tmp_path)
    assert_one_line_error(run_main(*prep, "--out", out, "--interpolation", "nearest"), "interpolation")
    assert_untouched(before, tmp_path)


def test_prepare_rerun_with_other_options_and_force_starts_over(prep, tmp_path):
    out = tmp_path / "out"
    assert run_main(*prep, "--out", out, "--interpolation", "bilinear").exit_code == 0
    assert run_main(*prep, "--out", out, "--interpolation", "nearest", "--force").exit_code == 0
    meta = yaml.safe_load((out / "meta.yaml").read_text())
    assert "nearest" in str(meta), meta


def test_orphan_temp_files_are_swept_when_the_next_run_starts(prep, tmp_path):
    out = tmp_path / "out"
    assert run_main(*prep, "--out", out).exit_code == 0
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    orphan = out / f".manifest.csv.{dead}.k1ll3d00.tmp"
    orphan.write_text("half")
    assert run_main(*prep, "--out", out).exit_code == 0
    assert not orphan.exists()


def test_holdout_rerun_does_not_move_people_back(tmp_path):
    data = write_face_set(tmp_path / "data", "train", [(i, k, "") for i in range(8) for k in range(4)], split="train")
    assert run_main("prepare", "holdout", data, "--identities", "3", "--pairs", "20").exit_code == 0
    before = tree_state(tmp_path)
    assert_one_line_error(run_main("prepare", "holdout", data, "--identities", "4", "--pairs", "20"), "identities")
    assert_untouched(before, tmp_path)
    assert run_main("prepare", "holdout", data, "--identities", "3", "--pairs", "20").exit_code == 0
    assert_untouched(before, tmp_path, data / MARKER)


def test_resume_with_a_changed_recipe_is_refused(tmp_path, tiny_digits):
    recipe = write_recipe(tmp_path / "r.yaml", tiny_digits, train={**TINY_STEPS, "steps": 6})
    out = tmp_path / "run"
    assert run_main("train-teacher", "--recipe", recipe, "--out", out, "--stop-after", "2").exit_code == 0
    before = tree_state(tmp_path)
    result = run_main("train-teacher", "--recipe", recipe, "--out", out, "--resume", "--set", "train.momentum=0.5")
    assert_one_line_error(result, "train.momentum")
    assert_untouched(before, tmp_path)


def test_training_again_into_a_finished_run_is_refused(tmp_path, tiny_recipe):
    out = tmp_path / "run"
    assert run_main("train-teacher", "--recipe", tiny_recipe, "--out", out, "--steps", "2").exit_code == 0
    before = tree_state(tmp_path)
    assert_one_line_error(run_main("train-teacher", "--recipe", tiny_recipe, "--out", out, "--steps", "3"), str(out))
    assert_untouched(before, tmp_path)


# --- concurrency -------------------------------------------------------------------------------------------

def test_two_evals_creating_results_at_once_write_one_header(tmp_path, tiny_teacher, tiny_digits):
    results = tmp_path / "results.csv"
    procs = [_spawn("eval", "digits", "--ckpt", tiny_teacher, "--data", tiny_digits, "--results", results, "--scale", s)
             for s in ("1", "4")]
    for proc in procs:
        result = _finish(proc)
        assert result.returncode == 0, result.stderr
    with open(results, newline="") as f:
        rows = list(csv.reader(f))
    header = rows[0]
    assert rows.count(header) == 1 and len(rows) >= 3
    assert {r[header.index("scale")] for r in rows[1:]} == {"1", "4"}


# --- signals -----------------------------------------------------------------------------------------------

def _interrupt_when(proc, ready, timeout=120):
    start = time.monotonic()
    while not ready() and proc.poll() is None and time.monotonic() - start < timeout:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    return _finish(proc)


def test_ctrl_c_in_training_names_the_last_checkpoint_and_resume_finishes(tmp_path, tiny_digits):
    recipe = write_recipe(tmp_path / "r.yaml", tiny_digits,
                          train={**TINY_STEPS, "steps": 400, "milestones": [300], "ckpt_every": 2})
    out = tmp_path / "run"
    result = _interrupt_when(_spawn("train-teacher", "--recipe", recipe, "--out", out),
                             lambda: (out / "checkpoint.pt").exists())
    assert result.returncode == 130, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("interrupted") and str(out / "checkpoint.pt") in lines[-1], lines
    assert not list(out.glob(".*.tmp"))
    from fskd_cli.core.checkpoint import load_checkpoint

    assert load_checkpoint(out / "checkpoint.pt", kind="teacher").kind == "teacher"


def test_ctrl_c_in_prepare_leaves_whole_files_and_the_rerun_completes(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_insightface_rec(src, [(i % 5, encode(pattern(i % 7))) for i in range(300)])
    out = tmp_path / "out"
    args = ("prepare", "rec", src, "--out", out, "--workers", "1", "--batch-size", "8")
    result = _interrupt_when(_spawn(*args), lambda: (out / MARKER).exists())
    assert result.returncode == 130, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.splitlines()[-1].startswith("interrupted"), result.stderr
    assert run_main(*args).exit_code == 0
    assert not list(out.rglob("*.tmp"))
    assert len((out / "manifest.csv").read_text().splitlines()) == 301
