"""A run killed with SIGKILL mid-training and resumed reaches the same weights as one never killed."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import torch
from conftest import write_recipe


def test_resume_after_a_real_kill_is_exact(tmp_path, tiny_digits):
    recipe = write_recipe(tmp_path / "r.yaml", tiny_digits, data={"path": str(tiny_digits), "flip": True},
                          train={"batch_size": 16, "lr": 0.02, "epochs": 4, "milestones": [2], "log_every": 5,
                                 "ckpt_every": 3, "deterministic": True})
    cmd = [sys.executable, "-m", "fskd_cli", "train-teacher", "--recipe", str(recipe)]
    env = {**os.environ, "COLUMNS": "200"}
    straight = subprocess.run([*cmd, "--out", str(tmp_path / "straight")], capture_output=True, text=True, env=env, timeout=300)
    assert straight.returncode == 0, straight.stderr[-2000:]

    ckpt = tmp_path / "killed" / "checkpoint.pt"
    proc = subprocess.Popen([*cmd, "--out", str(tmp_path / "killed")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env)
    deadline = time.time() + 120
    while time.time() < deadline:
        if ckpt.exists() and torch.load(ckpt, weights_only=True)["step"] >= 9:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(ckpt, weights_only=True)["step"]
    total = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)["step"]
    assert 9 <= killed_at < total, "the run finished before it could be killed"

    resumed = subprocess.run([*cmd, "--out", str(tmp_path / "killed"), "--resume"], capture_output=True, text=True,
                             env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"from step {killed_at}" in resumed.stderr
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    b = torch.load(ckpt, weights_only=True)
    assert a["step"] == b["step"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert log_values(tmp_path / "straight") == log_values(tmp_path / "killed")


def log_values(run):
    """The log rows without their timings (throughput and wall time differ between two runs)."""
    with open(run / "log.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k not in ("images_per_s", "elapsed_s")} for row in csv.DictReader(f)]
