"""One writer per run folder: a second run into a busy folder is refused naming the holder, while the first
finishes untouched; a second eval of the same figure of a run likewise (other figures go on beside it); a
lock left by a dead process blocks nothing."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import TINY_STEPS, assert_one_line_error, run_main, write_recipe

from fskd_cli.core.errors import FskdError
from fskd_cli.core.guard import claim_output, sweep_temp_files
from fskd_cli.core.lock import LOCK, check_free, hold_folder


def _spawn(*args: str) -> subprocess.Popen:
    env = {**os.environ, "COLUMNS": "200", "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.PIPE, text=True, env=env)


def _wait_for_holder(proc: subprocess.Popen, folder, timeout: float = 120, name: str = LOCK) -> None:
    """Until ``proc`` has written its line into ``folder``'s lock file (it holds the folder from then on)."""
    lock, start = folder / name, time.monotonic()
    while not (lock.exists() and f"pid {proc.pid} " in lock.read_text()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - start < timeout, "the first process never took its lock"
        time.sleep(0.02)


def _holder(folder, name: str = LOCK) -> subprocess.Popen:
    """A process holding ``folder``'s lock (the lock file ``name``) until its stdin closes."""
    code = (f"from fskd_cli.core.lock import hold_folder; hold_folder({str(folder)!r}, name={name!r}); "
            "import sys; sys.stdin.read()")
    proc = _spawn("-c", code)
    _wait_for_holder(proc, folder, name=name)
    return proc


def test_a_second_run_into_a_busy_folder_is_refused_and_the_first_finishes_untouched(tmp_path, tiny_digits):
    steps = 80  # a few seconds: the second run is refused long before
    recipe = write_recipe(tmp_path / "r.yaml", tiny_digits, train={**TINY_STEPS, "steps": steps, "log_every": 1})
    out = tmp_path / "run"
    first = _spawn("-m", "fskd_cli", "train-teacher", "--recipe", recipe, "--out", out)
    _wait_for_holder(first, out)
    for extra in ((), ("--force",), ("--resume",)):
        second = run_main("train-teacher", "--recipe", recipe, "--out", out, *extra)
        line = assert_one_line_error(second, f"{out}: in use by another fskd run (pid {first.pid} on ",
                                     "fskd train-teacher --recipe", "wait for it or choose another --out")
        assert "started " in line
    assert first.poll() is None, "the first run ended before the second was refused: make it longer"
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    with open(out / "log.csv", newline="") as f:
        assert [int(row["step"]) for row in csv.DictReader(f)] == list(range(1, steps + 1))


def test_a_lock_left_by_a_killed_run_blocks_nothing_even_while_its_loader_workers_linger(tmp_path, tiny_digits):
    recipe = write_recipe(tmp_path / "r.yaml", tiny_digits, data={"path": str(tiny_digits), "workers": 1},
                          train={**TINY_STEPS, "steps": 400, "log_every": 1})
    out = tmp_path / "run"
    first = _spawn("-m", "fskd_cli", "train-teacher", "--recipe", recipe, "--out", out)
    _wait_for_holder(first, out)
    while not (out / "log.csv").exists():  # training has started: its worker was forked while it held the folder
        assert first.poll() is None, first.communicate()
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)  # the main process only (communicate would wait for the worker too, holding its pipes)
    assert f"pid {first.pid} " in (out / LOCK).read_text()  # its line is still there, its lock is not
    check_free(out)  # at once: the worker, which notices its parent's death later, holds nothing
    first.communicate(timeout=60)
    short = write_recipe(tmp_path / "short.yaml", tiny_digits, train=TINY_STEPS)
    again = run_main("train-teacher", "--recipe", short, "--out", out, "--force")
    assert again.exit_code == 0, again.stderr
    assert f"pid {first.pid} " not in (out / LOCK).read_text()


def test_a_folder_holding_only_a_stale_lock_file_is_claimed_like_an_empty_one(tmp_path):
    folder = tmp_path / "run"
    _holder(folder).communicate(input="", timeout=60)  # took the lock, then ended before writing anything else
    assert [p.name for p in folder.iterdir()] == [LOCK]
    with claim_output(folder, "teacher", hold=True) as lock:
        assert lock is not None
        with pytest.raises(FskdError, match=r"in use by another fskd run \(pid \d+ on .*started .*`.*`\)"):
            claim_output(folder, "teacher", force=True, hold=True)  # --force does not break a live lock
        assert sweep_temp_files(folder) == 0 and (folder / LOCK).exists()  # the lock file is not a temp file
    check_free(folder)


def test_a_second_eval_of_the_same_figure_is_refused_and_other_figures_and_runs_go_on(tmp_path, tiny_teacher,
                                                                                      tiny_digits):
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    for run in (run_a, run_b):
        shutil.copytree(tiny_teacher, run, ignore=shutil.ignore_patterns("eval"))  # no JSON of other tests' evals
    holder = _holder(run_a / "eval", ".digits_x1.lock")  # as `fskd eval digits --ckpt a --scale 1` holds it

    def evaluate(run, scale="1"):
        return run_main("eval", "digits", "--ckpt", run, "--data", tiny_digits, "--device", "cpu", "--scale", scale,
                        "--results", tmp_path / "results.csv")

    try:
        assert_one_line_error(evaluate(run_a), f"{run_a / 'eval'}: in use by another fskd eval of digits at scale 1 "
                                               f"(pid {holder.pid} on ", "wait for it")
        assert not list((run_a / "eval").glob("digits_x1*.json"))
        for run, scale in ((run_a, "4"), (run_b, "1")):
            other = evaluate(run, scale)
            assert other.exit_code == 0, other.stderr
    finally:
        holder.communicate(input="", timeout=60)
    after = evaluate(run_a)
    assert after.exit_code == 0, after.stderr
    assert list((run_a / "eval").glob("digits_x1*.json"))


def test_a_lock_is_one_holder_even_within_a_process(tmp_path):
    with hold_folder(tmp_path / "x"):
        with pytest.raises(FskdError, match=f"pid {os.getpid()} "):
            hold_folder(tmp_path / "x")
        with pytest.raises(FskdError, match="in use"):
            check_free(tmp_path / "x")
    hold_folder(tmp_path / "x").release()


def test_a_finished_run_leaves_its_folder_free_even_with_loader_workers(tmp_path, tiny_digits):
    from fskd_cli.core.config import resolve
    from fskd_cli.train.loop import train

    cfg = resolve(write_recipe(tmp_path / "r.yaml", tiny_digits, train=TINY_STEPS), {"data.workers": 1})
    train(cfg, tmp_path / "run", kind="teacher", stop_after=2)  # its worker forked while the folder was held
    check_free(tmp_path / "run")
    hold_folder(tmp_path / "run").release()


@pytest.mark.parametrize("kind", ["folder", "link", "fifo"])
def test_a_lock_file_that_is_not_a_file_is_one_line_and_never_followed(tmp_path, kind):
    folder, elsewhere = tmp_path / "run", tmp_path / "elsewhere.txt"
    folder.mkdir()
    {"folder": lambda p: p.mkdir(), "link": lambda p: p.symlink_to(elsewhere), "fifo": os.mkfifo}[kind](folder / LOCK)
    for take in (check_free, hold_folder):
        with pytest.raises(FskdError, match=rf"{LOCK}: not a .*; remove it"):
            take(folder)
    assert not elsewhere.exists()
