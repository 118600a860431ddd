"""DDP under torchrun on the CPU (gloo): 2 processes with the global batch split match 1 process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import write_recipe

from fskd_cli.data.dataset import PairBatchSampler
from fskd_cli.train.loop import _Shard


def test_shards_partition_every_global_batch():
    sampler = PairBatchSampler(100, 8, 5, seed=0, scales=(1, 4), flip=True)
    shards = [list(_Shard(sampler, r, 2)) for r in range(2)]
    for full, a, b in zip(sampler, *shards, strict=True):
        assert sorted(a + b) == sorted(full) and len(a) == len(b) == 4


@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None, reason="torchrun not installed")
def test_two_processes_match_one(tmp_path, tiny_digits):
    recipe = write_recipe(tmp_path / "r.yaml", tiny_digits, train={"batch_size": 32, "lr": 0.01, "steps": 4, "log_every": 1})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    two = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", "-m", "fskd_cli", "train-teacher",
                          "--recipe", str(recipe), "--out", str(tmp_path / "two")], capture_output=True, text=True,
                         env=env, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run([sys.executable, "-m", "fskd_cli", "train-teacher", "--recipe", str(recipe), "--out",
                          str(tmp_path / "one")], capture_output=True, text=True, env=env, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    assert "on 2 process(es)" in two.stderr and "global batch 32" in two.stderr
    a = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    # BatchNorm statistics come from each process's half batch (no SyncBatchNorm on the CPU), so the
    # weights agree closely but not bit for bit; a wrong gradient average or batch split is far off.
    for key, wa in a["model"].items():
        if wa.is_floating_point() and "running" not in key:
            wb = b["model"][key]
            assert torch.allclose(wa, wb, rtol=0, atol=2e-3 * max(1.0, float(wa.abs().max()))), key
