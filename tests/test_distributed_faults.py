"""Faults under torchrun (2 CPU processes, gloo): a refused ``--out`` is every rank's one line, not a hang at
the next barrier; a signal that reaches one rank stops every rank at the same step, with one checkpoint."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY_STEPS, tree_state, write_recipe

from fskd_cli.core.stop import EXIT_STOPPED

TORCHRUN = os.path.join(os.path.dirname(sys.executable), "torchrun")
pytestmark = pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None,
                                reason="torchrun not installed")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200", "PYTHONWARNINGS": "ignore"}


def _torchrun(*args) -> list[str]:
    return [TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", "fskd_cli", *map(str, args)]


def _exit_codes(stderr: str) -> dict[int, int]:
    """rank -> exit code, from torchrun's failure report."""
    found = re.findall(r"^\s*rank\s*: (\d+) .*\n\s*exitcode\s*: (-?\d+)", stderr, flags=re.MULTILINE)
    return {int(rank): int(code) for rank, code in found}


def _no_fskd_traceback(stderr: str) -> None:
    assert not re.search(r'File ".*fskd_cli', stderr), stderr[-3000:]  # torchrun's own report may have one


def test_a_refused_out_is_every_ranks_one_line(tmp_path, tiny_digits):
    recipe = write_recipe(tmp_path / "r.yaml", tiny_digits, train=TINY_STEPS)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    before = tree_state(tmp_path)
    start = time.monotonic()
    result = subprocess.run(_torchrun("train-teacher", "--recipe", recipe, "--out", mine), capture_output=True, text=True,
                            env=ENV, timeout=300)
    assert time.monotonic() - start < 120, "the ranks waited for each other"
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2 and all(f"{mine}: not empty and not written by fskd" in e for e in errors), result.stderr
    # the first rank to exit exits 2; torchrun then ends the other with SIGTERM, which may land after its line
    codes = sorted(_exit_codes(result.stderr).values())
    assert 2 in codes and set(codes) <= {2, -signal.SIGTERM}, result.stderr[-3000:]
    _no_fskd_traceback(result.stderr)
    assert tree_state(tmp_path) == before


def _worker(torchrun: subprocess.Popen, rank: int, timeout: float = 120) -> int:
    """The pid of torchrun's worker of ``rank``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in Path(f"/proc/{torchrun.pid}/task/{torchrun.pid}/children").read_text().split():
            try:
                environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"RANK={rank}".encode() in environ:
                return int(child)
        time.sleep(0.05)
    raise AssertionError(f"no worker of rank {rank}")


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc to find torchrun's workers")
def test_a_signal_to_one_rank_stops_every_rank_at_the_same_step(tmp_path, tiny_digits):
    recipe = write_recipe(tmp_path / "r.yaml", tiny_digits, train={**TINY_STEPS, "steps": 400, "milestones": [300],
                                                                   "log_every": 2, "ckpt_every": 1000})
    run = tmp_path / "run"
    proc = subprocess.Popen(_torchrun("train-teacher", "--recipe", recipe, "--out", run), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)
    rank1 = _worker(proc, 1)
    deadline = time.monotonic() + 180
    while not (run / "log.csv").exists() or len((run / "log.csv").read_text().splitlines()) < 3:
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it could be signalled"
        time.sleep(0.05)
    os.kill(rank1, signal.SIGTERM)  # only rank 1 sees it; rank 0 learns it at the next step boundary
    _, err = proc.communicate(timeout=300)
    stops = re.findall(r"stopped by SIGTERM at step (\d+); last checkpoint: (\S+) ", err)
    assert len(stops) == 2 and stops[0] == stops[1], err[-3000:]
    assert _exit_codes(err) == {0: EXIT_STOPPED, 1: EXIT_STOPPED}, err[-3000:]
    _no_fskd_traceback(err)
    step = int(stops[0][0])
    assert Path(stops[0][1]) == run / "checkpoint.pt"
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == step < 400
