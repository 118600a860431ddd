"""Cases found by a second new-user pass over training, distillation, signals and the use commands (embed,
verify, export, import-teacher, the Python API): each was a traceback, a wrong exit code, a silently accepted
mistake or a file written where it should not be."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from conftest import TINY_STEPS, assert_one_line_error, run_main, tree_state, write_recipe

from fskd_cli.core.stop import EXIT_STOPPED, StopRequest

ENV = {**os.environ, "COLUMNS": "200", "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


# --- two signals: the first decides how the run ends ------------------------------------------------------------

def test_ctrl_c_after_a_stop_request_is_ignored_and_ctrl_c_first_wins():
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)}
    with pytest.raises(KeyboardInterrupt), StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)  # the stop is under way: its checkpoint and exit code win
        time.sleep(0.01)
        assert stop.signum == signal.SIGTERM and not stop.interrupted
        stop.signum = 0  # as if the stop had not been asked for: Ctrl-C interrupts at once, as Python's default
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)
    assert stop.interrupted
    os.kill(os.getpid(), signal.SIGTERM)  # after Ctrl-C a stop request changes nothing (the handlers stay: stopping)
    time.sleep(0.01)
    assert stop.signum == 0
    for sig, handler in before.items():  # the handlers stay after a stop: this process is not ending
        signal.signal(sig, handler)


def _train_and_signal(tmp_path, tiny_digits, first: signal.Signals, second: signal.Signals
                      ) -> tuple[subprocess.CompletedProcess, os.PathLike]:
    """Start a long tiny run, send ``first`` once it logged a row, ``second`` once the stop's checkpoint is
    written (``first`` SIGTERM) or 0.1 s later (``first`` SIGINT); wait for it to end."""
    recipe = write_recipe(tmp_path / "r.yaml", tiny_digits, train={**TINY_STEPS, "steps": 400, "milestones": [300],
                                                                   "log_every": 2, "ckpt_every": 1000})
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "fskd_cli", "train-teacher", "--recipe", str(recipe), "--out", str(run)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + 120
    while not (run / "log.csv").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(first)
    while first == signal.SIGTERM and not (run / "checkpoint.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.001)
    if first == signal.SIGINT:
        time.sleep(0.1)  # on its way out
    proc.send_signal(second)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), run


def test_sigterm_then_ctrl_c_still_exits_75_for_the_requeue(tmp_path, tiny_digits):
    """The checkpoint was written and 'stopped by SIGTERM' printed, but the Ctrl-C during the exit made it 130 (or
    killed the interpreter's shutdown): a wrapper would not requeue the job."""
    result, run = _train_and_signal(tmp_path, tiny_digits, signal.SIGTERM, signal.SIGINT)
    assert result.returncode == EXIT_STOPPED, (result.returncode, result.stderr[-1500:])
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("stopped by SIGTERM at step ") and "Traceback" not in result.stderr, result.stderr
    assert (run / "checkpoint.pt").is_file() and "interrupted" not in result.stderr


def test_ctrl_c_then_sigterm_stays_interrupted(tmp_path, tiny_digits):
    """A SIGTERM during Ctrl-C's way out killed the process (-15) before its one line."""
    result, run = _train_and_signal(tmp_path, tiny_digits, signal.SIGINT, signal.SIGTERM)
    assert result.returncode == 130, (result.returncode, result.stderr[-1500:])
    assert result.stderr.strip().splitlines()[-1].startswith("interrupted; ") and "stopped by" not in result.stderr
    assert not (run / "checkpoint.pt").exists()  # checkpoints every 1000 steps: Ctrl-C writes none


# --- export: the file's suffix is its format's ------------------------------------------------------------------

@pytest.mark.parametrize(("fmt", "name", "fix"), [("onnx", "model.pt", "model.onnx"), ("torchscript", "m.onnx", "m.pt"),
                                                  ("onnx", "model", "model.onnx"), ("torchscript", "m", "m.pt"),
                                                  ("torchscript", "m.pt.json", "m.pt")])
def test_export_to_a_file_named_for_another_format_is_refused_before_loading(tmp_path, fmt, name, fix):
    """Accepted: a TorchScript file named .onnx goes to the wrong runtime. The checkpoint does not even exist:
    the name is refused first."""
    result = run_main("export", "--ckpt", tmp_path / "no-such-run", "--format", fmt, "--out", tmp_path / name)
    assert_one_line_error(result, f"--out {tmp_path / name}", f"--format {fmt} writes a", f"name it {fix}")
    assert list(tmp_path.iterdir()) == []


# --- import-teacher: weights that no later command would take ---------------------------------------------------

def test_import_of_nan_weights_is_refused_before_out_is_claimed(tmp_path):
    """Imported with exit 0; every later command then refused the run's checkpoint."""
    import torch
    from test_use_import import arcface_state

    state = arcface_state(18)
    state["fc.weight"][0, 0] = float("nan")
    torch.save(state, tmp_path / "backbone.pth")
    result = run_main("import-teacher", tmp_path / "backbone.pth", "--arch", "iresnet18", "--format", "insightface",
                      "--out", tmp_path / "run")
    assert_one_line_error(result, str(tmp_path / "backbone.pth"), "fc.weight holds 1 non-finite values")
    assert not (tmp_path / "run").exists()


def test_import_of_a_whole_pickled_model_says_how_to_save_its_state_dict(tmp_path):
    import torch

    torch.save(torch.nn.Linear(2, 2), tmp_path / "model.pth")
    result = run_main("import-teacher", tmp_path / "model.pth", "--arch", "iresnet18", "--format", "insightface",
                      "--out", tmp_path / "run")
    assert_one_line_error(result, "obj.state_dict()", "does not unpickle")
    assert not (tmp_path / "run").exists()


# --- resume: every changed key is named -------------------------------------------------------------------------

def test_resume_with_changed_steps_names_steps_not_only_the_milestones_they_moved(tmp_path, tiny_digits):
    """Named only train.milestones (scaled with the steps), which the user never touched."""
    recipe = write_recipe(tmp_path / "r.yaml", tiny_digits, train=TINY_STEPS)
    run = tmp_path / "run"
    assert run_main("train-teacher", "--recipe", recipe, "--out", run, "--stop-after", 1).exit_code == 0
    result = run_main("train-teacher", "--recipe", recipe, "--out", run, "--resume", "--set", "train.steps=6")
    assert_one_line_error(result, "train.steps was 4, now 6", "train.milestones was [2], now [3]")


# --- read_embeddings: only what embed wrote ---------------------------------------------------------------------

def test_read_embeddings_names_a_file_embed_did_not_write_or_a_damaged_one(tmp_path):
    """A YAML file read as zero-wide embeddings; a cut row an IndexError; an empty file a ValueError."""
    import numpy as np

    from fskd_cli.core.errors import FskdError
    from fskd_cli.use.embed import Embeddings, read_embeddings, write_embeddings

    good = Embeddings(np.eye(2, 3, dtype=np.float32), ["a.png", "b.png"], ["ok", "ok"], ["", ""], ["", ""])
    write_embeddings(tmp_path / "e.csv", good)
    write_embeddings(tmp_path / "e.npz", good)
    lines = (tmp_path / "e.csv").read_text().splitlines(keepends=True)
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    cases = {"recipe.csv": ("name: x\nmodel: y\n", "not an `fskd embed` .csv"), "empty.csv": ("", "an empty file"),
             "cut.csv": ("".join(lines[:2]) + lines[2][:12] + "\n", "line 3: damaged row (6 values for 8 columns)"),
             "word.csv": ("".join(lines[:2]) + lines[2].replace(",0.0", ",zero", 1), "line 3: damaged row"),
             "cut.npz": ((tmp_path / "e.npz").read_bytes()[:200], "truncated or damaged"),
             "other.npz": (None, "lacks embeddings, paths, reason, status")}
    for name, (content, needle) in cases.items():
        if isinstance(content, str):
            (tmp_path / name).write_text(content)
        elif content is not None:
            (tmp_path / name).write_bytes(content)
        with pytest.raises(FskdError, match=re.escape(needle)) as e:
            read_embeddings(tmp_path / name)
        assert str(e.value).startswith(str(tmp_path / name))
    for name in ("e.csv", "e.npz"):
        back = read_embeddings(tmp_path / name)
        assert np.array_equal(back.embeddings, good.embeddings) and back.paths == good.paths


def test_the_missing_teacher_line_gives_the_sets_the_teacher_needs(tmp_path, tiny_digits, monkeypatch):
    """The suggested command left out --set data.path=...: run as given, it trained on another set (or none)."""
    monkeypatch.chdir(tmp_path)
    result = run_main("distill", "--recipe", "digits-demo", "--set", f"data.path={tiny_digits}", "--set",
                      "model.kwargs={width: 8}", "--seed", "3")
    line = assert_one_line_error(result, "runs/digits-demo-teacher-s3/checkpoint.pt: no teacher here")
    assert (f"`fskd train-teacher --recipe digits-demo --seed 3 --set data.path={tiny_digits} "
            "--set 'model.kwargs={width: 8}'`") in line
    assert not (tmp_path / "runs").exists()


def test_resume_after_the_teacher_was_retrained_is_refused(tmp_path, tiny_digits):
    """Resumed against the new teacher with exit 0: one student distilled from two teachers."""
    recipe = write_recipe(tmp_path / "r.yaml", tiny_digits, train=TINY_STEPS)
    teacher, student = tmp_path / "teacher", tmp_path / "student"
    assert run_main("train-teacher", "--recipe", recipe, "--out", teacher).exit_code == 0
    distill = ("distill", "--recipe", recipe, "--teacher", teacher, "--method", "f-skd", "--scale", "4", "--out", student)
    assert run_main(*distill, "--stop-after", 1).exit_code == 0
    assert run_main(*distill, "--resume", "--stop-after", 2).exit_code == 0  # the same teacher: resumed
    assert run_main("train-teacher", "--recipe", recipe, "--out", teacher, "--force", "--lr", "0.2").exit_code == 0
    before = (student / "checkpoint.pt").read_bytes()
    result = run_main(*distill, "--resume")
    assert_one_line_error(result, f"{student / 'checkpoint.pt'}: --resume with another teacher: {teacher / 'checkpoint.pt'}")
    assert (student / "checkpoint.pt").read_bytes() == before


@pytest.mark.parametrize(("name", "content", "what"), [("photo.png", b"\x89PNG\r\n\x1a\n....", "a PNG image"),
                                                        ("config.yaml", b"kind: teacher\nname: x\n", "a text file"),
                                                        ("empty.pt", b"", "an empty file")])
def test_a_ckpt_that_is_no_pytorch_file_says_what_it_is(tmp_path, name, content, what):
    """Said 'UnpicklingError: Weights only load failed. In PyTorch 2.6, we changed the default value of...'."""
    (tmp_path / name).write_bytes(content)
    line = assert_one_line_error(run_main("verify", tmp_path / name, tmp_path / name, "--threshold", "0.5", "--ckpt",
                                          tmp_path / name), f"{tmp_path / name}: not a readable fskd checkpoint ({what}")
    assert "PyTorch 2.6" not in line


def test_import_into_a_trained_teachers_folder_names_it_with_its_article(tmp_path, tiny_teacher):
    import shutil

    import torch
    from test_use_import import arcface_state

    torch.save(arcface_state(18), tmp_path / "backbone.pth")
    shutil.copytree(tiny_teacher, tmp_path / "run")
    before = tree_state(tmp_path / "run")
    result = run_main("import-teacher", tmp_path / "backbone.pth", "--arch", "iresnet18", "--format", "insightface",
                      "--out", tmp_path / "run")
    assert_one_line_error(result, f"{tmp_path / 'run'}: holds an fskd teacher run, not an import-teacher run")
    assert tree_state(tmp_path / "run") == before


def test_the_api_reads_back_what_embed_wrote(tmp_path):
    """README pointed at read_embeddings(); fskd_cli.api had none (AttributeError)."""
    import numpy as np

    from fskd_cli import api
    from fskd_cli.use.embed import Embeddings, write_embeddings

    written = Embeddings(np.eye(2, 4, dtype=np.float32), ["a.png", "b.png"], ["ok", "ok"], ["", ""], ["", ""])
    write_embeddings(tmp_path / "e.npz", written)
    assert "read_embeddings" in api.__all__
    assert np.array_equal(api.read_embeddings(tmp_path / "e.npz").embeddings, written.embeddings)


def test_resume_takes_the_same_teacher_and_data_written_another_way(tmp_path, tiny_digits, tiny_teacher, monkeypatch):
    """--teacher RUN then --teacher /abs/RUN/checkpoint.pt (or --data as a relative path) was 'a changed recipe'."""
    monkeypatch.chdir(tiny_teacher.parent)
    recipe = write_recipe(tmp_path / "r.yaml", tiny_digits, train=TINY_STEPS)
    distill = ("distill", "--recipe", recipe, "--method", "f-skd", "--scale", "4", "--out", tmp_path / "s")
    assert run_main(*distill, "--teacher", tiny_teacher.name, "--stop-after", 1).exit_code == 0
    result = run_main(*distill, "--teacher", tiny_teacher / "checkpoint.pt", "--resume", "--stop-after", 2,
                      "--data", os.path.relpath(tiny_digits))
    assert result.exit_code == 0 and "from step 1" in result.stderr, result.stderr
    other = tmp_path / "other-teacher"
    assert run_main("train-teacher", "--recipe", recipe, "--out", other, "--stop-after", 1).exit_code == 0
    assert_one_line_error(run_main(*distill, "--teacher", other, "--resume"), "distill.teacher was")


def test_lambda_for_a_method_without_a_distillation_term_is_refused(tmp_path, tiny_recipe):
    """--method base --lambda 20 trained a run whose lambda changed nothing, exit 0."""
    result = run_main("distill", "--recipe", tiny_recipe, "--method", "base", "--lambda", "20", "--out", tmp_path / "s")
    assert_one_line_error(result, "--lambda: method base has no distillation term")
    assert not (tmp_path / "s").exists()
