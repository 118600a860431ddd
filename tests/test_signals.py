"""A scheduler's SIGTERM or SIGUSR1 stops training at the next step boundary with a checkpoint, one line and
exit code 75; ``--resume`` then continues bit for bit. Resume's own edges: a ``--stop-after`` behind the
checkpoint, a run already where it was asked to go, a damaged ``log.csv``."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import torch
from conftest import TINY_STEPS, assert_one_line_error, run_main, tree_state, write_recipe

from fskd_cli.core.stop import EXIT_STOPPED, StopRequest

ENV = {**os.environ, "COLUMNS": "200", "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


def _fskd(*args) -> list[str]:
    return [sys.executable, "-m", "fskd_cli", *map(str, args)]


def _log_steps(run) -> list[int]:
    try:
        with open(run / "log.csv", newline="") as f:
            return [int(row["step"]) for row in csv.DictReader(f)]
    except (FileNotFoundError, ValueError, KeyError):
        return []


def _signal_when_logged(cmd: list[str], run, sig: signal.Signals, rows: int, group: bool = False
                        ) -> subprocess.CompletedProcess:
    """Start ``cmd``, send ``sig`` once its log has ``rows`` rows (to its whole process group if ``group``, as
    SLURM signals every process of a job), and wait for it to end."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                            start_new_session=group)
    deadline = time.monotonic() + 180
    while len(_log_steps(run)) < rows and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _stopped_line(result, sig: str, ckpt) -> int:
    """Assert a clean stop (exit 75, no traceback, the last line names the signal and the checkpoint); its step."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == EXIT_STOPPED, (result.returncode, result.stderr[-2000:])
    last = [line for line in result.stderr.splitlines() if line.strip()][-1]
    assert last.startswith(f"stopped by {sig} at step ") and f"last checkpoint: {ckpt} " in last, last
    assert last.endswith("(continue with the same command and --resume)"), last
    return int(last.split(" at step ")[1].split(";")[0])


def _log_values(run):
    with open(run / "log.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k not in ("images_per_s", "elapsed_s")} for row in csv.DictReader(f)]


def test_sigterm_checkpoints_at_the_next_step_and_resume_is_exact(tmp_path, tiny_digits):
    # checkpoints only at the end of every epoch (15 steps): the stop writes its own, wherever it falls
    recipe = write_recipe(tmp_path / "r.yaml", tiny_digits, data={"path": str(tiny_digits), "flip": True},
                          train={"batch_size": 16, "lr": 0.02, "epochs": 4, "milestones": [2], "log_every": 5,
                                 "deterministic": True})
    cmd = _fskd("train-teacher", "--recipe", recipe)
    straight = subprocess.run([*cmd, "--out", tmp_path / "straight"], capture_output=True, text=True, env=ENV, timeout=300)
    assert straight.returncode == 0, straight.stderr[-2000:]

    run = tmp_path / "stopped"
    step = _stopped_line(_signal_when_logged([*cmd, "--out", str(run)], run, signal.SIGTERM, rows=2), "SIGTERM",
                         run / "checkpoint.pt")
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ck["step"] == step and 10 <= step < ck["total_steps"], (step, ck["total_steps"])
    assert not list(run.glob(".*.tmp"))

    resumed = subprocess.run([*cmd, "--out", run, "--resume"], capture_output=True, text=True, env=ENV, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"from step {step}" in resumed.stderr
    a, b = (torch.load(r / "checkpoint.pt", weights_only=True) for r in (tmp_path / "straight", run))
    assert a["step"] == b["step"] == a["total_steps"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert _log_values(tmp_path / "straight") == _log_values(run)


def test_sigusr1_stops_like_sigterm_and_the_run_resumes(tmp_path, tiny_digits):
    recipe = write_recipe(tmp_path / "r.yaml", tiny_digits, train={**TINY_STEPS, "steps": 400, "milestones": [300],
                                                                   "log_every": 3})
    run = tmp_path / "run"
    result = _signal_when_logged(_fskd("train-teacher", "--recipe", recipe, "--out", run), run, signal.SIGUSR1, rows=1)
    step = _stopped_line(result, "SIGUSR1", run / "checkpoint.pt")
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == step >= 3
    resumed = run_main("train-teacher", "--recipe", recipe, "--out", run, "--resume", "--stop-after", step + 1)
    assert resumed.exit_code == 0 and f"from step {step}" in resumed.stderr, resumed.stderr


def test_a_signal_to_every_process_of_the_job_spares_the_loader_workers(tmp_path, tiny_digits):
    recipe = write_recipe(tmp_path / "r.yaml", tiny_digits, data={"path": str(tiny_digits), "cache": False, "workers": 1},
                          train={**TINY_STEPS, "steps": 400, "milestones": [300], "log_every": 3})
    run = tmp_path / "run"
    result = _signal_when_logged(_fskd("train-teacher", "--recipe", recipe, "--out", run), run, signal.SIGTERM, rows=1,
                                 group=True)
    step = _stopped_line(result, "SIGTERM", run / "checkpoint.pt")
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == step


def test_stop_request_records_the_first_signal_and_restores_the_handlers():
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGUSR1)}
    with StopRequest() as stop:
        assert stop.signum == 0
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)  # a second request changes nothing: the first is answered
        time.sleep(0.01)
        assert stop.signum == signal.SIGUSR1
    assert {sig: signal.getsignal(sig) for sig in before} == before


# --- resume's edges -------------------------------------------------------------------------------------------

def _partial_run(tmp_path, tiny_digits, stop_after: int):
    recipe = write_recipe(tmp_path / "r.yaml", tiny_digits, train={**TINY_STEPS, "steps": 6, "log_every": 1})
    run = tmp_path / "run"
    assert run_main("train-teacher", "--recipe", recipe, "--out", run, "--stop-after", stop_after).exit_code == 0
    return recipe, run


def test_stop_after_behind_the_checkpoint_is_a_mistake(tmp_path, tiny_digits):
    recipe, run = _partial_run(tmp_path, tiny_digits, 4)
    before = tree_state(tmp_path)
    result = run_main("train-teacher", "--recipe", recipe, "--out", run, "--resume", "--stop-after", 2)
    assert_one_line_error(result, "--stop-after 2", str(run / "checkpoint.pt"), "already at step 4 (of 6)")
    assert tree_state(tmp_path) == before


def test_a_run_already_where_it_was_asked_to_go_says_so(tmp_path, tiny_digits):
    recipe, run = _partial_run(tmp_path, tiny_digits, 4)
    before = tree_state(tmp_path)
    result = run_main("train-teacher", "--recipe", recipe, "--out", run, "--resume", "--stop-after", 4)
    assert result.exit_code == 0 and "already at step 4 (of 6); nothing to do" in result.stderr, result.stderr
    assert run_main("train-teacher", "--recipe", recipe, "--out", run, "--resume").exit_code == 0
    result = run_main("train-teacher", "--recipe", recipe, "--out", run, "--resume")
    assert result.exit_code == 0 and "already finished (6 steps)" in result.stderr, result.stderr
    assert before != tree_state(tmp_path)  # the middle call finished the run


def test_a_damaged_log_row_names_the_file_and_line(tmp_path, tiny_digits):
    recipe, run = _partial_run(tmp_path, tiny_digits, 4)
    log = run / "log.csv"
    lines = log.read_text().splitlines(keepends=True)
    for damaged, problem in ((f"2x{lines[2][1:]}", "step '2x' is not a number"), ("3,0.2\n", "no value for lr"),
                             (lines[2].rstrip("\n") + ",9\n", "more values than columns")):
        log.write_text("".join([*lines[:2], damaged, *lines[3:]]))
        before = tree_state(tmp_path)
        result = run_main("train-teacher", "--recipe", recipe, "--out", run, "--resume")
        assert_one_line_error(result, f"{log}: line 3: damaged row ({problem})")
        assert tree_state(tmp_path) == before
    log.write_text("".join(lines))
    assert run_main("train-teacher", "--recipe", recipe, "--out", run, "--resume").exit_code == 0
    assert _log_steps(run) == [1, 2, 3, 4, 5, 6]
