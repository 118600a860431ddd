"""The GPU checks (``pytest -m cuda``; skipped without CUDA) and the CPU-safe part of benchmarks/gpu_check.sh.

The checks themselves live in ``benchmarks/cuda_checks.py`` so that a GPU machine without pytest runs the
same code (``gpu_check.sh`` falls back to ``python benchmarks/cuda_checks.py``).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
NO_CUDA = "needs a CUDA GPU; run `bash benchmarks/gpu_check.sh` (or `pytest -m cuda`) on a machine with one"


def _cuda_checks():
    spec = importlib.util.spec_from_file_location("cuda_checks", REPO / "benchmarks" / "cuda_checks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CHECKS = ["bf16_teacher_distill_eval", "channels_last", "compile", "ddp_one_nccl_process", "resume_on_gpu"]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
@pytest.mark.parametrize("name", CHECKS)
def test_on_the_gpu(name, tmp_path):
    _cuda_checks().CHECKS[name](tmp_path)


def test_the_check_list_is_the_scripts():
    assert list(_cuda_checks().CHECKS) == CHECKS


def test_gpu_check_dry_run_checks_its_prerequisites_without_a_gpu():
    """``gpu_check.sh --dry-run`` (CI): the python it would use has what it needs, fskd starts without the
    optional packages the GPU machine may lack, and the plan it would run is printed; no GPU work."""
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--dry-run"], capture_output=True,
                       text=True, env=env, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "prerequisites: ok" in out and "fskd starts without mlxtend, facenet_pytorch, pytest" in out
    for stage in ("1/3 CUDA checks", "2/3 bench_step.py --device cuda", "3/3 digit study"):
        assert stage in out
    assert "dry run: nothing run on a GPU" in out
